//! The gitoid Archivista stores an envelope under: the SHA-256 git blob id of its exact bytes.

use sha2::{Digest as _, Sha256};

/// `hex(SHA-256("blob " + len + "\0" + bytes))`, the bare hex form Archivista uses.
pub fn gitoid_sha256(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    crate::encoding::hex(&hasher.finalize())
}

/// Whether `text` has the shape of a gitoid (64 lowercase hex digits), so it is safe to put in
/// a URL path.
pub(crate) fn is_gitoid(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_git_blob_id_of_hello() {
        assert_eq!(
            gitoid_sha256(b"Hello"),
            "1301800ffa9c48e2a82cbfda7fe9d17d5605cfa5df7c673639c44d8fcc244a71"
        );
        assert!(is_gitoid(&gitoid_sha256(b"")));
        assert!(!is_gitoid("../../etc/passwd"));
        assert!(!is_gitoid(&"A".repeat(64)));
    }
}
