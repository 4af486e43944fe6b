//! Public keys, key ids, signature checks over DSSE envelopes, and (for certificate signers)
//! X.509 chains and RFC 3161 timestamps.

mod envelope;
mod keys;
mod timestamp;
mod x509;

pub use envelope::{verify_envelope, EnvelopeTrust, SignatureCheck, VerifiedSigner};
pub use keys::{keyid_of_spki_der, KeyError, KeyId, PublicKey};
pub use timestamp::{verify_timestamp, TimestampAuthority, TimestampError};
pub(crate) use x509::format_time;
pub use x509::{CertIdentity, Certificate, ChainError, FulcioField, X509Error};
