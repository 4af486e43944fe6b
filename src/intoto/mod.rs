//! in-toto statements and witness attestation collections: pure parsing and the few facts the
//! policy engine reads out of them (subjects, back-references, materials and products).

mod artifacts;
mod digest;
pub mod types;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use artifacts::{ArtifactError, Artifacts};
pub use digest::{DigestSet, DigestSetError};

/// Statement `_type` values we read.
pub const STATEMENT_TYPES: &[&str] = &[
    "https://in-toto.io/Statement/v0.1",
    "https://in-toto.io/Statement/v1",
];

/// Why a payload is not a usable in-toto statement or collection.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// The payload is not JSON of the statement shape.
    #[error("payload is not an in-toto statement")]
    Json(#[source] serde_json::Error),
    /// A record is written as something other than a JSON object.
    #[error("payload is not an in-toto statement: {0}")]
    Shape(String),
    /// An attestor object has two keys that differ only in case; witness's decoder folds case,
    /// so it would read a different value than Rego sees here.
    #[error("attestation {kind:?} has keys that differ only in case: {keys}")]
    AmbiguousKeys {
        /// Attestation type.
        kind: String,
        /// The keys.
        keys: String,
    },
    /// `_type` is neither Statement v0.1 nor v1.
    #[error("statement type {0:?} is not an in-toto statement type")]
    StatementType(String),
    /// The predicate is not an attestation collection.
    #[error("predicate is not an attestation collection")]
    Collection(#[source] serde_json::Error),
    /// A `starttime`/`endtime` is present but not RFC 3339 (witness rejects the collection too).
    #[error("attestation {kind:?} has a {field} that is not an RFC 3339 time")]
    BadTime {
        /// Attestation type.
        kind: String,
        /// `starttime` or `endtime`.
        field: &'static str,
    },
}

/// One subject of a statement: a name and its digests (algorithm → value).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subject {
    /// `<attestation type>/<local name>` for witness subjects.
    #[serde(default)]
    pub name: String,
    /// Digest values keyed by algorithm; read verbatim, as witness does for statement subjects.
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

use crate::json_shape::Shape;

const STATEMENT_SHAPE: Shape = Shape::Object(&[
    (
        "subject",
        Shape::ArrayOf(&Shape::Object(&[("digest", Shape::MapOf(&Shape::Any))])),
    ),
    (
        "predicate",
        Shape::Object(&[("attestations", Shape::ArrayOf(&Shape::Object(&[])))]),
    ),
]);

/// An in-toto statement with its predicate left as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Statement {
    /// Statement type URI.
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The subjects the statement is about.
    #[serde(default)]
    pub subject: Vec<Subject>,
    /// The predicate type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate, not yet interpreted.
    #[serde(default)]
    pub predicate: serde_json::Value,
}

impl Statement {
    /// Parses a statement from the decoded DSSE payload.
    ///
    /// # Errors
    /// Not JSON of the statement shape, or an unknown `_type`.
    pub fn from_json(payload: &[u8]) -> Result<Self, StatementError> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(StatementError::Json)?;
        crate::json_shape::check(&value, STATEMENT_SHAPE).map_err(StatementError::Shape)?;
        let statement = Statement::deserialize(value).map_err(StatementError::Json)?;
        if !STATEMENT_TYPES.contains(&statement.statement_type.as_str()) {
            return Err(StatementError::StatementType(statement.statement_type));
        }
        Ok(statement)
    }

    /// Whether any subject carries one of `values` as a digest value (algorithm ignored).
    pub fn has_subject_value(&self, values: &std::collections::BTreeSet<String>) -> bool {
        self.subject
            .iter()
            .flat_map(|s| s.digest.values())
            .any(|v| values.contains(v))
    }

    /// The digest values of the subjects that witness follows as back-references: the git
    /// commit, the CI pipeline URL, and every AWS CodeBuild subject.
    pub fn back_reference_values(&self) -> Vec<String> {
        self.subject
            .iter()
            .filter(|s| types::is_back_reference_subject(&s.name))
            .flat_map(|s| s.digest.values().filter(|v| !v.is_empty()).cloned())
            .collect()
    }
}

/// An attestation collection: the predicate of one `witness run` step.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Collection {
    /// The step name given to `witness run -s`.
    #[serde(default)]
    pub name: String,
    /// The attestors' outputs, in phase order.
    #[serde(default)]
    pub attestations: Vec<CollectionEntry>,
    /// cilock's signed back-references (`<type>/<name>` → digests), authoritative when present.
    #[serde(default)]
    pub backrefs: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// One attestor's output inside a collection; the payload is kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CollectionEntry {
    /// The attestor type URI.
    #[serde(rename = "type")]
    pub kind: String,
    /// The attestor's own object, handed to Rego as `input`.
    #[serde(default)]
    pub attestation: serde_json::Value,
    /// When the attestor started.
    #[serde(default)]
    pub starttime: Option<String>,
    /// When the attestor finished.
    #[serde(default)]
    pub endtime: Option<String>,
}

impl Collection {
    /// Reads the collection out of a statement's predicate.
    ///
    /// # Errors
    /// The predicate is not collection-shaped, or carries an invalid time.
    pub fn from_predicate(predicate: &serde_json::Value) -> Result<Self, StatementError> {
        Self::checked(Collection::deserialize(predicate).map_err(StatementError::Collection)?)
    }

    /// As [`Collection::from_predicate`], taking the predicate by value: its strings move into
    /// the collection instead of being copied, which halves the peak memory of a large
    /// collection (an SBOM attestation can hold tens of megabytes).
    ///
    /// # Errors
    /// As [`Collection::from_predicate`].
    pub fn from_predicate_owned(predicate: serde_json::Value) -> Result<Self, StatementError> {
        Self::checked(Collection::deserialize(predicate).map_err(StatementError::Collection)?)
    }

    fn checked(collection: Collection) -> Result<Self, StatementError> {
        for entry in &collection.attestations {
            if let Some(keys) = case_folded_duplicates(&entry.attestation) {
                return Err(StatementError::AmbiguousKeys {
                    kind: entry.kind.clone(),
                    keys,
                });
            }
            for (field, value) in [("starttime", &entry.starttime), ("endtime", &entry.endtime)] {
                let Some(value) = value else { continue };
                let parsed = time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                );
                if parsed.is_err() {
                    return Err(StatementError::BadTime {
                        kind: entry.kind.clone(),
                        field,
                    });
                }
            }
        }
        Ok(collection)
    }

    /// The attestors of the collection whose type is `kind` or, with `aliases`, its twin.
    pub fn entries_of<'a>(
        &'a self,
        kind: &'a str,
        aliases: bool,
    ) -> impl Iterator<Item = &'a CollectionEntry> + 'a {
        self.attestations
            .iter()
            .filter(move |e| types::same_type(&e.kind, kind, aliases))
    }

    /// Back-reference digest values: cilock's signed `backrefs` when present, else the
    /// statement's back-reference subjects.
    pub fn back_reference_values(&self, statement: &Statement) -> Vec<String> {
        match &self.backrefs {
            Some(map) => map
                .values()
                .flat_map(|d| d.values().filter(|v| !v.is_empty()).cloned())
                .collect(),
            None => statement.back_reference_values(),
        }
    }
}

/// Keys of a JSON object that collide when case is folded, as Go's decoder folds it.
fn case_folded_duplicates(value: &serde_json::Value) -> Option<String> {
    let object = value.as_object()?;
    let mut seen = std::collections::BTreeMap::new();
    for key in object.keys() {
        if let Some(other) = seen.insert(key.to_lowercase(), key) {
            return Some(format!("{other:?} and {key:?}"));
        }
    }
    None
}
