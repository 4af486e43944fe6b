//! attestgate: admits a workload only when the build evidence of its images passes a signed
//! witness policy.
//!
//! The data path runs one way: images → evidence → verify → decision. This crate currently
//! holds the verification engine ([`policy`]) and its building blocks ([`dsse`], [`intoto`],
//! [`crypto`]), the evidence sources ([`evidence`]) and the command line ([`cli`]).

pub mod cli;
pub mod crypto;
pub mod dsse;
pub mod encoding;
pub mod evidence;
pub mod image;
pub mod intoto;
pub mod policy;

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
