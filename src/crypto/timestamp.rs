//! RFC 3161 timestamps on signatures, verified as go-witness v0.12 verifies them.
//!
//! A token is the DER CMS `ContentInfo` (SignedData) a TSA returns, without the status wrapper.
//! It proves that a TSA saw the SHA-256 of a signature's raw bytes at its `genTime`, which then
//! serves as the trusted time for the signer's certificate chain.
//!
//! The checks, in order:
//! 1. the token parses, its content is a TSTInfo, and the message imprint's hash algorithm is one
//!    witness knows;
//! 2. the imprint equals SHA-256 of the signature bytes (whatever algorithm the token names);
//! 3. the token has exactly one signer, whose certificate is embedded;
//! 4. the `messageDigest` signed attribute is the hash of the TSTInfo, and a `signingTime`
//!    attribute, when present, lies inside the signer certificate's validity;
//! 5. the CMS signature over the signed attributes verifies with the signer certificate;
//! 6. the signer chains, through the embedded certificates, to the authority's certificates
//!    (each one an anchor) at `signingTime`, or at the verification time when there is none;
//! 7. the signer's extended key usage is exactly one critical `timeStamping`, and the chain also
//!    holds at `genTime` with that usage allowed by every certificate that restricts usage.
//!
//! Not supported (the token is refused): BER encodings, SHA-1 or RSA-PSS CMS signatures.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode as _, Encode as _, Reader as _, SliceReader, Tag, TagNumber, Tagged as _};
use sha2::Digest as _;
use signature::hazmat::PrehashVerifier as _;
use signature::Verifier as _;
use time::{Date, Month, OffsetDateTime};

use super::keys::PublicKey;
use super::x509::ID_KP_TIME_STAMPING;
use super::x509::{format_time, verify_chain, Certificate, ChainError, ChainUsage, X509Error};

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");

const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const CURVE_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const CURVE_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const CURVE_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A timestamp authority the verifier trusts: a name and its certificates, every one of which is
/// a trust anchor (go-witness throws the certificate and its intermediates into one root pool).
#[derive(Debug, Clone)]
pub struct TimestampAuthority {
    name: String,
    anchors: Vec<Certificate>,
}

impl TimestampAuthority {
    /// An authority trusted through `anchors`.
    pub fn new(name: impl Into<String>, anchors: Vec<Certificate>) -> Self {
        Self {
            name: name.into(),
            anchors,
        }
    }

    /// The authority's name (its policy id, or the file it came from).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a timestamp token does not vouch for a signature.
#[derive(Debug, thiserror::Error)]
pub enum TimestampError {
    /// The bytes are not DER of the expected CMS structures.
    #[error("timestamp token is not DER CMS signed data")]
    Malformed(#[from] der::Error),
    /// The token's structure differs from an RFC 3161 token.
    #[error("timestamp token has no {0}")]
    Missing(&'static str),
    /// The message imprint names a hash algorithm witness does not know.
    #[error("timestamp message imprint uses unknown hash algorithm {0}")]
    ImprintAlgorithm(ObjectIdentifier),
    /// The imprint is not SHA-256 of the signature: the token is over other bytes.
    #[error("timestamp is over other bytes than this signature")]
    ImprintMismatch,
    /// `genTime` is not a DER GeneralizedTime.
    #[error("timestamp genTime is malformed")]
    GenTime,
    /// go-witness v0.12 requires exactly one signer.
    #[error("timestamp token has {0} signers, exactly one is required")]
    SignerCount(usize),
    /// The signer's certificate is not embedded in the token.
    #[error("timestamp signer certificate is not embedded in the token")]
    SignerCertificateMissing,
    /// An embedded certificate cannot be read.
    #[error("timestamp token embeds an unreadable certificate")]
    Certificate(#[source] X509Error),
    /// The CMS digest algorithm is not SHA-256, SHA-384 or SHA-512.
    #[error("timestamp digest algorithm {0} is not supported")]
    DigestAlgorithm(ObjectIdentifier),
    /// The CMS signature algorithm is not supported or does not fit the signer's key.
    #[error("timestamp signature algorithm {0} is not supported for the signer's key")]
    SignatureAlgorithm(ObjectIdentifier),
    /// The `messageDigest` attribute is not the hash of the TSTInfo.
    #[error("timestamp message digest attribute does not match its content")]
    MessageDigest,
    /// `signingTime` lies outside the signer certificate's validity.
    #[error("timestamp signing time {} is outside the signer certificate's validity", format_time(*.0))]
    SigningTime(OffsetDateTime),
    /// The CMS signature does not verify.
    #[error("timestamp signature does not verify with its signer certificate")]
    Signature,
    /// The signer certificate's extended key usage is not a sole, critical `timeStamping`.
    #[error("timestamp signer certificate must carry exactly one extended key usage, timeStamping, marked critical")]
    SignerUsage,
    /// The signer does not chain to the authority.
    #[error("timestamp signer does not chain to timestamp authority {authority:?}")]
    Chain {
        /// The authority.
        authority: String,
        /// The chain failure.
        #[source]
        source: ChainError,
    },
}

/// Verifies `token` as a timestamp by `authority` over the raw `signature` bytes and returns
/// its `genTime`. `now` is the verification time, used for tokens without a `signingTime`.
///
/// # Errors
/// See [`TimestampError`]; the module documentation lists the checks.
pub fn verify_timestamp(
    token: &[u8],
    signature: &[u8],
    authority: &TimestampAuthority,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, TimestampError> {
    // 1-2. Content and message imprint.
    let token = Token::parse(token)?;
    let info = TstInfo::parse(token.content)?;
    if ![SHA1, SHA256, SHA384, SHA512].contains(&info.imprint_algorithm) {
        return Err(TimestampError::ImprintAlgorithm(info.imprint_algorithm));
    }
    if info.hashed_message != sha2::Sha256::digest(signature).as_slice() {
        return Err(TimestampError::ImprintMismatch);
    }

    // 3. One signer, embedded.
    let [signer] = token.signers.as_slice() else {
        return Err(TimestampError::SignerCount(token.signers.len()));
    };
    let cert = token
        .certificates
        .iter()
        .find(|c| signer.identifies(c))
        .ok_or(TimestampError::SignerCertificateMissing)?;

    // 4-5. Signed attributes and the CMS signature.
    let digest = Digest::from_oid(&signer.digest_algorithm)?;
    let (signed, signing_time) = match signer.signed_attrs {
        Some(attrs) => {
            let attrs = SignedAttributes::parse(attrs)?;
            if attrs.message_digest != digest.hash(token.content) {
                return Err(TimestampError::MessageDigest);
            }
            if let Some(t) = attrs.signing_time {
                if !cert.is_valid_at(t) {
                    return Err(TimestampError::SigningTime(t));
                }
            }
            (attrs.der, attrs.signing_time)
        }
        None => (token.content.to_vec(), None),
    };
    verify_cms_signature(
        cert,
        digest,
        &signer.signature_algorithm,
        &signed,
        signer.signature,
    )?;

    // 6. The chain at signingTime, or now.
    let intermediates: Vec<&Certificate> = token.certificates.iter().collect();
    let anchors: Vec<&Certificate> = authority.anchors.iter().collect();
    let chain_error = |source| TimestampError::Chain {
        authority: authority.name.clone(),
        source,
    };
    verify_chain(
        cert,
        &intermediates,
        &anchors,
        signing_time.unwrap_or(now),
        ChainUsage::Any,
    )
    .map_err(chain_error)?;

    // 7. go-witness v0.12: a dedicated time stamping certificate, valid for it at genTime.
    match cert.extended_key_usage() {
        Ok(Some((true, oids)))
            if oids.len() == 1 && oids.iter().all(|o| o == ID_KP_TIME_STAMPING) => {}
        _ => return Err(TimestampError::SignerUsage),
    }
    verify_chain(
        cert,
        &intermediates,
        &anchors,
        info.gen_time,
        ChainUsage::TimeStamping,
    )
    .map_err(chain_error)?;
    Ok(info.gen_time)
}

/// The parts of a TimeStampToken the checks use.
struct Token<'a> {
    /// DER of the TSTInfo (the eContent octets).
    content: &'a [u8],
    certificates: Vec<Certificate>,
    signers: Vec<SignerInfo<'a>>,
}

impl<'a> Token<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, TimestampError> {
        let content_info = AnyRef::from_der(der)?;
        let signed_data = content_info.sequence(|r: &mut SliceReader<'a>| {
            let kind: ObjectIdentifier = r.decode()?;
            if kind != SIGNED_DATA {
                return Err(TimestampError::Missing("signed data"));
            }
            let wrapper: AnyRef<'a> = r.decode()?;
            expect_tag(wrapper, context(0, true), "signed data")?;
            Ok(AnyRef::from_der(wrapper.value())?)
        })?;
        signed_data.sequence(Self::parse_signed_data)
    }

    fn parse_signed_data(r: &mut SliceReader<'a>) -> Result<Self, TimestampError> {
        let _version: AnyRef<'a> = r.decode()?;
        let digest_algorithms: AnyRef<'a> = r.decode()?;
        expect_tag(digest_algorithms, Tag::Set, "digest algorithms")?;

        let encapsulated: AnyRef<'a> = r.decode()?;
        let content = encapsulated.sequence(|r: &mut SliceReader<'a>| {
            let kind: ObjectIdentifier = r.decode()?;
            if kind != TST_INFO {
                return Err(TimestampError::Missing("TSTInfo content"));
            }
            let wrapper: AnyRef<'a> = r.decode()?;
            expect_tag(wrapper, context(0, true), "TSTInfo content")?;
            let octets = AnyRef::from_der(wrapper.value())?;
            expect_tag(octets, Tag::OctetString, "TSTInfo content")?;
            Ok(octets.value())
        })?;

        let mut certificates = Vec::new();
        let mut signers = None;
        while !r.is_finished() {
            let item: AnyRef<'a> = r.decode()?;
            if item.tag() == context(0, true) {
                certificates = parse_certificates(item.value())?;
            } else if item.tag() == context(1, true) {
                // Revocation information: witness does not consult it.
            } else if item.tag() == Tag::Set && signers.is_none() {
                signers = Some(parse_signer_infos(item.value())?);
            } else {
                return Err(TimestampError::Missing("well-formed signed data"));
            }
        }
        Ok(Self {
            content,
            certificates,
            signers: signers.ok_or(TimestampError::Missing("signer infos"))?,
        })
    }
}

fn parse_certificates(set: &[u8]) -> Result<Vec<Certificate>, TimestampError> {
    let mut r = SliceReader::new(set)?;
    let mut certificates = Vec::new();
    while !r.is_finished() {
        let der = r.tlv_bytes()?;
        certificates.push(Certificate::from_der(der).map_err(TimestampError::Certificate)?);
    }
    Ok(certificates)
}

fn parse_signer_infos(set: &[u8]) -> Result<Vec<SignerInfo<'_>>, TimestampError> {
    let mut r = SliceReader::new(set)?;
    let mut signers = Vec::new();
    while !r.is_finished() {
        let info: AnyRef<'_> = r.decode()?;
        signers.push(info.sequence(SignerInfo::parse)?);
    }
    Ok(signers)
}

/// How a SignerInfo names its certificate.
enum SignerId<'a> {
    /// Full DER of the issuer name and of the serial number INTEGER.
    IssuerAndSerial { issuer: &'a [u8], serial: &'a [u8] },
    /// The subject key identifier.
    KeyId(&'a [u8]),
}

struct SignerInfo<'a> {
    sid: SignerId<'a>,
    digest_algorithm: ObjectIdentifier,
    /// The content octets of the `[0]` signed attributes, if any.
    signed_attrs: Option<&'a [u8]>,
    signature_algorithm: ObjectIdentifier,
    signature: &'a [u8],
}

impl<'a> SignerInfo<'a> {
    fn parse(r: &mut SliceReader<'a>) -> Result<Self, TimestampError> {
        let _version: AnyRef<'a> = r.decode()?;
        let sid_any: AnyRef<'a> = r.decode()?;
        let sid = if sid_any.tag() == Tag::Sequence {
            let mut inner = SliceReader::new(sid_any.value())?;
            let issuer = inner.tlv_bytes()?;
            let serial = inner.tlv_bytes()?;
            inner.finish()?;
            SignerId::IssuerAndSerial { issuer, serial }
        } else if sid_any.tag() == context(0, false) {
            SignerId::KeyId(sid_any.value())
        } else {
            return Err(TimestampError::Missing("signer identifier"));
        };
        let digest_algorithm = algorithm(r.decode()?)?;

        let mut next: AnyRef<'a> = r.decode()?;
        let mut signed_attrs = None;
        if next.tag() == context(0, true) {
            signed_attrs = Some(next.value());
            next = r.decode()?;
        }
        let signature_algorithm = algorithm(next)?;
        let signature: AnyRef<'a> = r.decode()?;
        expect_tag(signature, Tag::OctetString, "signature")?;
        while !r.is_finished() {
            let _unsigned: AnyRef<'a> = r.decode()?;
        }
        Ok(Self {
            sid,
            digest_algorithm,
            signed_attrs,
            signature_algorithm,
            signature: signature.value(),
        })
    }

    fn identifies(&self, cert: &Certificate) -> bool {
        let tbs = cert.inner().tbs_certificate();
        match self.sid {
            SignerId::IssuerAndSerial { issuer, serial } => {
                tbs.issuer().to_der().is_ok_and(|d| d == issuer)
                    && tbs.serial_number().to_der().is_ok_and(|d| d == serial)
            }
            SignerId::KeyId(id) => tbs
                .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
                .ok()
                .flatten()
                .is_some_and(|(_, ski)| ski.0.as_bytes() == id),
        }
    }
}

/// The signed attributes the checks read, and the DER that the signature covers.
struct SignedAttributes {
    /// `SET OF Attribute` re-tagged as a universal SET, as CMS signs it.
    der: Vec<u8>,
    message_digest: Vec<u8>,
    signing_time: Option<OffsetDateTime>,
}

impl SignedAttributes {
    fn parse(content: &[u8]) -> Result<Self, TimestampError> {
        let der = AnyRef::new(Tag::Set, content)?.to_der()?;
        let mut message_digest = None;
        let mut signing_time = None;
        let mut r = SliceReader::new(content)?;
        while !r.is_finished() {
            let attribute: AnyRef<'_> = r.decode()?;
            let (oid, first) = attribute.sequence(|r: &mut SliceReader<'_>| {
                let oid: ObjectIdentifier = r.decode()?;
                let values: AnyRef<'_> = r.decode()?;
                expect_tag(values, Tag::Set, "attribute values")?;
                let first = SliceReader::new(values.value())?
                    .decode::<AnyRef<'_>>()
                    .ok();
                Ok::<_, TimestampError>((oid, first))
            })?;
            // The first attribute of a type counts, as in Go's pkcs7.
            if oid == MESSAGE_DIGEST && message_digest.is_none() {
                let value = first.ok_or(TimestampError::Missing("message digest"))?;
                expect_tag(value, Tag::OctetString, "message digest")?;
                message_digest = Some(value.value().to_vec());
            } else if oid == SIGNING_TIME && signing_time.is_none() {
                let value = first.ok_or(TimestampError::Missing("signing time"))?;
                let time = x509_cert::time::Time::from_der(&value.to_der()?)?;
                let secs = i64::try_from(time.to_unix_duration().as_secs())
                    .map_err(|_| TimestampError::Missing("valid signing time"))?;
                signing_time = Some(
                    OffsetDateTime::from_unix_timestamp(secs)
                        .map_err(|_| TimestampError::Missing("valid signing time"))?,
                );
            }
        }
        Ok(Self {
            der,
            message_digest: message_digest.ok_or(TimestampError::Missing("message digest"))?,
            signing_time,
        })
    }
}

/// The TSTInfo fields the checks read.
struct TstInfo<'a> {
    imprint_algorithm: ObjectIdentifier,
    hashed_message: &'a [u8],
    gen_time: OffsetDateTime,
}

impl<'a> TstInfo<'a> {
    fn parse(der: &'a [u8]) -> Result<Self, TimestampError> {
        AnyRef::from_der(der)?.sequence(|r: &mut SliceReader<'a>| {
            let _version: AnyRef<'a> = r.decode()?;
            let _policy: ObjectIdentifier = r.decode()?;
            let imprint: AnyRef<'a> = r.decode()?;
            let (imprint_algorithm, hashed_message) =
                imprint.sequence(|r: &mut SliceReader<'a>| {
                    let algorithm = algorithm(r.decode()?)?;
                    let hashed: AnyRef<'a> = r.decode()?;
                    expect_tag(hashed, Tag::OctetString, "hashed message")?;
                    Ok::<_, TimestampError>((algorithm, hashed.value()))
                })?;
            let _serial: AnyRef<'a> = r.decode()?;
            let gen_time: AnyRef<'a> = r.decode()?;
            expect_tag(gen_time, Tag::GeneralizedTime, "genTime")?;
            let gen_time =
                parse_generalized_time(gen_time.value()).ok_or(TimestampError::GenTime)?;
            while !r.is_finished() {
                let _rest: AnyRef<'a> = r.decode()?;
            }
            if hashed_message.is_empty() {
                return Err(TimestampError::Missing("hashed message"));
            }
            Ok(Self {
                imprint_algorithm,
                hashed_message,
                gen_time,
            })
        })
    }
}

/// Reads `YYYYMMDDHHMMSS[.fraction]Z`, the DER form of GeneralizedTime (fractions allowed, as
/// RFC 3161 TSAs use them).
fn parse_generalized_time(bytes: &[u8]) -> Option<OffsetDateTime> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (main, fraction) = match text.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (text, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |from: usize, to: usize| main.get(from..to)?.parse::<u16>().ok();
    let nanos = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = u32::try_from(f.len()).ok()?;
            f.parse::<u32>().ok()? * 10u32.pow(9 - digits)
        }
        Some(_) => return None,
    };
    let month = Month::try_from(u8::try_from(field(4, 6)?).ok()?).ok()?;
    let date = Date::from_calendar_date(
        i32::from(field(0, 4)?),
        month,
        u8::try_from(field(6, 8)?).ok()?,
    )
    .ok()?;
    let time = date
        .with_hms_nano(
            u8::try_from(field(8, 10)?).ok()?,
            u8::try_from(field(10, 12)?).ok()?,
            u8::try_from(field(12, 14)?).ok()?,
            nanos,
        )
        .ok()?;
    Some(time.assume_utc())
}

/// A CMS digest algorithm.
#[derive(Debug, Clone, Copy)]
enum Digest {
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    fn from_oid(oid: &ObjectIdentifier) -> Result<Self, TimestampError> {
        match *oid {
            SHA256 => Ok(Self::Sha256),
            SHA384 => Ok(Self::Sha384),
            SHA512 => Ok(Self::Sha512),
            other => Err(TimestampError::DigestAlgorithm(other)),
        }
    }

    fn hash(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(bytes).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
        }
    }
}

/// Checks the CMS signature with the signer certificate's key. As in Go's pkcs7, RSA and
/// curve-only ECDSA identifiers take their hash from the digest algorithm.
fn verify_cms_signature(
    cert: &Certificate,
    digest: Digest,
    algorithm: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> Result<(), TimestampError> {
    let unsupported = || TimestampError::SignatureAlgorithm(*algorithm);
    let key = cert.public_key().map_err(|_| unsupported())?;
    let rsa_family = [
        RSA_ENCRYPTION,
        SHA256_WITH_RSA,
        SHA384_WITH_RSA,
        SHA512_WITH_RSA,
    ];
    let ecdsa_digest = match *algorithm {
        ECDSA_SHA256 => Some(Digest::Sha256),
        ECDSA_SHA384 => Some(Digest::Sha384),
        ECDSA_SHA512 => Some(Digest::Sha512),
        EC_PUBLIC_KEY | CURVE_P256 | CURVE_P384 | CURVE_P521 => Some(digest),
        _ => None,
    };

    let verified = match (&key, ecdsa_digest) {
        (PublicKey::Rsa(k), _) if rsa_family.contains(algorithm) => {
            verify_rsa_pkcs1(k, digest, message, signature)
        }
        (PublicKey::Ed25519(k), _) if *algorithm == ED25519 => {
            ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok())
        }
        (PublicKey::P256(k), Some(d)) => p256::ecdsa::DerSignature::try_from(signature)
            .is_ok_and(|s| k.verify_prehash(&d.hash(message), &s).is_ok()),
        (PublicKey::P384(k), Some(d)) => p384::ecdsa::DerSignature::try_from(signature)
            .is_ok_and(|s| k.verify_prehash(&d.hash(message), &s).is_ok()),
        (PublicKey::P521(k), Some(d)) => p521::ecdsa::DerSignature::try_from(signature)
            .is_ok_and(|s| k.verify_prehash(&d.hash(message), &s).is_ok()),
        _ => return Err(unsupported()),
    };
    if verified {
        Ok(())
    } else {
        Err(TimestampError::Signature)
    }
}

fn verify_rsa_pkcs1(key: &rsa::PublicKey, digest: Digest, message: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig) else {
        return false;
    };
    match digest {
        Digest::Sha256 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
            .verify(message, &sig)
            .is_ok(),
        Digest::Sha384 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(key.clone())
            .verify(message, &sig)
            .is_ok(),
        Digest::Sha512 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(key.clone())
            .verify(message, &sig)
            .is_ok(),
    }
}

fn algorithm(identifier: AnyRef<'_>) -> Result<ObjectIdentifier, TimestampError> {
    identifier.sequence(|r: &mut SliceReader<'_>| {
        let oid: ObjectIdentifier = r.decode()?;
        while !r.is_finished() {
            let _parameters: AnyRef<'_> = r.decode()?;
        }
        Ok(oid)
    })
}

fn context(number: u32, constructed: bool) -> Tag {
    Tag::ContextSpecific {
        constructed,
        number: TagNumber(number),
    }
}

fn expect_tag(any: AnyRef<'_>, tag: Tag, what: &'static str) -> Result<(), TimestampError> {
    if any.tag() == tag {
        Ok(())
    } else {
        Err(TimestampError::Missing(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::decode_base64;

    const D09: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/d09-pass-x509-timestamped"
    );
    const PKI: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/_material"
    );

    /// The d09 signature bytes and its timestamp token.
    fn d09() -> (Vec<u8>, Vec<u8>) {
        let envelope: serde_json::Value = serde_json::from_slice(
            &std::fs::read(format!("{D09}/attestations/compile.json")).unwrap(),
        )
        .unwrap();
        let signature = &envelope["signatures"][0];
        (
            decode_base64(signature["sig"].as_str().unwrap()).unwrap(),
            decode_base64(signature["timestamps"][0]["data"].as_str().unwrap()).unwrap(),
        )
    }

    fn authority(path: &str) -> TimestampAuthority {
        let pem = std::fs::read(format!("{PKI}/{path}")).unwrap();
        TimestampAuthority::new("t", vec![Certificate::from_pem(&pem).unwrap()])
    }

    fn now() -> OffsetDateTime {
        crate::policy::parse_rfc3339("2027-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn the_d09_token_verifies_and_yields_its_gen_time() {
        let (sig, token) = d09();
        let time =
            verify_timestamp(&token, &sig, &authority("tsa/dev-tsa-root.pem"), now()).unwrap();
        assert_eq!(format_time(time), "2026-12-04T15:58:55Z");
    }

    #[test]
    fn a_token_over_other_bytes_is_refused() {
        let (mut sig, token) = d09();
        sig[0] ^= 1;
        let err = verify_timestamp(&token, &sig, &authority("tsa/dev-tsa-root.pem"), now());
        assert!(
            matches!(err, Err(TimestampError::ImprintMismatch)),
            "{err:?}"
        );
    }

    #[test]
    fn a_token_from_another_authority_is_refused() {
        let (sig, token) = d09();
        let err = verify_timestamp(&token, &sig, &authority("pki/dev-root-ca.crt.pem"), now());
        assert!(matches!(err, Err(TimestampError::Chain { .. })), "{err:?}");
    }

    #[test]
    fn a_tampered_signature_or_content_is_refused() {
        let (sig, token) = d09();
        // The last byte belongs to the CMS signature value.
        let mut bad = token.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = verify_timestamp(&bad, &sig, &authority("tsa/dev-tsa-root.pem"), now());
        assert!(matches!(err, Err(TimestampError::Signature)), "{err:?}");

        // Flip one byte of the genTime inside the TSTInfo: the message digest no longer holds.
        let needle = b"20261204155855Z";
        let at = token
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        let mut bad = token;
        bad[at + 3] = b'7';
        let err = verify_timestamp(&bad, &sig, &authority("tsa/dev-tsa-root.pem"), now());
        assert!(matches!(err, Err(TimestampError::MessageDigest)), "{err:?}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let tsa = authority("tsa/dev-tsa-root.pem");
        for bytes in [&b""[..], b"\x30\x00", b"\x30\x80\x00\x00", b"\x06\x01\x00"] {
            assert!(verify_timestamp(bytes, b"sig", &tsa, now()).is_err());
        }
        let (sig, token) = d09();
        for cut in [1, 10, 100, token.len() / 2, token.len() - 1] {
            assert!(verify_timestamp(&token[..cut], &sig, &tsa, now()).is_err());
        }
    }

    #[test]
    fn generalized_time_accepts_fractions_and_refuses_offsets() {
        let t = parse_generalized_time(b"20240219184409.25Z").unwrap();
        assert_eq!(t.nanosecond(), 250_000_000);
        assert_eq!(format_time(t), "2024-02-19T18:44:09.25Z");
        assert!(parse_generalized_time(b"20240219184409+0100").is_none());
        assert!(parse_generalized_time(b"2024021918440Z").is_none());
        assert!(parse_generalized_time(b"20241319184409Z").is_none());
        assert!(parse_generalized_time(b"20240219184409.Z").is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
            let _ = verify_timestamp(&bytes, b"sig", &authority("tsa/dev-tsa-root.pem"), now());
        }

        #[test]
        fn mutated_tokens_never_panic(at in 0usize..4096, byte in proptest::prelude::any::<u8>()) {
            let (sig, mut token) = d09();
            let len = token.len();
            token[at % len] = byte;
            let _ = verify_timestamp(&token, &sig, &authority("tsa/dev-tsa-root.pem"), now());
        }
    }
}
