//! attestgate: admits a workload only when the build evidence of its images passes a signed
//! witness policy.
//!
//! The data path runs one way: images → evidence → verify → decision. This crate currently
//! holds the verification engine ([`policy`]) and its building blocks ([`dsse`], [`intoto`],
//! [`crypto`]), image references and their resolution at the registry ([`image`]), the evidence
//! sources ([`evidence`]) and the command line ([`cli`]).

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod decision;
pub mod dsse;
pub mod encoding;
pub mod evidence;
mod file;
pub mod image;
pub mod intoto;
mod json_shape;
pub mod policy;
pub mod resolve;
pub mod server;
pub mod webhook;

/// An error and its causes on one line, `outer: inner: root`, for logs and messages.
///
/// Error messages in this crate describe their own level only and keep the cause as a source,
/// so whoever prints an error walks the chain with this.
pub fn display_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Installs `ring` as the process's rustls crypto provider, once. Every TLS client and server
/// of the crate (registry, Archivista, the webhook) needs it, and rustls cannot pick one by
/// itself; calling this again is harmless.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
