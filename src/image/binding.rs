//! Binding: what ties a verified set of evidence to the image that will run.
//!
//! Evidence passing a policy proves that *some* build met the policy; the binding proves that
//! this image is what that build produced. Two modes:
//!
//! - [`Binding::Digest`] (the default): a passing collection must name one of the image's
//!   identities as the image it *produced*: the docker attestor's `imagedigest:` subject (the
//!   registry digest a pod pins) or the oci attestor's `imageid:` subject (the config digest).
//!   A bare digest value elsewhere — a base image recorded as a material, a file product — does
//!   not count. For an index, either the index digest itself is named (it fixes every child), or
//!   every runnable platform image is named; one unverified platform added to a verified index
//!   fails the binding.
//! - [`Binding::Commit`]: evidence is found through the image's revision label. Labels are
//!   written by whoever can push to the registry, so this mode also requires the expected source
//!   repository: the image's `org.opencontainers.image.source` label and the passing evidence
//!   (git remote, GitHub/GitLab project URL, or the Fulcio source-repository extension of a
//!   certificate signer) must both name it. Choosing this mode means trusting registry push
//!   rights: anyone who can push can label another build's image with a good commit, as long as
//!   it claims the right repository.

use std::collections::BTreeSet;

use super::{ResolvedImage, RevisionError};
use crate::crypto::{FulcioField, VerifiedSigner};
use crate::evidence::EvidenceRef;
use crate::intoto::types;
use crate::policy::{PassedCollection, Verification};

/// How evidence is tied to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The evidence must name the image's digest as what it produced.
    Digest,
    /// The evidence is found by the revision label and must come from `source`.
    Commit {
        /// The repository the image must be built from, compared after [`normalize_repository`].
        source: String,
    },
}

/// Why evidence that passed the policy is not bound to the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// No passing collection names the image as produced.
    #[error("no passing collection names this image ({0}) as the image it produced")]
    NotProduced(String),
    /// Some platform images of an index are not named.
    #[error("platforms not named by any passing collection: {}", .0.join(", "))]
    UnboundPlatforms(Vec<String>),
    /// The image carries no revision label (commit binding).
    #[error("the image has no org.opencontainers.image.revision label")]
    NoRevision,
    /// The revision labels cannot be read (they conflict or are malformed).
    #[error("the image's revision labels cannot be used")]
    Revision(#[source] RevisionError),
    /// The image's source label is absent or names another repository.
    #[error(
        "the image's org.opencontainers.image.source label is {}, not {expected}",
        found.as_deref().map_or_else(|| "missing".to_string(), |f| format!("{f:?}"))
    )]
    SourceLabel {
        /// The label, if any.
        found: Option<String>,
        /// The expected repository (normalised).
        expected: String,
    },
    /// No passing collection shows the expected repository.
    #[error("no passing collection was built from {0}")]
    SourceNotInEvidence(String),
}

/// The commit to search evidence with, for [`Binding::Commit`].
///
/// # Errors
/// No revision, or revision labels that conflict.
pub fn commit_of(image: &ResolvedImage) -> Result<String, BindingError> {
    image
        .source_info()
        .map_err(BindingError::Revision)?
        .commit
        .ok_or(BindingError::NoRevision)
}

/// Checks that `verification` (which must have passed) is bound to `image` under `binding`,
/// and returns the references of the collections that bind it.
///
/// # Errors
/// See [`BindingError`].
pub fn check(
    binding: &Binding,
    image: &ResolvedImage,
    verification: &Verification,
) -> Result<Vec<EvidenceRef>, BindingError> {
    let passed: Vec<&PassedCollection> = verification
        .steps
        .iter()
        .flat_map(|s| &s.passed_collections)
        .collect();
    match binding {
        Binding::Digest => check_digest(image, &passed),
        Binding::Commit { source } => check_commit(image, &passed, source),
    }
}

fn check_digest(
    image: &ResolvedImage,
    passed: &[&PassedCollection],
) -> Result<Vec<EvidenceRef>, BindingError> {
    let produced_by = |hex: &str, kinds: &[&str]| -> Vec<EvidenceRef> {
        passed
            .iter()
            .filter(|c| produced(c, kinds).contains(hex))
            .map(|c| c.reference.clone())
            .collect()
    };

    // The pinned digest named as the built image fixes every child of an index.
    let pinned = produced_by(image.digest.hex(), &["imagedigest"]);
    if !pinned.is_empty() {
        return Ok(pinned);
    }

    // Otherwise every runnable platform image must be named, by manifest or config digest.
    let mut refs = Vec::new();
    let mut unbound = Vec::new();
    for platform in &image.images {
        let found: Vec<EvidenceRef> = produced_by(platform.manifest_digest.hex(), &["imagedigest"])
            .into_iter()
            .chain(produced_by(platform.config_digest.hex(), &["imageid"]))
            .collect();
        if found.is_empty() {
            unbound.push(format!(
                "{} ({})",
                platform.platform.as_deref().unwrap_or("unknown platform"),
                platform.manifest_digest
            ));
        }
        refs.extend(found);
    }
    if unbound.is_empty() {
        Ok(refs)
    } else if refs.is_empty() {
        Err(BindingError::NotProduced(image.digest.to_string()))
    } else {
        Err(BindingError::UnboundPlatforms(unbound))
    }
}

/// The digest values a collection names as produced images: subjects of the docker attestor
/// named `imagedigest:…` and of the oci attestor named `imageid:…`, in either namespace.
fn produced(collection: &PassedCollection, kinds: &[&str]) -> BTreeSet<String> {
    collection
        .subjects
        .iter()
        .filter(|subject| {
            let Some((kind, local)) = subject.name.rsplit_once("/v0.1/") else {
                return false;
            };
            let kind = format!("{kind}/v0.1");
            let attestor = types::attestor_name(&kind).map(|(name, _)| name);
            let local_kind = local.split(':').next().unwrap_or_default();
            matches!(
                (attestor, local_kind),
                (Some("docker"), "imagedigest") | (Some("oci"), "imageid")
            ) && kinds.contains(&local_kind)
        })
        .flat_map(|s| {
            s.digest
                .values()
                .map(|v| v.trim_start_matches("sha256:").to_ascii_lowercase())
        })
        .collect()
}

fn check_commit(
    image: &ResolvedImage,
    passed: &[&PassedCollection],
    expected: &str,
) -> Result<Vec<EvidenceRef>, BindingError> {
    let expected = normalize_repository(expected);
    let info = image.source_info().map_err(BindingError::Revision)?;
    if info.commit.is_none() {
        return Err(BindingError::NoRevision);
    }
    let label = info.source.clone();
    if label.as_deref().map(normalize_repository).as_deref() != Some(expected.as_str()) {
        return Err(BindingError::SourceLabel {
            found: label,
            expected,
        });
    }
    let refs: Vec<EvidenceRef> = passed
        .iter()
        .filter(|c| repositories(c).contains(&expected))
        .map(|c| c.reference.clone())
        .collect();
    if refs.is_empty() {
        return Err(BindingError::SourceNotInEvidence(expected));
    }
    Ok(refs)
}

/// The repositories a passing collection shows it was built from, normalised: its git
/// attestor's remotes, its GitHub/GitLab attestor's project URL, and the Fulcio
/// source-repository extension of its certificate signers.
fn repositories(collection: &PassedCollection) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(c) = &collection.collection {
        for entry in &c.attestations {
            match types::attestor_name(&entry.kind).map(|(name, _)| name) {
                Some("git") => {
                    let body = entry.attestation.to_value();
                    if let Some(remotes) = body.get("remotes").and_then(|r| r.as_array()) {
                        out.extend(
                            remotes
                                .iter()
                                .filter_map(|r| r.as_str())
                                .map(normalize_repository),
                        );
                    }
                }
                Some("github" | "gitlab") => {
                    let body = entry.attestation.to_value();
                    if let Some(url) = body.get("projecturl").and_then(|u| u.as_str()) {
                        out.insert(normalize_repository(url));
                    }
                }
                _ => {}
            }
        }
    }
    for signer in &collection.functionaries {
        if let VerifiedSigner::Certificate { identity, .. } = signer {
            if let Some(field) = FulcioField::from_key("SourceRepositoryURI") {
                let uri = identity.extension(field);
                if !uri.is_empty() {
                    out.insert(normalize_repository(uri));
                }
            }
        }
    }
    out
}

/// Normalises a repository URL for comparison: scheme and host lower-cased, user info, a
/// `#fragment` (such as `#<commit>:<path>` in Docker build contexts), a query, trailing slashes
/// and a trailing `.git` removed; scp-style `git@host:org/repo` becomes `ssh://host/org/repo`.
/// Paths stay case-sensitive.
pub fn normalize_repository(url: &str) -> String {
    let url = url.trim();
    let url = url.split('#').next().unwrap_or(url);
    let url = url.split('?').next().unwrap_or(url);
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest.to_string()),
        None => match url.split_once(':') {
            // scp-like `user@host:path`
            Some((host, path)) if host.contains('@') && !path.starts_with('/') => {
                ("ssh".to_string(), format!("{host}/{path}"))
            }
            _ => (String::new(), url.to_string()),
        },
    };
    let scheme = scheme
        .strip_prefix("git+")
        .map(str::to_string)
        .unwrap_or(scheme);
    let (authority, path) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_ascii_lowercase();
    let mut path = path.trim_end_matches('/').to_string();
    if let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/').to_string();
    }
    if scheme.is_empty() {
        format!("{host}/{path}")
    } else {
        format!("{scheme}://{host}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Digest, ImageReference, PlatformImage};
    use crate::intoto::Subject;
    use crate::policy::StepResult;
    use std::collections::BTreeMap;

    const DOCKER: &str = "https://witness.dev/attestations/docker/v0.1";
    const OCI: &str = "https://aflock.ai/attestations/oci/v0.1";

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn platform(manifest: char, config: char, name: &str) -> PlatformImage {
        PlatformImage {
            platform: Some(name.into()),
            manifest_digest: digest(manifest),
            config_digest: digest(config),
            labels: BTreeMap::new(),
            manifest_annotations: BTreeMap::new(),
            index_entry_annotations: BTreeMap::new(),
            nested_in: Vec::new(),
        }
    }

    fn image(pinned: char, images: Vec<PlatformImage>, index: bool) -> ResolvedImage {
        ResolvedImage {
            reference: ImageReference::parse("127.0.0.1:5000/app:v1").unwrap(),
            digest: digest(pinned),
            media_type: if index {
                "application/vnd.oci.image.index.v1+json".into()
            } else {
                "application/vnd.oci.image.manifest.v1+json".into()
            },
            index_annotations: BTreeMap::new(),
            images,
            skipped_attestations: Vec::new(),
        }
    }

    fn passed(file: &str, subjects: &[(&str, char)]) -> Verification {
        let subjects = subjects
            .iter()
            .map(|(name, c)| Subject {
                name: name.to_string(),
                digest: [("sha256".to_string(), c.to_string().repeat(64))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        Verification {
            passed: true,
            policy_digest: String::new(),
            policy_failure: None,
            seeds: Vec::new(),
            steps: vec![StepResult {
                step: "build".into(),
                passed: true,
                passed_collections: vec![PassedCollection {
                    reference: EvidenceRef::File(file.into()),
                    functionaries: Vec::new(),
                    signed_at: None,
                    subjects,
                    collection: None,
                }],
                rejected: Vec::new(),
            }],
            ignored_evidence: Vec::new(),
        }
    }

    fn name(kind: &str, local: &str, c: char) -> String {
        format!("{kind}/{local}:{}", c.to_string().repeat(64))
    }

    #[test]
    fn the_docker_image_digest_or_the_oci_image_id_binds() {
        let single = image('a', vec![platform('a', 'c', "linux/amd64")], false);
        let by_digest = passed("b.json", &[(&name(DOCKER, "imagedigest", 'a'), 'a')]);
        assert_eq!(
            check(&Binding::Digest, &single, &by_digest).unwrap().len(),
            1
        );
        let by_config = passed("b.json", &[(&name(OCI, "imageid", 'c'), 'c')]);
        assert!(check(&Binding::Digest, &single, &by_config).is_ok());
    }

    #[test]
    fn a_base_image_material_or_a_file_product_with_the_same_digest_does_not_bind() {
        let attacker = image('a', vec![platform('a', 'c', "linux/amd64")], false);
        for subject in [
            name(DOCKER, "materialdigest", 'a'),
            "https://witness.dev/attestations/product/v0.1/file:image.tar".into(),
            name(OCI, "manifestdigest", 'a'),
            name(
                "https://witness.dev/attestations/git/v0.1",
                "commithash",
                'a',
            ),
        ] {
            let evidence = passed("good.json", &[(&subject, 'a')]);
            assert_eq!(
                check(&Binding::Digest, &attacker, &evidence),
                Err(BindingError::NotProduced(digest('a').to_string())),
                "{subject}"
            );
        }
    }

    #[test]
    fn an_unverified_platform_added_to_an_index_fails() {
        let index = image(
            'e',
            vec![
                platform('a', 'c', "linux/amd64"),
                platform('b', 'd', "linux/arm64"),
            ],
            true,
        );
        let one = passed("amd64.json", &[(&name(DOCKER, "imagedigest", 'a'), 'a')]);
        let err = check(&Binding::Digest, &index, &one).unwrap_err();
        assert!(
            matches!(&err, BindingError::UnboundPlatforms(p) if p.len() == 1 && p[0].contains("linux/arm64")),
            "{err}"
        );
        let both = passed(
            "both.json",
            &[
                (&name(DOCKER, "imagedigest", 'a'), 'a'),
                (&name(OCI, "imageid", 'd'), 'd'),
            ],
        );
        assert!(check(&Binding::Digest, &index, &both).is_ok());
        // The index digest itself, as buildx records a multi-platform push, fixes every child.
        let whole = passed("index.json", &[(&name(DOCKER, "imagedigest", 'e'), 'e')]);
        assert!(check(&Binding::Digest, &index, &whole).is_ok());
    }

    #[test]
    fn commit_binding_needs_the_source_label_and_the_repository_in_evidence() {
        let mut labelled = platform('a', 'c', "linux/amd64");
        labelled.labels.insert(
            "org.opencontainers.image.revision".into(),
            "68ea7a55316c66a603a6838f05e4c130c2b4ff80".into(),
        );
        labelled.labels.insert(
            "org.opencontainers.image.source".into(),
            "https://github.com/acme/app".into(),
        );
        let img = image('a', vec![labelled], false);
        let binding = Binding::Commit {
            source: "https://github.com/acme/app.git".into(),
        };
        assert_eq!(
            commit_of(&img).unwrap(),
            "68ea7a55316c66a603a6838f05e4c130c2b4ff80"
        );

        // Evidence that passed but shows no repository does not bind.
        let bare = passed("b.json", &[]);
        assert!(matches!(
            check(&binding, &img, &bare),
            Err(BindingError::SourceNotInEvidence(_))
        ));

        // A label naming another repository fails before evidence is looked at.
        let other = Binding::Commit {
            source: "https://github.com/acme/other".into(),
        };
        assert!(matches!(
            check(&other, &img, &bare),
            Err(BindingError::SourceLabel { .. })
        ));
    }

    #[test]
    fn repositories_normalise_as_documented() {
        let want = "https://github.com/Acme/Widget";
        for input in [
            "https://github.com/Acme/Widget",
            "HTTPS://GitHub.com/Acme/Widget/",
            "https://github.com/Acme/Widget.git",
            "https://github.com/Acme/Widget.git/",
            "https://github.com/Acme/Widget#0123abcd:docker",
            "https://token@github.com/Acme/Widget?x=1",
            "git+https://github.com/Acme/Widget",
        ] {
            assert_eq!(normalize_repository(input), want, "{input}");
        }
        assert_eq!(
            normalize_repository("git@github.com:Acme/Widget.git"),
            "ssh://github.com/Acme/Widget"
        );
        assert_ne!(
            normalize_repository("https://github.com/acme/widget"),
            want,
            "paths keep their case"
        );
        assert_ne!(
            normalize_repository("https://github.com/Acme/Widget-fork"),
            want
        );
    }
}
