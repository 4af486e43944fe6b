//! in-toto statements and witness attestation collections: pure parsing and the few facts the
//! policy engine reads out of them (subjects, back-references, materials and products).

mod artifacts;
mod digest;
mod raw;
pub mod types;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use artifacts::{ArtifactError, Artifacts};
pub use digest::{DigestSet, DigestSetError};
pub use raw::RawJson;

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
    /// An attestation's body is missing or not a JSON object, which witness cannot read into
    /// its attestor.
    #[error("attestation {index} ({kind:?}) is not a JSON object")]
    BodyNotAnObject {
        /// Its place in `attestations`.
        index: usize,
        /// Its `type`.
        kind: String,
    },
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

use crate::json_shape::{self, Shape};

/// The statement's records other than the predicate, which [`Statement::from_payload`] checks
/// in the tree of its small fields; the predicate's part of the shape is checked on its text.
const HEAD_SHAPE: Shape = Shape::Object(&[(
    "subject",
    Shape::ArrayOf(&Shape::Object(&[("digest", Shape::MapOf(&Shape::Any))])),
)]);

/// The statement's fields read as a tree (they are small).
#[derive(Deserialize)]
struct StatementHead {
    #[serde(rename = "_type")]
    statement_type: String,
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

/// An in-toto statement with its predicate left as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Statement type URI.
    pub statement_type: String,
    /// The subjects the statement is about.
    pub subject: Vec<Subject>,
    /// The predicate type URI.
    pub predicate_type: String,
    /// The predicate, not yet interpreted (`null` when absent): a slice of the payload.
    pub predicate: RawJson,
}

impl Statement {
    /// Parses a statement from the decoded DSSE payload (copying it; see
    /// [`Statement::from_payload`]).
    ///
    /// # Errors
    /// Not JSON of the statement shape, or an unknown `_type`.
    pub fn from_json(payload: &[u8]) -> Result<Self, StatementError> {
        Self::from_payload(payload.to_vec())
    }

    /// Parses a statement from the decoded DSSE payload, keeping the payload as the text the
    /// predicate (and the attestation bodies read from it) are slices of: nothing large is
    /// copied or built into a tree. It accepts and refuses exactly what reading the payload
    /// into a `serde_json::Value` and deserializing that would.
    ///
    /// # Errors
    /// Not JSON of the statement shape, or an unknown `_type`.
    pub fn from_payload(payload: Vec<u8>) -> Result<Self, StatementError> {
        json_shape::scan(&payload, false, Shape::Any)
            .map_err(StatementError::Json)?
            .map_err(StatementError::Shape)?;
        // The scan read every string, so this holds; the check costs no copy.
        let text = String::from_utf8(payload)
            .map_err(|_| StatementError::Json(RawJson::not_a("UTF-8 text")))?;
        let text = RawJson::whole(std::sync::Arc::new(text));
        let members = text
            .members()
            .map_err(StatementError::Json)?
            .ok_or_else(|| StatementError::Shape("$ must be an object".into()))?;
        let head = RawJson::member_values(&members, &["_type", "subject", "predicateType"])
            .map_err(StatementError::Json)?;
        json_shape::check(&head, HEAD_SHAPE).map_err(StatementError::Shape)?;
        let predicate = members
            .get("predicate")
            .map_or_else(RawJson::null, |raw| text.part(raw.get()));
        check_predicate_shape(&predicate)?;
        let head = StatementHead::deserialize(head).map_err(StatementError::Json)?;
        if !STATEMENT_TYPES.contains(&head.statement_type.as_str()) {
            return Err(StatementError::StatementType(head.statement_type));
        }
        Ok(Self {
            statement_type: head.statement_type,
            subject: head.subject,
            predicate_type: head.predicate_type,
            predicate,
        })
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

/// The predicate's part of the statement shape: an object whose `attestations`, when present
/// and not null, is an array of objects (the messages name the path as [`json_shape::check`]).
fn check_predicate_shape(predicate: &RawJson) -> Result<(), StatementError> {
    if predicate.is_null() {
        return Ok(());
    }
    let members = predicate
        .members()
        .map_err(StatementError::Json)?
        .ok_or_else(|| StatementError::Shape("$.predicate must be an object".into()))?;
    let Some(attestations) = members.get("attestations") else {
        return Ok(());
    };
    let attestations = predicate.part(attestations.get());
    if attestations.is_null() {
        return Ok(());
    }
    let items = attestations
        .elements()
        .map_err(StatementError::Json)?
        .ok_or_else(|| StatementError::Shape("$.predicate.attestations must be an array".into()))?;
    match items.iter().position(|item| !item.get().starts_with('{')) {
        Some(i) => Err(StatementError::Shape(format!(
            "$.predicate.attestations[{i}] must be an object"
        ))),
        None => Ok(()),
    }
}

/// An attestation collection: the predicate of one `witness run` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// The step name given to `witness run -s`.
    pub name: String,
    /// The attestors' outputs, in phase order.
    pub attestations: Vec<CollectionEntry>,
    /// cilock's signed back-references (`<type>/<name>` → digests), authoritative when present.
    pub backrefs: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// The collection's fields read as a tree (the attestations are read one by one).
#[derive(Deserialize)]
struct CollectionHead {
    #[serde(default)]
    name: String,
    #[serde(default)]
    backrefs: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// One attestor's output inside a collection; the payload is kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionEntry {
    /// The attestor type URI.
    pub kind: String,
    /// The attestor's own object, handed to Rego as `input`: JSON text (a slice of the
    /// statement's payload), parsed only by a reader that needs it.
    pub attestation: RawJson,
    /// When the attestor started.
    pub starttime: Option<String>,
    /// When the attestor finished.
    pub endtime: Option<String>,
}

/// An entry's fields read as a tree, all but the attestation body.
#[derive(Deserialize)]
struct EntryHead {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    starttime: Option<String>,
    #[serde(default)]
    endtime: Option<String>,
}

impl Collection {
    /// Reads the collection out of a statement's predicate. The attestation bodies stay text
    /// that shares the predicate's; what is accepted and refused is exactly what deserializing
    /// the predicate's tree into typed records with `Value` bodies would.
    ///
    /// # Errors
    /// The predicate is not collection-shaped, or carries an invalid time.
    pub fn from_predicate(predicate: &RawJson) -> Result<Self, StatementError> {
        Self::checked(Self::read(predicate).map_err(StatementError::Collection)?)
    }

    /// As [`Collection::from_predicate`], taking the predicate by value.
    ///
    /// # Errors
    /// As [`Collection::from_predicate`].
    pub fn from_predicate_owned(predicate: RawJson) -> Result<Self, StatementError> {
        Self::from_predicate(&predicate)
    }

    fn read(predicate: &RawJson) -> Result<Self, serde_json::Error> {
        let members = predicate
            .members()?
            .ok_or_else(|| RawJson::not_a("an attestation collection object"))?;
        let head = RawJson::member_values(&members, &["name", "backrefs"])?;
        let head = CollectionHead::deserialize(head)?;
        let attestations = match members.get("attestations") {
            None => Vec::new(),
            Some(raw) => {
                let list = predicate.part(raw.get());
                let items = list
                    .elements()?
                    .ok_or_else(|| RawJson::not_a("an array of attestations"))?;
                items
                    .iter()
                    .map(|item| Self::entry(&list.part(item.get())))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(Self {
            name: head.name,
            attestations,
            backrefs: head.backrefs,
        })
    }

    fn entry(item: &RawJson) -> Result<CollectionEntry, serde_json::Error> {
        let members = item
            .members()?
            .ok_or_else(|| RawJson::not_a("an attestation object"))?;
        let head = RawJson::member_values(&members, &["type", "starttime", "endtime"])?;
        let head = EntryHead::deserialize(head)?;
        let attestation = members
            .get("attestation")
            .map_or_else(RawJson::null, |raw| item.part(raw.get()));
        Ok(CollectionEntry {
            kind: head.kind,
            attestation,
            starttime: head.starttime,
            endtime: head.endtime,
        })
    }

    fn checked(collection: Collection) -> Result<Self, StatementError> {
        for (i, entry) in collection.attestations.iter().enumerate() {
            // witness reads every body into its attestor's struct: a string, an array, a
            // number, `null` or no body at all fails that read and the whole collection.
            if !entry.attestation.as_str().trim_start().starts_with('{') {
                return Err(StatementError::BodyNotAnObject {
                    index: i,
                    kind: entry.kind.clone(),
                });
            }
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
fn case_folded_duplicates(value: &RawJson) -> Option<String> {
    let keys = value.keys()?;
    let mut seen = std::collections::BTreeMap::new();
    for key in &keys {
        if let Some(other) = seen.insert(key.to_lowercase(), key) {
            return Some(format!("{other:?} and {key:?}"));
        }
    }
    None
}
