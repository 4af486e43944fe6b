//! Public keys, key ids, signature checks over DSSE envelopes, and (for certificate signers)
//! X.509 chains and RFC 3161 timestamps.

mod envelope;
mod keys;

pub use envelope::{verify_envelope, EnvelopeTrust, SignatureCheck, VerifiedSigner};
pub use keys::{keyid_of_spki_der, KeyError, KeyId, PublicKey};
