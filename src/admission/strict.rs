//! Strict JSON reading for the review: typed records kept only as far as they are needed, with
//! duplicate keys refused at any depth, also inside the parts that are skipped.
//!
//! A record keeps the members it names and walks over the others without building anything but
//! the list of keys it has seen. A value whose JSON type is checked later (a `uid` that must be
//! a string, a `spec` that must be an object) is read into a [`Scalar`], [`Obj`] or [`List`],
//! which remember the type that came, so that the message naming the field is written by the
//! code that knows the field, after the whole document has been read.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json_shape::ObjectKey;

/// How many keys of an object [`SeenKeys`] keeps on the stack before using a hash set.
const LINEAR_KEYS: usize = 16;

/// A JSON object read member by member; unnamed members are walked over (and checked).
pub(crate) trait Record<'de>: Default {
    /// Reads the value of member `key` from `map` when the record keeps it, otherwise walks
    /// over it with [`skip_value`].
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

impl<'de, R: Record<'de>> Record<'de> for Box<R> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        R::member(self, key, map)
    }
}

/// Implements [`Record`] for a struct from the JSON members it keeps and the field each one
/// fills; every other member is walked over with [`skip_value`].
macro_rules! record_members {
    ($record:ty { $($key:literal => $field:ident),+ $(,)? }) => {
        impl<'de> $crate::admission::strict::Record<'de> for $record {
            fn member<A: serde::de::MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match key {
                    $($key => self.$field = map.next_value()?,)+
                    _ => $crate::admission::strict::skip_value(map)?,
                }
                Ok(())
            }
        }
    };
}
pub(crate) use record_members;

/// A record that keeps nothing: a checked walk over an object.
impl<'de> Record<'de> for () {
    fn member<A: MapAccess<'de>>(&mut self, _key: &str, map: &mut A) -> Result<(), A::Error> {
        skip_value(map)
    }
}

/// Walks over the value of the current member, for the members a record does not keep.
pub(crate) fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<Skip>().map(|Skip| ())
}

/// Reads an object into `R`, refusing a key that appears twice.
pub(crate) fn read_record<'de, A: MapAccess<'de>, R: Record<'de>>(
    mut map: A,
) -> Result<R, A::Error> {
    let mut record = R::default();
    let mut seen = SeenKeys::default();
    while let Some(key) = map.next_key_seed(ObjectKey)? {
        record.member(&key, &mut map)?;
        if !seen.insert(key) {
            // The message names no key: a key can be as long as the body.
            return Err(de::Error::custom("duplicate key"));
        }
    }
    Ok(record)
}

/// Walks over an array, checking the objects inside it.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

/// The keys of one object so far: the first ones in a small array on the stack (most objects
/// have a handful of keys, and allocating a list for each would cost more than the parse), the
/// rest in a hash set.
struct SeenKeys<'de> {
    first: [Cow<'de, str>; LINEAR_KEYS],
    len: usize,
    rest: HashSet<Cow<'de, str>>,
}

impl Default for SeenKeys<'_> {
    fn default() -> Self {
        Self {
            first: [const { Cow::Borrowed("") }; LINEAR_KEYS],
            len: 0,
            rest: HashSet::new(),
        }
    }
}

impl<'de> SeenKeys<'de> {
    /// Records `key`; `false` when it was already there.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        let first = self.first.get(..self.len).unwrap_or_default();
        if first.contains(&key) {
            return false;
        }
        match self.first.get_mut(self.len) {
            Some(slot) => {
                *slot = key;
                self.len += 1;
                true
            }
            None => self.rest.insert(key),
        }
    }
}

/// Any JSON value, walked over and dropped; its objects are still checked for repeated keys.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_none<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Skip, A::Error> {
        skip_seq(seq).map(|()| Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Skip, A::Error> {
        read_record::<A, ()>(map).map(|()| Skip)
    }
}

/// A member expected to be a string (or a boolean), with what actually came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// Absent or `null`.
    #[default]
    Null,
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A number, an array or an object.
    Other,
}

impl Scalar {
    /// The string, if a string came.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }

    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
        skip_seq(seq).map(|()| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
        read_record::<A, ()>(map).map(|()| Scalar::Other)
    }
}

/// A member expected to be an object, read into the record `T`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Obj<T> {
    /// Absent or `null`.
    #[default]
    Null,
    /// An object.
    Object(T),
    /// Any other type.
    Other,
}

impl<T> Obj<T> {
    /// The record, if an object came.
    pub(crate) fn as_object(&self) -> Option<&T> {
        match self {
            Self::Object(record) => Some(record),
            _ => None,
        }
    }
}

impl<'de, T: Record<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Record<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Obj<T>, E> {
        Ok(Obj::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Obj<T>, E> {
        Ok(Obj::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Obj<T>, E> {
        Ok(Obj::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Obj<T>, E> {
        Ok(Obj::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Obj<T>, E> {
        Ok(Obj::Other)
    }

    fn visit_unit<E>(self) -> Result<Obj<T>, E> {
        Ok(Obj::Null)
    }

    fn visit_none<E>(self) -> Result<Obj<T>, E> {
        Ok(Obj::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Obj<T>, A::Error> {
        skip_seq(seq).map(|()| Obj::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
        read_record(map).map(Obj::Object)
    }
}

/// A member expected to be an array of objects, each read into the record `T`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum List<T> {
    /// Absent or `null`.
    #[default]
    Null,
    /// An array; `None` for an element that is not an object.
    Array(Vec<Option<T>>),
    /// Any other type.
    Other,
}

impl<'de, T: Record<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Record<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<List<T>, E> {
        Ok(List::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<List<T>, E> {
        Ok(List::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<List<T>, E> {
        Ok(List::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<List<T>, E> {
        Ok(List::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<List<T>, E> {
        Ok(List::Other)
    }

    fn visit_unit<E>(self) -> Result<List<T>, E> {
        Ok(List::Null)
    }

    fn visit_none<E>(self) -> Result<List<T>, E> {
        Ok(List::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element::<Obj<T>>()? {
            items.push(match item {
                Obj::Object(record) => Some(record),
                Obj::Null | Obj::Other => None,
            });
        }
        Ok(List::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<List<T>, A::Error> {
        read_record::<A, ()>(map).map(|()| List::Other)
    }
}

/// Reads a whole document into `T`, refusing trailing characters.
pub(crate) fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> serde_json::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Pair {
        a: Scalar,
        b: Obj<Box<Pair>>,
        c: List<Pair>,
    }

    impl<'de> Record<'de> for Pair {
        fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
            match key {
                "a" => self.a = map.next_value()?,
                "b" => self.b = map.next_value()?,
                "c" => self.c = map.next_value()?,
                _ => skip_value(map)?,
            }
            Ok(())
        }
    }

    fn read(json: &str) -> serde_json::Result<Obj<Pair>> {
        from_slice(json.as_bytes())
    }

    #[test]
    fn members_keep_the_type_that_came() {
        let Obj::Object(pair) =
            read(r#"{"a": "x", "b": {"a": true, "b": [1]}, "c": [{"a": 1}, 2, null], "z": {}}"#)
                .unwrap()
        else {
            panic!("an object");
        };
        assert_eq!(pair.a, Scalar::Str("x".into()));
        let Obj::Object(inner) = &pair.b else {
            panic!("{:?}", pair.b);
        };
        assert_eq!(inner.a, Scalar::Bool(true));
        assert_eq!(inner.b, Obj::Other);
        let List::Array(items) = &pair.c else {
            panic!("{:?}", pair.c);
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().map(|p| p.a.clone()), Some(Scalar::Other));
        assert_eq!(items[1], None);
        assert_eq!(items[2], None);
        assert_eq!(read("null").unwrap(), Obj::Null);
        assert_eq!(read("[]").unwrap(), Obj::Other);
    }

    #[test]
    fn repeated_keys_are_refused_kept_or_skipped_at_any_depth() {
        for json in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"z": 1, "z": 2}"#,
            r#"{"b": {"z": [], "z": []}}"#,
            r#"{"c": [{}, {"q": {"r": 1, "r": 1}}]}"#,
            r#"{"z": [[{"y": 1, "y": 2}]]}"#,
            r#"{"a": {"y": 1, "y": 2}}"#,
            r#"{"a": "\u0061", "\u0061": 2}"#,
        ] {
            let err = read(json).unwrap_err();
            assert_eq!(err.classify(), serde_json::error::Category::Data, "{json}");
            assert!(
                err.to_string().starts_with("duplicate key"),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn large_objects_spill_to_a_set_and_still_find_repeats() {
        let keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        let unique = format!("{{{}}}", keys.join(","));
        assert!(read(&unique).is_ok());
        for repeated in ["k0", "k15", "k16", "k39"] {
            let json = format!("{{{}, \"{repeated}\": 0}}", keys.join(","));
            assert!(read(&json).is_err(), "{repeated}");
        }
    }

    #[test]
    fn trailing_characters_are_refused() {
        assert!(read(r#"{"a": 1} x"#).is_err());
        assert!(read(r#"{"a": 1}  "#).is_ok());
    }
}
