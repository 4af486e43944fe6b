//! The statement and collection readers keep attestation bodies as JSON text instead of trees
//! (for memory). These tests hold them to the verdicts of the tree-based readers they replaced:
//! the reference below is that earlier reading (payload into a `serde_json::Value`, the shape
//! checked on the tree, typed records deserialized from it), and every input, generated or
//! curated, must give the same statement, the same collection, or the same error text.
//! The Rego input read from the text must also be the one the tree gave.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use attestgate::encoding::encode_base64;
use attestgate::intoto::{Collection, RawJson, Statement};
use attestgate::policy::document::RegoPolicy;
use attestgate::policy::rego::{RegoBudget, RegoModules};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

/// The tree-based reading the text-based one must agree with.
mod reference {
    use super::*;

    #[derive(Clone, Copy)]
    enum Shape {
        Any,
        Object(&'static [(&'static str, Shape)]),
        MapOf(&'static Shape),
        ArrayOf(&'static Shape),
    }

    const STATEMENT_SHAPE: Shape = Shape::Object(&[
        (
            "subject",
            Shape::ArrayOf(&Shape::Object(&[("digest", Shape::MapOf(&Shape::Any))])),
        ),
        (
            "predicate",
            Shape::Object(&[("attestations", Shape::ArrayOf(&Shape::Object(&[])))]),
        ),
    ]);

    fn walk(value: &Value, shape: Shape, path: &str) -> Result<(), String> {
        match shape {
            Shape::Any => Ok(()),
            Shape::Object(members) => {
                let Value::Object(map) = value else {
                    return Err(format!("{path} must be an object"));
                };
                for (name, inner) in members {
                    if let Some(v) = map.get(*name).filter(|v| !v.is_null()) {
                        walk(v, *inner, &format!("{path}.{name}"))?;
                    }
                }
                Ok(())
            }
            Shape::MapOf(inner) => {
                let Value::Object(map) = value else {
                    return Err(format!("{path} must be an object"));
                };
                for (key, v) in map {
                    walk(v, *inner, &format!("{path}.{key}"))?;
                }
                Ok(())
            }
            Shape::ArrayOf(inner) => {
                let Value::Array(items) = value else {
                    return Err(format!("{path} must be an array"));
                };
                for (i, v) in items.iter().enumerate() {
                    walk(v, *inner, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
        }
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct Subject {
        #[serde(default)]
        pub(crate) name: String,
        #[serde(default)]
        pub(crate) digest: BTreeMap<String, String>,
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct Statement {
        #[serde(rename = "_type")]
        pub(crate) statement_type: String,
        #[serde(default)]
        pub(crate) subject: Vec<Subject>,
        #[serde(rename = "predicateType")]
        pub(crate) predicate_type: String,
        #[serde(default)]
        pub(crate) predicate: Value,
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct Collection {
        #[serde(default)]
        pub(crate) name: String,
        #[serde(default)]
        pub(crate) attestations: Vec<Entry>,
        #[serde(default)]
        pub(crate) backrefs: Option<BTreeMap<String, BTreeMap<String, String>>>,
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct Entry {
        #[serde(rename = "type")]
        pub(crate) kind: String,
        #[serde(default)]
        pub(crate) attestation: Value,
        #[serde(default)]
        pub(crate) starttime: Option<String>,
        #[serde(default)]
        pub(crate) endtime: Option<String>,
    }

    /// The error texts are those of `attestgate::intoto::StatementError`.
    pub(crate) fn statement(payload: &[u8]) -> Result<Statement, String> {
        let json = "payload is not an in-toto statement".to_string();
        let value: Value = serde_json::from_slice(payload).map_err(|_| json.clone())?;
        walk(&value, STATEMENT_SHAPE, "$").map_err(|m| format!("{json}: {m}"))?;
        let statement = Statement::deserialize(value).map_err(|_| json)?;
        let known = [
            "https://in-toto.io/Statement/v0.1",
            "https://in-toto.io/Statement/v1",
        ];
        if !known.contains(&statement.statement_type.as_str()) {
            return Err(format!(
                "statement type {:?} is not an in-toto statement type",
                statement.statement_type
            ));
        }
        Ok(statement)
    }

    pub(crate) fn collection(predicate: Value) -> Result<Collection, String> {
        let collection = Collection::deserialize(predicate)
            .map_err(|_| "predicate is not an attestation collection".to_string())?;
        for (index, entry) in collection.attestations.iter().enumerate() {
            if !entry.attestation.is_object() {
                return Err(format!(
                    "attestation {index} ({:?}) is not a JSON object",
                    entry.kind
                ));
            }
            if let Some(object) = entry.attestation.as_object() {
                let mut seen = BTreeMap::new();
                for key in object.keys() {
                    if let Some(other) = seen.insert(key.to_lowercase(), key) {
                        return Err(format!(
                            "attestation {:?} has keys that differ only in case: {other:?} and {key:?}",
                            entry.kind
                        ));
                    }
                }
            }
            for (field, value) in [("starttime", &entry.starttime), ("endtime", &entry.endtime)] {
                let Some(value) = value else { continue };
                let parsed = time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                );
                if parsed.is_err() {
                    return Err(format!(
                        "attestation {:?} has a {field} that is not an RFC 3339 time",
                        entry.kind
                    ));
                }
            }
        }
        Ok(collection)
    }
}

/// Asserts that both readers agree on `payload`; returns whether a collection was read.
fn agree(payload: &[u8]) -> bool {
    let shown = String::from_utf8_lossy(payload);
    let old = reference::statement(payload);
    let new = Statement::from_json(payload);
    let (old, new) = match (old, new) {
        (Err(old), Err(new)) => {
            assert_eq!(old, new.to_string(), "statement error for {shown}");
            return false;
        }
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => panic!("readers disagree on {shown}: {old:?} / {new:?}"),
    };
    assert_eq!(old.statement_type, new.statement_type, "{shown}");
    assert_eq!(old.predicate_type, new.predicate_type, "{shown}");
    assert_eq!(old.subject.len(), new.subject.len(), "{shown}");
    for (o, n) in old.subject.iter().zip(&new.subject) {
        assert_eq!((&o.name, &o.digest), (&n.name, &n.digest), "{shown}");
    }
    assert_eq!(old.predicate, new.predicate.to_value(), "{shown}");

    let old = reference::collection(old.predicate);
    let new = Collection::from_predicate(&new.predicate);
    let (old, new) = match (old, new) {
        (Err(old), Err(new)) => {
            assert_eq!(old, new.to_string(), "collection error for {shown}");
            return false;
        }
        (Ok(old), Ok(new)) => (old, new),
        (old, new) => panic!("collection readers disagree on {shown}: {old:?} / {new:?}"),
    };
    assert_eq!(old.name, new.name, "{shown}");
    assert_eq!(old.backrefs, new.backrefs, "{shown}");
    assert_eq!(old.attestations.len(), new.attestations.len(), "{shown}");
    for (o, n) in old.attestations.iter().zip(&new.attestations) {
        assert_eq!(o.kind, n.kind, "{shown}");
        assert_eq!(
            (&o.starttime, &o.endtime),
            (&n.starttime, &n.endtime),
            "{shown}"
        );
        assert_eq!(o.attestation, n.attestation.to_value(), "{shown}");
    }
    true
}

const TIME: &str = "\"2023-09-26T17:23:47.32625-05:00\"";

/// Leaves that matter to the readers: types they check, times, digests, out-of-range numbers.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("7".to_string()),
        Just("-3".to_string()),
        Just("2.5".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just("\"x\"".to_string()),
        Just("\"\\u00e9\\n\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just(TIME.to_string()),
        Just("\"yesterday\"".to_string()),
        Just("\"https://in-toto.io/Statement/v1\"".to_string()),
        Just("\"$serde_json::private::Number\"".to_string()),
    ]
}

const KEYS: &[&str] = &[
    "_type",
    "subject",
    "predicateType",
    "predicate",
    "name",
    "digest",
    "sha256",
    "attestations",
    "attestation",
    "type",
    "starttime",
    "endtime",
    "backrefs",
    "Remotes",
    "remotes",
    "merkleRoot",
    "$serde_json::private::Number",
    "s\\u0075bject",
];

/// JSON text of any shape, with keys from [`KEYS`] (so records meet their own names, twice at
/// times, and with keys that differ only in case).
fn json() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|kv| {
                let members: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// An attestation entry: well-formed, or with any member replaced or repeated.
fn entry() -> impl Strategy<Value = String> {
    (json(), prop::option::of(json()), any::<u8>()).prop_map(|(body, other, pick)| {
        let kind = "\"https://witness.dev/attestations/git/v0.1\"";
        let mut members = vec![
            format!("\"type\":{kind}"),
            format!("\"attestation\":{body}"),
            format!("\"starttime\":{TIME}"),
        ];
        if let Some(other) = other {
            let key = KEYS[usize::from(pick) % KEYS.len()];
            members.push(format!("\"{key}\":{other}"));
        }
        if pick % 7 == 0 {
            members.rotate_left(1);
        }
        format!("{{{}}}", members.join(","))
    })
}

/// A statement around generated parts, any of which may be wrong.
fn statement() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(entry(), 0..3),
        prop::option::of(json()),
        prop::option::of(json()),
        any::<u8>(),
    )
        .prop_map(|(entries, odd, extra, pick)| {
            let predicate = format!(
                "{{\"name\":\"build\",\"attestations\":[{}]{}}}",
                entries.join(","),
                match &odd {
                    Some(odd) if pick % 3 == 0 => format!(",\"backrefs\":{odd}"),
                    Some(odd) if pick % 3 == 1 => format!(",\"attestations\":{odd}"),
                    Some(odd) => format!(",\"name\":{odd}"),
                    None => String::new(),
                }
            );
            let mut members = vec![
                "\"_type\":\"https://in-toto.io/Statement/v0.1\"".to_string(),
                "\"subject\":[{\"name\":\"n\",\"digest\":{\"sha256\":\"ab\"}}]".to_string(),
                "\"predicateType\":\"https://witness.testifysec.com/attestation-collection/v0.1\""
                    .to_string(),
                format!("\"predicate\":{predicate}"),
            ];
            if let Some(extra) = extra {
                let key = KEYS[usize::from(pick) % 4];
                members.insert(usize::from(pick / 4) % 5, format!("\"{key}\":{extra}"));
            }
            format!("{{{}}}", members.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn generated_statements_read_alike(text in statement()) {
        agree(text.as_bytes());
    }

    #[test]
    fn generated_documents_read_alike(text in json()) {
        agree(text.as_bytes());
    }

    #[test]
    fn mutated_statements_read_alike(at in 0usize..400, len in 0usize..6,
                                     insert in prop::sample::select(vec!["", "null", "[", "{", "}", "]", ",", "\"", "\"a\":1,", "[]", "{}", "1e999", "\\u0000"])) {
        let base = curated()[0].clone();
        let mut bytes = base.into_bytes();
        let at = at % bytes.len();
        let end = (at + len).min(bytes.len());
        bytes.splice(at..end, insert.bytes());
        agree(&bytes);
    }
}

/// Hand-written inputs for each rule of the readers, all expected to read alike.
fn curated() -> Vec<String> {
    let head = r#""_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"n","digest":{"sha256":"ab"}}],"predicateType":"p""#;
    let with = |predicate: &str| format!("{{{head},\"predicate\":{predicate}}}");
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    vec![
        with(
            r#"{"name":"build","attestations":[{"type":"t","attestation":{"a":{"b":[1,2.5,"x"]}},"starttime":"2023-09-26T17:23:47Z","endtime":null}]}"#,
        ),
        with("null"),
        with("[]"),
        with("{}"),
        with(r#"{"attestations":null}"#),
        with(r#"{"attestations":{}}"#),
        with(r#"{"attestations":[1]}"#),
        with(r#"{"attestations":[{"type":"t"},[]]}"#),
        with(r#"{"attestations":[{"type":"t","attestation":{"A":1,"a":2}}]}"#),
        with(r#"{"attestations":[{"type":"t","attestation":{"a":1,"a":2}}]}"#),
        with(r#"{"attestations":[{"type":"t","attestation":{"b":1,"B":2,"a":3,"A":4}}]}"#),
        with(r#"{"attestations":[{"type":"t","starttime":"nope"}]}"#),
        with(r#"{"attestations":[{"type":"t","type":"u"}]}"#),
        with(r#"{"attestations":[{"type":null}]}"#),
        with(r#"{"attestations":[{"attestation":{}}]}"#),
        with(r#"{"name":"a","name":"b","attestations":[],"attestations":[{"type":"t"}]}"#),
        with(r#"{"name":null}"#),
        with(r#"{"backrefs":null}"#),
        with(r#"{"backrefs":{"x":{"sha1":"ab"}}}"#),
        with(r#"{"backrefs":{"x":{"sha1":1}}}"#),
        with(&format!(r#"{{"attestations":[{{"type":"t","attestation":{}}}]}}"#, deep(120))),
        with(&format!(r#"{{"attestations":[{{"type":"t","attestation":{}}}]}}"#, deep(124))),
        with(&format!(r#"{{"attestations":[{{"type":"t","attestation":{}}}]}}"#, deep(125))),
        with(r#"{"attestations":[{"type":"t","attestation":1e400}]}"#),
        with(r#"{"attestations":[{"type":"t","attestation":"\ud800"}]}"#),
        with(r#"{"attestations":[{"type":"t","attestation":{"k":"\u00e9\/"}}]}"#),
        with(r#"{"attestations":[{"type":"t"}]} trailing"#),
        with(r#"{"predicate":{"attestations":1}}"#),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p"}"#.into(),
        r#"{"_type":"x","predicateType":"p"}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1"}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":null}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":{}}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[1]}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":[]}]}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":{"a":1}}]}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"name":"a","name":"b"}],"subject":[{"name":"c"}]}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[1],"predicate":[]}"#.into(),
        r#"{"_type":"https://in-toto.io/Statement/v1","_type":"x","predicateType":"p"}"#.into(),
        r#"{"\u005ftype":"https://in-toto.io/Statement/v1","predicateType":"p"}"#.into(),
        r#"[]"#.into(),
        r#"null"#.into(),
        r#"{"#.into(),
        "\u{feff}{}".into(),
        " {\"_type\":\"https://in-toto.io/Statement/v1\",\"predicateType\":\"p\",\"predicate\" : {\"attestations\" : [ {\"type\":\"t\" , \"attestation\" : { \"x\" : 1 } } ] } } ".into(),
    ]
}

#[test]
fn curated_statements_read_alike() {
    let mut collections = 0;
    for text in curated() {
        collections += usize::from(agree(text.as_bytes()));
    }
    assert!(
        collections >= 5,
        "the curated set must exercise accepted collections"
    );
    // Bytes that are not UTF-8, inside and outside strings.
    agree(b"{\"_type\":\"\xff\"}");
    agree(b"\xff");
}

#[test]
fn real_fixture_statements_read_alike() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut read = 0;
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let bytes = std::fs::read(&path).unwrap();
                if let Ok(envelope) = attestgate::dsse::DecodedEnvelope::from_json(&bytes) {
                    agree(&envelope.payload);
                    read += 1;
                }
            }
        }
    }
    assert!(read >= 10, "only {read} fixture envelopes found");
}

/// The Rego input from an attestation's text is the one its tree gave, shown through a module
/// that denies with the whole input.
#[test]
fn rego_input_from_text_is_the_trees() {
    let module = "package show\ndeny[msg] {\n  msg := sprintf(\"%v\", [input])\n}\n";
    let modules = RegoModules::compile(
        &[RegoPolicy {
            name: "show".into(),
            module: encode_base64(module.as_bytes()),
        }],
        Duration::from_secs(5),
    )
    .unwrap()
    .unwrap();
    let budget = RegoBudget::new(Duration::from_secs(60));
    let inputs = [
        r#"{"exitcode":0,"cmd":["make","build"],"env":{"b":1,"a":[true,null,2.5,-3]}}"#,
        r#"{"a":1,"a":2}"#,
        r#"{"big":18446744073709551616,"small":-9223372036854775808,"f":1e300}"#,
        r#"{"s":"\u00e9\/\n"}"#,
        r#"{"b":1,"$serde_json::private::Number":"5"}"#,
        r#"{"b":{"$serde_json::private::Number":"x"}}"#,
        r#"{"\u0024serde_json::private::Number":"5","z":1}"#,
        r#"[{"x":{}}]"#,
        "null",
        "\"text\"",
    ];
    for text in inputs {
        let tree: Value = serde_json::from_str(text).unwrap();
        let from_tree = modules.evaluate(&tree, &budget);
        let raw = RawJson::from_value(&tree);
        assert_eq!(
            format!("{from_tree:?}"),
            format!("{:?}", modules.evaluate_json(text, &budget)),
            "{text}"
        );
        assert_eq!(
            format!("{from_tree:?}"),
            format!("{:?}", modules.evaluate_json(raw.as_str(), &budget)),
            "{text}"
        );
    }
}
