//! The structured result of a verification: per step, what passed and why each candidate was
//! rejected, precise enough to act on and to reproduce.

use std::fmt;

use serde::Serialize;

use crate::crypto::{KeyId, VerifiedSigner};
use crate::evidence::EvidenceRef;
use crate::intoto::{Collection, Subject};

/// Why one candidate collection did not count for its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// The bytes are not a usable envelope.
    Envelope {
        /// What is wrong.
        detail: String,
    },
    /// No signature verified with a key or root of the policy.
    Signature {
        /// One line per signature.
        failures: Vec<String>,
    },
    /// The payload is not an in-toto statement with an attestation collection.
    Statement {
        /// What is wrong.
        detail: String,
    },
    /// The statement's predicate type is not a collection type.
    PredicateType {
        /// The predicate type found.
        found: String,
    },
    /// The collection's name is not the step's name.
    StepName {
        /// The collection's name.
        found: String,
    },
    /// Signers verified, but none is a functionary of the step.
    NotAFunctionary {
        /// The signers that verified.
        signers: Vec<KeyId>,
        /// Why each signer fails each functionary (a certificate constraint's failures).
        details: Vec<String>,
    },
    /// A required attestation type is absent.
    MissingAttestation {
        /// The required type.
        kind: String,
    },
    /// A Rego module denied.
    RegoDenied {
        /// The attestation type.
        kind: String,
        /// The module names.
        modules: Vec<String>,
        /// The deny messages.
        messages: Vec<String>,
    },
    /// A Rego module could not be evaluated, or did not produce a set of strings.
    RegoFailed {
        /// The attestation type.
        kind: String,
        /// What went wrong.
        detail: String,
    },
    /// An `artifactsFrom` edge does not hold.
    ArtifactsFrom {
        /// The upstream step.
        from: String,
        /// Why.
        detail: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Envelope { detail } => write!(f, "unusable envelope: {detail}"),
            Self::Signature { failures } => {
                write!(
                    f,
                    "no valid signature from a policy key: {}",
                    failures.join("; ")
                )
            }
            Self::Statement { detail } => write!(f, "not an attestation collection: {detail}"),
            Self::PredicateType { found } => {
                write!(
                    f,
                    "predicate type {found:?} is not an attestation collection"
                )
            }
            Self::StepName { found } => write!(f, "collection is for step {found:?}"),
            Self::NotAFunctionary { signers, details } => {
                let ids: Vec<_> = signers.iter().map(|k| k.0.as_str()).collect();
                write!(
                    f,
                    "signed by {}, which is not a functionary of the step",
                    ids.join(", ")
                )?;
                if !details.is_empty() {
                    write!(f, " ({})", details.join("; "))?;
                }
                Ok(())
            }
            Self::MissingAttestation { kind } => write!(f, "missing attestation {kind}"),
            Self::RegoDenied {
                kind,
                modules,
                messages,
            } => write!(
                f,
                "rego {} denied {kind}: {}",
                modules.join(", "),
                messages.join("; ")
            ),
            Self::RegoFailed { kind, detail } => write!(f, "rego for {kind} failed: {detail}"),
            Self::ArtifactsFrom { from, detail } => {
                write!(f, "artifacts from step {from:?} do not match: {detail}")
            }
        }
    }
}

/// A candidate that did not count, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Where the candidate came from.
    pub reference: EvidenceRef,
    /// Why it was rejected.
    pub reasons: Vec<Reason>,
}

/// A collection that satisfied its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedCollection {
    /// Where it came from.
    pub reference: EvidenceRef,
    /// The signers that verified and matched a functionary.
    pub functionaries: Vec<VerifiedSigner>,
    /// The earliest time a trusted timestamp authority vouches the collection was signed at;
    /// `None` when no functionary's signature carries one (bare keys need none).
    pub signed_at: Option<String>,
    /// The verified statement's subjects, for binding evidence to an image.
    #[serde(skip)]
    pub subjects: Vec<Subject>,
    /// The verified collection, for binding evidence to a source repository.
    #[serde(skip)]
    pub collection: Option<std::sync::Arc<Collection>>,
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    /// The step name.
    pub step: String,
    /// Whether at least one collection passed.
    pub passed: bool,
    /// The collections that passed.
    pub passed_collections: Vec<PassedCollection>,
    /// The candidates that did not.
    pub rejected: Vec<Rejected>,
}

/// The outcome of verifying evidence against a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Whether the policy is satisfied.
    pub passed: bool,
    /// SHA-256 of the signed policy file.
    pub policy_digest: String,
    /// A failure of the policy itself (expired), which fails every step.
    pub policy_failure: Option<String>,
    /// The subject digests the search started from.
    pub seeds: Vec<String>,
    /// One result per step, in name order.
    pub steps: Vec<StepResult>,
    /// Evidence that was given but could never be a candidate (an envelope whose payload is
    /// not a collection), with the reason; filled by the caller that read it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_evidence: Vec<Rejected>,
}
