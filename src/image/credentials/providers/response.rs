//! The plugin's `CredentialProviderResponse`, read from untrusted bytes without ever quoting a
//! credential in an error.

use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::parse_go_duration;
use crate::image::credentials::docker_config::{DockerConfig, Entry};
use crate::image::credentials::pattern::Pattern;
use crate::image::credentials::Credentials;

const RESPONSE_KIND: &str = "CredentialProviderResponse";
/// Longest plugin-supplied value quoted in an error.
const MAX_QUOTED_CHARS: usize = 64;

/// Why a plugin's stdout is not a usable `CredentialProviderResponse`. Messages quote only
/// the plugin's `apiVersion`, `kind`, `cacheKeyType` and `cacheDuration` (shortened), never
/// anything from `auth`.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// Not JSON (the cause is a syntax error, which quotes no content).
    #[error("response is not JSON")]
    Json(#[source] serde_json::Error),
    /// Not a JSON object.
    #[error("response is not a JSON object")]
    NotAnObject,
    /// `apiVersion` is not the one the plugin was called with.
    #[error("response has apiVersion {found:?}, expected {expected:?}")]
    ApiVersion {
        /// What the plugin sent (shortened).
        found: String,
        /// The provider's configured `apiVersion`.
        expected: String,
    },
    /// `kind` is not `CredentialProviderResponse`.
    #[error("response has kind {found:?}, expected \"CredentialProviderResponse\"")]
    Kind {
        /// What the plugin sent (shortened).
        found: String,
    },
    /// `cacheKeyType` is missing or not `Image`, `Registry` or `Global`.
    #[error("response has cacheKeyType {found:?}, expected Image, Registry or Global")]
    CacheKeyType {
        /// What the plugin sent (shortened).
        found: String,
    },
    /// `cacheDuration` is not a Go duration.
    #[error("response has cacheDuration {found:?}, which is not a duration")]
    CacheDuration {
        /// What the plugin sent (shortened).
        found: String,
    },
    /// `auth` is not a map of `{"username", "password"}` objects.
    #[error("response has an `auth` that is not a map of username/password objects")]
    Auth,
}

/// What the plugin's cache key applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// A checked response.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) cache_key_type: CacheKeyType,
    /// `None`: use the provider's `defaultCacheDuration`.
    pub(super) cache_duration: Option<Duration>,
    /// `auth`, as docker config entries keyed by match pattern.
    pub(super) config: DockerConfig,
}

/// Parses and checks a response to a request sent with `api_version`.
pub(super) fn parse(bytes: &[u8], api_version: &str) -> Result<Response, ResponseError> {
    let document: Value = serde_json::from_slice(bytes).map_err(ResponseError::Json)?;
    let Value::Object(fields) = document else {
        return Err(ResponseError::NotAnObject);
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    let quoted = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => shorten(s),
        Some(_) => "<not a string>".to_string(),
    };

    if text("apiVersion") != Some(api_version) {
        return Err(ResponseError::ApiVersion {
            found: quoted("apiVersion"),
            expected: api_version.to_string(),
        });
    }
    if text("kind") != Some(RESPONSE_KIND) {
        return Err(ResponseError::Kind {
            found: quoted("kind"),
        });
    }
    let cache_key_type = match text("cacheKeyType") {
        Some("Image") => CacheKeyType::Image,
        Some("Registry") => CacheKeyType::Registry,
        Some("Global") => CacheKeyType::Global,
        _ => {
            return Err(ResponseError::CacheKeyType {
                found: quoted("cacheKeyType"),
            })
        }
    };
    let cache_duration = match fields.get("cacheDuration") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_str().and_then(parse_go_duration).ok_or_else(|| {
            ResponseError::CacheDuration {
                found: quoted("cacheDuration"),
            }
        })?),
    };
    let config = match fields.get("auth") {
        None | Some(Value::Null) => DockerConfig::default(),
        Some(Value::Object(auth)) => auth_entries(auth)?,
        Some(_) => return Err(ResponseError::Auth),
    };
    Ok(Response {
        cache_key_type,
        cache_duration,
        config,
    })
}

/// `auth`'s entries; keys that are not registry patterns and entries without a user name or
/// password are skipped (they offer nothing to try).
fn auth_entries(auth: &Map<String, Value>) -> Result<DockerConfig, ResponseError> {
    let mut entries = Vec::with_capacity(auth.len());
    for (key, value) in auth {
        let Value::Object(fields) = value else {
            return Err(ResponseError::Auth);
        };
        let field = |name: &str| match fields.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(ResponseError::Auth),
        };
        let (username, password) = (field("username")?, field("password")?);
        if username.is_empty() && password.is_empty() {
            continue;
        }
        let Some(pattern) = Pattern::from_config_key(key) else {
            tracing::debug!(key = %key, "credential provider auth key is not a registry; skipped");
            continue;
        };
        entries.push(Entry {
            pattern,
            credentials: Credentials::Basic { username, password },
        });
    }
    Ok(DockerConfig::from_entries(entries))
}

fn shorten(text: &str) -> String {
    text.chars().take(MAX_QUOTED_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageReference;

    const V1: &str = "credentialprovider.kubelet.k8s.io/v1";

    #[test]
    fn reads_a_response() {
        let json = r#"{"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderResponse", "cacheKeyType": "Registry",
            "cacheDuration": "6h0m0s",
            "auth": {"*.dkr.ecr.*.amazonaws.com": {"username": "AWS", "password": "tok"},
                     "empty.example.com": {}}}"#;
        let response = parse(json.as_bytes(), V1).unwrap();
        assert_eq!(response.cache_key_type, CacheKeyType::Registry);
        assert_eq!(response.cache_duration, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(response.config.len(), 1);
        let image = ImageReference::parse("1.dkr.ecr.eu-west-1.amazonaws.com/app").unwrap();
        assert_eq!(
            response.config.lookup(&image),
            Some(Credentials::Basic {
                username: "AWS".into(),
                password: "tok".into()
            })
        );
    }

    #[test]
    fn rejects_bad_responses_without_quoting_auth() {
        let base = |extra: &str| {
            format!(
                r#"{{"apiVersion": "{V1}", "kind": "CredentialProviderResponse",
                    "cacheKeyType": "Image"{extra}}}"#
            )
        };
        let cases = [
            ("hunter2-secret".to_string(), "Json"),
            ("[\"hunter2-secret\"]".to_string(), "NotAnObject"),
            (
                base("").replace(V1, "credentialprovider.kubelet.k8s.io/v1beta1"),
                "ApiVersion",
            ),
            (
                base("").replace("CredentialProviderResponse", "Other"),
                "Kind",
            ),
            (base("").replace("\"Image\"", "\"Pod\""), "CacheKeyType"),
            (
                format!(r#"{{"apiVersion": "{V1}", "kind": "CredentialProviderResponse"}}"#),
                "CacheKeyType",
            ),
            (base(r#", "cacheDuration": 5"#), "CacheDuration"),
            (base(r#", "cacheDuration": "-1h""#), "CacheDuration"),
            (base(r#", "auth": "hunter2-secret""#), "Auth"),
            (base(r#", "auth": {"r.io": "hunter2-secret"}"#), "Auth"),
            (
                base(r#", "auth": {"r.io": {"password": ["hunter2-secret"]}}"#),
                "Auth",
            ),
        ];
        for (json, variant) in cases {
            let err = parse(json.as_bytes(), V1).unwrap_err();
            let printed = format!("{err:?} {}", crate::display_chain(&err));
            assert!(printed.starts_with(variant), "{json}: {printed}");
            assert!(!printed.contains("hunter2"), "{printed}");
        }
    }
}
