//! The witness policy: its document, its signature, and the verification of evidence against
//! it. No I/O happens here; evidence arrives through [`crate::evidence::EvidenceSource`].

mod compiled;
pub mod document;
mod functionary;
mod glob;
pub mod lint;
pub mod rego;
mod result;
mod signed;
mod verify;

pub use compiled::parse_time as parse_rfc3339;
pub use compiled::{CompiledAttestation, CompiledStep, Policy, PolicyError, PolicyOptions};
pub use glob::GlobError;
pub use result::{PassedCollection, Reason, Rejected, StepResult, Verification};
pub use signed::{PolicySignerIdentity, PolicyTrust, SignedPolicy, SignedPolicyError};
pub use verify::{parse_subject, verify, VerifyOptions};
