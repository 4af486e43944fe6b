//! Evidence from local files: each file one DSSE envelope, indexed by collection name and
//! subject digest values when loaded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Candidate, EvidenceRef, EvidenceSource, SourceError, StepQuery};
use crate::dsse::DecodedEnvelope;
use crate::intoto::{Collection, Statement};

/// A file given as evidence could not be read or is not a DSSE envelope at all.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// Reading failed.
    #[error("cannot read evidence file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (a device, a FIFO, a directory).
    #[error("evidence {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than an envelope may be.
    #[error("evidence file {path} is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        limit: usize,
    },
    /// The file is not a DSSE envelope.
    #[error("evidence file {path} is not a DSSE envelope")]
    NotEnvelope {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::dsse::EnvelopeError,
    },
}

#[derive(Debug)]
struct Indexed {
    reference: EvidenceRef,
    bytes: Arc<[u8]>,
    /// Collection name and subject digest values; `None` when the payload is not a statement
    /// with a collection, so the file can never be a candidate.
    index: Option<(String, BTreeSet<String>)>,
}

/// Envelopes read from files.
#[derive(Debug, Default)]
pub struct FileSource {
    files: Vec<Indexed>,
    ignored: Vec<(PathBuf, String)>,
}

impl FileSource {
    /// Reads and indexes each file.
    ///
    /// # Errors
    /// A file that cannot be read or is not an envelope. A well-formed envelope whose payload
    /// is not a collection is kept aside and reported by [`FileSource::ignored`].
    pub fn from_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Self, FileSourceError> {
        let mut source = Self::default();
        for path in paths {
            let path = path.as_ref();
            let bytes = read_envelope_file(path)?;
            source.add(path.to_path_buf(), bytes)?;
        }
        Ok(source)
    }

    /// Adds one envelope held in memory, under the name `path`.
    ///
    /// # Errors
    /// The bytes are not an envelope.
    pub fn add(&mut self, path: PathBuf, bytes: Vec<u8>) -> Result<(), FileSourceError> {
        let envelope =
            DecodedEnvelope::from_json(&bytes).map_err(|source| FileSourceError::NotEnvelope {
                path: path.clone(),
                source,
            })?;
        let index = match index_of(&envelope) {
            Ok(index) => Some(index),
            Err(reason) => {
                self.ignored.push((path.clone(), reason));
                None
            }
        };
        self.files.push(Indexed {
            reference: EvidenceRef::File(path),
            bytes: bytes.into(),
            index,
        });
        Ok(())
    }

    /// Files that were envelopes but could never match a step, with the reason.
    pub fn ignored(&self) -> &[(PathBuf, String)] {
        &self.ignored
    }

    fn search_one(&self, query: &StepQuery, seen: &BTreeSet<EvidenceRef>) -> Vec<Candidate> {
        self.files
            .iter()
            .filter(|f| !seen.contains(&f.reference))
            .filter(|f| {
                f.index.as_ref().is_some_and(|(name, values)| {
                    *name == query.step && !values.is_disjoint(&query.digests)
                })
            })
            .map(|f| Candidate {
                reference: f.reference.clone(),
                bytes: f.bytes.clone(),
                fetch_error: None,
            })
            .collect()
    }
}

/// Reads an evidence file, refusing non-regular files and files over the envelope cap without
/// reading them whole.
fn read_envelope_file(path: &Path) -> Result<Vec<u8>, FileSourceError> {
    use std::io::Read as _;
    let read_error = |source| FileSourceError::Read {
        path: path.to_path_buf(),
        source,
    };
    let limit = crate::dsse::MAX_ENVELOPE_BYTES;
    let too_large = || FileSourceError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(FileSourceError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if usize::try_from(meta.len()).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

fn index_of(envelope: &DecodedEnvelope) -> Result<(String, BTreeSet<String>), String> {
    let statement = Statement::from_json(&envelope.payload).map_err(|e| e.to_string())?;
    let collection = Collection::from_predicate(&statement.predicate).map_err(|e| e.to_string())?;
    let values = statement
        .subject
        .iter()
        .flat_map(|s| s.digest.values().cloned())
        .collect();
    Ok((collection.name, values))
}

impl EvidenceSource for FileSource {
    async fn search(
        &self,
        queries: &[StepQuery],
        seen: &BTreeSet<EvidenceRef>,
    ) -> Result<Vec<Vec<Candidate>>, SourceError> {
        Ok(queries.iter().map(|q| self.search_one(q, seen)).collect())
    }
}
