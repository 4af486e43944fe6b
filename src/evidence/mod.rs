//! Where signed collections come from. The policy engine asks a source for candidates, one
//! search round at a time; the source never decides what is trusted.

pub mod archivista;
mod cache;
mod files;
mod gitoid;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub use archivista::{ArchivistaConfig, ArchivistaError, ArchivistaSource};
pub use files::{FileSource, FileSourceError, MAX_DIRECTORY_DEPTH, MAX_DIRECTORY_FILES};
pub use gitoid::gitoid_sha256;

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
    /// Key ids of the step's functionaries: a source that must cap how many candidates it
    /// returns puts envelopes signed under these ids first, so junk uploaded against the same
    /// subject cannot crowd out the real evidence.
    pub preferred_keyids: Vec<String>,
}

/// An envelope a source found for a step.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it came from.
    pub reference: EvidenceRef,
    /// The envelope bytes, exactly as stored.
    pub bytes: Arc<[u8]>,
    /// Why the bytes could not be fetched intact (for example a download whose content does
    /// not hash to its gitoid); the engine records it as the candidate's rejection.
    pub fetch_error: Option<String>,
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

/// Several sources searched together; candidates are concatenated in source order.
#[derive(Debug)]
pub struct Sources<A, B> {
    first: A,
    second: Option<B>,
}

impl<A, B> Sources<A, B> {
    /// Searches `first`, and `second` when there is one.
    pub fn new(first: A, second: Option<B>) -> Self {
        Self { first, second }
    }

    /// The first source.
    pub fn first(&self) -> &A {
        &self.first
    }
}

impl<A: EvidenceSource + Sync, B: EvidenceSource + Sync> EvidenceSource for Sources<A, B> {
    async fn search(
        &self,
        queries: &[StepQuery],
        seen: &BTreeSet<EvidenceRef>,
    ) -> Result<Vec<Vec<Candidate>>, SourceError> {
        let mut answers = self.first.search(queries, seen).await?;
        if let Some(second) = &self.second {
            let more = second.search(queries, seen).await?;
            for (answer, extra) in answers.iter_mut().zip(more) {
                answer.extend(extra);
            }
        }
        Ok(answers)
    }
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
