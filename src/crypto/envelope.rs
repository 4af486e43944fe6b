//! Checking the signatures of a DSSE envelope against a set of trusted keys, roots and timestamp
//! authorities.
//!
//! This follows go-witness's `Envelope.Verify` (evidence-format §1.8). Per signature:
//! 1. A signature with a `certificate` whose PEM cannot be read is skipped entirely, bare keys
//!    included (a witness quirk kept on purpose: accepting it would pass what witness fails).
//! 2. A certificate signer counts when the signature verifies with the leaf's key and the leaf
//!    chains through the signature's intermediates and the trusted intermediates to a trusted
//!    root at the `genTime` of each timestamp that one of the trusted authorities vouches for; a
//!    certificate signature without a valid timestamp counts nothing. With no authority trusted
//!    it counts nothing either (cilock's rule), unless checking the chain at the verification
//!    time has been allowed explicitly (witness's rule).
//! 3. Every trusted bare key is tried too; timestamps do not matter for them.
//!
//! The signature's `keyid` is only a hint that orders the bare-key attempts. Which signer may
//! sign what is the policy's business, not this module's.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::keys::{KeyId, PublicKey};
use super::timestamp::{verify_timestamp, TimestampAuthority};
use super::x509::{format_time, verify_chain, CertIdentity, Certificate, ChainUsage};
use crate::display_chain;
use crate::dsse::{DecodedEnvelope, Signature};
use crate::encoding::decode_base64;

/// Keys, roots and timestamp authorities an envelope may be verified with. Several key ids may
/// name one key (a KMS URI and the key's hash); each distinct key is checked once per signature.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeTrust {
    keys: Vec<(PublicKey, Vec<KeyId>)>,
    roots: Vec<(String, Certificate)>,
    intermediates: Vec<Certificate>,
    timestamp_authorities: Vec<TimestampAuthority>,
    untimestamped_certificates: bool,
}

impl EnvelopeTrust {
    /// Whether a certificate signer may count without a trusted timestamp when no timestamp
    /// authority is trusted, its chain then checked at the verification time (witness's
    /// behaviour). Off by default, as in cilock: without a trusted time, nothing says when the
    /// signature was made, and a certificate valid today may not have been when it signed.
    pub fn allow_untimestamped_certificates(&mut self, allow: bool) {
        self.untimestamped_certificates = allow;
    }

    /// Adds a trusted key under `keyid`.
    pub fn add_key(&mut self, keyid: KeyId, key: PublicKey) {
        let der = key.spki_der();
        match self.keys.iter_mut().find(|(k, _)| k.spki_der() == der) {
            Some((_, ids)) if !ids.contains(&keyid) => ids.push(keyid),
            Some(_) => {}
            None => self.keys.push((key, vec![keyid])),
        }
    }

    /// Trusts `certificate` as the root named `id` (it need not be self-signed). Its
    /// `intermediates` join the pool of untrusted intermediates every chain may use.
    pub fn add_root(
        &mut self,
        id: impl Into<String>,
        certificate: Certificate,
        intermediates: Vec<Certificate>,
    ) {
        self.roots.push((id.into(), certificate));
        self.intermediates.extend(intermediates);
    }

    /// Adds an untrusted intermediate that chains may use.
    pub fn add_intermediate(&mut self, certificate: Certificate) {
        self.intermediates.push(certificate);
    }

    /// Trusts a timestamp authority; from then on certificate signers need a timestamp.
    pub fn add_timestamp_authority(&mut self, authority: TimestampAuthority) {
        self.timestamp_authorities.push(authority);
    }

    /// Whether no key and no root is trusted at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.roots.is_empty()
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
    /// A certificate that chains to a trusted root at `trusted_time`.
    Certificate {
        /// The witness key id of the leaf's public key.
        keyid: KeyId,
        /// The leaf's identity, for certificate constraints.
        identity: Box<CertIdentity>,
        /// When the chain was checked: a timestamp's `genTime`, or the verification time.
        #[serde(serialize_with = "serialize_time")]
        trusted_time: OffsetDateTime,
        /// The authority whose timestamp gave `trusted_time`; `None` for the verification time.
        timestamp_authority: Option<String>,
        /// Ids of the trusted roots the leaf chains to at `trusted_time`.
        roots: Vec<String>,
        /// The leaf's `notAfter`: a result that relied on a chain checked at the verification
        /// time (no timestamp authority) holds only until then.
        #[serde(serialize_with = "serialize_time")]
        valid_until: OffsetDateTime,
    },
}

impl VerifiedSigner {
    /// The key id to compare with functionaries.
    pub fn keyid(&self) -> &KeyId {
        match self {
            Self::Key { keyid } | Self::Certificate { keyid, .. } => keyid,
        }
    }
}

fn serialize_time<S: serde::Serializer>(time: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*time))
}

/// The outcome of checking every signature of an envelope.
#[derive(Debug, Clone, Default)]
pub struct SignatureCheck {
    /// Signers that verified, without duplicates.
    pub verified: Vec<VerifiedSigner>,
    /// One line per signature that verified with nothing, saying why.
    pub failures: Vec<String>,
}

impl SignatureCheck {
    fn add(&mut self, signer: VerifiedSigner) {
        if !self.verified.contains(&signer) {
            self.verified.push(signer);
        }
    }
}

/// Checks each signature of `envelope` against `trust`. `now` is the verification time: the
/// time certificate chains are checked at when no timestamp authority is trusted.
pub fn verify_envelope(
    envelope: &DecodedEnvelope,
    trust: &EnvelopeTrust,
    now: OffsetDateTime,
) -> SignatureCheck {
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
        let hint = if signature.keyid.is_empty() {
            String::new()
        } else {
            format!(" (keyid {})", signature.keyid)
        };

        // 1-2. The certificate path.
        let mut certificate_failure = None;
        let mut matched = false;
        if !signature.certificate.is_empty() {
            let leaf = match Certificate::from_base64_pem(&signature.certificate) {
                Ok(leaf) => leaf,
                Err(e) => {
                    check.failures.push(format!(
                        "signature {index}{hint}: its certificate cannot be read ({}), so witness skips the signature",
                        display_chain(&e)
                    ));
                    continue;
                }
            };
            match verify_certificate_signer(&leaf, signature, &sig, &pae, trust, now) {
                Ok(signers) => {
                    matched = true;
                    signers.into_iter().for_each(|s| check.add(s));
                }
                Err(reason) => certificate_failure = Some(reason),
            }
        }

        // 3. Bare keys. The keyid hint only orders the attempts; it never decides trust. Keys
        // are distinct (ids naming one key are grouped), and two distinct keys cannot both
        // verify one signature, so the first key that verifies is the only one.
        let mut order: Vec<&(PublicKey, Vec<KeyId>)> = trust.keys.iter().collect();
        order.sort_by_key(|(_, ids)| !ids.iter().any(|id| id.0 == signature.keyid));
        if let Some((_, ids)) = order.into_iter().find(|(key, _)| key.verify(&pae, &sig)) {
            matched = true;
            for id in ids {
                if seen.insert(id.clone(), ()).is_none() {
                    check.add(VerifiedSigner::Key { keyid: id.clone() });
                }
            }
        }

        if !matched {
            check.failures.push(match certificate_failure {
                Some(reason) => format!("signature {index}{hint}: certificate signer: {reason}"),
                None => format!("signature {index}{hint} does not verify with any trusted key"),
            });
        }
    }
    check
}

/// Verifies a certificate signature: its key, its timestamps when authorities are trusted, and
/// its chain at each trusted time. Returns one signer per trusted time that holds, or why none
/// does.
fn verify_certificate_signer(
    leaf: &Certificate,
    signature: &Signature,
    sig: &[u8],
    pae: &[u8],
    trust: &EnvelopeTrust,
    now: OffsetDateTime,
) -> Result<Vec<VerifiedSigner>, String> {
    if trust.roots.is_empty() {
        return Err("no root is trusted for certificate signers".into());
    }
    let key = leaf.public_key().map_err(|e| {
        format!(
            "the certificate's key cannot be used: {}",
            display_chain(&e)
        )
    })?;
    let times = trusted_times(signature, sig, trust, now)?;
    if !key.verify(pae, sig) {
        return Err("the signature does not verify with the certificate's key".into());
    }

    // Unreadable intermediates of the signature are dropped silently, as witness does.
    let own: Vec<Certificate> = signature
        .intermediates
        .iter()
        .filter_map(|i| Certificate::from_base64_pem(i).ok())
        .collect();
    let intermediates: Vec<&Certificate> = own.iter().chain(&trust.intermediates).collect();

    let mut signers = Vec::new();
    let mut failures = Vec::new();
    for (time, authority) in times {
        let roots: Vec<String> = trust
            .roots
            .iter()
            .filter(|(_, root)| {
                verify_chain(leaf, &intermediates, &[root], time, ChainUsage::Any).is_ok()
            })
            .map(|(id, _)| id.clone())
            .collect();
        if roots.is_empty() {
            let anchors: Vec<&Certificate> = trust.roots.iter().map(|(_, c)| c).collect();
            let reason = match verify_chain(leaf, &intermediates, &anchors, time, ChainUsage::Any) {
                Err(e) => display_chain(&e),
                Ok(()) => "certificate does not chain to a single trusted root".into(),
            };
            failures.push(format!("at {}: {reason}", format_time(time)));
            continue;
        }
        signers.push(VerifiedSigner::Certificate {
            keyid: key.keyid(),
            identity: Box::new(leaf.identity().clone()),
            trusted_time: time,
            timestamp_authority: authority,
            roots,
            valid_until: leaf.not_after(),
        });
    }
    if signers.is_empty() {
        Err(failures.join("; "))
    } else {
        Ok(signers)
    }
}

/// The times a certificate chain is checked at: `now` without timestamp authorities, else the
/// `genTime` of every (authority, timestamp) pair that verifies, with the authority's name.
fn trusted_times(
    signature: &Signature,
    sig: &[u8],
    trust: &EnvelopeTrust,
    now: OffsetDateTime,
) -> Result<Vec<(OffsetDateTime, Option<String>)>, String> {
    if trust.timestamp_authorities.is_empty() {
        if trust.untimestamped_certificates {
            return Ok(vec![(now, None)]);
        }
        return Err(
            "no timestamp authority is trusted, so the signature has no trusted time (checking certificates at verification time is not enabled)"
                .into(),
        );
    }
    if signature.timestamps.is_empty() {
        return Err(
            "it carries no timestamp, and timestamp authorities are configured, so it cannot count"
                .into(),
        );
    }
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for authority in &trust.timestamp_authorities {
        for (i, timestamp) in signature.timestamps.iter().enumerate() {
            let Ok(token) = decode_base64(&timestamp.data) else {
                failures.push(format!("timestamp {i} is not base64"));
                continue;
            };
            match verify_timestamp(&token, sig, authority, now) {
                Ok(time) => times.push((time, Some(authority.name().to_string()))),
                Err(e) => failures.push(format!(
                    "timestamp {i} against authority {:?}: {}",
                    authority.name(),
                    display_chain(&e)
                )),
            }
        }
    }
    if times.is_empty() {
        return Err(format!("no timestamp verifies: {}", failures.join("; ")));
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsse::DecodedEnvelope;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors");

    fn d09() -> DecodedEnvelope {
        let bytes = std::fs::read(format!(
            "{VECTORS}/d09-pass-x509-timestamped/attestations/compile.json"
        ))
        .unwrap();
        DecodedEnvelope::from_json(&bytes).unwrap()
    }

    fn cert(path: &str) -> Certificate {
        Certificate::from_pem(&std::fs::read(format!("{VECTORS}/_material/{path}")).unwrap())
            .unwrap()
    }

    fn trust(tsa: bool) -> EnvelopeTrust {
        let mut trust = EnvelopeTrust::default();
        trust.add_root(
            "acme-root",
            cert("pki/dev-root-ca.crt.pem"),
            vec![cert("pki/dev-issuing-ca.crt.pem")],
        );
        if tsa {
            trust.add_timestamp_authority(TimestampAuthority::new(
                "acme-tsa",
                vec![cert("tsa/dev-tsa-root.pem")],
            ));
        }
        trust
    }

    fn at(text: &str) -> OffsetDateTime {
        crate::policy::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_timestamped_certificate_signer_verifies_at_the_gen_time() {
        let check = verify_envelope(&d09(), &trust(true), at("2040-01-01T00:00:00Z"));
        assert!(check.failures.is_empty(), "{:?}", check.failures);
        let [VerifiedSigner::Certificate {
            keyid,
            identity,
            trusted_time,
            timestamp_authority,
            roots,
            ..
        }] = check.verified.as_slice()
        else {
            panic!("one certificate signer expected: {:?}", check.verified);
        };
        assert_eq!(
            keyid.0,
            "8705730f8e164f4430b151f5bad7b208bed1ac0769847f8871139bf7152d077c"
        );
        assert_eq!(identity.common_name, "widget-ci");
        assert_eq!(format_time(*trusted_time), "2026-12-04T15:58:55Z");
        assert_eq!(timestamp_authority.as_deref(), Some("acme-tsa"));
        assert_eq!(roots, &["acme-root"]);
    }

    #[test]
    fn without_authorities_a_certificate_signer_counts_only_when_allowed() {
        let check = verify_envelope(&d09(), &trust(false), at("2027-01-01T00:00:00Z"));
        assert!(check.verified.is_empty());
        assert!(
            check.failures[0].contains("no trusted time"),
            "{:?}",
            check.failures
        );
    }

    #[test]
    fn when_allowed_without_authorities_the_chain_is_checked_at_now() {
        let mut trust = trust(false);
        trust.allow_untimestamped_certificates(true);
        let check = verify_envelope(&d09(), &trust, at("2027-01-01T00:00:00Z"));
        assert_eq!(check.verified.len(), 1, "{:?}", check.failures);

        let late = verify_envelope(&d09(), &trust, at("2040-01-01T00:00:00Z"));
        assert!(late.verified.is_empty());
        assert!(late.failures[0].contains("expired"), "{:?}", late.failures);
    }

    #[test]
    fn with_authorities_a_signature_without_timestamp_counts_nothing() {
        let mut envelope = d09();
        envelope.envelope.signatures[0].timestamps.clear();
        let check = verify_envelope(&envelope, &trust(true), at("2027-01-01T00:00:00Z"));
        assert!(check.verified.is_empty());
        assert!(
            check.failures[0].contains("carries no timestamp"),
            "{:?}",
            check.failures
        );
    }

    #[test]
    fn a_garbage_certificate_hides_the_signature_from_bare_keys() {
        let mut envelope = d09();
        envelope.envelope.signatures[0].certificate = crate::encoding::encode_base64(b"garbage");
        let leaf_key = cert("pki/dev-ci-leaf.crt.pem").public_key().unwrap();
        let mut trust = trust(false);
        trust.add_key(leaf_key.keyid(), leaf_key);
        let check = verify_envelope(&envelope, &trust, at("2027-01-01T00:00:00Z"));
        assert!(check.verified.is_empty());
        assert!(
            check.failures[0].contains("cannot be read"),
            "{:?}",
            check.failures
        );
    }

    #[test]
    fn a_bare_key_still_verifies_a_certificate_signature() {
        let leaf_key = cert("pki/dev-ci-leaf.crt.pem").public_key().unwrap();
        let mut trust = EnvelopeTrust::default();
        trust.add_key(leaf_key.keyid(), leaf_key.clone());
        let check = verify_envelope(&d09(), &trust, at("2027-01-01T00:00:00Z"));
        assert_eq!(
            check.verified,
            [VerifiedSigner::Key {
                keyid: leaf_key.keyid()
            }]
        );
    }

    #[test]
    fn a_wrong_root_fails_with_a_chain_reason() {
        let mut trust = EnvelopeTrust::default();
        trust.allow_untimestamped_certificates(true);
        trust.add_root("tsa-as-root", cert("tsa/dev-tsa-root.pem"), Vec::new());
        let check = verify_envelope(&d09(), &trust, at("2027-01-01T00:00:00Z"));
        assert!(check.verified.is_empty());
        assert!(
            check.failures[0].contains("does not chain to a trusted root"),
            "{:?}",
            check.failures
        );
    }
}
