//! Image references as the distribution grammar defines them, normalised as container runtimes
//! normalise them (`nginx` → `docker.io/library/nginx`).
//!
//! `tag@digest` keeps both: the digest decides what runs, the tag is kept for messages.

use std::fmt;

/// The registry a reference without a domain resolves to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("image reference is empty")]
    Empty,
    /// The repository path has an invalid component (upper case, bad separators, empty).
    #[error("image reference {0:?} has an invalid repository name")]
    Repository(String),
    /// The registry host or port is invalid.
    #[error("image reference {0:?} has an invalid registry host")]
    Registry(String),
    /// The tag is invalid.
    #[error("image reference {0:?} has an invalid tag")]
    Tag(String),
    /// The digest is not `algorithm:hex` of the right length.
    #[error("image reference {0:?} has an invalid digest")]
    Digest(String),
    /// The name is longer than 255 characters.
    #[error("image reference {0:?} is longer than 255 characters")]
    TooLong(String),
}

/// A content digest such as `sha256:4a37…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: String,
    hex: String,
}

impl Digest {
    /// Parses `algorithm:hex` for sha256, sha384 and sha512 (lowercase hex, exact length);
    /// `None` for another algorithm, a wrong length, or non-hex characters.
    pub fn parse(text: &str) -> Option<Self> {
        let (algorithm, hex) = text.split_once(':')?;
        let length = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return None,
        };
        let valid =
            hex.len() == length && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self {
            algorithm: algorithm.to_string(),
            hex: hex.to_string(),
        })
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self {
            algorithm: "sha256".into(),
            hex: crate::encoding::sha256_hex(bytes),
        }
    }

    /// The algorithm name.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The lowercase hex value, which is what evidence subjects are matched on.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.same_algorithm_of(bytes)
            .is_some_and(|actual| actual == *self)
    }

    /// The digest of `bytes` under this digest's algorithm (`None` for an algorithm that
    /// [`Digest::parse`] would not have accepted).
    pub fn same_algorithm_of(&self, bytes: &[u8]) -> Option<Self> {
        use sha2::Digest as _;
        let hex = match self.algorithm.as_str() {
            "sha256" => crate::encoding::hex(&sha2::Sha256::digest(bytes)),
            "sha384" => crate::encoding::hex(&sha2::Sha384::digest(bytes)),
            "sha512" => crate::encoding::hex(&sha2::Sha512::digest(bytes)),
            _ => return None,
        };
        Some(Self {
            algorithm: self.algorithm.clone(),
            hex,
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

/// Host names that denote Docker Hub, normalised to [`DEFAULT_REGISTRY`].
const DOCKER_HUB_ALIASES: [&str; 3] = [
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
    short_name: bool,
}

impl ImageReference {
    /// Parses a reference as written in a pod spec.
    ///
    /// # Errors
    /// See [`ReferenceError`].
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let bad = |f: fn(String) -> ReferenceError| f(text.to_string());

        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(Digest::parse(d).ok_or_else(|| bad(ReferenceError::Digest))?),
            ),
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest.get(last_slash..).and_then(|tail| tail.rfind(':')) {
            Some(i) => {
                let split = last_slash + i;
                let (name, tag) = (
                    rest.get(..split).unwrap_or(rest),
                    rest.get(split + 1..).unwrap_or(""),
                );
                if !valid_tag(tag) {
                    return Err(bad(ReferenceError::Tag));
                }
                (name, Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.len() > MAX_NAME_LENGTH {
            return Err(bad(ReferenceError::TooLong));
        }

        let (registry, path, short_name) = match name.split_once('/') {
            Some((first, path)) if is_domain(first) => {
                if !valid_domain(first) {
                    return Err(bad(ReferenceError::Registry));
                }
                (first.to_string(), path.to_string(), false)
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string(), true),
        };
        // Host names are case-insensitive: compare them in one case everywhere (patterns,
        // insecure hosts, credentials, caches). Docker Hub's other names are Docker Hub.
        let registry = registry.to_ascii_lowercase();
        let registry = if DOCKER_HUB_ALIASES.contains(&registry.as_str()) {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if !repository.split('/').all(valid_path_component) {
            return Err(bad(ReferenceError::Repository));
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
            short_name,
        })
    }

    /// The registry host (and port).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was written.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether the reference named no registry (node runtimes may resolve such names through
    /// search registries, so the image that runs may not be the one judged here).
    pub fn is_short_name(&self) -> bool {
        self.short_name
    }

    /// The same repository pinned to `digest` (the tag is kept for messages).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component names a registry if it has a '.' or a ':', is
/// `localhost`, or has upper case (which a repository cannot).
fn is_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [IPv6]:port
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("", Some(port)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return false;
        }
    }
    host.is_empty() && domain.starts_with('[')
        || !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = component.get(start..i).unwrap_or("?");
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LENGTH
        && word(bytes[0])
        && bytes.iter().all(|b| word(*b) || *b == b'.' || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689";

    fn parse(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_container_runtimes() {
        let r = parse("nginx");
        assert_eq!(r.to_string(), "docker.io/library/nginx");
        assert!(r.is_short_name());
        assert_eq!(
            parse("bitnami/redis:7").to_string(),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            parse("index.docker.io/library/busybox").registry(),
            "docker.io"
        );
        assert!(!parse("docker.io/library/busybox").is_short_name());
    }

    #[test]
    fn registries_with_ports_and_localhost() {
        let r = parse("127.0.0.1:5000/demo/hello:v1");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "demo/hello", Some("v1"))
        );
        let r = parse("localhost/app");
        assert_eq!((r.registry(), r.repository()), ("localhost", "app"));
        let r = parse("localhost:5000/app");
        assert_eq!((r.registry(), r.tag()), ("localhost:5000", None));
        assert_eq!(parse("[::1]:5000/app:x").registry(), "[::1]:5000");
    }

    #[test]
    fn tag_and_digest_keeps_both_and_the_digest_decides() {
        let r = parse(&format!("ghcr.io/acme/app:1.2@{D}"));
        assert_eq!(r.tag(), Some("1.2"));
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.digest().unwrap().hex().len(), 64);
    }

    #[test]
    fn invalid_references_are_rejected_with_the_reason() {
        let cases = [
            ("", ReferenceError::Empty),
            ("Nginx", ReferenceError::Repository("Nginx".into())),
            (
                "docker.io/Library/nginx",
                ReferenceError::Repository("docker.io/Library/nginx".into()),
            ),
            ("app:", ReferenceError::Tag("app:".into())),
            ("app:-x", ReferenceError::Tag("app:-x".into())),
            (
                "app@sha256:abc",
                ReferenceError::Digest("app@sha256:abc".into()),
            ),
            (
                "app@md5:d41d8cd98f00b204e9800998ecf8427e",
                ReferenceError::Digest("app@md5:d41d8cd98f00b204e9800998ecf8427e".into()),
            ),
            (
                "host:99999/app",
                ReferenceError::Registry("host:99999/app".into()),
            ),
            ("a//b", ReferenceError::Repository("a//b".into())),
            ("a/b-", ReferenceError::Repository("a/b-".into())),
        ];
        for (input, want) in cases {
            assert_eq!(ImageReference::parse(input), Err(want), "{input:?}");
        }
        let long = format!("example.com/{}", "a".repeat(300));
        assert!(matches!(
            ImageReference::parse(&long),
            Err(ReferenceError::TooLong(_))
        ));
    }

    #[test]
    fn digests_check_bytes() {
        let d = Digest::sha256_of(b"hello");
        assert!(d.matches(b"hello"));
        assert!(!d.matches(b"hello!"));
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse("sha256:ABCD"), None);
    }
}
