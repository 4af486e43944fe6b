//! Where a JSON document must hold objects.
//!
//! serde's derived structs also accept a JSON array, read by position; Go's decoder (witness)
//! refuses it. So that two readers never see two different documents, the places that hold
//! records are checked to be objects before the typed parse.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

/// The expected shape of a JSON value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// Anything.
    Any,
    /// An object; the listed members, when present and not `null`, have the given shapes.
    Object(&'static [(&'static str, Shape)]),
    /// An object whose every member value has the shape.
    MapOf(&'static Shape),
    /// An array whose every element has the shape.
    ArrayOf(&'static Shape),
}

/// Checks `value` against `shape`; the error names the path of the first mismatch.
pub(crate) fn check(value: &Value, shape: Shape) -> Result<(), String> {
    walk(value, shape, &mut String::from("$"))
}

fn walk(value: &Value, shape: Shape, path: &mut String) -> Result<(), String> {
    match shape {
        Shape::Any => Ok(()),
        Shape::Object(members) => {
            let Value::Object(map) = value else {
                return Err(format!("{path} must be an object"));
            };
            for (name, inner) in members {
                if let Some(v) = map.get(*name).filter(|v| !v.is_null()) {
                    let len = path.len();
                    path.push('.');
                    path.push_str(name);
                    walk(v, *inner, path)?;
                    path.truncate(len);
                }
            }
            Ok(())
        }
        Shape::MapOf(inner) => {
            let Value::Object(map) = value else {
                return Err(format!("{path} must be an object"));
            };
            for (key, v) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                walk(v, *inner, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Shape::ArrayOf(inner) => {
            let Value::Array(items) = value else {
                return Err(format!("{path} must be an array"));
            };
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, *inner, path)?;
                path.truncate(len);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER: Shape = Shape::Object(&[("b", Shape::Any)]);
    const OUTER: Shape =
        Shape::Object(&[("a", Shape::ArrayOf(&INNER)), ("m", Shape::MapOf(&INNER))]);

    #[test]
    fn arrays_in_place_of_objects_are_named() {
        assert!(check(&serde_json::json!({"a": [{"b": 1}], "m": {"x": {}}}), OUTER).is_ok());
        assert_eq!(
            check(&serde_json::json!([1]), OUTER).unwrap_err(),
            "$ must be an object"
        );
        assert_eq!(
            check(&serde_json::json!({"a": [[1]]}), OUTER).unwrap_err(),
            "$.a[0] must be an object"
        );
        assert_eq!(
            check(&serde_json::json!({"m": {"x": ["b"]}}), OUTER).unwrap_err(),
            "$.m.x must be an object"
        );
        assert!(check(&serde_json::json!({"a": null}), OUTER).is_ok());
    }
}

/// Parses JSON into a [`Value`], refusing duplicate keys in any object (serde_json keeps the
/// last one silently, as Go does; two readers could then disagree about a signed document).
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde::Deserialize::deserialize(&mut deserializer).map(|v: Strict| v.0)?;
    deserializer.end()?;
    Ok(value)
}

struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {key:?}"
                )));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads one JSON document as [`parse_strict`] (with `strict`) or `serde_json::from_slice` into
/// a [`Value`] (without) would, and checks `shape` as [`check`] would on that value, building no
/// tree: the same syntax errors, nesting limit, number range and string checks, the same
/// duplicate-key refusal when strict, and the same first shape mismatch (the outer `Err` is the
/// parse failure, which wins over any mismatch, as it does when the tree is built first).
///
/// Without `strict`, a key given twice counts as its last value, as in a [`Value`].
pub(crate) fn scan(
    bytes: &[u8],
    strict: bool,
    shape: Shape,
) -> Result<Result<(), String>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let root = Scan {
        shape,
        nullable: false,
        strict,
        path: "$",
    };
    let mismatch = serde::de::DeserializeSeed::deserialize(root, &mut deserializer)?;
    deserializer.end()?;
    Ok(mismatch.map_or(Ok(()), Err))
}

/// One value of a [`scan`]: its expected shape and where it is. Returns the first shape
/// mismatch in the value, in the order [`check`] walks.
#[derive(Clone, Copy)]
struct Scan<'p> {
    shape: Shape,
    /// A `null` here is not walked ([`check`] skips null members of an object).
    nullable: bool,
    strict: bool,
    path: &'p str,
}

impl Scan<'_> {
    fn child<'c>(&self, shape: Shape, nullable: bool, path: &'c str) -> Scan<'c> {
        Scan {
            shape,
            nullable,
            strict: self.strict,
            path,
        }
    }

    /// The mismatch of a value that is neither an object nor an array.
    fn scalar(&self) -> Option<String> {
        match self.shape {
            Shape::Any => None,
            Shape::Object(_) | Shape::MapOf(_) => Some(format!("{} must be an object", self.path)),
            Shape::ArrayOf(_) => Some(format!("{} must be an array", self.path)),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan<'_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Scan<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(self.scalar())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(if self.nullable { None } else { self.scalar() })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (own, inner) = match self.shape {
            Shape::ArrayOf(inner) => (None, Some(*inner)),
            Shape::Any => (None, None),
            Shape::Object(_) | Shape::MapOf(_) => (self.scalar(), None),
        };
        let mut first = None;
        let mut index = 0usize;
        loop {
            let found = match inner {
                Some(inner) => {
                    let path = format!("{}[{index}]", self.path);
                    seq.next_element_seed(self.child(inner, false, &path))?
                }
                None => seq.next_element_seed(self.child(Shape::Any, false, ""))?,
            };
            let Some(mismatch) = found else { break };
            if first.is_none() {
                first = mismatch;
            }
            index += 1;
        }
        Ok(own.or(first))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let own = match self.shape {
            Shape::ArrayOf(_) => self.scalar(),
            _ => None,
        };
        // Mismatches by walk position: a member's place in the shape, or a map's key (a
        // `Value`'s map iterates in key order). A later duplicate replaces an earlier one.
        let mut found: BTreeMap<(usize, String), Option<String>> = BTreeMap::new();
        let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(ObjectKey)? {
            let walked = match self.shape {
                Shape::Object(members) if own.is_none() => members
                    .iter()
                    .position(|(name, _)| *name == key)
                    .and_then(|at| members.get(at).map(|(_, inner)| (at, *inner, true))),
                Shape::MapOf(inner) => Some((0, *inner, false)),
                _ => None,
            };
            match walked {
                Some((at, inner, nullable)) => {
                    let path = format!("{}.{key}", self.path);
                    let mismatch = map.next_value_seed(self.child(inner, nullable, &path))?;
                    found.insert((at, key.to_string()), mismatch);
                }
                None => {
                    map.next_value_seed(self.child(Shape::Any, false, ""))?;
                }
            }
            if self.strict && !keys.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    key.as_ref()
                )));
            }
        }
        Ok(own.or_else(|| found.into_values().flatten().next()))
    }
}

/// Whether any object in the JSON text has the key `key` (compared unescaped); `false` for
/// text that does not parse.
pub(crate) fn has_key(text: &str, key: &str) -> bool {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde::de::DeserializeSeed::deserialize(KeySearch { key }, &mut deserializer).unwrap_or(false)
}

/// Looks for a key in a value, reading everything (values are not kept).
#[derive(Clone, Copy)]
struct KeySearch<'k> {
    key: &'k str,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeySearch<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySearch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(inner) = seq.next_element_seed(self)? {
            found |= inner;
        }
        Ok(found)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key_seed(ObjectKey)? {
            found |= key == self.key;
            found |= map.next_value_seed(self)?;
        }
        Ok(found)
    }
}

/// An object key, borrowed from the input when it has no escapes (the strict readers of
/// evidence here and of reviews in `admission` share it).
pub(crate) struct ObjectKey;

impl<'de> serde::de::DeserializeSeed<'de> for ObjectKey {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ObjectKey {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod strict_tests {
    use super::*;
    use proptest::prelude::*;

    const LEAF: Shape = Shape::Object(&[("t", Shape::ArrayOf(&Shape::Object(&[])))]);
    const SHAPES: [Shape; 4] = [
        Shape::Any,
        Shape::Object(&[("b", Shape::ArrayOf(&LEAF)), ("a", Shape::MapOf(&LEAF))]),
        Shape::ArrayOf(&Shape::MapOf(&Shape::ArrayOf(&Shape::Any))),
        Shape::MapOf(&Shape::Object(&[
            ("a", Shape::Any),
            ("t", Shape::MapOf(&LEAF)),
        ])),
    ];

    /// The tree-building reading that [`scan`] must agree with.
    fn by_tree(bytes: &[u8], strict: bool, shape: Shape) -> Option<Result<(), String>> {
        let value = if strict {
            parse_strict(bytes).ok()?
        } else {
            serde_json::from_slice(bytes).ok()?
        };
        Some(check(&value, shape))
    }

    fn document() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "null",
            "1",
            "-2.5",
            "1e999",
            "\"x\"",
            "\"\\ud800\"",
            "true",
        ])
        .prop_map(String::from);
        leaf.prop_recursive(5, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["a", "b", "t", "A", "\\u0061"]),
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| {
                    let members: Vec<String> =
                        kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn scan_agrees_with_the_tree(text in document(), strict in any::<bool>(), which in 0usize..4) {
            let shape = SHAPES[which];
            let scanned = scan(text.as_bytes(), strict, shape).ok();
            prop_assert_eq!(scanned, by_tree(text.as_bytes(), strict, shape), "{}", text);
        }
    }

    #[test]
    fn scan_reports_the_first_mismatch_in_walk_order() {
        let shape = SHAPES[1];
        // `b` is listed first in the shape, so its mismatch wins over `a`'s, wherever written.
        let text = br#"{"a": {"k": 1}, "b": 2}"#;
        assert_eq!(
            scan(text, true, shape).unwrap(),
            Err("$.b must be an array".into())
        );
        // A map's members are walked in key order.
        let text = br#"{"a": {"z": 1, "m": []}}"#;
        assert_eq!(
            scan(text, true, shape).unwrap(),
            Err("$.a.m must be an object".into())
        );
        // A parse failure anywhere wins over a mismatch.
        assert!(scan(br#"{"b": 2, "a": {"k": 1, "k": 1}}"#, true, shape).is_err());
        assert!(scan(br#"{"b": 2, "a": {"k": 1, "k": 1}}"#, false, shape).is_ok());
        assert!(scan(br#"{"b": 2} x"#, false, shape).is_err());
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse_strict(br#"{"a": {"b": 1, "c": [1, {"d": 2}]}}"#).is_ok());
        let err = parse_strict(br#"{"a": {"b": 1, "b": 2}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"b\""), "{err}");
        assert!(parse_strict(br#"{"a": 1} x"#).is_err());
    }
}
