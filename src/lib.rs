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
pub mod intoto;
pub mod policy;
