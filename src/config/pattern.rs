//! Image patterns of the config: which images a policy or an exception covers.
//!
//! A pattern is matched against an image's normalised name, `registry/repository` (Docker Hub
//! as `docker.io`, its official images under `library/`), never against the tag: a tag is
//! chosen by whoever pushes. `*` matches within one path segment, `**` any run of segments
//! (so `ghcr.io/acme/**` covers every repository under `acme`); everything else is literal.
//! A pattern must name its registry, so that `nginx` cannot be read as "any registry's nginx".

use std::fmt;

use crate::image::ImageReference;

/// A compiled image pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePattern {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(char),
    /// `*`: any run without `/`.
    Star,
    /// `**`: any run.
    DoubleStar,
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty.
    #[error("an image pattern cannot be empty")]
    Empty,
    /// No registry in front.
    #[error(
        "image pattern {0:?} must start with its registry (e.g. docker.io/library/nginx, \
         ghcr.io/acme/**)"
    )]
    NoRegistry(String),
    /// Tag or digest in the pattern.
    #[error("image pattern {0:?} matches names only: leave out the tag and digest")]
    TagOrDigest(String),
    /// `***` or worse.
    #[error("image pattern {0:?} has more than two '*' in a row")]
    Stars(String),
    /// An empty path segment (`host/`, `host//x`).
    #[error("image pattern {0:?} has an empty repository segment")]
    EmptySegment(String),
    /// Upper case in the repository path, which no reference can have.
    #[error(
        "image pattern {0:?} has upper case in its repository path, which no image name can have"
    )]
    Uppercase(String),
    /// Over the length cap.
    #[error("image pattern is longer than 512 characters")]
    TooLong,
}

impl ImagePattern {
    /// Compiles `text`.
    ///
    /// # Errors
    /// See [`PatternError`].
    pub fn new(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > 512 {
            return Err(PatternError::TooLong);
        }
        let first = text.split('/').next().unwrap_or_default();
        let names_registry = text.contains('/')
            && !first.contains('*')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if !names_registry {
            return Err(PatternError::NoRegistry(text.to_string()));
        }
        let last = text.rsplit('/').next().unwrap_or_default();
        if text.contains('@') || last.contains(':') {
            return Err(PatternError::TagOrDigest(text.to_string()));
        }
        if text.contains("***") {
            return Err(PatternError::Stars(text.to_string()));
        }
        let (host, path) = text.split_once('/').unwrap_or((text, ""));
        if path.is_empty() || path.split('/').any(str::is_empty) {
            return Err(PatternError::EmptySegment(text.to_string()));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(PatternError::Uppercase(text.to_string()));
        }
        // Host names are compared in lower case, as references are.
        let lowered = format!("{}/{path}", host.to_ascii_lowercase());
        let text = lowered.as_str();
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '*' {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    parts.push(Part::DoubleStar);
                } else {
                    parts.push(Part::Star);
                }
            } else {
                parts.push(Part::Literal(c));
            }
        }
        // Docker Hub's other host names denote `docker.io`, as references are normalised.
        let parts = match [
            "index.docker.io",
            "registry-1.docker.io",
            "registry.hub.docker.com",
        ]
        .into_iter()
        .find(|alias| host.eq_ignore_ascii_case(alias))
        {
            Some(alias) => {
                let mut normal: Vec<Part> = "docker.io".chars().map(Part::Literal).collect();
                normal.extend(parts.into_iter().skip(alias.len()));
                normal
            }
            None => parts,
        };
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// Whether the image's name matches.
    pub fn matches(&self, image: &ImageReference) -> bool {
        self.matches_name(&image.name())
    }

    /// Whether `registry/repository` matches.
    pub fn matches_name(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Positions in `name` reachable after each prefix of the pattern; linear in both.
        let mut reachable = vec![false; name.len() + 1];
        reachable[0] = true;
        for part in &self.parts {
            let mut next = vec![false; name.len() + 1];
            match part {
                Part::Literal(c) => {
                    for i in 0..name.len() {
                        if reachable[i] && name[i] == *c {
                            next[i + 1] = true;
                        }
                    }
                }
                Part::Star | Part::DoubleStar => {
                    let crosses = matches!(part, Part::DoubleStar);
                    let mut open = false;
                    for i in 0..=name.len() {
                        open = open || reachable[i];
                        next[i] = open;
                        if i < name.len() && name[i] == '/' && !crosses {
                            open = false;
                        }
                    }
                }
            }
            reachable = next;
        }
        reachable[name.len()]
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, image: &str) -> bool {
        ImagePattern::new(pattern)
            .unwrap()
            .matches(&ImageReference::parse(image).unwrap())
    }

    #[test]
    fn stars_stay_in_their_segment_and_double_stars_do_not() {
        assert!(matches("ghcr.io/acme/*", "ghcr.io/acme/app:v1"));
        assert!(!matches("ghcr.io/acme/*", "ghcr.io/acme/team/app:v1"));
        assert!(matches("ghcr.io/acme/**", "ghcr.io/acme/team/app:v1"));
        assert!(!matches("ghcr.io/acme/**", "ghcr.io/acmeevil/app"));
        assert!(matches("ghcr.io/acme/app-*", "ghcr.io/acme/app-web"));
        assert!(!matches("ghcr.io/acme/app", "ghcr.io/acme/app2"));
        assert!(matches("127.0.0.1:5000/**", "127.0.0.1:5000/x/y:v1"));
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert!(matches("docker.io/library/nginx", "nginx:1.27"));
        assert!(matches("index.docker.io/library/*", "nginx"));
        assert!(!matches("docker.io/library/nginx", "ghcr.io/library/nginx"));
    }

    #[test]
    fn ambiguous_patterns_are_refused() {
        for (bad, want) in [
            ("nginx", "registry"),
            ("*/acme/app", "registry"),
            ("ghcr.io/acme/app:v1", "tag"),
            ("ghcr.io/acme/app@sha256:00", "tag"),
            ("ghcr.io/***", "'*'"),
            ("", "empty"),
        ] {
            let err = ImagePattern::new(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
        assert!(ImagePattern::new("localhost:5000/app").is_ok());
        for (bad, want) in [
            ("127.0.0.1:5000/", "empty"),
            ("127.0.0.1:5000/team//app", "empty"),
            ("127.0.0.1:5000/TEAM/**", "upper case"),
        ] {
            let err = ImagePattern::new(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn host_names_match_in_any_case_and_docker_hub_under_any_name() {
        assert!(matches(
            "LOCALHOST:5000/team/**",
            "localhost:5000/team/app:v1"
        ));
        assert!(matches(
            "localhost:5000/team/**",
            "LocalHost:5000/team/app:v1"
        ));
        assert!(matches(
            "docker.io/library/*",
            "registry-1.docker.io/library/nginx:1"
        ));
        assert!(matches("registry-1.docker.io/library/nginx", "nginx"));
        assert!(matches(
            "docker.io/library/nginx",
            "Registry.Hub.Docker.com/library/nginx"
        ));
    }
}
