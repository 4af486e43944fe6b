//! Public keys as witness reads them, their witness key ids, and raw signature checks.
//!
//! The key id is SHA-256 over the exact PEM text Go's encoder writes for the key's PKIX
//! SubjectPublicKeyInfo: 64-column lines, LF endings, a trailing newline. Keys are re-encoded
//! before hashing, so an input in PKCS#1 form or with a compressed EC point gets the id witness
//! computes for it.

use std::fmt;

use der::{Decode as _, Encode as _};
use signature::hazmat::PrehashVerifier as _;
use signature::Verifier as _;
use spki::{DecodePublicKey as _, EncodePublicKey as _, SubjectPublicKeyInfoRef};

use crate::encoding::{encode_base64, sha256_hex};

/// A witness key id: lowercase hex SHA-256 of the key's PEM, or a KMS URI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No PEM block in the input (witness rejects raw DER too).
    #[error("no PEM block found")]
    NoPem,
    /// The PEM armour is broken.
    #[error("malformed PEM block")]
    Pem(#[source] der::pem::Error),
    /// A private key was given where a public key belongs.
    #[error("a private key was given where a public key is expected")]
    PrivateKey,
    /// The DER is not a public key of a supported type.
    #[error("unsupported or malformed public key")]
    Unsupported,
}

/// A public key of one of the types witness verifies with.
#[derive(Clone)]
pub enum PublicKey {
    /// Ed25519 (pure, over the PAE).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// ECDSA P-256, SHA-256, DER signature.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA P-384, SHA-256 (witness's default hash for every curve), DER signature.
    P384(p384::ecdsa::VerifyingKey),
    /// ECDSA P-521, SHA-256, DER signature.
    P521(p521::ecdsa::VerifyingKey),
    /// RSA: PSS with any salt length, then PKCS#1 v1.5, both over SHA-256.
    Rsa(rsa::PublicKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.algorithm(), self.keyid())
    }
}

impl PublicKey {
    /// Parses the first PEM block of `text` by content: SPKI, PKCS#1 RSA.
    ///
    /// A certificate is refused here: witness loads a certificate in a `publickeys` entry
    /// but can never verify anything with it, so using its key would accept what witness
    /// rejects.
    ///
    /// # Errors
    /// No PEM, a private key, a certificate, or an unsupported key.
    pub fn from_pem(text: &[u8]) -> Result<Self, KeyError> {
        let (label, der) = first_pem_block(text)?;
        if label.contains("PRIVATE KEY") {
            return Err(KeyError::PrivateKey);
        }
        Self::from_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo, or a PKCS#1 RSAPublicKey.
    ///
    /// # Errors
    /// Neither form, or a key type witness does not verify with.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(spki) = SubjectPublicKeyInfoRef::from_der(der) {
            return Self::from_spki(&spki);
        }
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        rsa::PublicKey::from_pkcs1_der(der)
            .map(Self::Rsa)
            .map_err(|_| KeyError::Unsupported)
    }

    /// Builds a key from a parsed SubjectPublicKeyInfo (also used for certificate keys).
    ///
    /// # Errors
    /// A key type witness does not verify with, or malformed key bits.
    pub fn from_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<Self, KeyError> {
        let der = spki.to_der().map_err(|_| KeyError::Unsupported)?;
        let oid = spki.algorithm.oid;
        let key = if oid == const_oid::db::rfc8410::ID_ED_25519 {
            ed25519_dalek::VerifyingKey::from_public_key_der(&der)
                .map(Self::Ed25519)
                .ok()
        } else if oid == const_oid::db::rfc5912::ID_EC_PUBLIC_KEY {
            p256::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map(Self::P256)
                .or_else(|_| p384::ecdsa::VerifyingKey::from_public_key_der(&der).map(Self::P384))
                .or_else(|_| p521::ecdsa::VerifyingKey::from_public_key_der(&der).map(Self::P521))
                .ok()
        } else if oid == const_oid::db::rfc5912::RSA_ENCRYPTION {
            rsa::PublicKey::from_public_key_der(&der)
                .map(Self::Rsa)
                .ok()
        } else {
            None
        };
        key.ok_or(KeyError::Unsupported)
    }

    /// The algorithm name, for messages.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "ed25519",
            Self::P256(_) => "ecdsa-p256",
            Self::P384(_) => "ecdsa-p384",
            Self::P521(_) => "ecdsa-p521",
            Self::Rsa(_) => "rsa",
        }
    }

    /// The canonical SubjectPublicKeyInfo DER (uncompressed EC points, RSA with NULL params).
    pub fn spki_der(&self) -> Vec<u8> {
        let doc = match self {
            Self::Ed25519(k) => k.to_public_key_der(),
            Self::P256(k) => k.to_public_key_der(),
            Self::P384(k) => k.to_public_key_der(),
            Self::P521(k) => k.to_public_key_der(),
            Self::Rsa(k) => k.to_public_key_der(),
        };
        // Encoding a key we already hold in memory cannot fail for these types; an empty id
        // would match nothing if it ever did.
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// The witness key id of this key.
    pub fn keyid(&self) -> KeyId {
        keyid_of_spki_der(&self.spki_der())
    }

    /// Checks `sig` over `message` as witness does for this key type.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        use sha2::Digest as _;
        match self {
            // ring is several times faster than the pure-Rust curves for these three; P-521
            // (which ring lacks) and RSA (any PSS salt length) stay on RustCrypto.
            Self::Ed25519(k) => ring_verify(&ring::signature::ED25519, k.as_bytes(), message, sig),
            Self::P256(_) => {
                self.ring_ecdsa(&ring::signature::ECDSA_P256_SHA256_ASN1, message, sig)
            }
            Self::P384(_) => {
                self.ring_ecdsa(&ring::signature::ECDSA_P384_SHA256_ASN1, message, sig)
            }
            Self::P521(k) => p521::ecdsa::DerSignature::try_from(sig)
                .is_ok_and(|s| k.verify_prehash(&sha2::Sha256::digest(message), &s).is_ok()),
            Self::Rsa(k) => verify_rsa(k, message, sig),
        }
    }
}

impl PublicKey {
    /// ECDSA over SHA-256 with a DER signature, checked by ring with the key's SEC1 point.
    fn ring_ecdsa(
        &self,
        algorithm: &'static ring::signature::EcdsaVerificationAlgorithm,
        message: &[u8],
        sig: &[u8],
    ) -> bool {
        let der = self.spki_der();
        SubjectPublicKeyInfoRef::from_der(&der)
            .ok()
            .and_then(|spki| spki.subject_public_key.as_bytes().map(<[u8]>::to_vec))
            .is_some_and(|point| ring_verify(algorithm, &point, message, sig))
    }
}

fn ring_verify(
    algorithm: &'static dyn ring::signature::VerificationAlgorithm,
    public_key: &[u8],
    message: &[u8],
    sig: &[u8],
) -> bool {
    ring::signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(message, sig)
        .is_ok()
}

fn verify_rsa(key: &rsa::PublicKey, message: &[u8], sig: &[u8]) -> bool {
    let pss = rsa::pss::VerifyingKey::<sha2::Sha256>::new_with_auto_salt_len(key.clone());
    if rsa::pss::Signature::try_from(sig).is_ok_and(|s| pss.verify(message, &s).is_ok()) {
        return true;
    }
    // witness falls back to PKCS#1 v1.5 for signers (AWS KMS) that cannot do PSS.
    let pkcs1 = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone());
    rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|s| pkcs1.verify(message, &s).is_ok())
}

/// The witness key id of a DER SubjectPublicKeyInfo: SHA-256 of Go's PEM encoding of it.
pub fn keyid_of_spki_der(der: &[u8]) -> KeyId {
    KeyId(sha256_hex(go_pem("PUBLIC KEY", der).as_bytes()))
}

/// PEM exactly as Go's `pem.Encode` writes it for a block without headers.
fn go_pem(label: &str, der: &[u8]) -> String {
    let body = encode_base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Finds the first PEM block in `text` and returns its label and decoded body.
pub(crate) fn first_pem_block(text: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    let text = String::from_utf8_lossy(text);
    let start = text.find("-----BEGIN ").ok_or(KeyError::NoPem)?;
    let after = text.get(start + 11..).ok_or(KeyError::NoPem)?;
    let label_end = after.find("-----").ok_or(KeyError::NoPem)?;
    let label = after.get(..label_end).ok_or(KeyError::NoPem)?.to_string();
    let end_marker = format!("-----END {label}-----");
    let end = after.find(&end_marker).ok_or(KeyError::NoPem)?;
    let block = text
        .get(start..start + 11 + end + end_marker.len())
        .ok_or(KeyError::NoPem)?;
    let (_, der) = der::pem::decode_vec(block.as_bytes()).map_err(KeyError::Pem)?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITNESS_TEST_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAf29oPP8UghByG852uBdOxrJKKn7MM5hTbP9esgOZ/k0=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn keyid_matches_the_witness_test_vector() {
        let key = PublicKey::from_pem(WITNESS_TEST_KEY.as_bytes()).unwrap();
        assert_eq!(
            key.keyid().0,
            "ae2dcc989ea9c109a36e8eba5c4bc16d8fafcfe8e1a614164670d50aedacd647"
        );
    }

    #[test]
    fn go_pem_wraps_at_64_columns() {
        let pem = go_pem("X", &[0u8; 60]);
        let lines: Vec<_> = pem.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].len(), 64);
        assert!(pem.ends_with("-----END X-----\n"));
    }

    #[test]
    fn refuses_private_keys_and_garbage() {
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(private.as_bytes()),
            Err(KeyError::PrivateKey)
        ));
        assert!(matches!(
            PublicKey::from_pem(b"nothing here"),
            Err(KeyError::NoPem)
        ));
        let junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(PublicKey::from_pem(junk.as_bytes()).is_err());
    }
}
