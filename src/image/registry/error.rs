//! What can go wrong at a registry, sorted into what an operator can act on, and which failures
//! are transient (never to be cached).

use std::error::Error as StdError;
use std::time::Duration;

use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

/// Why an image could not be resolved at its registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The tag, manifest or blob does not exist.
    #[error("{what} was not found at registry {registry}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
        /// The registry's answer.
        #[source]
        source: OciDistributionError,
    },
    /// The registry refused the credentials (or their absence).
    #[error(
        "registry {registry} refused access to {what}: unauthorized (check the pull credentials)"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
        /// The registry's answer.
        #[source]
        source: OciDistributionError,
    },
    /// HTTP 429, still after the retries the deadline allowed.
    #[error("registry {registry} is rate limiting requests (HTTP 429)")]
    RateLimited {
        /// The registry host.
        registry: String,
        /// The registry's answer.
        #[source]
        source: OciDistributionError,
    },
    /// HTTP 5xx, still after the retries the deadline allowed.
    #[error("registry {registry} failed with HTTP {status}")]
    ServerError {
        /// The registry host.
        registry: String,
        /// The status code.
        status: u16,
        /// The registry's answer.
        #[source]
        source: OciDistributionError,
    },
    /// No connection (refused, reset, DNS), or the connection broke.
    #[error("registry {registry} is unreachable")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The transport error.
        #[source]
        source: OciDistributionError,
    },
    /// The TLS handshake failed: an untrusted certificate, or a server that does not speak
    /// HTTPS (plain HTTP is used only for hosts listed as insecure).
    #[error(
        "TLS with registry {registry} failed (is its certificate trusted, and does it speak HTTPS?)"
    )]
    Tls {
        /// The registry host.
        registry: String,
        /// The transport error, with the rustls error in its chain.
        #[source]
        source: OciDistributionError,
    },
    /// The request timeout or the caller's deadline ran out.
    #[error("registry {registry} did not answer for {what} within {waited:?}")]
    Timeout {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
        /// How long was waited.
        waited: Duration,
    },
    /// The bytes served do not hash to the digest they were asked for by.
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest it was asked for by.
        expected: String,
        /// The digest of the bytes served.
        actual: String,
    },
    /// A manifest or config larger than the configured cap.
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was fetched.
        what: String,
        /// The cap, in bytes.
        limit: u64,
    },
    /// An index (with the indexes nested in it) lists more entries than the configured cap.
    #[error("{what} lists more than {limit} entries")]
    TooManyEntries {
        /// The index.
        what: String,
        /// The cap.
        limit: usize,
    },
    /// Indexes nested deeper than the configured cap.
    #[error("{what} nests indexes deeper than {limit} levels")]
    TooDeep {
        /// The innermost index reached.
        what: String,
        /// The cap.
        limit: usize,
    },
    /// A manifest, index or config that is not what it must be.
    #[error("{what} is malformed: {problem}")]
    Malformed {
        /// What was fetched.
        what: String,
        /// What is wrong with it.
        problem: String,
        /// The JSON error, when it is one.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// An answer that fits none of the above (an unexpected status, a protocol violation).
    #[error("registry {registry} answered {what} in a way this client does not understand")]
    Protocol {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
        /// The answer.
        #[source]
        source: OciDistributionError,
    },
    /// An extra CA certificate that is not a PEM certificate.
    #[error("extra CA certificate #{index} is not a PEM certificate")]
    InvalidCa {
        /// Its position in the configuration, from 0.
        index: usize,
    },
    /// A mirror or server endpoint configured for the registry (containerd `hosts.toml`) that
    /// cannot be used as configured: `skip_verify`, which is refused (content is hash-checked
    /// whatever serves it, but a tag resolved over an unverified connection could be swapped for
    /// another image, so TLS is never silently weakened), or a setting this client cannot honour
    /// (client certificates, extra headers, an API root other than `/v2`), or an unreadable CA.
    #[error("endpoint {endpoint} configured for registry {registry} cannot be used: {problem}")]
    Endpoint {
        /// The registry host.
        registry: String,
        /// The endpoint's URL.
        endpoint: String,
        /// Why.
        problem: String,
    },
    /// No configured endpoint of the registry may be asked for this (every one lacks the
    /// capability, or is plain HTTP without its host listed as insecure).
    #[error("no endpoint configured for registry {registry} may serve {what} (plain HTTP endpoints need their host listed as insecure)")]
    NoEndpoint {
        /// The registry host.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// The HTTP client could not be built from the configuration.
    #[error("the registry client could not be set up")]
    Setup {
        /// The client's error.
        #[source]
        source: OciDistributionError,
    },
}

impl RegistryError {
    /// Whether the failure may pass by itself (rate limit, 5xx, no connection, TLS failure,
    /// timeout). Callers must never cache these.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::ServerError { .. }
                | Self::Unreachable { .. }
                | Self::Tls { .. }
                | Self::Timeout { .. }
        )
    }

    /// Whether one more attempt within the deadline is worthwhile: 429 and 5xx only. A refused
    /// connection fails fast, and a timeout has already used its time.
    pub(super) fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::ServerError { .. })
    }

    /// Whether the next endpoint of the registry (mirror, then server) should be tried: the
    /// content is not there (not found), or the endpoint is out (unreachable, not answering,
    /// 5xx). Anything else stops the resolution; above all a digest mismatch, which is an
    /// attack signal rather than an outage, and a TLS failure, which must not be bypassed.
    pub(super) fn falls_through(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. }
                | Self::Unreachable { .. }
                | Self::ServerError { .. }
                | Self::Timeout { .. }
        )
    }
}

/// Sorts an `oci-client` error into a [`RegistryError`]; `waited` is the request timeout that
/// was in force, for the client's own timeouts.
pub(super) fn classify(
    registry: &str,
    what: &str,
    waited: Duration,
    err: OciDistributionError,
) -> RegistryError {
    let registry = registry.to_string();
    let what = what.to_string();
    if let Some((expected, actual)) = digest_mismatch(&err) {
        return RegistryError::DigestMismatch {
            what,
            expected,
            actual,
        };
    }
    match classify_status(&err) {
        Status::NotFound => RegistryError::NotFound {
            registry,
            what,
            source: err,
        },
        Status::Unauthorized => RegistryError::Unauthorized {
            registry,
            what,
            source: err,
        },
        Status::RateLimited => RegistryError::RateLimited {
            registry,
            source: err,
        },
        Status::Server(status) => RegistryError::ServerError {
            registry,
            status,
            source: err,
        },
        Status::Transport if has_tls_error(&err) => RegistryError::Tls {
            registry,
            source: err,
        },
        Status::Transport if is_client_timeout(&err) => RegistryError::Timeout {
            registry,
            what,
            waited,
        },
        Status::Transport => RegistryError::Unreachable {
            registry,
            source: err,
        },
        Status::Other => RegistryError::Protocol {
            registry,
            what,
            source: err,
        },
    }
}

enum Status {
    NotFound,
    Unauthorized,
    RateLimited,
    Server(u16),
    Transport,
    Other,
}

fn classify_status(err: &OciDistributionError) -> Status {
    match err {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Status::Unauthorized,
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.contains(&&OciErrorCode::Toomanyrequests) {
                Status::RateLimited
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Status::Unauthorized
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                Status::NotFound
            } else {
                Status::Other
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            404 | 410 => Status::NotFound,
            401 | 403 => Status::Unauthorized,
            429 => Status::RateLimited,
            500..=599 => Status::Server(*code),
            _ => Status::Other,
        },
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            Status::Transport
        }
        _ => Status::Other,
    }
}

/// `oci-client` checks digests itself (manifests against the reference and the
/// `Docker-Content-Digest` header, blobs while streaming); its verdict is ours.
fn digest_mismatch(err: &OciDistributionError) -> Option<(String, String)> {
    let digest_error = match err {
        OciDistributionError::DigestError(e) => Some(e),
        OciDistributionError::IoError(e) => e.get_ref().and_then(|i| i.downcast_ref()),
        _ => None,
    };
    match digest_error? {
        DigestError::VerificationError { expected, actual } => {
            Some((expected.clone(), actual.clone()))
        }
        _ => None,
    }
}

/// Every error in the chain, looking inside `io::Error`s too (their `source()` skips the error
/// they wrap).
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// The chain under a transport error. `oci-client` wraps those `transparent`ly, whose
/// `source()` skips the wrapped error itself, so the chain starts at the wrapped error.
fn transport_chain(err: &OciDistributionError) -> Vec<&(dyn StdError + 'static)> {
    match err {
        OciDistributionError::IoError(e) => chain(e),
        OciDistributionError::RequestError(e) => chain(e),
        other => chain(other),
    }
}

fn has_tls_error(err: &OciDistributionError) -> bool {
    transport_chain(err).iter().any(|e| e.is::<rustls::Error>())
}

fn is_client_timeout(err: &OciDistributionError) -> bool {
    transport_chain(err).iter().any(|e| {
        e.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError};

    fn envelope(code: OciErrorCode) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "http://127.0.0.1:5000/v2/x/manifests/v1".into(),
        }
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/x/manifests/v1".into(),
            message: String::new(),
        }
    }

    fn sort(err: OciDistributionError) -> RegistryError {
        classify("127.0.0.1:5000", "tag v1", Duration::from_secs(1), err)
    }

    #[test]
    fn answers_are_sorted_into_what_an_operator_can_act_on() {
        let cases: Vec<(OciDistributionError, &str, bool)> = vec![
            (envelope(OciErrorCode::ManifestUnknown), "NotFound", false),
            (envelope(OciErrorCode::NameUnknown), "NotFound", false),
            (server(404), "NotFound", false),
            (envelope(OciErrorCode::Unauthorized), "Unauthorized", false),
            (envelope(OciErrorCode::Denied), "Unauthorized", false),
            (
                OciDistributionError::UnauthorizedError { url: "u".into() },
                "Unauthorized",
                false,
            ),
            (server(403), "Unauthorized", false),
            (envelope(OciErrorCode::Toomanyrequests), "RateLimited", true),
            (server(429), "RateLimited", true),
            (server(502), "ServerError", true),
            (server(503), "ServerError", true),
            (server(418), "Protocol", false),
            (
                OciDistributionError::SpecViolationError("x".into()),
                "Protocol",
                false,
            ),
            (
                OciDistributionError::IoError(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                )),
                "Unreachable",
                true,
            ),
            (
                OciDistributionError::IoError(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "slow",
                )),
                "Timeout",
                true,
            ),
            (
                OciDistributionError::IoError(std::io::Error::other(rustls::Error::General(
                    "handshake".into(),
                ))),
                "Tls",
                true,
            ),
        ];
        for (err, want, transient) in cases {
            let shown = format!("{err:?}");
            let got = sort(err);
            let name = format!("{got:?}");
            assert!(name.starts_with(want), "{shown} → {name}");
            assert_eq!(got.is_transient(), transient, "{shown}");
        }
    }

    #[test]
    fn digest_verification_failures_become_digest_mismatches() {
        let mismatch = || DigestError::VerificationError {
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        };
        for err in [
            OciDistributionError::DigestError(mismatch()),
            OciDistributionError::IoError(std::io::Error::other(mismatch())),
        ] {
            let got = sort(err);
            assert!(
                matches!(&got, RegistryError::DigestMismatch { expected, actual, .. }
                    if expected == "sha256:aa" && actual == "sha256:bb"),
                "{got:?}"
            );
            assert!(!got.is_transient());
        }
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        assert!(sort(server(429)).is_retryable());
        assert!(sort(server(500)).is_retryable());
        assert!(!sort(server(404)).is_retryable());
        assert!(!sort(OciDistributionError::IoError(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused"
        )))
        .is_retryable());
    }

    #[test]
    fn messages_say_what_happened_in_plain_words() {
        let text = sort(envelope(OciErrorCode::Unauthorized)).to_string();
        assert_eq!(
            text,
            "registry 127.0.0.1:5000 refused access to tag v1: unauthorized (check the pull \
             credentials)"
        );
        assert_eq!(
            sort(server(429)).to_string(),
            "registry 127.0.0.1:5000 is rate limiting requests (HTTP 429)"
        );
        assert_eq!(
            sort(envelope(OciErrorCode::ManifestUnknown)).to_string(),
            "tag v1 was not found at registry 127.0.0.1:5000"
        );
    }
}
