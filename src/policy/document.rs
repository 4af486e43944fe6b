//! The witness policy document, field by field, as it is written in JSON.
//!
//! Inside a step, attestation, functionary or constraint an unknown key is an error: a typo
//! there would silently drop a check. Unknown top-level keys (real policies carry `_comment`)
//! are kept so `policy check` can report them. Keys that only cilock understands are
//! recognised so they can be refused by name instead of being ignored. Duplicate keys are
//! refused everywhere (Go's decoder keeps the last one; two readers could disagree).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::json_shape::{self, Shape};

const RECORD: Shape = Shape::Object(&[]);
const FUNCTIONARY: Shape = Shape::Object(&[(
    "certConstraint",
    Shape::Object(&[("extensions", Shape::MapOf(&Shape::Any))]),
)]);
const ATTESTATION: Shape = Shape::Object(&[("regopolicies", Shape::ArrayOf(&RECORD))]);
const STEP: Shape = Shape::Object(&[
    ("functionaries", Shape::ArrayOf(&FUNCTIONARY)),
    ("attestations", Shape::ArrayOf(&ATTESTATION)),
]);
const POLICY_SHAPE: Shape = Shape::Object(&[
    ("roots", Shape::MapOf(&RECORD)),
    ("timestampauthorities", Shape::MapOf(&RECORD)),
    ("publickeys", Shape::MapOf(&RECORD)),
    ("steps", Shape::MapOf(&STEP)),
]);

/// A policy exactly as written.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyDocument {
    /// RFC 3339 expiry; missing or `null` means already expired, as in witness.
    #[serde(default)]
    pub expires: Option<String>,
    /// X.509 trust anchors for certificate functionaries, by an opaque id.
    #[serde(default, deserialize_with = "unique_map")]
    pub roots: BTreeMap<String, Root>,
    /// RFC 3161 timestamp authorities, by an opaque id.
    #[serde(default, deserialize_with = "unique_map")]
    pub timestampauthorities: BTreeMap<String, Root>,
    /// Trusted bare keys, by key id.
    #[serde(default, deserialize_with = "unique_map")]
    pub publickeys: BTreeMap<String, PolicyPublicKey>,
    /// The required steps, by name.
    #[serde(default, deserialize_with = "unique_map")]
    pub steps: BTreeMap<String, Step>,
    /// cilock's external attestations (refused: not implemented).
    #[serde(default, rename = "externalAttestations")]
    pub external_attestations: Option<serde_json::Value>,
    /// Every other top-level key (comments, cilock's `repositories`, typos).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A certificate authority: its certificate and intermediates, each base64 of PEM.
#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    /// Base64 of the PEM of the anchor certificate.
    #[serde(default)]
    pub certificate: String,
    /// Base64 of the PEM of each intermediate.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub intermediates: Vec<String>,
    /// Other keys (real policies annotate roots with `_comment`); reported by `policy check`.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A trusted bare key.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyPublicKey {
    /// The key id: the hash of the key's PEM, or a KMS URI.
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the key's PEM.
    #[serde(default)]
    pub key: String,
    /// Other keys (annotations); reported by `policy check`.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One required step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Must equal the step's key in `steps`.
    #[serde(default)]
    pub name: String,
    /// Who may sign this step's collection.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub functionaries: Vec<Functionary>,
    /// The attestor types that must be present, with their Rego checks.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub attestations: Vec<Attestation>,
    /// Upstream steps whose artifacts this step's materials must match.
    #[serde(default, rename = "artifactsFrom", deserialize_with = "null_as_empty")]
    pub artifacts_from: Vec<String>,
    /// cilock only (refused).
    #[serde(default, rename = "attestationsFrom")]
    pub attestations_from: Option<serde_json::Value>,
    /// cilock only (refused).
    #[serde(default, rename = "externalFrom")]
    pub external_from: Option<serde_json::Value>,
    /// cilock only (refused).
    #[serde(default, rename = "allowedUntracked")]
    pub allowed_untracked: Option<serde_json::Value>,
    /// cilock only (refused).
    #[serde(default, rename = "timestampConstraint")]
    pub timestamp_constraint: Option<serde_json::Value>,
}

/// A signer allowed for a step: a key id, or a certificate constraint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Functionary {
    /// Documented as `publickey` or `root`; witness never reads it.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Key id of an accepted key.
    #[serde(default)]
    pub publickeyid: String,
    /// Constraint on a certificate signer.
    #[serde(default, rename = "certConstraint")]
    pub cert_constraint: Option<CertConstraint>,
}

/// Constraints on a certificate signer's identity.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConstraint {
    /// Subject common name (`*` for any).
    #[serde(default)]
    pub commonname: String,
    /// SAN DNS names.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub dnsnames: Vec<String>,
    /// SAN e-mail addresses.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub emails: Vec<String>,
    /// Subject organizations.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub organizations: Vec<String>,
    /// SAN URIs.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub uris: Vec<String>,
    /// Ids of policy roots the signer must chain to, or `["*"]`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub roots: Vec<String>,
    /// Fulcio extension constraints (glob patterns), by Go field name or snake_case.
    #[serde(default, deserialize_with = "unique_map")]
    pub extensions: BTreeMap<String, String>,
    /// cilock only (refused).
    #[serde(default)]
    pub requiredpolicyoids: Option<serde_json::Value>,
}

/// A required attestor type with its Rego modules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// The attestor type URI.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Rego modules evaluated against each attestor of this type.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub regopolicies: Vec<RegoPolicy>,
    /// cilock's LLM-evaluated checks (refused).
    #[serde(default)]
    pub aipolicies: Option<serde_json::Value>,
}

/// One Rego module: a name and base64 of its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegoPolicy {
    /// The module's file name.
    #[serde(default)]
    pub name: String,
    /// Base64 of the Rego source.
    #[serde(default)]
    pub module: String,
}

impl PolicyDocument {
    /// Parses a policy document from JSON bytes.
    ///
    /// # Errors
    /// Malformed JSON, an unknown key inside a step, or a duplicate key.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let value = json_shape::parse_strict(bytes)?;
        json_shape::check(&value, POLICY_SHAPE).map_err(de::Error::custom)?;
        Self::deserialize(value)
    }

    /// Top-level keys that differ from a policy field only in case (`Expires`, `Steps`). Go's
    /// decoder folds case, so witness would read them as the field; such a policy means two
    /// different things to two readers and is refused.
    pub fn case_variant_keys(&self) -> Vec<String> {
        const FIELDS: &[&str] = &[
            "expires",
            "roots",
            "timestampauthorities",
            "publickeys",
            "steps",
            "externalattestations",
        ];
        self.other
            .keys()
            .filter(|k| FIELDS.contains(&k.to_lowercase().as_str()))
            .cloned()
            .collect()
    }

    /// The cilock-only keys present with a non-empty value, as JSON paths.
    pub fn cilock_only_keys(&self) -> Vec<String> {
        let mut found = Vec::new();
        if is_set(&self.external_attestations) {
            found.push("externalAttestations".to_string());
        }
        for (key, step) in &self.steps {
            for (name, value) in [
                ("attestationsFrom", &step.attestations_from),
                ("externalFrom", &step.external_from),
                ("allowedUntracked", &step.allowed_untracked),
                ("timestampConstraint", &step.timestamp_constraint),
            ] {
                if is_set(value) {
                    found.push(format!("steps.{key}.{name}"));
                }
            }
            for (i, att) in step.attestations.iter().enumerate() {
                if is_set(&att.aipolicies) {
                    found.push(format!("steps.{key}.attestations[{i}].aipolicies"));
                }
            }
            for (i, f) in step.functionaries.iter().enumerate() {
                let oids = f.cert_constraint.as_ref().map(|c| &c.requiredpolicyoids);
                if oids.is_some_and(is_set) {
                    found.push(format!(
                        "steps.{key}.functionaries[{i}].certConstraint.requiredpolicyoids"
                    ));
                }
            }
        }
        found
    }
}

/// A cilock key counts as used unless it is absent, `null`, or an empty array or object.
fn is_set(value: &Option<serde_json::Value>) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Reads `null` as an empty list, as Go does.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads a JSON object into a map, refusing duplicate keys; `null` is an empty map.
fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueMap<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = BTreeMap::new();
            while let Some((key, value)) = access.next_entry::<String, V>()? {
                if map.contains_key(&key) {
                    return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                }
                map.insert(key, value);
            }
            Ok(map)
        }
    }

    deserializer.deserialize_option(UniqueMap(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_inside_a_step_is_an_error() {
        let doc = br#"{"steps": {"b": {"name": "b", "atestations": []}}}"#;
        let err = PolicyDocument::from_json(doc).unwrap_err().to_string();
        assert!(err.contains("atestations"), "{err}");
    }

    #[test]
    fn unknown_top_level_keys_are_kept() {
        let doc = br#"{"_comment": "x", "expires": null, "steps": null}"#;
        let policy = PolicyDocument::from_json(doc).unwrap();
        assert!(policy.other.contains_key("_comment"));
        assert!(policy.steps.is_empty());
        assert!(policy.expires.is_none());
    }

    #[test]
    fn records_written_as_arrays_are_refused() {
        let doc = br#"{"steps": {"b": ["b", [], []]}}"#;
        let err = PolicyDocument::from_json(doc).unwrap_err().to_string();
        assert!(err.contains("$.steps.b must be an object"), "{err}");
    }

    #[test]
    fn case_variants_of_fields_are_found() {
        let doc =
            br#"{"Expires": "2020-01-01T00:00:00Z", "expires": "2035-01-01T00:00:00Z", "_x": 1}"#;
        assert_eq!(
            PolicyDocument::from_json(doc).unwrap().case_variant_keys(),
            ["Expires"]
        );
    }

    #[test]
    fn duplicate_step_names_are_refused() {
        let doc = br#"{"steps": {"b": {"name": "b"}, "b": {"name": "b"}}}"#;
        let err = PolicyDocument::from_json(doc).unwrap_err().to_string();
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[test]
    fn cilock_keys_are_found_by_path() {
        let doc = br#"{"steps": {"b": {"name": "b", "timestampConstraint": {"maxAge": "1h"},
            "allowedUntracked": [], "attestations": [{"type": "t", "aipolicies": [{"name": "x"}]}]}}}"#;
        let policy = PolicyDocument::from_json(doc).unwrap();
        assert_eq!(
            policy.cilock_only_keys(),
            [
                "steps.b.timestampConstraint",
                "steps.b.attestations[0].aipolicies"
            ]
        );
    }
}
