//! The signed policy envelope and the operator's trust in its signer.
//!
//! Trust in the policy signer comes from the operator (flags or admin-owned config), never
//! from the policy itself.

use time::OffsetDateTime;

use super::compiled::{Policy, PolicyError, PolicyOptions};
use super::document::{CertConstraint, PolicyDocument};
use super::functionary::constraint_failures;
use crate::crypto::{
    verify_envelope, Certificate, EnvelopeTrust, KeyId, PublicKey, TimestampAuthority,
    VerifiedSigner,
};
use crate::dsse::{DecodedEnvelope, EnvelopeError, POLICY_PAYLOAD_TYPES};
use crate::encoding::sha256_hex;

/// Who may sign the policy: bare keys, and certificates under operator-chosen CA roots whose
/// identity meets operator-chosen constraints.
#[derive(Debug, Clone, Default)]
pub struct PolicyTrust {
    keys: EnvelopeTrust,
    ca_roots: usize,
    identity: Option<PolicySignerIdentity>,
    time: Option<OffsetDateTime>,
}

/// Identity constraints on a certificate policy signer, matched with the certificate constraint
/// rules of a functionary (a sole `*` allows any value; `[""]` requires none).
///
/// go-witness v0.12 accepts a certificate policy signer only when such constraints were
/// configured explicitly; chaining to a trusted CA alone is not enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySignerIdentity {
    /// Subject common name.
    pub common_name: String,
    /// SAN DNS names.
    pub dns_names: Vec<String>,
    /// SAN e-mail addresses.
    pub emails: Vec<String>,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// SAN URIs.
    pub uris: Vec<String>,
}

impl PolicySignerIdentity {
    /// The constraints an operator gave, each left out one defaulting to witness's `*` (the
    /// policy CA flags of `verify` and the `signerIdentity` of the webhook config both read
    /// this way).
    pub fn with_defaults(
        common_name: Option<String>,
        dns_names: &[String],
        emails: &[String],
        organizations: &[String],
        uris: &[String],
    ) -> Self {
        let defaults = Self::default();
        let or = |given: &[String], default: Vec<String>| {
            if given.is_empty() {
                default
            } else {
                given.to_vec()
            }
        };
        Self {
            common_name: common_name.unwrap_or(defaults.common_name),
            dns_names: or(dns_names, defaults.dns_names),
            emails: or(emails, defaults.emails),
            organizations: or(organizations, defaults.organizations),
            uris: or(uris, defaults.uris),
        }
    }
}

impl Default for PolicySignerIdentity {
    /// witness's flag defaults: `*` everywhere.
    fn default() -> Self {
        let any = || vec!["*".to_string()];
        Self {
            common_name: "*".into(),
            dns_names: any(),
            emails: any(),
            organizations: any(),
            uris: any(),
        }
    }
}

impl PolicySignerIdentity {
    fn constraint(&self) -> CertConstraint {
        CertConstraint {
            commonname: self.common_name.clone(),
            dnsnames: self.dns_names.clone(),
            emails: self.emails.clone(),
            organizations: self.organizations.clone(),
            uris: self.uris.clone(),
            // The operator's CA roots are the only roots in play: any of them will do.
            roots: vec!["*".into()],
            ..CertConstraint::default()
        }
    }
}

impl PolicyTrust {
    /// Lets a certificate policy signer count without a trusted timestamp when no policy
    /// timestamp authority is given, its chain checked at the verification time (witness's
    /// behaviour; off by default).
    pub fn allow_untimestamped_certificates(&mut self, allow: bool) {
        self.keys.allow_untimestamped_certificates(allow);
    }

    /// Trusts a bare public key (`-k/--publickey`).
    pub fn add_key(&mut self, key: PublicKey) {
        self.keys.add_key(key.keyid(), key);
    }

    /// Trusts a CA root for certificate policy signers (`--policy-ca-roots`). It need not be
    /// self-signed.
    pub fn add_ca_root(&mut self, certificate: Certificate) {
        self.ca_roots += 1;
        let id = certificate
            .keyid()
            .map(|k| k.0)
            .unwrap_or_else(|_| format!("policy-ca-root-{}", self.ca_roots));
        self.keys.add_root(id, certificate, Vec::new());
    }

    /// Adds an untrusted intermediate for certificate policy signers
    /// (`--policy-ca-intermediates`).
    pub fn add_ca_intermediate(&mut self, certificate: Certificate) {
        self.keys.add_intermediate(certificate);
    }

    /// Trusts a timestamp authority for the policy signature (`--policy-timestamp-servers`);
    /// from then on a certificate policy signer needs a timestamp from one of them.
    pub fn add_timestamp_authority(&mut self, name: impl Into<String>, certificate: Certificate) {
        self.keys
            .add_timestamp_authority(TimestampAuthority::new(name, vec![certificate]));
    }

    /// Sets the identity a certificate policy signer must have. Without it, certificate signers
    /// are refused.
    pub fn set_signer_identity(&mut self, identity: PolicySignerIdentity) {
        self.identity = Some(identity);
    }

    /// Sets the time certificate chains are checked at when no timestamp authority is trusted
    /// (default: the current time when the policy is loaded).
    pub fn set_verification_time(&mut self, now: OffsetDateTime) {
        self.time = Some(now);
    }

    /// Whether nothing is trusted (every policy would be refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the policy trusts `signer`: every bare key that verified, and a certificate
    /// whose identity meets the configured constraints. `Err` says why a signer is refused.
    fn accepts(&self, signer: &VerifiedSigner) -> Result<(), String> {
        let VerifiedSigner::Certificate {
            keyid,
            identity,
            roots,
            ..
        } = signer
        else {
            return Ok(());
        };
        let Some(wanted) = &self.identity else {
            return Err(format!(
                "certificate signer {keyid} is refused: no identity constraint is configured for certificate policy signers"
            ));
        };
        let failures = constraint_failures(&wanted.constraint(), identity, roots);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "certificate signer {keyid} does not meet the policy signer constraints: {}",
                failures.join("; ")
            ))
        }
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

        let now = trust.time.unwrap_or_else(OffsetDateTime::now_utc);
        let check = verify_envelope(&envelope, &trust.keys, now);
        let mut failures = check.failures;
        let mut signers = Vec::new();
        for signer in check.verified {
            match trust.accepts(&signer) {
                Ok(()) => signers.push(signer),
                Err(reason) => failures.push(reason),
            }
        }
        if signers.is_empty() {
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
            signers,
        })
    }

    /// The key ids of the policy's signers.
    pub fn signer_keyids(&self) -> Vec<&KeyId> {
        self.signers.iter().map(VerifiedSigner::keyid).collect()
    }
}
