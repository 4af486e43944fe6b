//! The warm review path without the network: reading a typical Pod review (the same ~3.8 KB body
//! the load harness sends, from `webhook_load/reviews.rs`) and finding its images, then
//! answering it. Two references: the floor server's plain `serde_json::Value` parse, and the
//! strict `Value` parse (duplicate keys refused) that `Review::parse` did before it read typed
//! records, which was most of the old reader's cost. The answer is measured both as served
//! (typed, encoded directly) and through a `serde_json::Value`, as it was built before.
//!
//! Run by hand: `cargo bench --bench review`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use attestgate::admission::{
    answer, images_to_judge, respond, DecisionRecord, ImageVerdict, Judgement, Mode, Outcome,
    Review,
};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;

#[allow(dead_code)]
#[path = "webhook_load/reviews.rs"]
mod reviews;

const IMAGE: &str = "127.0.0.1:5000/bench/app:v1";

fn parse_and_judge(body: &[u8]) -> usize {
    let review = Review::parse(body).unwrap();
    match images_to_judge(&review) {
        Judgement::Judge(uses) => uses.len(),
        other => panic!("{other:?}"),
    }
}

fn verdict() -> ImageVerdict {
    ImageVerdict {
        image: IMAGE.into(),
        outcome: Outcome::Admitted,
        record: DecisionRecord {
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            policies: vec![format!("prod@sha256:{}", "cd".repeat(32))],
            evidence: vec![format!("gitoid:blob:sha256:{}", "ef".repeat(32))],
            binding: Some("produced-image".into()),
            cached: true,
            mode: Mode::Enforce,
        },
    }
}

fn bench(c: &mut Criterion) {
    let pod = reviews::pod("c0ffee00-0000-4000-8000-000000000001", "web-0", &[IMAGE]);
    let deployment = reviews::deployment("c0ffee00-0000-4000-8000-000000000002", "web", &[IMAGE]);
    assert_eq!(parse_and_judge(&pod), 1);
    assert_eq!(parse_and_judge(&deployment), 1);

    let mut group = c.benchmark_group("review");
    group.bench_function("pod: parse + images_to_judge", |b| {
        b.iter(|| parse_and_judge(black_box(&pod)))
    });
    group.bench_function("deployment: parse + images_to_judge", |b| {
        b.iter(|| parse_and_judge(black_box(&deployment)))
    });
    group.bench_function("pod: floor's plain Value parse", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&pod)).unwrap())
    });
    group.bench_function("pod: strict Value parse (the previous reader)", |b| {
        b.iter(|| strict::parse(black_box(&pod)).unwrap())
    });

    let review = Review::parse(&pod).unwrap();
    let verdicts = [verdict()];
    group.bench_function("pod: answer + encode (typed, as served)", |b| {
        b.iter(|| serde_json::to_vec(&answer(black_box(&review), black_box(&verdicts))).unwrap())
    });
    group.bench_function("pod: respond + encode (through a Value, as before)", |b| {
        b.iter(|| serde_json::to_vec(&respond(black_box(&review), black_box(&verdicts))).unwrap())
    });
    group.finish();
}

/// A `Value` parse that refuses repeated keys, as the previous reader's first step did.
mod strict {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    pub(crate) fn parse(bytes: &[u8]) -> serde_json::Result<Value> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let Strict(value) = Strict::deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }

    struct Strict(Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(V).map(Strict)
        }
    }

    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Value;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Strict(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let Strict(value) = map.next_value()?;
                if object.insert(key, value).is_some() {
                    return Err(serde::de::Error::custom("duplicate key"));
                }
            }
            Ok(Value::Object(object))
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
