//! Evidence from local files: each file one DSSE envelope, indexed by collection name and
//! subject digest values when loaded. A directory of evidence is read the same way, every
//! `*.json` file under it, with stray files set aside instead of failing the whole folder.

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
    /// The path given as an evidence directory is not a directory.
    #[error("evidence {path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// An evidence directory holds more `*.json` files, or is nested deeper, than is read.
    #[error("evidence directory {path} holds more than {limit} {what}")]
    DirectoryTooLarge {
        /// The directory given.
        path: PathBuf,
        /// What overflowed: files, or directory levels.
        what: &'static str,
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

    /// Reads every `*.json` file under `dir`, recursively, in path order. Symbolic links are
    /// not followed (neither to files nor to directories) and non-regular files are skipped, so
    /// a directory cannot make the reader leave it or block on a FIFO. A `*.json` file that
    /// cannot be read, is too large, or is not an envelope is reported by
    /// [`FileSource::ignored`] instead of failing the directory.
    ///
    /// # Errors
    /// `dir` (or a directory under it) cannot be listed, or it holds more than
    /// [`MAX_DIRECTORY_FILES`] `*.json` files or is nested deeper than [`MAX_DIRECTORY_DEPTH`].
    pub fn from_directory(dir: impl AsRef<Path>) -> Result<Self, FileSourceError> {
        let dir = dir.as_ref();
        let meta = std::fs::metadata(dir).map_err(|source| FileSourceError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(FileSourceError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        let mut paths = Vec::new();
        collect_json_files(dir, dir, 0, &mut paths)?;
        paths.sort();
        let mut source = Self::default();
        for path in paths {
            let added = read_envelope_file(&path).and_then(|bytes| source.add(path.clone(), bytes));
            if let Err(e) = added {
                source.ignored.push((path, crate::display_chain(&e)));
            }
        }
        Ok(source)
    }

    /// Takes in every envelope (and every ignored file) of `other`.
    pub fn merge(&mut self, other: FileSource) {
        self.files.extend(other.files);
        self.ignored.extend(other.ignored);
    }

    /// Adds one envelope held in memory, under the name `path`.
    ///
    /// # Errors
    /// The bytes are not an envelope.
    pub fn add(&mut self, path: PathBuf, bytes: Vec<u8>) -> Result<(), FileSourceError> {
        // Shared form first, so the vector is freed before the payload is decoded.
        let bytes: Arc<[u8]> = bytes.into();
        let envelope =
            DecodedEnvelope::from_json(&bytes).map_err(|source| FileSourceError::NotEnvelope {
                path: path.clone(),
                source,
            })?;
        let index = match index_of(envelope) {
            Ok(index) => Some(index),
            Err(reason) => {
                self.ignored.push((path.clone(), reason));
                None
            }
        };
        self.files.push(Indexed {
            reference: EvidenceRef::File(path),
            bytes,
            index,
        });
        Ok(())
    }

    /// Files that could never match a step, with the reason: envelopes whose payload is not a
    /// collection, and (from a directory) `*.json` files that are not envelopes at all.
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

/// Most `*.json` files read from one evidence directory.
pub const MAX_DIRECTORY_FILES: usize = 10_000;
/// Deepest directory nesting read under an evidence directory.
pub const MAX_DIRECTORY_DEPTH: usize = 32;

/// Appends the regular `*.json` files under `dir` to `out`, not following symbolic links.
fn collect_json_files(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
) -> Result<(), FileSourceError> {
    let too_large = |what, limit| FileSourceError::DirectoryTooLarge {
        path: root.to_path_buf(),
        what,
        limit,
    };
    if depth > MAX_DIRECTORY_DEPTH {
        return Err(too_large("directory levels", MAX_DIRECTORY_DEPTH));
    }
    let read_error = |source| FileSourceError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        // The entry's own type: a symbolic link is reported as one, not as its target.
        let kind = entry.file_type().map_err(read_error)?;
        entries.push((entry.path(), kind));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in entries {
        if kind.is_dir() {
            collect_json_files(root, &path, depth + 1, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
            if out.len() >= MAX_DIRECTORY_FILES {
                return Err(too_large("*.json files", MAX_DIRECTORY_FILES));
            }
            out.push(path);
        }
    }
    Ok(())
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

fn index_of(envelope: DecodedEnvelope) -> Result<(String, BTreeSet<String>), String> {
    let mut statement = Statement::from_payload(envelope.payload.into_vec())
        .map_err(|e| crate::display_chain(&e))?;
    let predicate = std::mem::take(&mut statement.predicate);
    let collection =
        Collection::from_predicate_owned(predicate).map_err(|e| crate::display_chain(&e))?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ENVELOPE: &[u8] = include_bytes!(
        "../../tests/fixtures/vectors/d02-pass-ed25519-commit-seed/attestations/compile.json"
    );
    const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";

    fn query() -> StepQuery {
        StepQuery {
            step: "compile".into(),
            digests: [COMMIT.to_string()].into_iter().collect(),
            types: vec![],
            preferred_keyids: vec![],
        }
    }

    fn found(source: &FileSource) -> Vec<PathBuf> {
        source
            .search_one(&query(), &BTreeSet::new())
            .into_iter()
            .map(|c| match c.reference {
                EvidenceRef::File(p) => p,
                EvidenceRef::Gitoid(g) => PathBuf::from(g),
            })
            .collect()
    }

    #[test]
    fn a_directory_is_indexed_recursively_and_stray_files_are_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("top.json"), ENVELOPE).unwrap();
        std::fs::write(dir.join("a/b/deep.json"), ENVELOPE).unwrap();
        std::fs::write(dir.join("a/stray.json"), b"{\"not\": \"an envelope\"}").unwrap();
        std::fs::write(dir.join("a/notes.txt"), b"not json, not read").unwrap();
        std::fs::write(dir.join("a/copy.JSON.bak"), ENVELOPE).unwrap();

        let source = FileSource::from_directory(dir).unwrap();
        assert_eq!(
            found(&source),
            vec![dir.join("a/b/deep.json"), dir.join("top.json")]
        );
        let ignored: Vec<&PathBuf> = source.ignored().iter().map(|(p, _)| p).collect();
        assert_eq!(ignored, vec![&dir.join("a/stray.json")]);
        assert!(
            source.ignored()[0].1.contains("not a DSSE envelope"),
            "{:?}",
            source.ignored()
        );
        // A different step or digest finds nothing.
        let mut other = query();
        other.digests = ["ab".repeat(20)].into_iter().collect();
        assert!(source.search_one(&other, &BTreeSet::new()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed_and_special_files_are_skipped() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("outside.json"), ENVELOPE).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::os::unix::fs::symlink(outside.path().join("outside.json"), dir.join("link.json"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join("linkdir")).unwrap();
        let fifo = dir.join("fifo.json");
        let made_fifo = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        std::fs::write(dir.join("real.json"), ENVELOPE).unwrap();

        // Would block forever on the FIFO, or find the outside files, if either were read.
        let source = FileSource::from_directory(dir).unwrap();
        assert_eq!(found(&source), vec![dir.join("real.json")]);
        assert!(source.ignored().is_empty(), "{:?}", source.ignored());
        if !made_fifo {
            eprintln!("mkfifo unavailable: the FIFO case was not exercised");
        }
    }

    #[test]
    fn a_missing_directory_or_a_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            FileSource::from_directory(tmp.path().join("nope")),
            Err(FileSourceError::Read { .. })
        ));
        std::fs::write(tmp.path().join("f.json"), ENVELOPE).unwrap();
        assert!(matches!(
            FileSource::from_directory(tmp.path().join("f.json")),
            Err(FileSourceError::NotADirectory { .. })
        ));
    }

    #[test]
    fn too_deep_a_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut deep = tmp.path().to_path_buf();
        for _ in 0..=MAX_DIRECTORY_DEPTH + 1 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let err = FileSource::from_directory(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("directory levels"), "{err}");
    }
}
