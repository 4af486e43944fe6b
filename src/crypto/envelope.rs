//! Checking the signatures of a DSSE envelope against a set of trusted keys.
//!
//! This follows go-witness's envelope verification: every signature is tried against every
//! trusted key, the signature's `keyid` is only a hint, and the result lists each signer that
//! verified. Which signer may sign what is the policy's business, not this module's.

use std::collections::BTreeMap;

use crate::dsse::DecodedEnvelope;
use crate::encoding::decode_base64;

use super::keys::{KeyId, PublicKey};

/// Keys an envelope may be verified with. Several key ids may name one key (a KMS URI and
/// the key's hash); each distinct key is checked once per signature.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeTrust {
    keys: Vec<(PublicKey, Vec<KeyId>)>,
}

impl EnvelopeTrust {
    /// Adds a trusted key under `keyid`.
    pub fn add_key(&mut self, keyid: KeyId, key: PublicKey) {
        let der = key.spki_der();
        match self.keys.iter_mut().find(|(k, _)| k.spki_der() == der) {
            Some((_, ids)) if !ids.contains(&keyid) => ids.push(keyid),
            Some(_) => {}
            None => self.keys.push((key, vec![keyid])),
        }
    }

    /// Whether no key is trusted at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A signer whose signature over the envelope verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VerifiedSigner {
    /// A trusted bare key.
    Key {
        /// The key id under which the key is trusted.
        keyid: KeyId,
    },
}

impl VerifiedSigner {
    /// The key id to compare with functionaries.
    pub fn keyid(&self) -> &KeyId {
        match self {
            Self::Key { keyid } => keyid,
        }
    }
}

/// The outcome of checking every signature of an envelope.
#[derive(Debug, Clone, Default)]
pub struct SignatureCheck {
    /// Signers that verified, without duplicates.
    pub verified: Vec<VerifiedSigner>,
    /// One line per signature that verified with nothing, saying why.
    pub failures: Vec<String>,
}

/// Checks each signature of `envelope` with each trusted key.
pub fn verify_envelope(envelope: &DecodedEnvelope, trust: &EnvelopeTrust) -> SignatureCheck {
    let pae = envelope.pae();
    let mut check = SignatureCheck::default();
    let mut seen = BTreeMap::new();

    for (index, signature) in envelope.envelope.signatures.iter().enumerate() {
        let Ok(sig) = decode_base64(&signature.sig) else {
            check
                .failures
                .push(format!("signature {index}: sig is not base64"));
            continue;
        };
        if !signature.certificate.is_empty() {
            // Limitation: certificate signers are not verified yet; go-witness also skips a
            // signature whose certificate it cannot use, so the bare-key path is not tried.
            check.failures.push(format!(
                "signature {index}: certificate signers need policy roots, which are not supported yet"
            ));
            continue;
        }

        // The producer's keyid hint only orders the attempts; it never decides trust.
        let mut order: Vec<&(PublicKey, Vec<KeyId>)> = trust.keys.iter().collect();
        order.sort_by_key(|(_, ids)| !ids.iter().any(|id| id.0 == signature.keyid));

        let mut matched = false;
        for (key, ids) in order {
            if key.verify(&pae, &sig) {
                matched = true;
                for id in ids {
                    if seen.insert(id.clone(), ()).is_none() {
                        check
                            .verified
                            .push(VerifiedSigner::Key { keyid: id.clone() });
                    }
                }
            }
        }
        if !matched {
            let hint = if signature.keyid.is_empty() {
                String::new()
            } else {
                format!(" (keyid {})", signature.keyid)
            };
            check.failures.push(format!(
                "signature {index}{hint} does not verify with any trusted key"
            ));
        }
    }
    check
}
