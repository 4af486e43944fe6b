//! Verification of one signed policy with three steps (ECDSA P-256 signers, a Rego module per
//! step) against ten collections, with the policy compiled once and reused, as the webhook does.
//!
//! Run by hand: `cargo bench --bench verify`. Not part of CI, which builds one profile only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use attestgate::crypto::PublicKey;
use attestgate::dsse::pae;
use attestgate::encoding::{encode_base64, sha256_hex};
use attestgate::evidence::FileSource;
use attestgate::policy::{verify, PolicyOptions, PolicyTrust, SignedPolicy, VerifyOptions};
use criterion::{criterion_group, criterion_main, Criterion};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::{json, Value};

const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";
const IMAGE: &str = "4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689";
const WITNESS: &str = "https://witness.dev/attestations";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).expect("a constant scalar is a valid key")
}

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::P256(*key.verifying_key())
}

fn envelope(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let sig: DerSignature = key.sign(&pae(payload_type, payload));
    serde_json::to_vec(&json!({
        "payload": encode_base64(payload),
        "payloadType": payload_type,
        "signatures": [{"keyid": public(key).keyid().0, "sig": encode_base64(sig.as_bytes())}],
    }))
    .expect("json")
}

fn collection(step: &str, n: usize, first_hop: bool) -> Value {
    let mut subjects = vec![
        json!({"name": format!("{WITNESS}/git/v0.1/commithash:{COMMIT}"), "digest": {"sha1": COMMIT}}),
    ];
    if first_hop {
        subjects.push(json!({"name": format!("{WITNESS}/docker/v0.1/imagedigest:{IMAGE}"), "digest": {"sha256": IMAGE}}));
    }
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": subjects,
        "predicateType": "https://witness.testifysec.com/attestation-collection/v0.1",
        "predicate": {"name": step, "attestations": [
            {"type": format!("{WITNESS}/git/v0.1"), "attestation": {"commithash": COMMIT}},
            {"type": format!("{WITNESS}/material/v0.1"), "attestation": {format!("src/{n}.go"): {"sha256": sha256_hex(step.as_bytes())}}},
            {"type": format!("{WITNESS}/command-run/v0.1"), "attestation": {"cmd": ["make", step], "exitcode": 0}},
            {"type": format!("{WITNESS}/product/v0.1"), "attestation": {format!("out/{n}"): {"mime_type": "application/octet-stream", "digest": {"sha256": sha256_hex(&[n as u8])}}}}
        ]}
    })
}

fn setup() -> (SignedPolicy, FileSource) {
    let policy_key = key(1);
    let signers = [key(2), key(3), key(4)];
    let steps = ["build", "test", "package"];
    let rego = encode_base64(b"package commandrun.exit\ndeny[msg] {\n  input.exitcode != 0\n  msg := sprintf(\"exit %v\", [input.exitcode])\n}\n");

    let mut publickeys = serde_json::Map::new();
    let mut policy_steps = serde_json::Map::new();
    for (step, signer) in steps.iter().zip(&signers) {
        let id = public(signer).keyid().0;
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            signer.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .expect("pem");
        publickeys.insert(
            id.clone(),
            json!({"keyid": id, "key": encode_base64(pem.as_bytes())}),
        );
        policy_steps.insert(step.to_string(), json!({"name": step,
            "functionaries": [{"type": "publickey", "publickeyid": id}],
            "attestations": [{"type": format!("{WITNESS}/material/v0.1")},
                {"type": format!("{WITNESS}/command-run/v0.1"), "regopolicies": [{"name": "exit", "module": rego}]},
                {"type": format!("{WITNESS}/product/v0.1")}]}));
    }
    let policy =
        json!({"expires": "2035-01-01T00:00:00Z", "publickeys": publickeys, "steps": policy_steps});
    let policy_envelope = envelope(
        &policy_key,
        "https://witness.testifysec.com/policy/v0.1",
        policy.to_string().as_bytes(),
    );
    let mut trust = PolicyTrust::default();
    trust.add_key(public(&policy_key));
    let signed = SignedPolicy::load(&policy_envelope, &trust, PolicyOptions::default())
        .expect("policy loads");

    // Ten collections: four builds (one carries the image digest), three tests, three packages.
    let mut source = FileSource::default();
    for n in 0..10 {
        let (step, signer) = match n {
            0..=3 => (steps[0], &signers[0]),
            4..=6 => (steps[1], &signers[1]),
            _ => (steps[2], &signers[2]),
        };
        let statement = collection(step, n, n == 0);
        let bytes = envelope(
            signer,
            "application/vnd.in-toto+json",
            statement.to_string().as_bytes(),
        );
        source
            .add(format!("{step}-{n}.json").into(), bytes)
            .expect("envelope");
    }
    (signed, source)
}

fn bench(c: &mut Criterion) {
    let (signed, source) = setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let seeds = vec![IMAGE.to_string()];
    let options = VerifyOptions::default();

    let result = runtime
        .block_on(verify(&signed, &source, &seeds, &options))
        .expect("verifies");
    assert!(result.passed, "benchmark evidence must pass: {result:?}");
    assert_eq!(
        result
            .steps
            .iter()
            .map(|s| s.passed_collections.len())
            .sum::<usize>(),
        10
    );

    c.bench_function("verify 3 steps x 10 collections (ecdsa + rego)", |b| {
        b.iter(|| runtime.block_on(verify(black_box(&signed), &source, &seeds, &options)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
