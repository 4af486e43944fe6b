//! What the registry said about an image: the digest its reference pins, every platform image
//! a runtime could pull from it, and what each carries (labels, annotations). Built by
//! [`Registry::resolve`](super::Registry::resolve); read by the revision lookup and by the
//! evidence binding, which need no network.

use std::collections::BTreeMap;

use super::{Digest, ImageReference};

/// An image reference resolved at its registry, every manifest and config hash-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference as it was written (tag and digest as given).
    pub reference: ImageReference,
    /// What the reference pins: the index (manifest list) or the manifest digest. A digest in
    /// the reference is taken as written; a tag is resolved to this once.
    pub digest: Digest,
    /// The media type of the pinned object (OCI or Docker; manifest or index).
    pub media_type: String,
    /// The pinned index's own annotations (empty for a single manifest).
    pub index_annotations: BTreeMap<String, String>,
    /// Every platform image a runtime could select, in index order; one for a single manifest.
    /// Never empty.
    pub images: Vec<PlatformImage>,
    /// Index entries left unjudged because no runtime can run them: platform `unknown/unknown`,
    /// which is how BuildKit marks its attestation manifests.
    pub skipped_attestations: Vec<Digest>,
}

/// One runnable image: a manifest and its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    /// `os/architecture[/variant]`, from the index entry, else from the config; `None` when
    /// neither says.
    pub platform: Option<String>,
    /// The platform manifest digest (equal to [`ResolvedImage::digest`] for a single manifest).
    pub manifest_digest: Digest,
    /// The config blob digest: the image id, which witness's oci attestor records.
    pub config_digest: Digest,
    /// The config's `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// The manifest's own annotations.
    pub manifest_annotations: BTreeMap<String, String>,
    /// The annotations of this manifest's entry in the index that lists it (empty for a single
    /// manifest).
    pub index_entry_annotations: BTreeMap<String, String>,
    /// Indexes between the pinned index and this manifest, outermost first (empty unless
    /// indexes are nested).
    pub nested_in: Vec<NestedIndex>,
}

/// An index listed by another index, on the way to a platform image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedIndex {
    /// Its digest.
    pub digest: Digest,
    /// Its own annotations.
    pub annotations: BTreeMap<String, String>,
    /// The annotations of its entry in the index above it.
    pub entry_annotations: BTreeMap<String, String>,
}

/// A digest that denotes this image, for binding evidence to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIdentity {
    /// What the digest is.
    pub kind: IdentityKind,
    /// The digest; evidence subjects are matched on its hex ([`Digest::hex`]).
    pub digest: Digest,
    /// The platform of the image it belongs to, for manifest and config digests.
    pub platform: Option<String>,
}

/// The kinds of [`ImageIdentity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// The digest the reference pins (index or manifest): what the docker attestor records.
    Pinned,
    /// A platform manifest listed by the pinned index.
    PlatformManifest,
    /// An image config digest: the image id the oci attestor records.
    Config,
}

impl ResolvedImage {
    /// Whether the pinned object is an index (OCI image index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        super::registry::is_index_media_type(&self.media_type)
    }

    /// The digests that denote this image: the pinned digest, each platform manifest digest
    /// and each config digest, each once (the first kind wins, so a single manifest's digest is
    /// listed as [`IdentityKind::Pinned`]). Digests of nested indexes are left out: each of them
    /// names only part of the image.
    pub fn identities(&self) -> Vec<ImageIdentity> {
        let mut out = vec![ImageIdentity {
            kind: IdentityKind::Pinned,
            digest: self.digest.clone(),
            platform: None,
        }];
        for image in &self.images {
            for (kind, digest) in [
                (IdentityKind::PlatformManifest, &image.manifest_digest),
                (IdentityKind::Config, &image.config_digest),
            ] {
                if out.iter().all(|known| known.digest != *digest) {
                    out.push(ImageIdentity {
                        kind,
                        digest: digest.clone(),
                        platform: image.platform.clone(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: char) -> Digest {
        Digest::parse(&format!("sha256:{}", byte.to_string().repeat(64))).unwrap()
    }

    fn image(manifest: char, config: char, platform: &str) -> PlatformImage {
        PlatformImage {
            platform: Some(platform.into()),
            manifest_digest: digest(manifest),
            config_digest: digest(config),
            labels: BTreeMap::new(),
            manifest_annotations: BTreeMap::new(),
            index_entry_annotations: BTreeMap::new(),
            nested_in: Vec::new(),
        }
    }

    #[test]
    fn identities_of_an_index_name_the_index_every_manifest_and_every_config() {
        let resolved = ResolvedImage {
            reference: ImageReference::parse("127.0.0.1:5000/demo/app:v1").unwrap(),
            digest: digest('a'),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            index_annotations: BTreeMap::new(),
            images: vec![
                image('b', 'c', "linux/amd64"),
                image('d', 'c', "linux/arm64"),
            ],
            skipped_attestations: vec![digest('e')],
        };
        let found: Vec<_> = resolved
            .identities()
            .into_iter()
            .map(|i| (i.kind, i.digest.hex().chars().next().unwrap(), i.platform))
            .collect();
        let p = |s: &str| Some(s.to_string());
        assert_eq!(
            found,
            vec![
                (IdentityKind::Pinned, 'a', None),
                (IdentityKind::PlatformManifest, 'b', p("linux/amd64")),
                (IdentityKind::Config, 'c', p("linux/amd64")),
                (IdentityKind::PlatformManifest, 'd', p("linux/arm64")),
            ]
        );
        assert!(resolved.is_index());
    }

    #[test]
    fn a_single_manifest_is_listed_once_as_pinned() {
        let resolved = ResolvedImage {
            reference: ImageReference::parse("127.0.0.1:5000/demo/app:v1").unwrap(),
            digest: digest('b'),
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            index_annotations: BTreeMap::new(),
            images: vec![image('b', 'c', "linux/amd64")],
            skipped_attestations: vec![],
        };
        let kinds: Vec<_> = resolved.identities().iter().map(|i| i.kind).collect();
        assert_eq!(kinds, vec![IdentityKind::Pinned, IdentityKind::Config]);
        assert!(!resolved.is_index());
    }
}
