//! DSSE envelopes: the JSON shape witness writes, decoding, and the pre-authentication encoding.
//!
//! This module only parses. Whether a signature is good is decided in [`crate::crypto`], and
//! which signer is trusted is decided by the policy.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::encoding::{decode_base64_with_room, Base64Error};
use crate::json_shape::{self, Shape};

const SIGNATURE_SHAPE: Shape =
    Shape::Object(&[("timestamps", Shape::ArrayOf(&Shape::Object(&[])))]);
const ENVELOPE_SHAPE: Shape = Shape::Object(&[("signatures", Shape::ArrayOf(&SIGNATURE_SHAPE))]);

/// The payload type of every attestation envelope witness and cilock produce.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Payload types accepted for signed policies (`witness sign` default and rookery's constant).
pub const POLICY_PAYLOAD_TYPES: &[&str] = &[
    "https://witness.testifysec.com/policy/v0.1",
    "https://aflock.ai/policy/v0.1",
];

/// Largest envelope body we parse. The biggest real evidence we know of (SBOMs) is far below it.
pub const MAX_ENVELOPE_BYTES: usize = 128 * 1024 * 1024;

/// A DSSE envelope as serialized by witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// The DSSE payload type.
    pub payload_type: String,
    /// One or more signatures over the PAE of type and payload.
    #[serde(default)]
    pub signatures: Vec<Signature>,
}

/// One signature of an envelope, with witness's certificate and timestamp extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The producer's key id hint; never trusted, only used to try the matching key first.
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the raw signature bytes.
    pub sig: String,
    /// Base64 of the PEM text of the signer's leaf certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub certificate: String,
    /// Base64 of the PEM text of each intermediate certificate (untrusted chain material).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intermediates: Vec<String>,
    /// RFC 3161 timestamp tokens over the raw signature bytes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps: Vec<Timestamp>,
}

/// An RFC 3161 countersignature; `data` is base64 of a DER TimeStampToken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Always `tsp` in practice; not consulted.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Base64 of the DER TimeStampToken (CMS ContentInfo).
    pub data: String,
}

/// Why bytes could not be read as an envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a JSON DSSE envelope.
    #[error("not a DSSE envelope")]
    Json(#[source] serde_json::Error),
    /// A record is written as something other than a JSON object.
    #[error("not a DSSE envelope: {0}")]
    Shape(String),
    /// The envelope carries no signature.
    #[error("envelope has no signatures")]
    NoSignatures,
    /// The payload field is not base64.
    #[error("envelope payload is not base64")]
    Payload(#[source] Base64Error),
}

/// An envelope as read, its payload borrowed rather than copied.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeText<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<Signature>,
}

/// A parsed envelope with its payload decoded once.
#[derive(Debug, Clone)]
pub struct DecodedEnvelope {
    /// The envelope as read, except its `payload` field, which is left empty: the payload is
    /// kept only decoded, in [`DecodedEnvelope::payload`] (an SBOM envelope's base64 text can be
    /// tens of megabytes).
    pub envelope: Envelope,
    /// The decoded payload bytes (a slice of the PAE buffer; see [`Payload`]).
    pub payload: Payload,
}

/// An envelope's decoded payload, kept at the end of the buffer of its pre-authentication
/// encoding: the bytes the signatures are checked over then need no second copy of the payload
/// (which can be tens of megabytes). Reads as the payload bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    pae: Vec<u8>,
    start: usize,
}

impl Payload {
    /// `payload` behind the PAE header for `payload_type`, moved in place rather than copied
    /// (within its capacity when it has room for the header).
    fn new(payload_type: &str, mut payload: Vec<u8>) -> Self {
        let header = pae_header(payload_type, payload.len());
        let start = header.len();
        payload.splice(0..0, header);
        Self {
            pae: payload,
            start,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.pae.get(self.start..).unwrap_or_default()
    }

    /// The payload bytes as a vector of their own (moved, not copied).
    pub fn into_vec(self) -> Vec<u8> {
        let mut bytes = self.pae;
        bytes.drain(..self.start);
        bytes
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.as_bytes().len())
    }
}

impl DecodedEnvelope {
    /// Parses an envelope from JSON bytes and decodes its payload.
    ///
    /// # Errors
    /// Too large, not JSON of the envelope shape, no signatures, or a payload that is not base64.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        // Checked as one pass over the bytes, then read into the typed form with the payload
        // borrowed: no tree of the document and no copy of its (base64) payload is built, so
        // a large envelope costs its bytes plus the decoded payload.
        json_shape::scan(bytes, true, ENVELOPE_SHAPE)
            .map_err(EnvelopeError::Json)?
            .map_err(EnvelopeError::Shape)?;
        let read: EnvelopeText<'_> = serde_json::from_slice(bytes).map_err(EnvelopeError::Json)?;
        if read.signatures.is_empty() {
            return Err(EnvelopeError::NoSignatures);
        }
        // Room for the PAE header in front (see `Payload`); the decoded length is at most the
        // estimate, so its header is no longer than the estimate's.
        let room = pae_header(
            &read.payload_type,
            base64::decoded_len_estimate(read.payload.len()),
        )
        .len();
        let payload =
            decode_base64_with_room(&read.payload, room).map_err(EnvelopeError::Payload)?;
        drop(read.payload);
        let payload = Payload::new(&read.payload_type, payload);
        let envelope = Envelope {
            payload: String::new(),
            payload_type: read.payload_type,
            signatures: read.signatures,
        };
        Ok(Self { envelope, payload })
    }

    /// The bytes every signature of this envelope signs: the payload's own buffer, unless the
    /// payload type was changed since it was read (then a fresh encoding).
    pub fn pae(&self) -> Cow<'_, [u8]> {
        let header = pae_header(&self.envelope.payload_type, self.payload.len());
        match self.payload.pae.get(..self.payload.start) {
            Some(kept) if kept == header.as_slice() => Cow::Borrowed(&self.payload.pae),
            _ => Cow::Owned(pae(&self.envelope.payload_type, &self.payload)),
        }
    }
}

/// DSSE v1 pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = pae_header(payload_type, payload.len());
    out.extend_from_slice(payload);
    out
}

/// The PAE up to the body: `DSSEv1 SP len(type) SP type SP len(body) SP`.
fn pae_header(payload_type: &str, body_len: usize) -> Vec<u8> {
    format!("DSSEv1 {} {payload_type} {body_len} ", payload_type.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        assert_eq!(
            pae(INTOTO_PAYLOAD_TYPE, br#"{"a":1}"#),
            b"DSSEv1 28 application/vnd.in-toto+json 7 {\"a\":1}".to_vec()
        );
    }

    #[test]
    fn pae_of_an_empty_body_ends_in_a_space() {
        assert_eq!(pae("t", b""), b"DSSEv1 1 t 0 ".to_vec());
    }

    #[test]
    fn pae_counts_bytes_not_characters() {
        assert_eq!(pae("é", b"x"), "DSSEv1 2 é 1 x".as_bytes().to_vec());
    }

    #[test]
    fn rejects_records_written_as_arrays() {
        let array = br#"["e30=", "application/vnd.in-toto+json", [["k", "AA=="]]]"#;
        assert!(matches!(
            DecodedEnvelope::from_json(array),
            Err(EnvelopeError::Shape(_))
        ));
        let sig = br#"{"payload":"e30=","payloadType":"x","signatures":[["k","AA=="]]}"#;
        assert!(matches!(
            DecodedEnvelope::from_json(sig),
            Err(EnvelopeError::Shape(_))
        ));
    }

    #[test]
    fn rejects_duplicate_keys_and_missing_signatures() {
        let dup = br#"{"payload":"e30=","payload":"e30=","payloadType":"x","signatures":[]}"#;
        assert!(matches!(
            DecodedEnvelope::from_json(dup),
            Err(EnvelopeError::Json(_))
        ));
        let none = br#"{"payload":"e30=","payloadType":"x","signatures":[]}"#;
        assert!(matches!(
            DecodedEnvelope::from_json(none),
            Err(EnvelopeError::NoSignatures)
        ));
        let bad = br#"{"payload":"!!","payloadType":"x","signatures":[{"sig":"AA=="}]}"#;
        assert!(matches!(
            DecodedEnvelope::from_json(bad),
            Err(EnvelopeError::Payload(_))
        ));
    }
}
