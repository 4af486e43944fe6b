//! Base64 as witness writes it and as DSSE says a verifier must read it.
//!
//! Producers emit standard, padded base64. The DSSE protocol asks verifiers to accept the
//! URL-safe alphabet too, so decoding tries both; padding may be present or absent, and the
//! CR/LF that Go's decoder skips are skipped here as well.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);

const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The input was neither standard nor URL-safe base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid base64 (standard or URL-safe alphabet)")]
pub struct Base64Error;

/// Decodes standard or URL-safe base64, with or without padding, ignoring CR and LF.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, Base64Error> {
    decode_base64_with_room(text, 0)
}

/// As [`decode_base64`], into a vector with at least `room` bytes of capacity to spare, so that
/// the caller can put a header in front of the bytes without a second allocation (an envelope
/// payload can be tens of megabytes).
pub fn decode_base64_with_room(text: &str, room: usize) -> Result<Vec<u8>, Base64Error> {
    let cleaned: std::borrow::Cow<'_, str> = if text.contains(['\r', '\n']) {
        text.chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    let estimate = base64::decoded_len_estimate(cleaned.len());
    let mut out = Vec::with_capacity(estimate.saturating_add(room));
    if STANDARD.decode_vec(cleaned.as_bytes(), &mut out).is_ok() {
        return Ok(out);
    }
    out.clear();
    URL_SAFE
        .decode_vec(cleaned.as_bytes(), &mut out)
        .map_err(|_| Base64Error)?;
    Ok(out)
}

/// Encodes with the standard alphabet and padding, as witness producers do.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Lowercase hexadecimal, the form witness uses for key ids and digests.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_alphabets_with_and_without_padding() {
        let bytes = [0xfb_u8, 0xff, 0xfe, 0x01];
        assert_eq!(decode_base64("+//+AQ==").unwrap(), bytes);
        assert_eq!(decode_base64("-__-AQ==").unwrap(), bytes);
        assert_eq!(decode_base64("-__-AQ").unwrap(), bytes);
        assert_eq!(decode_base64("+//+\r\nAQ==").unwrap(), bytes);
        let roomy = decode_base64_with_room("-__-AQ", 40).unwrap();
        assert_eq!(roomy, bytes);
        assert!(roomy.capacity() >= bytes.len() + 40);
    }

    #[test]
    fn rejects_text_that_is_not_base64() {
        assert_eq!(decode_base64("not base64!"), Err(Base64Error));
        assert_eq!(decode_base64("+/-_"), Err(Base64Error));
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
