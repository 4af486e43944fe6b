//! Where signed collections come from. The policy engine asks a source for candidates, one
//! search round at a time; the source never decides what is trusted.

mod files;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub use files::{FileSource, FileSourceError};

/// Where a candidate envelope came from, so a decision can be reproduced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceRef {
    /// A local file.
    File(PathBuf),
    /// An Archivista gitoid (SHA-256 git blob id of the stored bytes).
    Gitoid(String),
}

impl fmt::Display for EvidenceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Gitoid(g) => write!(f, "gitoid:{g}"),
        }
    }
}

/// One step's search in a round: collections named `step` with a subject whose digest value is
/// one of `digests` (algorithm ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepQuery {
    /// The step name.
    pub step: String,
    /// Digest values to look for; never empty.
    pub digests: BTreeSet<String>,
    /// The attestation types the step requires (a source may use them to narrow the search;
    /// completeness is always checked by the engine).
    pub types: Vec<String>,
}

/// An envelope a source found for a step.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it came from.
    pub reference: EvidenceRef,
    /// The envelope bytes, exactly as stored.
    pub bytes: Arc<[u8]>,
}

/// A source could not answer (unreachable, refused, malformed answer).
#[derive(Debug, thiserror::Error)]
#[error("evidence source {source_name} failed")]
pub struct SourceError {
    /// Which source.
    pub source_name: String,
    /// The cause.
    #[source]
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

/// A store of signed collections searchable by step name and subject digest.
pub trait EvidenceSource {
    /// Answers every query of one round; `seen` lists references the engine already has, which
    /// a source may leave out. The answer has one list per query, in order.
    fn search(
        &self,
        queries: &[StepQuery],
        seen: &BTreeSet<EvidenceRef>,
    ) -> impl Future<Output = Result<Vec<Vec<Candidate>>, SourceError>> + Send;
}
