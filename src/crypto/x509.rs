//! X.509 certificates as witness carries them: parsed from base64 of PEM, chained from a leaf
//! through untrusted intermediates to trust anchors at a chosen time, and read for the identity
//! that certificate constraints compare (subject, SANs, Fulcio extensions).
//!
//! Chains are built with rustls-webpki. A trust anchor is any certificate the policy or the
//! operator names; it need not be self-signed (real policies anchor on an intermediate). Like
//! Go's verifier, an anchor only counts inside its own validity window, and a leaf that is
//! itself one of the anchors chains trivially.
//!
//! What this does not check, as witness does not: revocation (CRL, OCSP), certificate
//! transparency (SCTs), and certificate policies.

use std::collections::BTreeMap;
use std::fmt;

use der::asn1::AnyRef;
use der::{Decode as _, Encode as _, Tag, Tagged as _};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage,
    RequiredEkuNotFoundContext,
};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};

use super::keys::{first_pem_block, KeyError, KeyId, PublicKey};
use crate::encoding::{decode_base64, Base64Error};

/// DER value of the OID id-kp-timeStamping (1.3.6.1.5.5.7.3.8).
pub(crate) const ID_KP_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
/// DER value of the OID anyExtendedKeyUsage (2.5.29.37.0).
const ANY_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
/// DER value of the Fulcio arc 1.3.6.1.4.1.57264.1; an extension OID is this plus one arc.
const FULCIO_ARC: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01];

/// Why a certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    /// The JSON field is not base64.
    #[error("certificate field is not base64")]
    Base64(#[source] Base64Error),
    /// There is no PEM block (witness reads certificates only through PEM).
    #[error("certificate is not PEM")]
    Pem(#[source] KeyError),
    /// The DER is not an X.509 certificate.
    #[error("not a well-formed X.509 certificate")]
    Der(#[source] der::Error),
    /// A validity time is outside the range this verifier represents.
    #[error("certificate validity time is out of range")]
    Validity,
    /// The subject alternative name or extended key usage extension is malformed.
    #[error("certificate extension {0} is malformed")]
    Extension(&'static str),
}

/// An extended key usage extension: whether it is critical, and its OIDs (DER values).
pub(crate) type KeyUsages = (bool, Vec<Vec<u8>>);

/// A parsed X.509 certificate with its DER kept for chain building.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    identity: CertIdentity,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Certificate({}, {} to {})",
            self.subject(),
            format_time(self.not_before),
            format_time(self.not_after)
        )
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl Certificate {
    /// Parses a DER certificate.
    ///
    /// # Errors
    /// Malformed DER, an out-of-range validity time, or a malformed SAN or EKU extension (Go's
    /// parser refuses those certificates too).
    pub fn from_der(der: &[u8]) -> Result<Self, X509Error> {
        let cert = x509_cert::Certificate::from_der(der).map_err(X509Error::Der)?;
        let validity = cert.tbs_certificate().validity();
        let not_before = to_offset(validity.not_before)?;
        let not_after = to_offset(validity.not_after)?;
        let identity = CertIdentity::of(&cert)?;
        let parsed = Self {
            der: der.to_vec(),
            cert,
            not_before,
            not_after,
            identity,
        };
        parsed.extended_key_usage()?;
        Ok(parsed)
    }

    /// Parses the first PEM block of `text` as a certificate, whatever its label, as witness does.
    ///
    /// # Errors
    /// No PEM block, or see [`Certificate::from_der`].
    pub fn from_pem(text: &[u8]) -> Result<Self, X509Error> {
        let (_, der) = first_pem_block(text).map_err(X509Error::Pem)?;
        Self::from_der(&der)
    }

    /// Parses a JSON certificate field: base64 of the PEM text of the certificate.
    ///
    /// # Errors
    /// Not base64, or see [`Certificate::from_pem`].
    pub fn from_base64_pem(field: &str) -> Result<Self, X509Error> {
        let pem = decode_base64(field).map_err(X509Error::Base64)?;
        Self::from_pem(&pem)
    }

    /// The DER encoding as given.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The parsed certificate.
    pub(crate) fn inner(&self) -> &x509_cert::Certificate {
        &self.cert
    }

    /// The subject distinguished name, for messages.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    /// Start of the validity window.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the validity window (inclusive).
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether `at` lies inside the validity window, bounds included (as in Go).
    pub fn is_valid_at(&self, at: OffsetDateTime) -> bool {
        at >= self.not_before && at <= self.not_after
    }

    /// The certificate's public key, as witness verifies with it (SHA-256 for ECDSA and RSA).
    ///
    /// # Errors
    /// A key type witness cannot verify with.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        let spki = self
            .cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|_| KeyError::Unsupported)?;
        PublicKey::from_der(&spki)
    }

    /// The witness key id of the certificate's public key (not of the certificate).
    ///
    /// # Errors
    /// A key type witness cannot verify with.
    pub fn keyid(&self) -> Result<KeyId, KeyError> {
        self.public_key().map(|k| k.keyid())
    }

    /// The identity certificate constraints compare.
    pub fn identity(&self) -> &CertIdentity {
        &self.identity
    }

    /// The extended key usage extension: whether it is critical, and its OIDs (DER values).
    ///
    /// # Errors
    /// A malformed or duplicated extension.
    pub(crate) fn extended_key_usage(&self) -> Result<Option<KeyUsages>, X509Error> {
        let found = self
            .cert
            .tbs_certificate()
            .get_extension::<ExtendedKeyUsage>()
            .map_err(|_| X509Error::Extension("extended key usage"))?;
        Ok(found.map(|(critical, eku)| {
            let oids = eku.0.iter().map(|oid| oid.as_bytes().to_vec()).collect();
            (critical, oids)
        }))
    }

    /// Whether this certificate's EKU extension, if any, allows time stamping (or any usage).
    fn allows_time_stamping(&self) -> bool {
        match self.extended_key_usage() {
            Ok(None) => true,
            Ok(Some((_, oids))) => oids
                .iter()
                .any(|o| o == ID_KP_TIME_STAMPING || o == ANY_EXTENDED_KEY_USAGE),
            Err(_) => false,
        }
    }
}

/// The identity of a certificate as witness's constraints see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertIdentity {
    /// Subject common name (the last CN attribute, as Go keeps); empty when absent.
    pub common_name: String,
    /// Subject organization (O) values, in order.
    pub organizations: Vec<String>,
    /// SAN DNS names.
    pub dns_names: Vec<String>,
    /// SAN e-mail addresses.
    pub emails: Vec<String>,
    /// SAN URIs, as written in the certificate.
    pub uris: Vec<String>,
    /// Fulcio extension values by Go field name (`Issuer`, `SourceRepositoryURI`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
    /// The Fulcio extension whose DER value is malformed; witness then treats every extension
    /// constraint as failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed_extension: Option<String>,
}

impl CertIdentity {
    fn of(cert: &x509_cert::Certificate) -> Result<Self, X509Error> {
        let tbs = cert.tbs_certificate();
        let mut identity = Self::default();

        for atv in tbs.subject().iter() {
            let Some(value) = directory_string(&atv.value) else {
                continue;
            };
            if atv.oid == const_oid::db::rfc4519::CN {
                identity.common_name = value;
            } else if atv.oid == const_oid::db::rfc4519::O {
                identity.organizations.push(value);
            }
        }

        let san = tbs
            .get_extension::<SubjectAltName>()
            .map_err(|_| X509Error::Extension("subject alternative name"))?;
        for name in san.iter().flat_map(|(_, san)| san.0.iter()) {
            match name {
                GeneralName::DnsName(v) => identity.dns_names.push(v.to_string()),
                GeneralName::Rfc822Name(v) => identity.emails.push(v.to_string()),
                GeneralName::UniformResourceIdentifier(v) => identity.uris.push(v.to_string()),
                _ => {}
            }
        }

        for ext in tbs.extensions().into_iter().flatten() {
            let Some(field) = FulcioField::from_oid(ext.extn_id.as_bytes()) else {
                continue;
            };
            let bytes = ext.extn_value.as_bytes();
            let value = if field.1 {
                der_string(bytes)
            } else {
                Some(String::from_utf8_lossy(bytes).into_owned())
            };
            // Like fulcio's parser, a later extension for the same field overwrites an earlier
            // one, and one malformed DER value voids every extension.
            match value {
                Some(v) => {
                    identity.extensions.insert(field.0.name().to_string(), v);
                }
                None => {
                    identity.malformed_extension = Some(field.0.name().to_string());
                    identity.extensions.clear();
                    break;
                }
            }
        }
        Ok(identity)
    }

    /// The value of a Fulcio extension, empty when the certificate does not carry it.
    pub fn extension(&self, field: FulcioField) -> &str {
        self.extensions.get(field.name()).map_or("", String::as_str)
    }
}

/// Decodes an X.501 directory string the way Go's x509 parser does; `None` for other types.
fn directory_string(value: &der::asn1::Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String => std::str::from_utf8(bytes).ok().map(str::to_string),
        Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::TeletexString => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        Tag::BmpString => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| match c {
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    _ => 0,
                })
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// Decodes a DER string with nothing after it (fulcio's `ParseDERString`).
fn der_string(bytes: &[u8]) -> Option<String> {
    let any = AnyRef::from_der(bytes).ok()?;
    match any.tag() {
        Tag::Utf8String => std::str::from_utf8(any.value()).ok().map(str::to_string),
        Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            std::str::from_utf8(any.value()).ok().map(str::to_string)
        }
        _ => None,
    }
}

/// Go field names of fulcio's `certificate.Extensions`, with their snake_case spelling.
const FULCIO_FIELDS: [(&str, &str); 20] = [
    ("Issuer", "issuer"),
    ("GithubWorkflowTrigger", "github_workflow_trigger"),
    ("GithubWorkflowSHA", "github_workflow_sha"),
    ("GithubWorkflowName", "github_workflow_name"),
    ("GithubWorkflowRepository", "github_workflow_repository"),
    ("GithubWorkflowRef", "github_workflow_ref"),
    ("BuildSignerURI", "build_signer_uri"),
    ("BuildSignerDigest", "build_signer_digest"),
    ("RunnerEnvironment", "runner_environment"),
    ("SourceRepositoryURI", "source_repository_uri"),
    ("SourceRepositoryDigest", "source_repository_digest"),
    ("SourceRepositoryRef", "source_repository_ref"),
    ("SourceRepositoryIdentifier", "source_repository_identifier"),
    ("SourceRepositoryOwnerURI", "source_repository_owner_uri"),
    (
        "SourceRepositoryOwnerIdentifier",
        "source_repository_owner_identifier",
    ),
    ("BuildConfigURI", "build_config_uri"),
    ("BuildConfigDigest", "build_config_digest"),
    ("BuildTrigger", "build_trigger"),
    ("RunInvocationURI", "run_invocation_uri"),
    (
        "SourceRepositoryVisibilityAtSigning",
        "source_repository_visibility_at_signing",
    ),
];

/// Last arc of each Fulcio OID (1.3.6.1.4.1.57264.1.x), the field it fills, and whether its
/// value is a DER string (.8 onward) rather than raw bytes (.1 to .6, deprecated).
const FULCIO_OIDS: [(u8, usize, bool); 21] = [
    (1, 0, false),
    (2, 1, false),
    (3, 2, false),
    (4, 3, false),
    (5, 4, false),
    (6, 5, false),
    (8, 0, true),
    (9, 6, true),
    (10, 7, true),
    (11, 8, true),
    (12, 9, true),
    (13, 10, true),
    (14, 11, true),
    (15, 12, true),
    (16, 13, true),
    (17, 14, true),
    (18, 15, true),
    (19, 16, true),
    (20, 17, true),
    (21, 18, true),
    (22, 19, true),
];

/// One field of fulcio's certificate extensions, as `certConstraint.extensions` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FulcioField(usize);

impl FulcioField {
    /// Every field, in fulcio's declaration order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..FULCIO_FIELDS.len()).map(Self)
    }

    /// Reads a constraint key: the Go field name in any letter case (as Go's JSON decoder
    /// matches it), or its snake_case spelling (`source_repository_uri`).
    pub fn from_key(key: &str) -> Option<Self> {
        FULCIO_FIELDS
            .iter()
            .position(|(name, snake)| key.eq_ignore_ascii_case(name) || key == *snake)
            .map(Self)
    }

    /// The Go field name.
    pub fn name(self) -> &'static str {
        FULCIO_FIELDS.get(self.0).map_or("", |(name, _)| name)
    }

    /// The field an extension OID (DER value) fills, and whether its value is a DER string.
    fn from_oid(oid: &[u8]) -> Option<(Self, bool)> {
        let (arc, rest) = oid.strip_prefix(FULCIO_ARC)?.split_first()?;
        if !rest.is_empty() {
            return None;
        }
        FULCIO_OIDS
            .iter()
            .find(|(a, _, _)| a == arc)
            .map(|(_, field, der)| (Self(*field), *der))
    }
}

/// Which extended key usage a chain must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainUsage {
    /// Any usage: witness verifies signer chains with `ExtKeyUsageAny`.
    Any,
    /// Time stamping: every certificate that carries an EKU must list timeStamping (or any).
    TimeStamping,
}

/// Why a certificate does not chain to a trust anchor at the requested time.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// No anchor is inside its validity window (or allows the usage).
    #[error("no trusted root is valid at {}", format_time(*at))]
    NoValidAnchor {
        /// The time of the check.
        at: OffsetDateTime,
    },
    /// A certificate of the chain expired before the time of the check.
    #[error("certificate expired at {} (checked at {})", format_time(*not_after), format_time(*at))]
    Expired {
        /// The time of the check.
        at: OffsetDateTime,
        /// End of the validity of the expired certificate.
        not_after: OffsetDateTime,
    },
    /// A certificate of the chain is not valid yet at the time of the check.
    #[error("certificate is not valid before {} (checked at {})", format_time(*not_before), format_time(*at))]
    NotYetValid {
        /// The time of the check.
        at: OffsetDateTime,
        /// Start of the validity of the certificate.
        not_before: OffsetDateTime,
    },
    /// No path leads to a trusted root.
    #[error("certificate does not chain to a trusted root")]
    UnknownIssuer,
    /// A path exists but breaks a rule (signature, constraints, key usage).
    #[error("certificate chain is invalid")]
    Invalid(#[source] webpki::Error),
}

/// Checks that `leaf` chains through `intermediates` (untrusted) to one of `anchors` at `at`.
///
/// # Errors
/// See [`ChainError`].
pub(crate) fn verify_chain(
    leaf: &Certificate,
    intermediates: &[&Certificate],
    anchors: &[&Certificate],
    at: OffsetDateTime,
    usage: ChainUsage,
) -> Result<(), ChainError> {
    if at < leaf.not_before {
        return Err(ChainError::NotYetValid {
            at,
            not_before: leaf.not_before,
        });
    }
    if at > leaf.not_after {
        return Err(ChainError::Expired {
            at,
            not_after: leaf.not_after,
        });
    }
    let usable: Vec<&Certificate> = anchors
        .iter()
        .copied()
        .filter(|a| a.is_valid_at(at))
        .filter(|a| usage == ChainUsage::Any || a.allows_time_stamping())
        .collect();
    if usable.is_empty() {
        return Err(ChainError::NoValidAnchor { at });
    }
    // Go's verifier accepts a leaf that is itself in the root pool without building a path.
    if usable.iter().any(|a| a.der == leaf.der) {
        return Ok(());
    }

    let anchor_ders: Vec<CertificateDer<'_>> = usable
        .iter()
        .map(|a| CertificateDer::from(a.der.as_slice()))
        .collect();
    let trust_anchors: Vec<TrustAnchor<'_>> = anchor_ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    if trust_anchors.is_empty() {
        return Err(ChainError::NoValidAnchor { at });
    }
    let intermediate_ders: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(leaf.der.as_slice());
    let end_entity = EndEntityCert::try_from(&leaf_der).map_err(ChainError::Invalid)?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at.unix_timestamp()).unwrap_or(0),
    ));

    let result = match usage {
        ChainUsage::Any => end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust_anchors,
            &intermediate_ders,
            time,
            AnyUsage,
            None,
            None,
        ),
        ChainUsage::TimeStamping => end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust_anchors,
            &intermediate_ders,
            time,
            TimeStampingUsage,
            None,
            None,
        ),
    };
    result.map(|_| ()).map_err(|e| chain_error(e, at))
}

fn chain_error(err: webpki::Error, at: OffsetDateTime) -> ChainError {
    let from_unix = |t: UnixTime| {
        i64::try_from(t.as_secs())
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
    };
    match err {
        webpki::Error::CertExpired { not_after, .. } => match from_unix(not_after) {
            Some(not_after) => ChainError::Expired { at, not_after },
            None => ChainError::Invalid(err),
        },
        webpki::Error::CertNotValidYet { not_before, .. } => match from_unix(not_before) {
            Some(not_before) => ChainError::NotYetValid { at, not_before },
            None => ChainError::Invalid(err),
        },
        // webpki reports a same-named issuer with another key as a bad signature; for Go (and
        // for the operator) that is an unknown authority.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            ChainError::UnknownIssuer
        }
        other => ChainError::Invalid(other),
    }
}

/// Accepts every extended key usage, like Go's `ExtKeyUsageAny`.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// Go's rule for a required usage: a certificate without an EKU extension is unrestricted; one
/// with the extension must list the usage or anyExtendedKeyUsage.
struct TimeStampingUsage;

impl ExtendedKeyUsageValidator for TimeStampingUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let wanted = KeyPurposeId::new(ID_KP_TIME_STAMPING);
        let any = KeyPurposeId::new(ANY_EXTENDED_KEY_USAGE);
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if id == wanted || id == any {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: KeyUsage::required(ID_KP_TIME_STAMPING),
                present,
            },
        ))
    }
}

fn to_offset(time: x509_cert::time::Time) -> Result<OffsetDateTime, X509Error> {
    let secs = i64::try_from(time.to_unix_duration().as_secs()).map_err(|_| X509Error::Validity)?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| X509Error::Validity)
}

/// RFC 3339 text of a time, for messages and reports.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/_material"
    );

    fn pem(path: &str) -> Certificate {
        let text = std::fs::read(format!("{VECTORS}/{path}")).unwrap();
        Certificate::from_pem(&text).unwrap()
    }

    fn at(text: &str) -> OffsetDateTime {
        crate::policy::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn reads_the_identity_of_the_ci_leaf() {
        let leaf = pem("pki/dev-ci-leaf.crt.pem");
        let id = leaf.identity();
        assert_eq!(id.common_name, "widget-ci");
        assert_eq!(id.organizations, ["Acme Corp"]);
        assert_eq!(id.emails, ["ci@acme.test"]);
        assert_eq!(
            id.uris,
            ["https://github.com/acme-corp/widget-service/.github/workflows/ci.yml@refs/heads/main"]
        );
        assert!(id.dns_names.is_empty());
    }

    #[test]
    fn chains_through_an_untrusted_intermediate_inside_the_validity_window() {
        let leaf = pem("pki/dev-ci-leaf.crt.pem");
        let issuing = pem("pki/dev-issuing-ca.crt.pem");
        let root = pem("pki/dev-root-ca.crt.pem");
        let ok = verify_chain(
            &leaf,
            &[&issuing],
            &[&root],
            at("2027-01-01T00:00:00Z"),
            ChainUsage::Any,
        );
        assert!(ok.is_ok(), "{ok:?}");

        let missing = verify_chain(
            &leaf,
            &[],
            &[&root],
            at("2027-01-01T00:00:00Z"),
            ChainUsage::Any,
        );
        assert!(
            matches!(missing, Err(ChainError::UnknownIssuer)),
            "{missing:?}"
        );

        let late = verify_chain(
            &leaf,
            &[&issuing],
            &[&root],
            at("2034-01-01T00:00:00Z"),
            ChainUsage::Any,
        );
        assert!(matches!(late, Err(ChainError::Expired { .. })), "{late:?}");
    }

    #[test]
    fn an_intermediate_can_be_the_anchor() {
        let leaf = pem("pki/dev-ci-leaf.crt.pem");
        let issuing = pem("pki/dev-issuing-ca.crt.pem");
        let ok = verify_chain(
            &leaf,
            &[],
            &[&issuing],
            at("2027-01-01T00:00:00Z"),
            ChainUsage::Any,
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn the_leaf_needs_no_code_signing_usage_but_time_stamping_is_enforced() {
        let leaf = pem("pki/dev-ci-leaf.crt.pem");
        let issuing = pem("pki/dev-issuing-ca.crt.pem");
        let root = pem("pki/dev-root-ca.crt.pem");
        // The CI leaf carries codeSigning only.
        let wrong = verify_chain(
            &leaf,
            &[&issuing],
            &[&root],
            at("2027-01-01T00:00:00Z"),
            ChainUsage::TimeStamping,
        );
        assert!(matches!(wrong, Err(ChainError::Invalid(_))), "{wrong:?}");
    }

    #[test]
    fn fulcio_keys_accept_go_names_in_any_case_and_snake_case() {
        let uri = FulcioField::from_key("SourceRepositoryURI").unwrap();
        assert_eq!(FulcioField::from_key("sourcerepositoryuri"), Some(uri));
        assert_eq!(FulcioField::from_key("source_repository_uri"), Some(uri));
        assert_eq!(FulcioField::from_key("issuer").unwrap().name(), "Issuer");
        assert_eq!(FulcioField::from_key("Source_Repository_URI"), None);
        assert_eq!(FulcioField::from_key("repository"), None);
        assert_eq!(FulcioField::all().count(), 20);
    }

    #[test]
    fn fulcio_oids_map_to_fields_and_encodings() {
        let issuer_v1 = [FULCIO_ARC, &[1]].concat();
        let issuer_v2 = [FULCIO_ARC, &[8]].concat();
        let seven = [FULCIO_ARC, &[7]].concat();
        let too_long = [FULCIO_ARC, &[8, 1]].concat();
        assert_eq!(
            FulcioField::from_oid(&issuer_v1).map(|(f, d)| (f.name(), d)),
            Some(("Issuer", false))
        );
        assert_eq!(
            FulcioField::from_oid(&issuer_v2).map(|(f, d)| (f.name(), d)),
            Some(("Issuer", true))
        );
        assert_eq!(FulcioField::from_oid(&seven), None);
        assert_eq!(FulcioField::from_oid(&too_long), None);
    }

    #[test]
    fn der_strings_must_be_complete() {
        assert_eq!(der_string(&[0x0c, 0x02, b'h', b'i']).as_deref(), Some("hi"));
        assert_eq!(der_string(&[0x0c, 0x02, b'h', b'i', 0x00]), None);
        assert_eq!(der_string(&[0x04, 0x02, b'h', b'i']), None);
        assert_eq!(der_string(b"https://raw.example"), None);
    }

    #[test]
    fn refuses_base64_of_der_and_garbage() {
        let leaf = pem("pki/dev-ci-leaf.crt.pem");
        let der_field = crate::encoding::encode_base64(leaf.der());
        assert!(matches!(
            Certificate::from_base64_pem(&der_field),
            Err(X509Error::Pem(_))
        ));
        assert!(matches!(
            Certificate::from_base64_pem("!!"),
            Err(X509Error::Base64(_))
        ));
        let junk = crate::encoding::encode_base64(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        assert!(matches!(
            Certificate::from_base64_pem(&junk),
            Err(X509Error::Der(_))
        ));
    }
}
