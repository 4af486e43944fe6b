//! The serving certificate, its key and the optional client CA: read from files, checked, and
//! built into a rustls server config (TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`).
//!
//! Reading and building are separate steps so the reloader can tell "the files did not change"
//! (same digest) from "the files changed into something unusable" (a build error).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use der::Decode as _;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

/// Why a certificate, key or client CA could not be turned into a serving config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("malformed pem in {}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("no private key in {}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The leaf certificate is not valid X.509.
    #[error("the leaf certificate in {} does not parse", path.display())]
    Leaf {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: der::Error,
    },
    /// The leaf certificate's notAfter has passed.
    #[error("the leaf certificate in {} expired at unix time {not_after}", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its notAfter, in Unix seconds.
        not_after: i64,
    },
    /// No rustls crypto provider is installed (see `crate::install_crypto_provider`).
    #[error("no rustls crypto provider is installed")]
    NoCryptoProvider,
    /// rustls refused the certificate and key (a key that does not match the leaf, an
    /// unsupported key type).
    #[error("the certificate and key do not form a usable pair")]
    Pair(#[source] rustls::Error),
    /// A client CA certificate is not a usable trust anchor.
    #[error("a certificate in {} is not a usable client ca", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The client CA file holds no certificate, or the verifier could not be built.
    #[error("cannot build the client certificate verifier from {}", path.display())]
    ClientVerifier {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

/// The paths the TLS material is read from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
}

/// What the TLS files held at one read.
#[derive(Debug)]
pub(crate) struct TlsContents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// A serving config built from one [`TlsContents`].
#[derive(Debug)]
pub(crate) struct LoadedTls {
    pub(crate) config: Arc<ServerConfig>,
    /// The leaf certificate's notAfter, in Unix seconds.
    pub(crate) not_after: i64,
}

impl TlsContents {
    /// Reads the certificate, key and client CA files.
    pub(crate) async fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        let client_ca = match &files.client_ca {
            Some(path) => Some(read_file(path).await?),
            None => None,
        };
        Ok(Self {
            cert: read_file(&files.cert).await?,
            key: read_file(&files.key).await?,
            client_ca,
        })
    }

    /// A digest of everything read, to notice a change without keeping the key around twice.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()] {
            match part {
                Some(bytes) => {
                    hasher.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
                    hasher.update(bytes);
                }
                None => hasher.update(u64::MAX.to_be_bytes()),
            }
        }
        hasher.finalize().into()
    }

    /// Checks the material and builds the serving config.
    pub(crate) fn build(&self, files: &TlsFiles) -> Result<LoadedTls, TlsError> {
        let chain = certificates(&files.cert, &self.cert)?;
        let not_after = leaf_not_after(&files.cert, &chain)?;
        if not_after < unix_now() {
            return Err(TlsError::Expired {
                path: files.cert.clone(),
                not_after,
            });
        }
        let key = private_key(&files.key, &self.key)?;

        let provider = CryptoProvider::get_default()
            .cloned()
            .ok_or(TlsError::NoCryptoProvider)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Pair)?;
        let builder = match (&files.client_ca, &self.client_ca) {
            (Some(path), Some(pem)) => {
                let roots = client_roots(path, pem)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|source| TlsError::ClientVerifier {
                        path: path.clone(),
                        source,
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(TlsError::Pair)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        Ok(LoadedTls {
            config: Arc::new(config),
            not_after,
        })
    }
}

/// Largest certificate, key or CA file read.
const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a regular file of at most [`MAX_TLS_FILE_BYTES`] (a path swapped for a device or a
/// huge file must not be read whole), off the async workers.
async fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let owned = path.to_owned();
    let read =
        tokio::task::spawn_blocking(move || crate::file::read_file(&owned, MAX_TLS_FILE_BYTES))
            .await
            .unwrap_or_else(|e| Err(format!("the read task failed: {e}")));
    read.map_err(|message| TlsError::Read {
        path: path.to_owned(),
        source: std::io::Error::other(message),
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

fn client_roots(path: &Path, pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    // An empty file leaves the store empty, which the verifier builder refuses by name.
    for cert in certificates(path, pem).or_else(|err| match err {
        TlsError::NoCertificate { .. } => Ok(Vec::new()),
        err => Err(err),
    })? {
        roots.add(cert).map_err(|source| TlsError::ClientCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

fn leaf_not_after(path: &Path, chain: &[CertificateDer<'_>]) -> Result<i64, TlsError> {
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    };
    let cert = x509_cert::Certificate::from_der(leaf).map_err(|source| TlsError::Leaf {
        path: path.to_owned(),
        source,
    })?;
    let not_after = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration();
    Ok(i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
