//! Why a config could not be loaded. Every message names the file and, where there is one, the
//! key (`policies[0].trust.publicKeys[1]`).

use std::path::PathBuf;

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}")]
    Read(String),
    /// The YAML is malformed or does not fit the schema.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Where and what, as `key: problem at line L column C`.
        message: String,
    },
    /// A value is wrong.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key, e.g. `policies[0].binding`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A replacement would downgrade a policy.
    #[error("{}: {key}: {message}", path.display())]
    Downgrade {
        /// The config file.
        path: PathBuf,
        /// The policy's key.
        key: String,
        /// What the loaded and the new policy say.
        message: String,
    },
}
