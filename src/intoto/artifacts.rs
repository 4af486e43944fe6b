//! Materials and products of a collection, as `artifactsFrom` compares them.
//!
//! v0.1 material/product attestors list every file with its DigestSet. cilock's v0.3 attestors
//! carry a Merkle tree; their per-file digests are usable only when the `leaves` are inline,
//! and only after the leaves have been checked against the signed root.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{types, Collection, DigestSet, DigestSetError, RawJson};

/// Why the materials or products of a collection could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A v0.1 material or product entry is not of the documented shape.
    #[error("{kind} attestation is malformed")]
    Shape {
        /// Attestor type.
        kind: String,
        /// The decoding failure.
        #[source]
        source: serde_json::Error,
    },
    /// A DigestSet uses an algorithm witness does not define.
    #[error("{kind} attestation lists {path:?} with a bad digest set")]
    Digest {
        /// Attestor type.
        kind: String,
        /// File path.
        path: String,
        /// The bad key.
        #[source]
        source: DigestSetError,
    },
    /// A v0.3 Merkle attestation has no inline leaves, so its files cannot be compared.
    #[error("{kind} attestation is a Merkle root without inline leaves")]
    NoLeaves {
        /// Attestor type.
        kind: String,
    },
    /// The inline leaves do not hash to the signed Merkle root.
    #[error("{kind} attestation leaves do not match its merkle root")]
    MerkleMismatch {
        /// Attestor type.
        kind: String,
    },
}

/// Path → digests, for the materials or the products of one collection.
pub type Artifacts = BTreeMap<String, DigestSet>;

#[derive(Deserialize)]
struct ProductEntry {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MerkleForm {
    merkle_root: String,
    #[serde(default)]
    leaves: Option<Vec<MerkleLeaf>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MerkleLeaf {
    path: String,
    file_digest: String,
}

impl Collection {
    /// The union of the collection's material attestors.
    ///
    /// # Errors
    /// A material attestor that cannot be read as path → digests.
    pub fn materials(&self) -> Result<Artifacts, ArtifactError> {
        let mut out = Artifacts::new();
        for entry in self
            .attestations
            .iter()
            .filter(|e| types::is_material(&e.kind))
        {
            out.extend(read_files(&entry.kind, &entry.attestation, false)?);
        }
        Ok(out)
    }

    /// The collection's artifacts for a downstream step: materials overlaid by products.
    ///
    /// # Errors
    /// A material or product attestor that cannot be read.
    pub fn artifacts(&self) -> Result<Artifacts, ArtifactError> {
        let mut out = self.materials()?;
        for entry in self
            .attestations
            .iter()
            .filter(|e| types::is_product(&e.kind))
        {
            out.extend(read_files(&entry.kind, &entry.attestation, true)?);
        }
        Ok(out)
    }
}

fn read_files(kind: &str, body: &RawJson, product: bool) -> Result<Artifacts, ArtifactError> {
    // Material and product lists are read as a tree, parsed for this call only.
    let tree = body.to_value();
    let value = &tree;
    if value.get("merkleRoot").is_some() {
        return read_merkle(kind, value);
    }
    let shape = |source| ArtifactError::Shape {
        kind: kind.to_string(),
        source,
    };
    let raw: BTreeMap<String, BTreeMap<String, String>> = if product {
        BTreeMap::<String, ProductEntry>::deserialize(value)
            .map_err(shape)?
            .into_iter()
            .map(|(path, entry)| (path, entry.digest))
            .collect()
    } else {
        BTreeMap::deserialize(value).map_err(shape)?
    };
    raw.into_iter()
        .map(|(path, digests)| match DigestSet::new(digests) {
            Ok(set) => Ok((path, set)),
            Err(source) => Err(ArtifactError::Digest {
                kind: kind.to_string(),
                path,
                source,
            }),
        })
        .collect()
}

fn read_merkle(kind: &str, value: &serde_json::Value) -> Result<Artifacts, ArtifactError> {
    let form = MerkleForm::deserialize(value).map_err(|source| ArtifactError::Shape {
        kind: kind.to_string(),
        source,
    })?;
    // An empty tree needs no leaves to be checked: its root is the hash of nothing.
    let empty_root = crate::encoding::hex(&merkle_tree_hash(&[]));
    let leaves = match form.leaves {
        Some(leaves) => leaves,
        None if form.merkle_root == empty_root => Vec::new(),
        None => {
            return Err(ArtifactError::NoLeaves {
                kind: kind.to_string(),
            })
        }
    };
    let mismatch = || ArtifactError::MerkleMismatch {
        kind: kind.to_string(),
    };
    let mut hashes = Vec::with_capacity(leaves.len());
    for leaf in &leaves {
        let digest = decode_hex32(&leaf.file_digest).ok_or_else(mismatch)?;
        let mut h = Sha256::new();
        h.update(leaf.path.as_bytes());
        h.update([0u8]);
        h.update(digest);
        hashes.push(<[u8; 32]>::from(h.finalize()));
    }
    if crate::encoding::hex(&merkle_tree_hash(&hashes)) != form.merkle_root {
        return Err(mismatch());
    }
    Ok(leaves
        .into_iter()
        .map(|leaf| {
            let set = [("sha256".to_string(), leaf.file_digest)]
                .into_iter()
                .collect();
            (leaf.path, DigestSet(set))
        })
        .collect())
}

/// RFC 6962 §2.1 Merkle tree hash over `leaves` as leaf data.
fn merkle_tree_hash(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(one);
            h.finalize().into()
        }
        _ => {
            let split = leaves.len().next_power_of_two() / 2;
            let (left, right) = leaves.split_at(split);
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(merkle_tree_hash(left));
            h.update(merkle_tree_hash(right));
            h.finalize().into()
        }
    }
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(attestations: serde_json::Value) -> Collection {
        Collection::from_predicate(&RawJson::from_value(
            &serde_json::json!({"name": "s", "attestations": attestations}),
        ))
        .unwrap()
    }

    #[test]
    fn products_overlay_materials() {
        let c = collection(serde_json::json!([
            {"type": "https://witness.dev/attestations/material/v0.1",
             "attestation": {"a": {"sha256": "11"}, "b": {"sha256": "22"}}},
            {"type": "https://witness.dev/attestations/product/v0.1",
             "attestation": {"b": {"mime_type": "x", "digest": {"sha256": "33"}}}}
        ]));
        let artifacts = c.artifacts().unwrap();
        assert_eq!(artifacts["a"].values().collect::<Vec<_>>(), ["11"]);
        assert_eq!(artifacts["b"].values().collect::<Vec<_>>(), ["33"]);
        assert_eq!(
            c.materials().unwrap()["b"].values().collect::<Vec<_>>(),
            ["22"]
        );
    }

    #[test]
    fn merkle_leaves_must_match_the_root() {
        let digest = "b9b364f36d7442810db3dad4669293bc54732320753c5be5f6a905c8c4523d5c";
        // Root taken from a real cilock envelope with this single leaf.
        let root = "c43392518a1775674593ca31b320ff2821be5346ef338a4b85f093c9e65dc79a";
        let good = collection(serde_json::json!([
            {"type": "https://aflock.ai/attestations/material/v0.3",
             "attestation": {"merkleRoot": root, "treeSize": 1,
                             "leaves": [{"path": "key.pem", "fileDigest": digest}]}}
        ]));
        assert!(good.materials().unwrap().contains_key("key.pem"));
        let forged = collection(serde_json::json!([
            {"type": "https://aflock.ai/attestations/material/v0.3",
             "attestation": {"merkleRoot": root, "treeSize": 1,
                             "leaves": [{"path": "other.pem", "fileDigest": digest}]}}
        ]));
        assert!(matches!(
            forged.materials(),
            Err(ArtifactError::MerkleMismatch { .. })
        ));
        let bare = collection(serde_json::json!([
            {"type": "https://aflock.ai/attestations/product/v0.3",
             "attestation": {"merkleRoot": root, "treeSize": 1}}
        ]));
        assert!(matches!(
            bare.artifacts(),
            Err(ArtifactError::NoLeaves { .. })
        ));
    }

    #[test]
    fn unknown_digest_algorithm_is_an_error() {
        let c = collection(serde_json::json!([
            {"type": "https://witness.dev/attestations/material/v0.1",
             "attestation": {"a": {"md5": "11"}}}
        ]));
        assert!(matches!(c.materials(), Err(ArtifactError::Digest { .. })));
    }
}
