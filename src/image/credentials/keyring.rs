//! Several docker configs merged the way the kubelet merges a pod's image pull secrets (the
//! pod's own, then those the service account adds): every matching credential, most specific
//! first, for the caller to try in turn.

use super::docker_config::{self, DockerConfig};
use super::Credentials;
use crate::image::ImageReference;

/// Docker configs in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    configs: Vec<DockerConfig>,
}

impl Keyring {
    /// An empty keyring (anonymous access only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a config after the ones already held.
    pub fn push(&mut self, config: DockerConfig) {
        self.configs.push(config);
    }

    /// Every credential whose key matches `image`, over all configs: the most specific key
    /// first (a longer path, then a host with fewer globs, then a longer key); equally specific
    /// keys in the order of their configs. A credential offered by several keys is listed once.
    /// Empty when nothing matches: try anonymous access.
    pub fn lookup(&self, image: &ImageReference) -> Vec<Credentials> {
        let entries = self.configs.iter().flat_map(DockerConfig::entries);
        docker_config::ranked(entries, image)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Whether no config holds any credentials.
    pub fn is_empty(&self) -> bool {
        self.configs.iter().all(DockerConfig::is_empty)
    }
}

impl FromIterator<DockerConfig> for Keyring {
    fn from_iter<I: IntoIterator<Item = DockerConfig>>(configs: I) -> Self {
        Self {
            configs: configs.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text: &str) -> ImageReference {
        ImageReference::parse(text).unwrap()
    }

    fn config(json: &str) -> DockerConfig {
        DockerConfig::from_json(json.as_bytes()).unwrap()
    }

    fn user(name: &str) -> Credentials {
        Credentials::Basic {
            username: name.into(),
            password: "p".into(),
        }
    }

    #[test]
    fn returns_every_match_most_specific_first_across_configs() {
        let pod = config(
            r#"{"auths": {"quay.io": {"username": "pod-host", "password": "p"},
                          "other.io": {"username": "pod-other", "password": "p"}}}"#,
        );
        let service_account = config(
            r#"{"auths": {"quay.io/team": {"username": "sa-team", "password": "p"},
                          "quay.io": {"username": "sa-host", "password": "p"},
                          "*.io": {"username": "sa-glob", "password": "p"}}}"#,
        );
        let keyring: Keyring = [pod, service_account].into_iter().collect();

        assert_eq!(
            keyring.lookup(&image("quay.io/team/app")),
            vec![
                user("sa-team"),
                user("pod-host"),
                user("sa-host"),
                user("sa-glob")
            ]
        );
        assert_eq!(
            keyring.lookup(&image("quay.io/elsewhere/app")),
            vec![user("pod-host"), user("sa-host"), user("sa-glob")]
        );
        assert_eq!(
            keyring.lookup(&image("registry.example.com/x")),
            Vec::<Credentials>::new()
        );
    }

    #[test]
    fn a_credential_offered_twice_is_listed_once() {
        let same = r#"{"auths": {"quay.io": {"username": "u", "password": "p"}}}"#;
        let mut keyring = Keyring::new();
        assert!(keyring.is_empty());
        keyring.push(config(same));
        keyring.push(config(same));
        assert!(!keyring.is_empty());
        assert_eq!(keyring.lookup(&image("quay.io/a")), vec![user("u")]);
    }

    #[test]
    fn docker_hub_credentials_serve_short_names() {
        let keyring: Keyring = [config(
            r#"{"auths": {"https://index.docker.io/v1/": {"username": "hub", "password": "p"}}}"#,
        )]
        .into_iter()
        .collect();
        assert_eq!(keyring.lookup(&image("nginx:1.27")), vec![user("hub")]);
        assert_eq!(keyring.lookup(&image("someone/app")), vec![user("hub")]);
    }
}
