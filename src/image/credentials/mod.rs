//! Registry credentials found the way the kubelet finds them: docker `config.json` files (the
//! `.dockerconfigjson` of image pull secrets) merged into a [`Keyring`], and the kubelet's
//! credential-provider exec plugins ([`CredentialProviders`]).
//!
//! This module only finds credentials for an image; sending them is the registry client's job.
//! Nothing here logs, formats or returns a secret in an error message, and the `Debug` output of
//! [`Credentials`] is redacted.

mod docker_config;
mod keyring;
mod pattern;
mod providers;

use std::fmt;

use crate::image::ImageReference;

pub use docker_config::{DockerConfig, DockerConfigError};
pub use keyring::Keyring;
pub use providers::{
    CredentialError, CredentialProviders, ResponseError, DEFAULT_MAX_PLUGIN_OUTPUT_BYTES,
    DEFAULT_PLUGIN_TIMEOUT,
};

/// Credentials for one registry, as a docker config entry or a credential provider gives them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// A user name and password: HTTP basic auth, or basic auth at the registry's token realm.
    Basic {
        /// The user name.
        username: String,
        /// The password (or a token the registry accepts as a password).
        password: String,
    },
    /// A registry token (docker's `registrytoken`): sent as a bearer token as is.
    Bearer(String),
    /// An OAuth2 refresh token (docker's `identitytoken`): exchanged at the registry's token
    /// realm for an access token, never sent to the registry itself. Registries that issue
    /// them (ACR among others) also accept it as the password of basic auth with the user
    /// `00000000-0000-0000-0000-000000000000`, which is how `docker login` stores it.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "<redacted>";
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &REDACTED)
                .finish(),
            Self::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
            Self::IdentityToken(_) => f.debug_tuple("IdentityToken").field(&REDACTED).finish(),
        }
    }
}

impl Keyring {
    /// The one credential to pull `image` with, as the kubelet picks it: the most specific
    /// docker-config match of this keyring first, else the first answer of the credential
    /// providers (run only when no docker config matches), else `None` (anonymous).
    ///
    /// # Errors
    /// [`CredentialError`] when a provider had to be asked and could not answer.
    pub async fn select(
        &self,
        providers: Option<&CredentialProviders>,
        image: &ImageReference,
    ) -> Result<Option<Credentials>, CredentialError> {
        if let Some(found) = self.lookup(image).into_iter().next() {
            return Ok(Some(found));
        }
        match providers {
            Some(providers) if providers.matches(image) => {
                Ok(providers.credentials(image).await?.into_iter().next())
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let all = [
            Credentials::Basic {
                username: "robot".into(),
                password: "hunter2-password".into(),
            },
            Credentials::Bearer("bearer-secret-token".into()),
            Credentials::IdentityToken("refresh-secret-token".into()),
        ];
        let printed = format!("{all:?} {all:#?}");
        for secret in ["hunter2", "bearer-secret", "refresh-secret"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("robot"));
        assert!(printed.contains("<redacted>"));
    }

    /// Providers whose plugin is `/bin/sh` (a symlink in a temp dir, so no executable is
    /// written while other tests fork) running `script`; nothing touches the network.
    fn sh_providers(
        dir: &std::path::Path,
        match_images: &[&str],
        script: &str,
    ) -> CredentialProviders {
        let plugin = dir.join("sh-plugin");
        if !plugin.exists() {
            std::os::unix::fs::symlink("/bin/sh", &plugin).unwrap();
        }
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": "sh-plugin",
                "matchImages": match_images,
                "defaultCacheDuration": "0s",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "args": ["-c", script],
            }],
        });
        CredentialProviders::from_config(&config.to_string(), dir).unwrap()
    }

    const ANSWER_PROVIDER_USER: &str = r#"cat >/dev/null; printf '%s' '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Registry","auth":{"quay.io":{"username":"from-provider","password":"pp"}}}'"#;

    fn image(text: &str) -> ImageReference {
        ImageReference::parse(text).unwrap()
    }

    fn keyring(json: &str) -> Keyring {
        [DockerConfig::from_json(json.as_bytes()).unwrap()]
            .into_iter()
            .collect()
    }

    fn basic(name: &str, password: &str) -> Credentials {
        Credentials::Basic {
            username: name.into(),
            password: password.into(),
        }
    }

    #[tokio::test]
    async fn select_prefers_the_most_specific_docker_config_match() {
        let dir = tempfile::tempdir().unwrap();
        // The provider would fail if it were run: a docker-config match must not run it.
        let providers = sh_providers(dir.path(), &["quay.io"], "cat >/dev/null; exit 7");
        let keyring = keyring(
            r#"{"auths": {"quay.io": {"username": "host", "password": "p"},
                          "quay.io/team": {"username": "team", "password": "p"}}}"#,
        );
        let got = keyring
            .select(Some(&providers), &image("quay.io/team/app:v1"))
            .await
            .unwrap();
        assert_eq!(got, Some(basic("team", "p")));
    }

    #[tokio::test]
    async fn select_asks_the_providers_when_no_docker_config_matches() {
        let dir = tempfile::tempdir().unwrap();
        let providers = sh_providers(dir.path(), &["quay.io"], ANSWER_PROVIDER_USER);
        let keyring = keyring(r#"{"auths": {"other.io": {"username": "o", "password": "p"}}}"#);
        let got = keyring
            .select(Some(&providers), &image("quay.io/team/app:v1"))
            .await
            .unwrap();
        assert_eq!(got, Some(basic("from-provider", "pp")));
    }

    #[tokio::test]
    async fn select_is_anonymous_when_nothing_matches() {
        let dir = tempfile::tempdir().unwrap();
        // matchImages do not cover the image: the failing plugin is not run.
        let providers = sh_providers(dir.path(), &["quay.io"], "cat >/dev/null; exit 7");
        let empty = Keyring::new();
        let other = image("registry.example.com/app:v1");
        assert_eq!(empty.select(Some(&providers), &other).await.unwrap(), None);
        assert_eq!(empty.select(None, &other).await.unwrap(), None);
    }

    #[tokio::test]
    async fn select_reports_a_failing_provider() {
        let dir = tempfile::tempdir().unwrap();
        let providers = sh_providers(dir.path(), &["quay.io"], "cat >/dev/null; exit 7");
        let err = Keyring::new()
            .select(Some(&providers), &image("quay.io/team/app:v1"))
            .await
            .unwrap_err();
        assert!(matches!(err, CredentialError::Failed { .. }), "{err:?}");
    }
}
