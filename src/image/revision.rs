//! The source commit and source repository an image says it was built from:
//! `org.opencontainers.image.revision` and `org.opencontainers.image.source`.
//!
//! They are read from every place a build tool writes them: the config labels, the manifest
//! annotations, the annotations of the manifest's entry in its index, and the index's own
//! annotations (real Docker Hub images carry them only on the index). Nothing else is read: a
//! tag that looks like a commit is never taken for one.
//!
//! These values are written by whoever can push to the registry; they say what the image
//! *claims*. Whether that claim is trusted is the binding's decision, not this module's.

use std::fmt;

use super::{Digest, PlatformImage, ResolvedImage};

/// The annotation and label key of the source commit.
pub const REVISION_KEY: &str = "org.opencontainers.image.revision";
/// The annotation and label key of the source repository.
pub const SOURCE_KEY: &str = "org.opencontainers.image.source";

/// What an image says about its source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceInfo {
    /// The commit, 40 or 64 lowercase hex characters; `None` when no place carries one.
    pub commit: Option<String>,
    /// The source repository as written (not normalised); `None` when no place carries one.
    pub source: Option<String>,
    /// Every place the commit was found in.
    pub commit_found_in: Vec<Place>,
    /// Every place the source was found in.
    pub source_found_in: Vec<Place>,
}

/// A place an image carries labels or annotations in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The `config.Labels` of a platform image's config.
    ConfigLabels {
        /// The platform manifest whose config it is.
        manifest: Digest,
    },
    /// A manifest's own annotations.
    ManifestAnnotations {
        /// The manifest.
        manifest: Digest,
    },
    /// The annotations of one entry of an index.
    IndexEntryAnnotations {
        /// The index.
        index: Digest,
        /// The digest the entry points at.
        entry: Digest,
    },
    /// An index's own annotations.
    IndexAnnotations {
        /// The index.
        index: Digest,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConfigLabels { manifest } => write!(f, "config labels of manifest {manifest}"),
            Self::ManifestAnnotations { manifest } => {
                write!(f, "annotations of manifest {manifest}")
            }
            Self::IndexEntryAnnotations { index, entry } => {
                write!(f, "annotations of the entry for {entry} in index {index}")
            }
            Self::IndexAnnotations { index } => write!(f, "annotations of index {index}"),
        }
    }
}

/// Why an image's source cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    /// Two places of one platform image say different things.
    #[error("{key} is {first:?} in the {first_place} but {second:?} in the {second_place}")]
    Conflict {
        /// The key.
        key: &'static str,
        /// The value found first.
        first: String,
        /// Where it was found.
        first_place: Box<Place>,
        /// The value that disagrees.
        second: String,
        /// Where that was found.
        second_place: Box<Place>,
    },
    /// Two platform images of one index say different things (or one says nothing).
    #[error(
        "the platforms of the index disagree on {key}: {first_platform} has {}, {second_platform} \
         has {}",
        shown(.first),
        shown(.second)
    )]
    PlatformsDisagree {
        /// The key.
        key: &'static str,
        /// The first platform (or its manifest digest when it names no platform).
        first_platform: String,
        /// Its value.
        first: Option<String>,
        /// The platform that disagrees.
        second_platform: String,
        /// Its value.
        second: Option<String>,
    },
    /// A revision that is not a full commit hash.
    #[error("{REVISION_KEY} {value:?} in the {place} is not a commit (40 or 64 hex characters)")]
    InvalidRevision {
        /// The value as written.
        value: String,
        /// Where it was found.
        place: Box<Place>,
    },
}

fn shown(value: &Option<String>) -> String {
    value
        .as_ref()
        .map_or_else(|| "none".to_string(), |v| format!("{v:?}"))
}

impl ResolvedImage {
    /// The commit and source repository this image claims, from every place that carries them.
    ///
    /// A value that is empty or only whitespace counts as absent (build tools write empty
    /// labels for unset build arguments). Every platform image must end up with the same
    /// commit and the same source, absent included: an index whose platforms disagree, or where
    /// one platform says nothing, gives no answer at all.
    ///
    /// # Errors
    /// [`RevisionError`]: two places disagree, two platforms disagree, or a revision is not 40
    /// or 64 hex characters.
    pub fn source_info(&self) -> Result<SourceInfo, RevisionError> {
        let (commit, commit_found_in) = self.lookup(REVISION_KEY, commit_from)?;
        let (source, source_found_in) = self.lookup(SOURCE_KEY, |value, _| Ok(value.into()))?;
        Ok(SourceInfo {
            commit,
            source,
            commit_found_in,
            source_found_in,
        })
    }

    fn lookup(
        &self,
        key: &'static str,
        normalise: Normalise,
    ) -> Result<(Option<String>, Vec<Place>), RevisionError> {
        let mut found_in = Vec::new();
        if self.images.is_empty() {
            let places = self.index_places();
            let value = value_in(key, &places, normalise, &mut found_in)?;
            return Ok((value.map(|f| f.value), found_in));
        }

        let mut first: Option<(String, Option<String>)> = None;
        for image in &self.images {
            let places = self.places_of(image);
            let value = value_in(key, &places, normalise, &mut found_in)?.map(|f| f.value);
            let platform = image
                .platform
                .clone()
                .unwrap_or_else(|| image.manifest_digest.to_string());
            match &first {
                None => first = Some((platform, value)),
                Some((first_platform, first_value)) if *first_value != value => {
                    return Err(RevisionError::PlatformsDisagree {
                        key,
                        first_platform: first_platform.clone(),
                        first: first_value.clone(),
                        second_platform: platform,
                        second: value,
                    });
                }
                Some(_) => {}
            }
        }
        Ok((first.and_then(|(_, value)| value), found_in))
    }

    /// Every place that speaks for `image`, nearest first.
    fn places_of<'a>(&'a self, image: &'a PlatformImage) -> Vec<(Place, &'a Labels)> {
        let manifest = &image.manifest_digest;
        let mut places = vec![
            (
                Place::ConfigLabels {
                    manifest: manifest.clone(),
                },
                &image.labels,
            ),
            (
                Place::ManifestAnnotations {
                    manifest: manifest.clone(),
                },
                &image.manifest_annotations,
            ),
        ];
        if !self.is_index() {
            return places;
        }

        // The chain of indexes from the manifest's own index up to the pinned one.
        let parent_of = |level: usize| -> &Digest {
            match level.checked_sub(1) {
                Some(up) => image.nested_in.get(up).map_or(&self.digest, |n| &n.digest),
                None => &self.digest,
            }
        };
        let own_index = image.nested_in.last().map_or(&self.digest, |n| &n.digest);
        places.push((
            Place::IndexEntryAnnotations {
                index: own_index.clone(),
                entry: manifest.clone(),
            },
            &image.index_entry_annotations,
        ));
        for (level, nested) in image.nested_in.iter().enumerate().rev() {
            places.push((
                Place::IndexAnnotations {
                    index: nested.digest.clone(),
                },
                &nested.annotations,
            ));
            places.push((
                Place::IndexEntryAnnotations {
                    index: parent_of(level).clone(),
                    entry: nested.digest.clone(),
                },
                &nested.entry_annotations,
            ));
        }
        places.extend(self.index_places());
        places
    }

    fn index_places(&self) -> Vec<(Place, &Labels)> {
        if !self.is_index() {
            return Vec::new();
        }
        vec![(
            Place::IndexAnnotations {
                index: self.digest.clone(),
            },
            &self.index_annotations,
        )]
    }
}

type Labels = std::collections::BTreeMap<String, String>;
type Normalise = fn(&str, &Place) -> Result<String, RevisionError>;

struct Found {
    value: String,
    place: Place,
}

/// The one value `key` has across `places`, recording where it was found.
fn value_in(
    key: &'static str,
    places: &[(Place, &Labels)],
    normalise: Normalise,
    found_in: &mut Vec<Place>,
) -> Result<Option<Found>, RevisionError> {
    let mut found: Option<Found> = None;
    for (place, labels) in places {
        let Some(raw) = labels.get(key).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = normalise(raw, place)?;
        match &found {
            Some(first) if first.value != value => {
                return Err(RevisionError::Conflict {
                    key,
                    first: first.value.clone(),
                    first_place: Box::new(first.place.clone()),
                    second: value,
                    second_place: Box::new(place.clone()),
                });
            }
            Some(_) => {}
            None => {
                found = Some(Found {
                    value,
                    place: place.clone(),
                })
            }
        }
        if !found_in.contains(place) {
            found_in.push(place.clone());
        }
    }
    Ok(found)
}

/// A full commit hash (SHA-1 or SHA-256 object name), lowercased.
fn commit_from(value: &str, place: &Place) -> Result<String, RevisionError> {
    let is_commit = matches!(value.len(), 40 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_commit {
        return Err(RevisionError::InvalidRevision {
            value: value.to_string(),
            place: Box::new(place.clone()),
        });
    }
    Ok(value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::{ImageReference, NestedIndex};

    const C1: &str = "0123456789abcdef0123456789abcdef01234567";
    const C2: &str = "89abcdef0123456789abcdef0123456789abcdef";
    const SRC: &str = "https://github.com/example/hello";
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn digest(byte: char) -> Digest {
        Digest::parse(&format!("sha256:{}", byte.to_string().repeat(64))).unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn image(manifest: char, platform: &str) -> PlatformImage {
        PlatformImage {
            platform: Some(platform.into()),
            manifest_digest: digest(manifest),
            config_digest: digest('c'),
            labels: BTreeMap::new(),
            manifest_annotations: BTreeMap::new(),
            index_entry_annotations: BTreeMap::new(),
            nested_in: Vec::new(),
        }
    }

    fn resolved(reference: &str, media_type: &str, images: Vec<PlatformImage>) -> ResolvedImage {
        ResolvedImage {
            reference: ImageReference::parse(reference).unwrap(),
            digest: digest('a'),
            media_type: media_type.into(),
            index_annotations: BTreeMap::new(),
            images,
            skipped_attestations: Vec::new(),
        }
    }

    #[test]
    fn labels_of_a_single_image_give_commit_and_source() {
        let mut one = image('a', "linux/amd64");
        one.labels = map(&[(REVISION_KEY, &C1.to_uppercase()), (SOURCE_KEY, SRC)]);
        one.manifest_annotations = map(&[(REVISION_KEY, C1)]);
        let info = resolved("127.0.0.1:5000/app:v1", MANIFEST, vec![one])
            .source_info()
            .unwrap();
        assert_eq!(
            info,
            SourceInfo {
                commit: Some(C1.into()),
                source: Some(SRC.into()),
                commit_found_in: vec![
                    Place::ConfigLabels {
                        manifest: digest('a')
                    },
                    Place::ManifestAnnotations {
                        manifest: digest('a')
                    },
                ],
                source_found_in: vec![Place::ConfigLabels {
                    manifest: digest('a')
                }],
            }
        );
    }

    #[test]
    fn a_revision_only_on_the_index_applies_to_every_platform() {
        let mut r = resolved(
            "127.0.0.1:5000/app:v1",
            INDEX,
            vec![image('b', "linux/amd64"), image('d', "linux/arm64")],
        );
        r.index_annotations = map(&[(REVISION_KEY, C1), (SOURCE_KEY, SRC)]);
        let info = r.source_info().unwrap();
        assert_eq!(info.commit.as_deref(), Some(C1));
        assert_eq!(info.source.as_deref(), Some(SRC));
        assert_eq!(
            info.commit_found_in,
            vec![Place::IndexAnnotations { index: digest('a') }]
        );
    }

    #[test]
    fn places_that_disagree_are_named_with_both_values() {
        let mut one = image('b', "linux/amd64");
        one.labels = map(&[(REVISION_KEY, C1)]);
        one.index_entry_annotations = map(&[(REVISION_KEY, C2)]);
        let err = resolved("127.0.0.1:5000/app:v1", INDEX, vec![one])
            .source_info()
            .unwrap_err();
        assert_eq!(
            err,
            RevisionError::Conflict {
                key: REVISION_KEY,
                first: C1.into(),
                first_place: Box::new(Place::ConfigLabels {
                    manifest: digest('b')
                }),
                second: C2.into(),
                second_place: Box::new(Place::IndexEntryAnnotations {
                    index: digest('a'),
                    entry: digest('b')
                }),
            }
        );
        let text = err.to_string();
        assert!(text.contains(C1) && text.contains(C2), "{text}");
    }

    #[test]
    fn the_index_and_a_platform_that_disagree_fail() {
        let mut one = image('b', "linux/amd64");
        one.labels = map(&[(SOURCE_KEY, "https://github.com/evil/fork")]);
        let mut r = resolved("127.0.0.1:5000/app:v1", INDEX, vec![one]);
        r.index_annotations = map(&[(SOURCE_KEY, SRC)]);
        assert!(matches!(
            r.source_info(),
            Err(RevisionError::Conflict {
                key: SOURCE_KEY,
                ..
            })
        ));
    }

    #[test]
    fn platforms_that_disagree_fail_and_so_does_one_that_says_nothing() {
        let mut amd = image('b', "linux/amd64");
        amd.labels = map(&[(REVISION_KEY, C1)]);
        let mut arm = image('d', "linux/arm64");
        arm.labels = map(&[(REVISION_KEY, C2)]);
        let err = resolved("127.0.0.1:5000/app:v1", INDEX, vec![amd.clone(), arm])
            .source_info()
            .unwrap_err();
        assert_eq!(
            err,
            RevisionError::PlatformsDisagree {
                key: REVISION_KEY,
                first_platform: "linux/amd64".into(),
                first: Some(C1.into()),
                second_platform: "linux/arm64".into(),
                second: Some(C2.into()),
            }
        );

        let silent = image('d', "linux/arm64");
        let err = resolved("127.0.0.1:5000/app:v1", INDEX, vec![amd, silent])
            .source_info()
            .unwrap_err();
        assert!(err.to_string().contains("linux/arm64 has none"), "{err}");
    }

    #[test]
    fn a_tag_that_looks_like_a_commit_is_never_read_as_one() {
        let r = resolved(
            &format!("127.0.0.1:5000/app:{C1}"),
            MANIFEST,
            vec![image('a', "linux/amd64")],
        );
        assert_eq!(r.source_info().unwrap(), SourceInfo::default());
    }

    #[test]
    fn a_revision_must_be_a_full_commit_hash() {
        for bad in [
            "v1.2.3",
            "0123456",
            &format!("{C1}0"),
            &format!(" {C1}"),
            "main",
        ] {
            let mut one = image('a', "linux/amd64");
            one.labels = map(&[(REVISION_KEY, bad)]);
            let err = resolved("127.0.0.1:5000/app:v1", MANIFEST, vec![one])
                .source_info()
                .unwrap_err();
            assert!(
                matches!(&err, RevisionError::InvalidRevision { value, .. } if value == bad),
                "{bad:?}: {err}"
            );
        }
        let sha256_commit = "ab".repeat(32);
        let mut one = image('a', "linux/amd64");
        one.labels = map(&[(REVISION_KEY, &sha256_commit)]);
        let info = resolved("127.0.0.1:5000/app:v1", MANIFEST, vec![one])
            .source_info()
            .unwrap();
        assert_eq!(info.commit, Some(sha256_commit));
    }

    #[test]
    fn empty_values_count_as_absent() {
        let mut one = image('a', "linux/amd64");
        one.labels = map(&[(REVISION_KEY, ""), (SOURCE_KEY, "  ")]);
        one.manifest_annotations = map(&[(REVISION_KEY, C1)]);
        let info = resolved("127.0.0.1:5000/app:v1", MANIFEST, vec![one])
            .source_info()
            .unwrap();
        assert_eq!((info.commit.as_deref(), info.source), (Some(C1), None));
    }

    #[test]
    fn nested_indexes_are_places_too() {
        let mut one = image('b', "linux/amd64");
        one.nested_in = vec![NestedIndex {
            digest: digest('e'),
            annotations: map(&[(REVISION_KEY, C1)]),
            entry_annotations: map(&[(REVISION_KEY, C2)]),
        }];
        let err = resolved("127.0.0.1:5000/app:v1", INDEX, vec![one])
            .source_info()
            .unwrap_err();
        assert_eq!(
            err,
            RevisionError::Conflict {
                key: REVISION_KEY,
                first: C1.into(),
                first_place: Box::new(Place::IndexAnnotations { index: digest('e') }),
                second: C2.into(),
                second_place: Box::new(Place::IndexEntryAnnotations {
                    index: digest('a'),
                    entry: digest('e')
                }),
            }
        );
    }
}
