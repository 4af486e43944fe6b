//! Where and how the server listens: addresses, certificate files, intervals and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The largest review body read by default: [`crate::admission::MAX_REVIEW_BYTES`], an UPDATE's
/// two objects each at the API server's own 3 MiB request limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = crate::admission::MAX_REVIEW_BYTES;

/// How often the certificate files are checked for a change by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How long in-flight requests may run after a shutdown signal by default; below the pod's
/// default 30 s termination grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How the webhook server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The HTTPS webhook listener (port 0 picks a free port; see `Server::local_addrs`).
    pub listen: SocketAddr,
    /// The plain-HTTP listener for `/healthz`, `/readyz` and `/metrics`.
    pub health_listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate chaining to one.
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate, key and client CA files are checked for a change.
    pub reload_interval: Duration,
    /// How long in-flight requests may finish after the shutdown signal.
    pub shutdown_grace: Duration,
    /// The largest review body accepted; larger ones get 413 without being read whole.
    pub max_body_bytes: usize,
}

impl ServeOptions {
    /// Options with the given listeners and certificate pair, no client authentication, and
    /// the default interval, grace and body limit.
    pub fn new(
        listen: SocketAddr,
        health_listen: SocketAddr,
        cert_file: PathBuf,
        key_file: PathBuf,
    ) -> Self {
        Self {
            listen,
            health_listen,
            cert_file,
            key_file,
            client_ca_file: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
