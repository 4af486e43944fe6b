//! Docker's `config.json` (also the `.dockerconfigjson` of `kubernetes.io/dockerconfigjson`
//! secrets) and its legacy `.dockercfg` shape, and which of its entries serves an image.
//!
//! Credential helpers (`credsStore`, `credHelpers`) are not run: an entry that only names a
//! helper carries no credentials here and is skipped.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::pattern::{Pattern, Specificity};
use super::Credentials;
use crate::image::ImageReference;

/// Why bytes are not a docker config. Messages name the entry's key, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The bytes are not JSON (the cause is a syntax error, which quotes no content).
    #[error("docker config is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// The document is not a JSON object.
    #[error("docker config is not a JSON object")]
    NotAnObject,
    /// `auths` is not a JSON object.
    #[error("docker config has an `auths` that is not a JSON object")]
    Auths,
    /// An entry is not a JSON object.
    #[error("docker config entry {key:?} is not a JSON object")]
    Entry {
        /// The entry's key (a registry).
        key: String,
    },
    /// A field of an entry is not a string.
    #[error("docker config entry {key:?} has a `{field}` that is not a string")]
    Field {
        /// The entry's key (a registry).
        key: String,
        /// The field's name.
        field: &'static str,
    },
    /// `auth` is not base64. The decoder's own error is dropped on purpose: it quotes the
    /// offending byte of the secret.
    #[error("docker config entry {key:?} has an `auth` that is not base64")]
    AuthEncoding {
        /// The entry's key (a registry).
        key: String,
    },
    /// `auth` does not decode to UTF-8 `user:password`.
    #[error("docker config entry {key:?} has an `auth` that is not `user:password`")]
    AuthFormat {
        /// The entry's key (a registry).
        key: String,
    },
}

/// The credentials of one docker config, each under the registry pattern of its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    entries: Vec<Entry>,
}

/// One usable entry: the normalised key and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) pattern: Pattern,
    pub(super) credentials: Credentials,
}

impl DockerConfig {
    /// Parses `config.json` / `.dockerconfigjson` (`{"auths": {...}}`) or the legacy
    /// `.dockercfg` shape (the same entries without `auths`).
    ///
    /// An entry gives, in this order of preference: `registrytoken` ([`Credentials::Bearer`]),
    /// `identitytoken` ([`Credentials::IdentityToken`]), `auth` (base64 `user:password`) or
    /// `username`/`password` ([`Credentials::Basic`]). Entries with none of these, and entries
    /// whose key is not a registry pattern, are skipped (the kubelet ignores them too).
    ///
    /// # Errors
    /// [`DockerConfigError`] for malformed JSON, a wrong shape, or a bad `auth`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DockerConfigError> {
        let document: Value = serde_json::from_slice(bytes).map_err(DockerConfigError::Json)?;
        let Value::Object(top) = document else {
            return Err(DockerConfigError::NotAnObject);
        };
        let entries = match top.get("auths") {
            Some(Value::Object(auths)) => auths,
            Some(_) => return Err(DockerConfigError::Auths),
            None => &top,
        };

        let mut parsed = Vec::new();
        for (key, value) in entries {
            let Value::Object(fields) = value else {
                return Err(DockerConfigError::Entry { key: key.clone() });
            };
            let Some(credentials) = entry_credentials(key, fields)? else {
                continue;
            };
            match Pattern::from_config_key(key) {
                Some(pattern) => parsed.push(Entry {
                    pattern,
                    credentials,
                }),
                None => tracing::debug!(key = %key, "docker config key is not a registry; skipped"),
            }
        }
        Ok(Self { entries: parsed })
    }

    /// The credentials of the most specific entry whose key matches `image`, by the kubelet's
    /// rules: the host has as many labels as the key and each matches (`*` globs within one
    /// label), the ports are equal (a key without a port matches only images without one),
    /// the key's path is a prefix of the repository on `/` boundaries, and `docker.io`,
    /// `index.docker.io` and `registry-1.docker.io` are one registry. A longer path is more
    /// specific, then a host with fewer globs; equally specific keys are taken in sorted key
    /// order, so the answer never depends on how the JSON was laid out.
    pub fn lookup(&self, image: &ImageReference) -> Option<Credentials> {
        ranked(self.entries.iter(), image)
            .into_iter()
            .next()
            .cloned()
    }

    /// The number of entries with credentials.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry has credentials.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn from_entries(entries: Vec<Entry>) -> Self {
        Self { entries }
    }

    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The credentials of the entries matching `image`, most specific first; equally specific
/// entries keep their order, and a credential offered twice is kept once.
pub(super) fn ranked<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    image: &ImageReference,
) -> Vec<&'a Credentials> {
    let mut matching: Vec<(Specificity, &Credentials)> = entries
        .into_iter()
        .filter(|entry| entry.pattern.matches(image))
        .map(|entry| (entry.pattern.specificity(), &entry.credentials))
        .collect();
    // Stable: ties keep their order.
    matching.sort_by_key(|(specificity, _)| std::cmp::Reverse(*specificity));

    let mut ranked: Vec<&Credentials> = Vec::with_capacity(matching.len());
    for (_, credentials) in matching {
        if !ranked.contains(&credentials) {
            ranked.push(credentials);
        }
    }
    ranked
}

fn entry_credentials(
    key: &str,
    fields: &Map<String, Value>,
) -> Result<Option<Credentials>, DockerConfigError> {
    let field = |name: &'static str| -> Result<&str, DockerConfigError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(DockerConfigError::Field {
                key: key.to_string(),
                field: name,
            }),
        }
    };
    let registry_token = field("registrytoken")?;
    let identity_token = field("identitytoken")?;
    let auth = field("auth")?;
    let username = field("username")?;
    let password = field("password")?;

    // `auth` is checked even when a token wins, so a broken entry is reported, not hidden.
    let from_auth = if auth.is_empty() {
        None
    } else {
        Some(decode_auth(key, auth)?)
    };

    let credentials = if !registry_token.is_empty() {
        Some(Credentials::Bearer(registry_token.to_string()))
    } else if !identity_token.is_empty() {
        Some(Credentials::IdentityToken(identity_token.to_string()))
    } else if from_auth.is_some() {
        from_auth
    } else if !username.is_empty() || !password.is_empty() {
        Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    } else {
        None
    };
    Ok(credentials)
}

/// Decodes docker's `auth`: standard base64 of `user:password` (the password may hold `:`).
fn decode_auth(key: &str, auth: &str) -> Result<Credentials, DockerConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| DockerConfigError::AuthEncoding {
            key: key.to_string(),
        })?;
    let text = String::from_utf8(bytes).map_err(|_| DockerConfigError::AuthFormat {
        key: key.to_string(),
    })?;
    let (username, password) =
        text.split_once(':')
            .ok_or_else(|| DockerConfigError::AuthFormat {
                key: key.to_string(),
            })?;
    Ok(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text: &str) -> ImageReference {
        ImageReference::parse(text).unwrap()
    }

    fn basic(username: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn reads_every_kind_of_entry() {
        let json = format!(
            r#"{{"auths": {{
                "auth.example.com": {{"auth": "{}", "email": "x@example.com"}},
                "plain.example.com": {{"username": "u2", "password": "p2"}},
                "token.example.com": {{"registrytoken": "rt"}},
                "identity.example.com": {{"username": "<token>", "identitytoken": "it"}},
                "helper.example.com": {{}}
            }}, "credsStore": "desktop"}}"#,
            b64("u1:p:1")
        );
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        assert_eq!(config.len(), 4);
        let cases = [
            ("auth.example.com/app", Some(basic("u1", "p:1"))),
            ("plain.example.com/app", Some(basic("u2", "p2"))),
            (
                "token.example.com/app",
                Some(Credentials::Bearer("rt".into())),
            ),
            (
                "identity.example.com/app",
                Some(Credentials::IdentityToken("it".into())),
            ),
            ("helper.example.com/app", None),
            ("other.example.com/app", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(config.lookup(&image(reference)), expected, "{reference}");
        }
    }

    #[test]
    fn reads_the_legacy_dockercfg_shape() {
        let json = format!(
            r#"{{"https://index.docker.io/v1/": {{"auth": "{}", "email": "a@b.c"}},
                 "quay.io": {{"username": "q", "password": "qp"}}}}"#,
            b64("hub:hubpass")
        );
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        assert_eq!(
            config.lookup(&image("nginx")),
            Some(basic("hub", "hubpass"))
        );
        assert_eq!(config.lookup(&image("quay.io/a/b")), Some(basic("q", "qp")));
    }

    #[test]
    fn the_most_specific_key_wins() {
        let json = r#"{"auths": {
            "quay.io": {"username": "host", "password": "p"},
            "quay.io/team": {"username": "team", "password": "p"},
            "https://quay.io/v1/team/app": {"username": "app", "password": "p"},
            "*.quay.io": {"username": "glob", "password": "p"},
            "registry.quay.io": {"username": "literal", "password": "p"},
            "*.quay.io/team": {"username": "globteam", "password": "p"}
        }}"#;
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        let cases = [
            ("quay.io/team/app", "app"),
            ("quay.io/team/app2", "team"),
            ("quay.io/teamster/app", "host"),
            ("quay.io/other", "host"),
            ("registry.quay.io/other", "literal"),
            ("registry.quay.io/team/x", "globteam"),
            ("mirror.quay.io/other", "glob"),
        ];
        for (reference, username) in cases {
            assert_eq!(
                config.lookup(&image(reference)),
                Some(basic(username, "p")),
                "{reference}"
            );
        }
    }

    #[test]
    fn docker_hub_names_are_one_registry() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            let json = format!(r#"{{"auths": {{"{key}": {{"auth": "{}"}}}}}}"#, b64("u:p"));
            let config = DockerConfig::from_json(json.as_bytes()).unwrap();
            for reference in ["nginx", "library/nginx:1", "docker.io/someone/app"] {
                assert_eq!(
                    config.lookup(&image(reference)),
                    Some(basic("u", "p")),
                    "{key} vs {reference}"
                );
            }
            assert_eq!(config.lookup(&image("quay.io/nginx")), None, "{key}");
        }
    }

    #[test]
    fn ports_must_be_equal() {
        let json = r#"{"auths": {
            "localhost:5000": {"username": "five", "password": "p"},
            "localhost": {"username": "none", "password": "p"}
        }}"#;
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        let cases = [
            ("localhost:5000/app", Some(basic("five", "p"))),
            ("localhost/app", Some(basic("none", "p"))),
            ("localhost:5001/app", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(config.lookup(&image(reference)), expected, "{reference}");
        }
    }

    #[test]
    fn malformed_configs_are_errors_not_panics() {
        let bad_auth =
            |auth: &str| format!(r#"{{"auths": {{"r.example.com": {{"auth": "{auth}"}}}}}}"#);
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "Json"),
            ("[]".into(), "NotAnObject"),
            (r#"{"auths": []}"#.into(), "Auths"),
            (
                r#"{"auths": {"r.example.com": "c2VjcmV0"}}"#.into(),
                "Entry",
            ),
            (
                r#"{"auths": {"r.example.com": {"password": 5}}}"#.into(),
                "Field",
            ),
            (bad_auth("!!not-base64!!"), "AuthEncoding"),
            (bad_auth(&b64("no-colon")), "AuthFormat"),
            (bad_auth("/w=="), "AuthFormat"),
        ];
        for (json, variant) in cases {
            let err = DockerConfig::from_json(json.as_bytes()).unwrap_err();
            assert!(format!("{err:?}").starts_with(variant), "{json}: {err:?}");
        }
    }

    #[test]
    fn errors_never_quote_a_secret() {
        let cases = [
            r#"{"auths": {"r.example.com": "c2VjcmV0LXZhbHVl"}}"#.to_string(),
            r#"{"auths": {"r.example.com": {"auth": "c2VjcmV0LXZhbHVl"}}}"#.to_string(),
            r#"{"auths": {"r.example.com": {"auth": "c2VjcmV0LXZhbHVl=="}}}"#.to_string(),
            r#"{"auths": {"r.example.com": {"password": ["c2VjcmV0LXZhbHVl"]}}}"#.to_string(),
        ];
        for json in cases {
            let err = DockerConfig::from_json(json.as_bytes()).unwrap_err();
            let printed = format!("{} {err:?}", crate::display_chain(&err));
            assert!(!printed.contains("c2VjcmV0"), "{printed}");
            assert!(!printed.contains("secret"), "{printed}");
        }
    }

    #[test]
    fn keys_that_are_not_registries_are_skipped() {
        let json = r#"{"auths": {
            "user@host": {"username": "u", "password": "p"},
            "quay.io": {"username": "q", "password": "p"}
        }}"#;
        let config = DockerConfig::from_json(json.as_bytes()).unwrap();
        assert_eq!(config.len(), 1);
    }
}
