//! The clients of one endpoint (per registry and credentials), and which one a request takes.
//!
//! `oci-client` asks `GET /v2/` for an auth challenge before every request while it holds no
//! token, and never remembers that an endpoint sends none, so an anonymous pull from a registry
//! without auth (an in-cluster registry) paid one extra round trip per request. Here what
//! `/v2/` said is remembered per endpoint client for [`CHALLENGE_MEMO_TTL`]:
//!
//! - **no challenge** (a success without `WWW-Authenticate`): tag `HEAD`s, manifest `GET`s and
//!   blob `GET`s are sent directly, with a reqwest client built from the same settings as the
//!   endpoint's `oci-client` (scheme, extra CA roots, timeouts, user agent, reqwest's default
//!   redirect policy and proxy settings), with the same `Accept` headers and anonymously, which
//!   is what `oci-client` itself sends to such an endpoint (it never sends basic credentials
//!   unchallenged);
//! - **a challenge**: every request goes through `oci-client`, which caches tokens per
//!   repository;
//! - **no answer to go by** (the probe failed, or answered an error without a challenge): this
//!   request goes through `oci-client`, as before, and nothing is remembered.
//!
//! Bearer credentials always go through `oci-client`: it sends them without probing.
//!
//! A direct request answered 401 (a repository that needs auth although `/v2/` does not, or a
//! registry that began to challenge) forgets the memo. Anonymous, the request is then made
//! through `oci-client` (which probes again and follows a new challenge). With basic
//! credentials it is made again directly with them: as basic auth, or, when the 401 names a
//! bearer realm, with a token the realm grants them for the repository. `oci-client` could not
//! do that: with an anonymous `/v2/` it sends basic credentials nowhere.
//!
//! Limitation: a token obtained that way is not kept, and the memo, forgotten, is probed again
//! at the next request; a repository that needs credentials on a registry whose `/v2/` is
//! anonymous therefore costs a probe, a refused request and a token request on every request
//! that misses the caches.
//!
//! Limitation: the memo is kept per client, so 256 distinct (registry, credentials) pairs
//! (`MAX_CACHED_CLIENTS`) empty it with the clients.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_client::client::ClientProtocol;
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use reqwest::header::{HeaderMap, ACCEPT, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::time::Instant;

use super::manifest::ACCEPTED;
use super::request::{read_capped, CappedRead};
use crate::image::Digest;

/// How long an endpoint's answer to `GET /v2/` is trusted. A registry that starts to challenge
/// meanwhile is noticed at once anyway (its first 401 forgets the memo), so the bound only
/// decides how soon a registry that stops challenging is asked directly, and costs one probe
/// per endpoint and per this much time.
pub(super) const CHALLENGE_MEMO_TTL: Duration = Duration::from_secs(300);

/// Cap on what is read of an error answer, a `/v2/` answer or a token answer.
const SMALL_BODY_CAP: u64 = 64 * 1024;

/// What `/v2/` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    /// A success without an auth challenge.
    NoChallenge,
    /// An auth challenge.
    Challenge,
}

/// Why reading an answer failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// More than the cap was declared or sent.
    TooLarge,
    /// The registry's answer or the transport, as `oci-client` reports them.
    Registry(OciDistributionError),
}

impl From<OciDistributionError> for Failure {
    fn from(err: OciDistributionError) -> Self {
        Self::Registry(err)
    }
}

impl From<CappedRead> for Failure {
    fn from(failure: CappedRead) -> Self {
        match failure {
            CappedRead::TooLarge => Self::TooLarge,
            CappedRead::Failed(e) => Self::Registry(e.into()),
        }
    }
}

/// The clients of one (registry, endpoint, credentials) triple; clones share the memo.
#[derive(Clone)]
pub(super) struct EndpointClient {
    oci: oci_client::Client,
    http: reqwest::Client,
    protocol: ClientProtocol,
    /// What `/v2/` said and until when it is trusted. Held across the probe, so that the
    /// requests waiting for one endpoint make one probe between them.
    memo: Arc<tokio::sync::Mutex<Option<(Said, Instant)>>>,
}

impl EndpointClient {
    /// Both clients of an endpoint; `http` must be configured as `oci` is.
    pub(super) fn new(
        oci: oci_client::Client,
        http: reqwest::Client,
        protocol: ClientProtocol,
    ) -> Self {
        Self {
            oci,
            http,
            protocol,
            memo: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The digest `target` (a tag) names now: a `HEAD` and its `Docker-Content-Digest`.
    pub(super) async fn manifest_digest(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
    ) -> Result<String, OciDistributionError> {
        let url = self.manifest_url(target);
        let head = |http: &reqwest::Client| http.head(&url).header(ACCEPT, ACCEPTED.join(", "));
        if let Some(answer) = self.send_direct(target, auth, head).await {
            let response = answer?;
            if response.status() != StatusCode::OK {
                return Err(refusal(response).await);
            }
            // Without the header (distribution always sends it), `oci-client` knows the way:
            // a `GET` whose body it hashes.
            if let Some(digest) = digest_header(response.headers())? {
                return Ok(digest);
            }
        }
        self.oci.fetch_manifest_digest(target, auth).await
    }

    /// A manifest or index by digest, read up to `cap` bytes (refused by its declared length
    /// first, then by what arrives). The caller checks the bytes against the digest.
    pub(super) async fn manifest(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
        cap: u64,
    ) -> Result<Vec<u8>, Failure> {
        let url = self.manifest_url(target);
        let get = |http: &reqwest::Client| http.get(&url).header(ACCEPT, ACCEPTED.join(", "));
        if let Some(answer) = self.send_direct(target, auth, get).await {
            return read_content(answer?, target.digest(), cap).await;
        }
        // `oci-client` reads a manifest whole; the cap applies right after.
        let (body, _) = self.oci.pull_manifest_raw(target, auth, &ACCEPTED).await?;
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
        Ok(read_capped(body, None, cap).await?)
    }

    /// A blob by digest (asked for by digest alone, never at a descriptor's `urls`), streamed
    /// up to `cap` bytes. The caller checks the bytes against the digest.
    pub(super) async fn blob(
        &self,
        target: &Reference,
        digest: &str,
        auth: &RegistryAuth,
        cap: u64,
    ) -> Result<Vec<u8>, Failure> {
        let url = self.blob_url(target, digest);
        let get = |http: &reqwest::Client| http.get(&url).header(ACCEPT, ACCEPTED.join(", "));
        if let Some(answer) = self.send_direct(target, auth, get).await {
            return read_content(answer?, Some(digest), cap).await;
        }
        // `pull_blob_stream` takes no credentials: it uses those stored for the registry.
        self.oci
            .store_auth_if_needed(target.resolve_registry(), auth)
            .await;
        let stream = self.oci.pull_blob_stream(target, digest).await?;
        let declared = stream.content_length;
        Ok(read_capped(stream, declared, cap).await?)
    }

    /// Sends the request `build` makes directly when the endpoint sends no challenge; `None`
    /// when it must go through `oci-client` instead. A 401 forgets the memo and, with basic
    /// credentials, is answered with them once.
    async fn send_direct(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Option<Result<Response, OciDistributionError>> {
        if matches!(auth, RegistryAuth::Bearer(_)) || self.said(target).await? != Said::NoChallenge
        {
            return None;
        }
        let response = match build(&self.http).send().await {
            Ok(response) => response,
            Err(err) => return Some(Err(err.into())),
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return Some(Ok(response));
        }
        *self.memo.lock().await = None;
        let registry = target.resolve_registry();
        let RegistryAuth::Basic(username, password) = auth else {
            tracing::debug!(
                registry,
                "anonymous request refused: asking through oci-client"
            );
            return None;
        };
        tracing::debug!(
            registry,
            "request refused without credentials: sending them"
        );
        let challenge = response.headers().get(WWW_AUTHENTICATE).cloned();
        drain(response).await;
        let request = match self
            .credentials(challenge, target, username, password)
            .await
        {
            Ok(Credentials::Basic) => build(&self.http).basic_auth(username, Some(password)),
            Ok(Credentials::Token(token)) => build(&self.http).bearer_auth(token),
            Err(err) => return Some(Err(err)),
        };
        Some(request.send().await.map_err(Into::into))
    }

    /// What `/v2/` said, asked now unless a live answer is kept; `None` when it gave nothing
    /// to go by.
    async fn said(&self, target: &Reference) -> Option<Said> {
        let mut memo = self.memo.lock().await;
        if let Some((said, until)) = *memo {
            if until > Instant::now() {
                return Some(said);
            }
        }
        let registry = target.resolve_registry();
        let url = format!("{}://{registry}/v2/", self.scheme(registry));
        let said = match self.http.get(&url).send().await {
            Ok(response) => {
                let said = if response.headers().contains_key(WWW_AUTHENTICATE) {
                    Some(Said::Challenge)
                } else if response.status().is_success() {
                    Some(Said::NoChallenge)
                } else {
                    None
                };
                drain(response).await;
                said
            }
            Err(_) => None,
        };
        tracing::debug!(registry, ?said, "registry api root probed");
        *memo = said.map(|said| (said, Instant::now() + CHALLENGE_MEMO_TTL));
        said
    }

    /// What to answer a 401 with: basic auth, or a token from the bearer realm it names.
    async fn credentials(
        &self,
        challenge: Option<reqwest::header::HeaderValue>,
        target: &Reference,
        username: &str,
        password: &str,
    ) -> Result<Credentials, OciDistributionError> {
        let Some(challenge) = challenge
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .and_then(BearerChallenge::parse)
        else {
            return Ok(Credentials::Basic);
        };
        let scope = format!("repository:{}:pull", target.repository());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = &challenge.service {
            query.push(("service", service));
        }
        // As `oci-client` does: the realm is followed wherever it points (see the module
        // documentation of the registry for what that means).
        let response = self
            .http
            .get(&challenge.realm)
            .query(&query)
            .basic_auth(username, Some(password))
            .send()
            .await?;
        let status = response.status();
        let body = read_small(response).await;
        if !status.is_success() {
            return Err(OciDistributionError::AuthenticationFailure(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        let granted: Granted = serde_json::from_slice(&body)
            .map_err(|e| OciDistributionError::RegistryTokenDecodeError(e.to_string()))?;
        granted
            .token
            .or(granted.access_token)
            .map(Credentials::Token)
            .ok_or_else(|| {
                OciDistributionError::RegistryTokenDecodeError("the answer holds no token".into())
            })
    }

    /// `http` or `https` for `registry`, as `oci-client` decides it from the same protocol.
    fn scheme(&self, registry: &str) -> &'static str {
        match &self.protocol {
            ClientProtocol::Http => "http",
            ClientProtocol::HttpsExcept(plain) if plain.iter().any(|h| h == registry) => "http",
            ClientProtocol::Https | ClientProtocol::HttpsExcept(_) => "https",
        }
    }

    fn manifest_url(&self, target: &Reference) -> String {
        let name = target.digest().or_else(|| target.tag()).unwrap_or("latest");
        self.url(target, "manifests", name)
    }

    fn blob_url(&self, target: &Reference, digest: &str) -> String {
        self.url(target, "blobs", digest)
    }

    /// `<scheme>://<endpoint>/v2/<repository>/<kind>/<name>`, with `?ns=<registry>` at a
    /// mirror.
    fn url(&self, target: &Reference, kind: &str, name: &str) -> String {
        let registry = target.resolve_registry();
        let namespace = target
            .namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        format!(
            "{}://{registry}/v2/{}/{kind}/{name}{namespace}",
            self.scheme(registry),
            target.repository()
        )
    }
}

/// What a 401 is answered with.
enum Credentials {
    /// The basic credentials themselves.
    Basic,
    /// A bearer token from the realm.
    Token(String),
}

/// A token realm's answer (distribution's token spec: `token`, or OAuth2's `access_token`).
#[derive(serde::Deserialize)]
struct Granted {
    token: Option<String>,
    access_token: Option<String>,
}

/// A `WWW-Authenticate: Bearer realm="...",service="..."` challenge.
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

impl BearerChallenge {
    /// The bearer challenge in `header`, if it is one with an `http(s)` realm.
    fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service) = (None, None);
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(',').unwrap_or((after, "")),
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                _ => {}
            }
            rest = after.trim_start_matches([',', ' ']);
        }
        let realm = realm?;
        let scheme_ok =
            reqwest::Url::parse(&realm).is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
        scheme_ok.then_some(Self { realm, service })
    }
}

/// The `Docker-Content-Digest` header (absent when empty).
fn digest_header(headers: &HeaderMap) -> Result<Option<String>, OciDistributionError> {
    match headers.get("Docker-Content-Digest") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok("") => Ok(None),
            Ok(text) => Ok(Some(text.to_string())),
            Err(_) => Err(OciDistributionError::SpecViolationError(
                "the Docker-Content-Digest header is not text".into(),
            )),
        },
    }
}

/// Reads a content answer up to `cap`, after refusing an error status and a
/// `Docker-Content-Digest` that names other content than `asked` under the same algorithm.
async fn read_content(
    response: Response,
    asked: Option<&str>,
    cap: u64,
) -> Result<Vec<u8>, Failure> {
    if response.status() != StatusCode::OK {
        return Err(refusal(response).await.into());
    }
    if let (Some(asked), Some(header)) = (asked, digest_header(response.headers())?) {
        let (asked_digest, named) = (Digest::parse(asked), Digest::parse(&header));
        let differs = match (&asked_digest, &named) {
            (Some(a), Some(n)) => a.algorithm() == n.algorithm() && a != n,
            _ => false,
        };
        if differs {
            return Err(Failure::Registry(
                DigestError::VerificationError {
                    expected: asked.to_string(),
                    actual: header,
                }
                .into(),
            ));
        }
    }
    let declared = response.content_length();
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    Ok(read_capped(stream, declared, cap).await?)
}

/// The error `oci-client` would report for an answer that is not a success: 401 as
/// unauthorized, another client error by its OCI error envelope if it has one, anything else by
/// its status.
async fn refusal(response: Response) -> OciDistributionError {
    let status = response.status();
    let url = response.url().to_string();
    let body = read_small(response).await;
    let by_status = |body: &[u8]| OciDistributionError::ServerError {
        code: status.as_u16(),
        url: url.clone(),
        message: String::from_utf8_lossy(body).into_owned(),
    };
    if status == StatusCode::UNAUTHORIZED {
        OciDistributionError::UnauthorizedError { url }
    } else if status.is_success() {
        OciDistributionError::SpecViolationError(format!("expected HTTP 200, got {status}"))
    } else if status.is_client_error() {
        match serde_json::from_slice::<OciEnvelope>(&body) {
            Ok(envelope) => OciDistributionError::RegistryError { envelope, url },
            Err(_) => by_status(&body),
        }
    } else {
        by_status(&body)
    }
}

/// Up to [`SMALL_BODY_CAP`] bytes of an answer; whatever could not be read is left out.
async fn read_small(response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = usize::try_from(SMALL_BODY_CAP)
            .unwrap_or(usize::MAX)
            .saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() >= room {
            break;
        }
    }
    body
}

/// Reads a small answer to its end, so that the connection can serve the next request.
async fn drain(response: Response) {
    read_small(response).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_with_their_realm_and_service() {
        assert_eq!(
            BearerChallenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert_eq!(
            BearerChallenge::parse("bearer realm=http://127.0.0.1:1/token"),
            Some(BearerChallenge {
                realm: "http://127.0.0.1:1/token".into(),
                service: None,
            })
        );
        for not_one in [
            r#"Basic realm="registry""#,
            r#"Bearer service="x""#,
            r#"Bearer realm="file:///etc/passwd""#,
            r#"Bearer realm="unterminated"#,
            "Bearer",
        ] {
            assert_eq!(BearerChallenge::parse(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn the_scheme_is_chosen_as_oci_client_chooses_it() {
        crate::install_crypto_provider();
        let client = |protocol| {
            EndpointClient::new(
                oci_client::Client::default(),
                reqwest::Client::new(),
                protocol,
            )
        };
        let except = client(ClientProtocol::HttpsExcept(vec!["127.0.0.1:5000".into()]));
        assert_eq!(except.scheme("127.0.0.1:5000"), "http");
        assert_eq!(except.scheme("localhost:5000"), "https");
        assert_eq!(client(ClientProtocol::Http).scheme("r"), "http");
        assert_eq!(client(ClientProtocol::Https).scheme("r"), "https");

        let mut target: Reference = "registry.example/team/app:v1".parse().unwrap();
        let https = client(ClientProtocol::Https);
        assert_eq!(
            https.manifest_url(&target),
            "https://registry.example/v2/team/app/manifests/v1"
        );
        target.set_mirror_registry("mirror.example".into());
        assert_eq!(
            https.blob_url(&target, "sha256:ab"),
            "https://mirror.example/v2/team/app/blobs/sha256:ab?ns=registry.example"
        );
    }
}
