//! witness DigestSets inside attestor predicates, parsed strictly, and their v0.12 equality.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The digest algorithm keys witness writes, with their digest size in bytes.
const ALGORITHMS: &[(&str, usize)] = &[
    ("sha256", 32),
    ("sha1", 20),
    ("gitoid:sha256", 32),
    ("gitoid:sha1", 20),
    ("dirHash", 32),
];

/// A DigestSet key that witness does not know (witness makes the collection unreadable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown digest algorithm {0:?}")]
pub struct DigestSetError(pub String);

/// Algorithm → value, restricted to the five algorithms witness defines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestSet(pub(super) BTreeMap<String, String>);

impl DigestSet {
    /// Builds a set, refusing unknown algorithm keys.
    ///
    /// # Errors
    /// A key that is not one of witness's five algorithms.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, DigestSetError> {
        if let Some(bad) = map.keys().find(|k| size_of(k).is_none()) {
            return Err(DigestSetError(bad.clone()));
        }
        Ok(Self(map))
    }

    /// Parses a DigestSet from JSON.
    ///
    /// # Errors
    /// Not a string map, or an unknown algorithm.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, DigestSetError> {
        let map = BTreeMap::<String, String>::deserialize(value)
            .map_err(|_| DigestSetError(value.to_string()))?;
        Self::new(map)
    }

    /// Equality as go-witness v0.12 defines it: an algorithm of the largest size present in
    /// either set must be present in both and agree, and every shared algorithm must agree.
    /// Two empty sets are unequal. This refuses a downgrade to a SHA-1-only match.
    pub fn matches(&self, other: &DigestSet) -> bool {
        let largest = self
            .0
            .keys()
            .chain(other.0.keys())
            .filter_map(|k| size_of(k))
            .max();
        let Some(largest) = largest else {
            return false;
        };
        let mut strong_agreement = false;
        for (alg, value) in &self.0 {
            let Some(theirs) = other.0.get(alg) else {
                continue;
            };
            if theirs != value {
                return false;
            }
            if size_of(alg) == Some(largest) {
                strong_agreement = true;
            }
        }
        strong_agreement
    }

    /// The digest values, for display.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(String::as_str)
    }
}

fn size_of(alg: &str) -> Option<usize> {
    ALGORITHMS.iter().find(|(a, _)| *a == alg).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> DigestSet {
        DigestSet::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn strongest_algorithm_must_be_shared() {
        let a = set(&[("sha256", "aa"), ("sha1", "11")]);
        let b = set(&[("sha1", "11")]);
        assert!(
            !a.matches(&b),
            "a sha1-only overlap must not match a sha256 set"
        );
        assert!(a.matches(&set(&[("sha256", "aa")])));
        assert!(!a.matches(&set(&[("sha256", "aa"), ("sha1", "22")])));
        assert!(set(&[("sha1", "11")]).matches(&b));
        assert!(!DigestSet::default().matches(&DigestSet::default()));
    }

    #[test]
    fn refuses_unknown_algorithms() {
        let map = [("md5".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(DigestSet::new(map), Err(DigestSetError("md5".into())));
    }
}
