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
}
