//! Why the server could not start or stopped with an error.

use std::net::SocketAddr;

use super::tls::TlsError;

/// A failure to start or run the webhook server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The serving certificate, key or client CA did not load at startup.
    #[error("cannot load the tls material")]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The webhook listener failed while serving.
    #[error("the webhook listener failed")]
    Webhook(#[source] std::io::Error),
}
