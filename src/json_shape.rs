//! Where a JSON document must hold objects.
//!
//! serde's derived structs also accept a JSON array, read by position; Go's decoder (witness)
//! refuses it. So that two readers never see two different documents, the places that hold
//! records are checked to be objects before the typed parse.

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

#[cfg(test)]
mod strict_tests {
    use super::*;

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
