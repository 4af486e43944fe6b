//! A policy document checked and prepared for verification: keys parsed and their ids checked,
//! Rego compiled, expiry parsed, cilock-only features refused.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::document::{Functionary, PolicyDocument};
use super::rego::{RegoError, RegoModules, DEFAULT_REGO_TIME_LIMIT};
use crate::crypto::{EnvelopeTrust, KeyError, KeyId, PublicKey};
use crate::encoding::decode_base64;

/// KMS URI schemes whose key ids are the URI itself rather than a key hash.
const KMS_SCHEMES: &[&str] = &["awskms://", "gcpkms://", "azurekms://", "hashivault://"];

/// Why a policy document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document has no steps (go-witness v0.12 fails such a policy).
    #[error("policy has no steps")]
    NoSteps,
    /// A step's key and its `name` differ; witness would skip its collections silently.
    #[error("step {key:?} has name {name:?}; the key and the name must be equal")]
    StepName {
        /// The key in `steps`.
        key: String,
        /// The `name` field.
        name: String,
    },
    /// `expires` is not an RFC 3339 time.
    #[error("policy expires value {0:?} is not an RFC 3339 time")]
    Expires(String),
    /// A `publickeys` entry's key is not base64 of a PEM public key.
    #[error("policy public key {keyid:?} cannot be loaded")]
    PublicKey {
        /// The entry's key id.
        keyid: String,
        /// The cause.
        #[source]
        source: KeyError,
    },
    /// A `publickeys` entry's key id is not the hash of its key.
    #[error("policy public key id {declared:?} does not match its key, whose id is {computed:?}")]
    KeyIdMismatch {
        /// The declared id.
        declared: String,
        /// The computed id.
        computed: String,
    },
    /// The policy uses a key that only cilock implements; ignoring it would weaken the policy.
    #[error("policy uses cilock-only keys that attestgate does not implement: {}", .0.join(", "))]
    CilockOnly(Vec<String>),
    /// A step requires no attestation (go-witness v0.12 fails every collection for it).
    #[error("step {0:?} requires no attestation")]
    NoAttestations(String),
    /// A step lists an `artifactsFrom` step that is not in the policy.
    #[error("step {step:?} takes artifacts from {from:?}, which is not a step of the policy")]
    UnknownArtifactsFrom {
        /// The downstream step.
        step: String,
        /// The missing upstream step.
        from: String,
    },
    /// A KMS key reference with no embedded key and no operator-supplied key.
    #[error("policy key {0:?} is a KMS reference without an embedded key; supply its public key")]
    UnresolvedKms(String),
    /// The key embedded for a KMS reference differs from the one the operator supplied.
    #[error("policy key {0:?} embeds a different key than the one supplied for it")]
    KmsKeyMismatch(String),
    /// `certConstraint.extensions` names an extension that Fulcio does not define.
    #[error("step {step:?} constrains unknown certificate extension {name:?}")]
    UnknownExtension {
        /// The step.
        step: String,
        /// The key as written.
        name: String,
    },
}

/// Knobs of how a policy is prepared and applied.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Accept an attestation type's witness.dev / aflock.ai twin (cilock behaviour).
    pub type_aliases: bool,
    /// Time limit for one Rego evaluation.
    pub rego_time_limit: Duration,
    /// Public keys of KMS key references, supplied by the operator for offline verification
    /// (a policy may name a KMS key by URI without embedding its public half).
    pub kms_keys: BTreeMap<String, PublicKey>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            type_aliases: true,
            rego_time_limit: DEFAULT_REGO_TIME_LIMIT,
            kms_keys: BTreeMap::new(),
        }
    }
}

/// One required attestation, with its Rego compiled (or the compile error, which fails every
/// collection of the step with that reason, as witness would).
#[derive(Debug, Clone)]
pub struct CompiledAttestation {
    /// The attestor type URI.
    pub kind: String,
    /// The compiled modules; `Ok(None)` when there are none.
    pub rego: Result<Option<RegoModules>, RegoError>,
}

/// One step, ready for verification.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    /// The step name (equal to its key).
    pub name: String,
    /// Who may sign.
    pub functionaries: Vec<Functionary>,
    /// What must be present.
    pub attestations: Vec<CompiledAttestation>,
    /// Upstream steps for `artifactsFrom`.
    pub artifacts_from: Vec<String>,
}

/// A verified, validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document as written.
    pub document: PolicyDocument,
    /// When the policy stops being valid; `None` means it was never valid (missing `expires`).
    pub expires: Option<OffsetDateTime>,
    /// Steps by name.
    pub steps: BTreeMap<String, CompiledStep>,
    /// The trust evidence envelopes are checked with: every policy key.
    pub evidence_trust: EnvelopeTrust,
    /// How the policy is applied.
    pub options: PolicyOptions,
}

impl Policy {
    /// Validates and prepares a document.
    ///
    /// # Errors
    /// See [`PolicyError`]; each variant is a policy that cannot be applied as written.
    pub fn compile(document: PolicyDocument, options: PolicyOptions) -> Result<Self, PolicyError> {
        let cilock = document.cilock_only_keys();
        if !cilock.is_empty() {
            return Err(PolicyError::CilockOnly(cilock));
        }
        if document.steps.is_empty() {
            return Err(PolicyError::NoSteps);
        }

        let expires = match &document.expires {
            None => None,
            Some(text) => Some(parse_time(text).ok_or_else(|| PolicyError::Expires(text.clone()))?),
        };
        let evidence_trust = load_keys(&document, &options.kms_keys)?;

        let mut steps = BTreeMap::new();
        for (key, step) in &document.steps {
            if *key != step.name {
                return Err(PolicyError::StepName {
                    key: key.clone(),
                    name: step.name.clone(),
                });
            }
            if step.attestations.is_empty() {
                return Err(PolicyError::NoAttestations(key.clone()));
            }
            if let Some(from) = step
                .artifacts_from
                .iter()
                .find(|f| !document.steps.contains_key(*f))
            {
                return Err(PolicyError::UnknownArtifactsFrom {
                    step: key.clone(),
                    from: from.clone(),
                });
            }
            let attestations = step
                .attestations
                .iter()
                .map(|a| CompiledAttestation {
                    kind: a.kind.clone(),
                    rego: RegoModules::compile(&a.regopolicies, options.rego_time_limit),
                })
                .collect();
            steps.insert(
                key.clone(),
                CompiledStep {
                    name: key.clone(),
                    functionaries: step.functionaries.clone(),
                    attestations,
                    artifacts_from: step.artifacts_from.clone(),
                },
            );
        }

        Ok(Self {
            document,
            expires,
            steps,
            evidence_trust,
            options,
        })
    }

    /// Whether the policy is expired at `now` (expired strictly after `expires`).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_none_or(|e| now > e)
    }
}

/// Parses the policy's public keys and checks each declared key id.
fn load_keys(
    document: &PolicyDocument,
    kms_keys: &BTreeMap<String, PublicKey>,
) -> Result<EnvelopeTrust, PolicyError> {
    let mut trust = EnvelopeTrust::default();
    for entry in document.publickeys.values() {
        let is_kms = KMS_SCHEMES.iter().any(|s| entry.keyid.starts_with(s));
        let embedded = if entry.key.is_empty() && is_kms {
            None
        } else {
            Some(embedded_key(&entry.keyid, &entry.key)?)
        };
        let key = match (is_kms, embedded, kms_keys.get(&entry.keyid)) {
            // A KMS key id is the KMS URI; the key that verifies is the operator's copy of its
            // public half or, failing that, the one embedded in the policy.
            (true, Some(embedded), Some(supplied)) => {
                if embedded.spki_der() != supplied.spki_der() {
                    return Err(PolicyError::KmsKeyMismatch(entry.keyid.clone()));
                }
                embedded
            }
            (true, Some(embedded), None) => embedded,
            (true, None, Some(supplied)) => supplied.clone(),
            (true, None, None) => return Err(PolicyError::UnresolvedKms(entry.keyid.clone())),
            (false, Some(embedded), _) => {
                let computed = embedded.keyid();
                if computed.0 != entry.keyid {
                    return Err(PolicyError::KeyIdMismatch {
                        declared: entry.keyid.clone(),
                        computed: computed.0,
                    });
                }
                embedded
            }
            (false, None, _) => return Err(PolicyError::UnresolvedKms(entry.keyid.clone())),
        };
        trust.add_key(KeyId(entry.keyid.clone()), key);
    }
    Ok(trust)
}

fn embedded_key(keyid: &str, key: &str) -> Result<PublicKey, PolicyError> {
    let key_error = |source| PolicyError::PublicKey {
        keyid: keyid.to_string(),
        source,
    };
    let pem = decode_base64(key).map_err(|_| key_error(KeyError::NoPem))?;
    PublicKey::from_pem(&pem).map_err(key_error)
}

/// Parses an RFC 3339 time; `None` when it is not one.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}
