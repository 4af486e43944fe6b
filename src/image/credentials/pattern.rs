//! The kubelet's registry patterns: a docker config key (`quay.io/team`,
//! `https://index.docker.io/v1/`) or a credential provider's `matchImages` entry
//! (`*.dkr.ecr.*.amazonaws.com`), and whether an image falls under one.
//!
//! The rules follow the kubelet's keyring:
//! - the host has as many dot-separated labels as the pattern, and each label matches the
//!   pattern's label, where `*` stands for any run of characters within one label and `?` for
//!   one character (`*.example.com` matches `a.example.com`, not `example.com` nor
//!   `a.b.example.com`); hosts compare case-insensitively;
//! - the ports are equal: a pattern without a port matches only images without one;
//! - the pattern's path is a prefix of the image's repository, on `/` boundaries
//!   (`quay.io/team` matches `quay.io/team/app`, not `quay.io/teamster/app`). The kubelet
//!   compares plain string prefixes here; the boundary is deliberate, so credentials meant for
//!   one namespace are not offered to a look-alike one;
//! - `docker.io`, `index.docker.io` and `registry-1.docker.io` are one registry.
//!
//! Character classes (`[a-z]`) of Go's `filepath.Match` are not supported: a pattern that uses
//! them is rejected.

use crate::image::ImageReference;

/// Docker Hub's canonical name, as [`ImageReference`] normalises it.
const DOCKER_HUB: &str = "docker.io";
/// Other names of Docker Hub in docker configs (`https://index.docker.io/v1/` is the one
/// `docker login` writes).
const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", "registry-1.docker.io"];

/// A parsed registry pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Pattern {
    /// Lower-case host labels, possibly with `*`/`?` globs (an IPv6 literal is one label).
    labels: Vec<String>,
    port: Option<String>,
    /// Repository path components the image's repository must start with.
    path: Vec<String>,
}

/// How specific a matching pattern is; a greater value is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Specificity {
    path_components: usize,
    literal_labels: usize,
    literal_chars: usize,
}

impl Pattern {
    /// Parses a docker config key: a scheme (`http://`, `https://`) and docker's API version
    /// prefix (`/v1/`, `/v2/`) are dropped. `None` for a key that is not a registry pattern.
    pub(super) fn from_config_key(key: &str) -> Option<Self> {
        let rest = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = ["v1/", "v2/"]
            .iter()
            .find_map(|prefix| path.strip_prefix(prefix))
            .unwrap_or(path);
        Self::from_parts(authority, path)
    }

    /// Parses a credential provider's `matchImages` entry or a key of its `auth` response
    /// (no scheme allowed). `None` for an invalid pattern.
    pub(super) fn from_match_image(text: &str) -> Option<Self> {
        if text.contains("://") {
            return None;
        }
        let (authority, path) = text.split_once('/').unwrap_or((text, ""));
        Self::from_parts(authority, path)
    }

    fn from_parts(authority: &str, path: &str) -> Option<Self> {
        let (host, port) = split_host_port(authority)?;
        let host = host.to_ascii_lowercase();
        let labels: Vec<String> = if host.starts_with('[') {
            vec![host.clone()]
        } else {
            host.split('.').map(str::to_string).collect()
        };
        let valid_label = |label: &String| {
            !label.is_empty()
                && if label.starts_with('[') {
                    label
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b'[' | b']' | b':' | b'.'))
                } else {
                    label.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'?')
                    })
                }
        };
        if !labels.iter().all(valid_label) {
            return None;
        }
        if path.contains(['?', '#', '@', '[', ' ']) {
            return None;
        }
        let path = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        Some(Self {
            labels: canonical_labels(labels, port.is_none()),
            port: port.map(str::to_string),
            path,
        })
    }

    /// Whether `image` falls under this pattern.
    pub(super) fn matches(&self, image: &ImageReference) -> bool {
        let Some((host, port)) = split_host_port(image.registry()) else {
            return false;
        };
        if self.port.as_deref() != port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let labels: Vec<String> = if host.starts_with('[') {
            vec![host]
        } else {
            host.split('.').map(str::to_string).collect()
        };
        let labels = canonical_labels(labels, port.is_none());
        if labels.len() != self.labels.len() {
            return false;
        }
        let host_matches = self
            .labels
            .iter()
            .zip(&labels)
            .all(|(pattern, label)| glob_match(pattern.as_bytes(), label.as_bytes()));
        let mut repository = image.repository().split('/');
        let path_matches = self
            .path
            .iter()
            .all(|component| repository.next() == Some(component.as_str()));
        host_matches && path_matches
    }

    /// How specific this pattern is: a longer path first, then fewer globbed labels, then
    /// more literal characters.
    pub(super) fn specificity(&self) -> Specificity {
        let literal = |label: &&String| !label.contains(['*', '?']);
        Specificity {
            path_components: self.path.len(),
            literal_labels: self.labels.iter().filter(literal).count(),
            literal_chars: self
                .labels
                .iter()
                .chain(&self.path)
                .map(|part| part.bytes().filter(|b| !matches!(b, b'*' | b'?')).count())
                .sum(),
        }
    }
}

/// Splits `host[:port]` or `[v6]:port`; `None` when the port is not decimal digits or the
/// host is empty.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_valid = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!host.is_empty() && port_valid).then_some((host, port))
}

/// Maps Docker Hub's other names (without a port) to `docker.io`.
fn canonical_labels(labels: Vec<String>, no_port: bool) -> Vec<String> {
    let joined = labels.join(".");
    if no_port && DOCKER_HUB_ALIASES.contains(&joined.as_str()) {
        DOCKER_HUB.split('.').map(str::to_string).collect()
    } else {
        labels
    }
}

/// Glob match of one label: `*` is any run of characters, `?` is one character.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and the text position it is currently standing in for.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || text.get(t) == Some(&c) => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, start)) => {
                    backtrack = Some((star, start + 1));
                    p = star + 1;
                    t = start + 1;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text: &str) -> ImageReference {
        ImageReference::parse(text).unwrap()
    }

    #[test]
    fn config_keys_match_images_by_kubelet_rules() {
        // (key, image, matches)
        let cases = [
            // host only
            ("quay.io", "quay.io/team/app:1", true),
            ("quay.io", "quay.io.evil.com/team/app", false),
            ("quay.io", "notquay.io/app", false),
            ("QUAY.io", "quay.io/app", true),
            // scheme and docker's API prefixes are dropped
            ("https://quay.io", "quay.io/app", true),
            ("http://quay.io/", "quay.io/app", true),
            ("https://quay.io/v1/", "quay.io/app", true),
            ("https://quay.io/v2/team", "quay.io/team/app", true),
            ("https://quay.io/v2/team", "quay.io/other/app", false),
            // path prefix on '/' boundaries
            ("quay.io/team", "quay.io/team/app", true),
            ("quay.io/team", "quay.io/team", true),
            ("quay.io/team/", "quay.io/team/app", true),
            ("quay.io/team", "quay.io/teamster/app", false),
            ("quay.io/team/app", "quay.io/team", false),
            // ports must be equal
            ("localhost:5000", "localhost:5000/app", true),
            ("localhost:5000", "localhost:5001/app", false),
            ("localhost", "localhost:5000/app", false),
            ("localhost:5000", "localhost/app", false),
            ("127.0.0.1:5000/team", "127.0.0.1:5000/team/app", true),
            ("[::1]:5000", "[::1]:5000/app", true),
            ("[::1]:5000", "[::1]:5001/app", false),
            // globs: one label each
            ("*.example.com", "registry.example.com/app", true),
            ("*.example.com", "example.com/app", false),
            ("*.example.com", "a.b.example.com/app", false),
            ("*.*.example.com", "a.b.example.com/app", true),
            ("reg*.example.com", "registry.example.com/app", true),
            ("reg*.example.com", "mirror.example.com/app", false),
            ("example.*", "example.io/app", true),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "123.dkr.ecr.us-east-1.amazonaws.com/app",
                true,
            ),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "123.dkr.ecr.amazonaws.com/app",
                false,
            ),
            ("r?g.example.com", "reg.example.com/app", true),
            ("*.example.com:5000", "registry.example.com:5000/app", true),
            ("*.example.com:5000", "registry.example.com/app", false),
            // Docker Hub's names are one registry
            ("https://index.docker.io/v1/", "nginx", true),
            (
                "https://index.docker.io/v1/",
                "docker.io/library/nginx",
                true,
            ),
            ("index.docker.io", "someone/app", true),
            ("registry-1.docker.io", "someone/app", true),
            ("docker.io", "index.docker.io/someone/app", true),
            ("docker.io/someone", "someone/app", true),
            ("docker.io/someone", "other/app", false),
            ("docker.io/library", "nginx:1.27", true),
            ("docker.io", "quay.io/app", false),
            ("index.docker.io:443", "nginx", false),
        ];
        for (key, reference, expected) in cases {
            let pattern = Pattern::from_config_key(key).unwrap();
            assert_eq!(
                pattern.matches(&image(reference)),
                expected,
                "key {key:?} vs image {reference:?}"
            );
        }
    }

    #[test]
    fn invalid_keys_are_not_patterns() {
        for key in [
            "",
            "https://",
            ":5000",
            "host:port",
            "host:",
            "user@host",
            "host/path?x=1",
            "[::1",
            "[::1]x",
            "[::g]:5000",
            "reg[a-z].example.com",
            "a..b",
            "bad host",
        ] {
            assert_eq!(Pattern::from_config_key(key), None, "{key:?}");
        }
    }

    #[test]
    fn match_images_have_no_scheme_and_keep_v1_paths() {
        assert_eq!(Pattern::from_match_image("https://quay.io"), None);
        let pattern = Pattern::from_match_image("quay.io/v1").unwrap();
        assert!(pattern.matches(&image("quay.io/v1/app")));
        assert!(!pattern.matches(&image("quay.io/app")));
    }

    #[test]
    fn longer_paths_and_literal_hosts_are_more_specific() {
        let spec = |key| Pattern::from_config_key(key).unwrap().specificity();
        assert!(spec("quay.io/team/app") > spec("quay.io/team"));
        assert!(spec("quay.io/team") > spec("quay.io"));
        assert!(spec("*.quay.io/team") > spec("registry.quay.io"));
        assert!(spec("registry.quay.io") > spec("*.quay.io"));
        assert!(spec("registry.quay.io") > spec("reg*.quay.io"));
        assert!(spec("registry*.quay.io") > spec("reg*.quay.io"));
    }

    #[test]
    fn globs_match_within_one_label() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*b*", "abc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("**", "x", true),
            ("abc", "abcd", false),
            ("abc*", "ab", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
    }
}
