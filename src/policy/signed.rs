//! The signed policy envelope and the operator's trust in its signer.
//!
//! Trust in the policy signer comes from the operator (flags or admin-owned config), never
//! from the policy itself.

use super::compiled::{Policy, PolicyError, PolicyOptions};
use super::document::PolicyDocument;
use crate::crypto::{verify_envelope, EnvelopeTrust, KeyId, PublicKey, VerifiedSigner};
use crate::dsse::{DecodedEnvelope, EnvelopeError, POLICY_PAYLOAD_TYPES};
use crate::encoding::sha256_hex;

/// Who may sign the policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyTrust {
    keys: EnvelopeTrust,
}

impl PolicyTrust {
    /// Trusts a bare public key (`-k/--publickey`).
    pub fn add_key(&mut self, key: PublicKey) {
        self.keys.add_key(key.keyid(), key);
    }

    /// Whether nothing is trusted (every policy would be refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a signed policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedPolicyError {
    /// The file is not a DSSE envelope.
    #[error("policy is not a DSSE envelope")]
    Envelope(#[source] EnvelopeError),
    /// The envelope's payload type is not a policy type.
    #[error("policy envelope has payload type {0:?}, not a witness policy type")]
    PayloadType(String),
    /// No signature verifies with a trusted policy signer.
    #[error("policy signature does not verify with the trusted policy signer: {}", .0.join("; "))]
    Signature(Vec<String>),
    /// The signed payload is not a policy document.
    #[error("signed payload is not a witness policy")]
    Document(#[source] serde_json::Error),
    /// The document cannot be applied.
    #[error("policy is invalid")]
    Invalid(#[source] PolicyError),
}

impl SignedPolicyError {
    /// Whether this is a verification failure (the policy is not trusted) rather than input that
    /// could not be read at all.
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Self::Signature(_))
    }
}

/// A policy whose signature verified.
#[derive(Debug, Clone)]
pub struct SignedPolicy {
    /// The prepared policy.
    pub policy: Policy,
    /// SHA-256 of the policy envelope bytes as given.
    pub digest: String,
    /// Who signed it.
    pub signers: Vec<VerifiedSigner>,
}

impl SignedPolicy {
    /// Verifies the envelope against `trust`, then parses and prepares the payload.
    ///
    /// # Errors
    /// See [`SignedPolicyError`].
    pub fn load(
        bytes: &[u8],
        trust: &PolicyTrust,
        options: PolicyOptions,
    ) -> Result<Self, SignedPolicyError> {
        let envelope = DecodedEnvelope::from_json(bytes).map_err(SignedPolicyError::Envelope)?;
        let payload_type = &envelope.envelope.payload_type;
        if !POLICY_PAYLOAD_TYPES.contains(&payload_type.as_str()) {
            return Err(SignedPolicyError::PayloadType(payload_type.clone()));
        }

        let check = verify_envelope(&envelope, &trust.keys);
        if check.verified.is_empty() {
            let mut failures = check.failures;
            if trust.is_empty() {
                failures.push("no policy signer is trusted".into());
            }
            return Err(SignedPolicyError::Signature(failures));
        }

        let document =
            PolicyDocument::from_json(&envelope.payload).map_err(SignedPolicyError::Document)?;
        let policy = Policy::compile(document, options).map_err(SignedPolicyError::Invalid)?;
        Ok(Self {
            policy,
            digest: sha256_hex(bytes),
            signers: check.verified,
        })
    }

    /// The key ids of the policy's signers.
    pub fn signer_keyids(&self) -> Vec<&KeyId> {
        self.signers.iter().map(VerifiedSigner::keyid).collect()
    }
}
