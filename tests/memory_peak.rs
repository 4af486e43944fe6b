//! What verifying one large envelope costs in memory: an SBOM attestation the policy does not
//! read must not be built into a tree (it once cost about 30 times the envelope's size).
//!
//! The measurement runs in a child process (this test binary again, on one test), so that
//! nothing else of the test run is in its peak: the child loads the policy and the evidence,
//! resets its peak resident size (`/proc/self/clear_refs`), verifies, and prints how far the
//! peak rose above what it held before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use attestgate::crypto::PublicKey;
use attestgate::dsse::pae;
use attestgate::encoding::{encode_base64, sha256_hex};
use attestgate::evidence::FileSource;
use attestgate::policy::{verify, PolicyOptions, PolicyTrust, SignedPolicy, VerifyOptions};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::json;

const CHILD: &str = "ATTESTGATE_MEMORY_PEAK_DIR";
const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";
const IMAGE: &str = "4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689";
const WITNESS: &str = "https://witness.dev/attestations";
/// The envelope's size; big enough that a tree of it would stand far above the bound.
const ENVELOPE_BYTES: usize = 16 * 1024 * 1024;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::P256(*key.verifying_key())
}

fn envelope(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let sig: DerSignature = key.sign(&pae(payload_type, payload));
    format!(
        r#"{{"payload":"{}","payloadType":"{payload_type}","signatures":[{{"keyid":"{}","sig":"{}"}}]}}"#,
        encode_base64(payload),
        public(key).keyid().0,
        encode_base64(sig.as_bytes())
    )
    .into_bytes()
}

/// A CycloneDX document of about `size` bytes of many small components, written as text.
fn sbom(size: usize) -> String {
    let mut out = String::with_capacity(size + 256);
    out.push_str(r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":["#);
    let mut n = 0usize;
    while out.len() < size {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"type":"library","name":"pkg-{n}","version":"1.{m}.0","purl":"pkg:npm/pkg-{n}@1.{m}.0","hashes":[{{"alg":"SHA-256","content":"{h}"}}],"licenses":[{{"license":{{"id":"MIT"}}}}]}}"#,
            m = n % 97,
            h = sha256_hex(&n.to_le_bytes())
        ));
        n += 1;
    }
    out.push_str("]}");
    out
}

/// Writes the signed policy and the evidence into `dir`.
fn write_world(dir: &Path) {
    let policy_key = key(1);
    let builder = key(2);
    let id = public(&builder).keyid().0;
    let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
        builder.verifying_key(),
        p256::pkcs8::LineEnding::LF,
    )
    .unwrap();
    let rego = encode_base64(
        b"package git.commit\ndeny[msg] {\n  input.commithash == \"\"\n  msg := \"no commit\"\n}\n",
    );
    let policy = json!({
        "expires": "2035-01-01T00:00:00Z",
        "publickeys": {id.clone(): {"keyid": id, "key": encode_base64(pem.as_bytes())}},
        "steps": {"build": {"name": "build",
            "functionaries": [{"type": "publickey", "publickeyid": id}],
            "attestations": [
                {"type": format!("{WITNESS}/git/v0.1"), "regopolicies": [{"name": "commit", "module": rego}]},
                {"type": format!("{WITNESS}/docker/v0.1")}]}}
    });
    let policy = envelope(
        &policy_key,
        "https://witness.testifysec.com/policy/v0.1",
        policy.to_string().as_bytes(),
    );
    std::fs::write(dir.join("policy.json"), policy).unwrap();
    std::fs::write(
        dir.join("policy.pub"),
        p256::pkcs8::EncodePublicKey::to_public_key_pem(
            policy_key.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap(),
    )
    .unwrap();

    let head = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [
            {"name": format!("{WITNESS}/docker/v0.1/imagedigest:{IMAGE}"), "digest": {"sha256": IMAGE}},
            {"name": format!("{WITNESS}/git/v0.1/commithash:{COMMIT}"), "digest": {"sha1": COMMIT}},
        ],
        "predicateType": "https://witness.testifysec.com/attestation-collection/v0.1",
        "predicate": {"name": "build", "attestations": [
            {"type": format!("{WITNESS}/git/v0.1"), "attestation": {"commithash": COMMIT}},
            {"type": format!("{WITNESS}/docker/v0.1"), "attestation": {}},
            {"type": format!("{WITNESS}/sbom/v0.1"), "attestation": "@SBOM@"},
        ]}
    })
    .to_string();
    // base64 makes the payload 4/3 larger in the envelope.
    let statement = head.replace("\"@SBOM@\"", &sbom(ENVELOPE_BYTES * 3 / 4));
    let evidence = envelope(
        &builder,
        "application/vnd.in-toto+json",
        statement.as_bytes(),
    );
    std::fs::write(dir.join("build.json"), evidence).unwrap();
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The child's side: load, reset the peak, verify, print the peak's rise.
#[test]
fn measure_in_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return; // Only the parent test below runs this one, in its own process.
    };
    let dir = Path::new(&dir);
    let mut trust = PolicyTrust::default();
    let pem = std::fs::read(dir.join("policy.pub")).unwrap();
    trust.add_key(PublicKey::from_pem(&pem).unwrap());
    let signed = SignedPolicy::load(
        &std::fs::read(dir.join("policy.json")).unwrap(),
        &trust,
        PolicyOptions::default(),
    )
    .unwrap();
    let source = FileSource::from_paths(&[dir.join("build.json")]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seeds = vec![IMAGE.to_string()];

    let before = status_kb("VmRSS");
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let result = runtime
        .block_on(verify(&signed, &source, &seeds, &VerifyOptions::default()))
        .unwrap();
    let peak = status_kb("VmHWM");
    assert!(result.passed, "{result:?}");
    println!("MEMORY before_kb={before} peak_kb={peak}");
}

#[test]
fn verifying_a_large_envelope_costs_about_its_payload() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_world(dir.path());
    let envelope = std::fs::metadata(dir.path().join("build.json"))
        .unwrap()
        .len();
    assert!(envelope >= ENVELOPE_BYTES as u64);

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "measure_in_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("MEMORY ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("no measurement in: {stdout}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
            .parse()
            .unwrap()
    };
    let rise = field("peak_kb").saturating_sub(field("before_kb")) * 1024;
    // The decoded payload is 3/4 of the envelope and is the one large allocation; the bound
    // leaves room for the allocator and the small records. A tree of the SBOM would be over
    // ten times the envelope.
    let bound = envelope * 3 / 2;
    eprintln!(
        "peak rose by {} KiB for a {} KiB envelope",
        rise / 1024,
        envelope / 1024
    );
    assert!(
        rise < bound,
        "verifying a {envelope}-byte envelope raised the peak by {rise} bytes (bound {bound})"
    );
}
