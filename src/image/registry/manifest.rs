//! The shapes of what a registry serves, read from bytes already hash-checked: image manifests
//! and indexes (OCI and Docker schema 2 media types) and image configs. Only the fields the
//! resolution needs are read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::RegistryError;
use crate::image::Digest;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// What the resolution asks registries for.
pub(crate) const ACCEPTED: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Whether `media_type` is an index (OCI image index or Docker manifest list).
pub(crate) fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A manifest or an index.
#[derive(Debug)]
pub(super) enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

/// The parts of an image manifest that are read.
#[derive(Debug)]
pub(super) struct Manifest {
    pub(super) media_type: String,
    pub(super) config: Descriptor,
    pub(super) annotations: BTreeMap<String, String>,
}

/// The parts of an index that are read.
#[derive(Debug)]
pub(super) struct Index {
    pub(super) media_type: String,
    pub(super) manifests: Vec<Descriptor>,
    pub(super) annotations: BTreeMap<String, String>,
}

/// A content descriptor, its digest already parsed.
#[derive(Debug, Clone)]
pub(super) struct Descriptor {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) platform: Option<Platform>,
    pub(super) annotations: BTreeMap<String, String>,
}

/// An index entry's platform.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Platform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    /// `os/architecture[/variant]`.
    pub(super) fn name(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// `unknown/unknown`: no runtime ever selects it. BuildKit lists its attestation manifests
    /// (`vnd.docker.reference.type: attestation-manifest`) under this platform.
    ///
    /// The annotation alone does not make an entry skippable: a runnable platform carrying it
    /// would still be pulled by a runtime, so it is judged like any other.
    pub(super) fn is_unrunnable(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Reads a manifest or index. Its kind comes from its `mediaType`; without one (OCI allows
/// that) from its shape, and a body that has both `config` and `manifests` is refused as
/// ambiguous, since two readers could take it for different things.
pub(super) fn parse(what: &str, bytes: &[u8]) -> Result<Parsed, RegistryError> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| malformed_json(what, e))?;
    if raw.schema_version != Some(2) {
        return Err(malformed(
            what,
            format!(
                "schema version {} is not supported (only 2)",
                raw.schema_version
                    .map_or_else(|| "(none)".to_string(), |v| v.to_string())
            ),
        ));
    }
    let annotations = raw.annotations.unwrap_or_default();
    match (raw.media_type.as_deref(), raw.config, raw.manifests) {
        (kind @ (Some(OCI_INDEX | DOCKER_MANIFEST_LIST) | None), None, Some(entries)) => {
            let manifests = entries
                .into_iter()
                .map(|d| descriptor(what, d))
                .collect::<Result<_, _>>()?;
            Ok(Parsed::Index(Index {
                media_type: kind.unwrap_or(OCI_INDEX).to_string(),
                manifests,
                annotations,
            }))
        }
        (kind @ (Some(OCI_MANIFEST | DOCKER_MANIFEST) | None), Some(config), None) => {
            Ok(Parsed::Manifest(Manifest {
                media_type: kind.unwrap_or(OCI_MANIFEST).to_string(),
                config: descriptor(what, config)?,
                annotations,
            }))
        }
        (Some(other), _, _) if !ACCEPTED.contains(&other) => Err(malformed(
            what,
            format!("media type {other:?} is neither an image manifest nor an index"),
        )),
        (media_type, config, manifests) => Err(malformed(
            what,
            format!(
                "media type {media_type:?} with{} config and with{} manifests",
                if config.is_some() { "" } else { "out" },
                if manifests.is_some() { "" } else { "out" }
            ),
        )),
    }
}

fn descriptor(what: &str, raw: RawDescriptor) -> Result<Descriptor, RegistryError> {
    let digest = Digest::parse(&raw.digest).ok_or_else(|| {
        malformed(
            what,
            format!("descriptor digest {:?} is not valid", raw.digest),
        )
    })?;
    let size = u64::try_from(raw.size)
        .map_err(|_| malformed(what, format!("descriptor size {} is negative", raw.size)))?;
    Ok(Descriptor {
        digest,
        size,
        platform: raw.platform,
        annotations: raw.annotations.unwrap_or_default(),
    })
}

/// The parts of an image config that are read.
#[derive(Debug, Default)]
pub(super) struct Config {
    pub(super) platform: Option<String>,
    pub(super) labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RawContainerConfig>,
}

#[derive(Deserialize)]
struct RawContainerConfig {
    // Docker writes `"Labels": null` for an image without labels.
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Reads an image config (OCI or Docker): its platform and `config.Labels`.
pub(super) fn parse_config(what: &str, bytes: &[u8]) -> Result<Config, RegistryError> {
    let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| malformed_json(what, e))?;
    let platform = match (raw.os, raw.architecture) {
        (Some(os), Some(architecture)) => Some(
            Platform {
                architecture,
                os,
                variant: raw.variant,
            }
            .name(),
        ),
        _ => None,
    };
    Ok(Config {
        platform,
        labels: raw.config.and_then(|c| c.labels).unwrap_or_default(),
    })
}

fn malformed(what: &str, problem: String) -> RegistryError {
    RegistryError::Malformed {
        what: what.to_string(),
        problem,
        source: None,
    }
}

fn malformed_json(what: &str, err: serde_json::Error) -> RegistryError {
    RegistryError::Malformed {
        what: what.to_string(),
        problem: "not the JSON of a manifest, index or config".into(),
        source: Some(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689";

    fn manifest(media_type: Option<&str>) -> String {
        let media = media_type.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
        format!(
            r#"{{"schemaVersion":2,{media}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":7}},"layers":[],"annotations":{{"a":"b"}}}}"#
        )
    }

    #[test]
    fn reads_oci_and_docker_manifests() {
        for media_type in [Some(OCI_MANIFEST), Some(DOCKER_MANIFEST), None] {
            let Parsed::Manifest(m) = parse("m", manifest(media_type).as_bytes()).unwrap() else {
                panic!("{media_type:?} is a manifest")
            };
            assert_eq!(m.config.digest.to_string(), D);
            assert_eq!(m.config.size, 7);
            assert_eq!(m.annotations.get("a").map(String::as_str), Some("b"));
            assert_eq!(m.media_type, media_type.unwrap_or(OCI_MANIFEST));
        }
    }

    #[test]
    fn reads_indexes_with_platforms_and_entry_annotations() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
                {{"mediaType":"{DOCKER_MANIFEST}","digest":"{D}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
                {{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}},
                  "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#
        );
        let Parsed::Index(index) = parse("i", body.as_bytes()).unwrap() else {
            panic!("an index")
        };
        let platforms: Vec<_> = index
            .manifests
            .iter()
            .map(|d| {
                let p = d.platform.as_ref().unwrap();
                (p.name(), p.is_unrunnable())
            })
            .collect();
        assert_eq!(
            platforms,
            vec![
                ("linux/arm64/v8".to_string(), false),
                ("unknown/unknown".to_string(), true)
            ]
        );
        assert_eq!(index.manifests[1].annotations.len(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_schema_2_manifest_or_index() {
        let cases = [
            ("{", "JSON"),
            (r#"{"schemaVersion":1,"fsLayers":[]}"#, "schema version 1"),
            (
                r#"{"schemaVersion":2}"#,
                "without config and without manifests",
            ),
            (
                &format!(
                    r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":1}},"manifests":[]}}"#
                ),
                "with config and with manifests",
            ),
            (
                &format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","config":{{"digest":"{D}","size":1}}}}"#
                ),
                "with config and without manifests",
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"text/plain","manifests":[]}"#,
                "neither an image manifest nor an index",
            ),
            (
                r#"{"schemaVersion":2,"config":{"digest":"sha256:00","size":1}}"#,
                "digest \"sha256:00\" is not valid",
            ),
            (
                &format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":-1}}}}"#),
                "negative",
            ),
        ];
        for (body, want) in cases {
            let err = parse("manifest x", body.as_bytes()).unwrap_err();
            let text = crate::display_chain(&err);
            assert!(
                matches!(err, RegistryError::Malformed { .. }) && text.contains(want),
                "{body}: {text}"
            );
        }
    }

    #[test]
    fn reads_config_labels_and_platform() {
        let config = parse_config(
            "c",
            br#"{"architecture":"arm","os":"linux","variant":"v7","config":{"Labels":{"k":"v"}}}"#,
        )
        .unwrap();
        assert_eq!(config.platform.as_deref(), Some("linux/arm/v7"));
        assert_eq!(config.labels.get("k").map(String::as_str), Some("v"));

        let bare = parse_config("c", br#"{"config":{"Labels":null}}"#).unwrap();
        assert!(bare.labels.is_empty() && bare.platform.is_none());
        assert!(parse_config("c", b"[1]").is_err());
        assert!(parse_config("c", br#"{"config":{"Labels":{"k":1}}}"#).is_err());
    }
}
