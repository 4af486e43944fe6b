//! JSON kept as text: a slice of a statement's payload, shared rather than copied, and parsed
//! only by whoever reads it. An attestation body can be tens of megabytes (an SBOM) that the
//! policy never looks at; as a tree it would cost many times its size.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{Error as _, IgnoredAny};
use serde_json::value::RawValue;

/// One JSON value, as text. The text was checked (syntax, nesting, numbers, strings) when the
/// statement holding it was read, so parsing it again cannot fail on those grounds.
#[derive(Clone)]
pub struct RawJson {
    text: Arc<String>,
    start: usize,
    end: usize,
}

impl RawJson {
    /// A whole checked document (the whitespace around its value left out).
    pub(crate) fn whole(text: Arc<String>) -> Self {
        let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
        let end = text.trim_end_matches(space).len();
        let start = end
            - text
                .get(..end)
                .unwrap_or_default()
                .trim_start_matches(space)
                .len();
        Self { text, start, end }
    }

    /// JSON `null`, for a member that is absent.
    pub(crate) fn null() -> Self {
        Self::whole(Arc::new("null".to_string()))
    }

    /// The value `inner`, a slice of this value's text, sharing the text (a copy only if
    /// `inner` is not such a slice, which the callers never do).
    pub(crate) fn part(&self, inner: &str) -> Self {
        let base = self.text.as_ptr() as usize;
        let start = (inner.as_ptr() as usize).wrapping_sub(base);
        let end = start.wrapping_add(inner.len());
        match self.text.get(start..end) {
            Some(slice) if slice.as_ptr() == inner.as_ptr() => Self {
                text: self.text.clone(),
                start,
                end,
            },
            _ => Self::whole(Arc::new(inner.to_string())),
        }
    }

    /// A value serialized from a tree (tests and callers that build evidence in memory).
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self::whole(Arc::new(value.to_string()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.text.get(self.start..self.end).unwrap_or("null")
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.as_str() == "null"
    }

    /// The value as a tree, parsed now (`null` in the impossible case that the checked text
    /// does not parse). Meant for small values; large ones should be read as a stream.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.as_str()).unwrap_or(serde_json::Value::Null)
    }

    /// The members of an object, the last of a repeated key winning (as in a parsed tree);
    /// `None` when the value is not an object.
    pub(crate) fn members(&self) -> Result<Option<BTreeMap<String, &RawValue>>, serde_json::Error> {
        let text = self.as_str();
        if !text.starts_with('{') {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some)
    }

    /// The elements of an array; `None` when the value is not an array.
    pub(crate) fn elements(&self) -> Result<Option<Vec<&RawValue>>, serde_json::Error> {
        let text = self.as_str();
        if !text.starts_with('[') {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some)
    }

    /// The distinct keys of an object, in order; `None` when the value is not an object. Values
    /// are skipped, not parsed.
    pub(crate) fn keys(&self) -> Option<Vec<String>> {
        let text = self.as_str();
        if !text.starts_with('{') {
            return None;
        }
        serde_json::from_str::<BTreeMap<String, IgnoredAny>>(text)
            .ok()
            .map(|members| members.into_keys().collect())
    }

    /// The members `names` as one object, each parsed as a tree (absent ones left out), for
    /// reading the small fields of a record as the typed form of its tree would.
    pub(crate) fn member_values(
        members: &BTreeMap<String, &RawValue>,
        names: &[&str],
    ) -> Result<serde_json::Value, serde_json::Error> {
        let mut out = serde_json::Map::new();
        for name in names {
            if let Some(raw) = members.get(*name) {
                out.insert((*name).to_string(), serde_json::from_str(raw.get())?);
            }
        }
        Ok(serde_json::Value::Object(out))
    }

    /// An error for a value that does not have the expected type.
    pub(crate) fn not_a(what: &str) -> serde_json::Error {
        serde_json::Error::custom(format_args!("expected {what}"))
    }
}

impl Default for RawJson {
    fn default() -> Self {
        Self::null()
    }
}

impl PartialEq for RawJson {
    /// Equal when the JSON texts are equal.
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RawJson {}

impl fmt::Debug for RawJson {
    /// The text, cut after 256 bytes (a body can be megabytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 256;
        let text = self.as_str();
        if text.len() <= SHOWN {
            return write!(f, "RawJson({text})");
        }
        let mut cut = SHOWN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let head = text.get(..cut).unwrap_or_default();
        write!(f, "RawJson({head}… {} bytes)", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_share_the_text_and_repeated_keys_keep_the_last() {
        let whole = RawJson::whole(Arc::new(r#"{"a": [1, {"b": 2}], "a": {"c": 3}}"#.into()));
        let members = whole.members().unwrap().unwrap();
        let a = whole.part(members["a"].get());
        assert_eq!(a.as_str(), r#"{"c": 3}"#);
        assert!(Arc::ptr_eq(&a.text, &whole.text));
        assert_eq!(a.keys().unwrap(), ["c"]);
        assert_eq!(a.to_value(), serde_json::json!({"c": 3}));
        assert!(whole.elements().unwrap().is_none());
        assert!(RawJson::null().is_null());
        let spaced = RawJson::whole(Arc::new(" \n{\"a\": 1}\r\n ".into()));
        assert_eq!(spaced.as_str(), r#"{"a": 1}"#);
        assert!(spaced.members().unwrap().is_some());
    }

    #[test]
    fn a_foreign_slice_is_copied() {
        let whole = RawJson::whole(Arc::new("[1]".into()));
        let other = String::from("[1]");
        let part = whole.part(&other);
        assert_eq!(part.as_str(), "[1]");
        assert!(!Arc::ptr_eq(&part.text, &whole.text));
    }

    #[test]
    fn debug_is_cut() {
        let long = RawJson::from_value(&serde_json::json!("x".repeat(1000)));
        let shown = format!("{long:?}");
        assert!(shown.len() < 300, "{shown}");
        assert!(shown.ends_with("1002 bytes)"), "{shown}");
    }
}
