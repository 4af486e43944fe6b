//! Whether a signer that verified is one of a step's functionaries.

use super::document::Functionary;
use crate::crypto::VerifiedSigner;

/// Whether `signer` satisfies `functionary`.
///
/// A functionary's `type` is decorative, as in witness: a matching `publickeyid` accepts the
/// signer (for certificate signers too, by their leaf key id); otherwise only a certificate
/// signer can match, through the functionary's certificate constraint.
pub(crate) fn accepts(functionary: &Functionary, signer: &VerifiedSigner) -> bool {
    if !functionary.publickeyid.is_empty() && functionary.publickeyid == signer.keyid().0 {
        return true;
    }
    match signer {
        VerifiedSigner::Key { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyId;

    #[test]
    fn key_functionary_matches_by_key_id_only() {
        let f = Functionary {
            kind: "root".into(),
            publickeyid: "abc".into(),
            cert_constraint: None,
        };
        assert!(accepts(
            &f,
            &VerifiedSigner::Key {
                keyid: KeyId("abc".into())
            }
        ));
        assert!(!accepts(
            &f,
            &VerifiedSigner::Key {
                keyid: KeyId("abd".into())
            }
        ));
        let empty = Functionary {
            publickeyid: String::new(),
            ..f
        };
        assert!(!accepts(
            &empty,
            &VerifiedSigner::Key {
                keyid: KeyId(String::new())
            }
        ));
    }
}
