//! `attestgate policy check` on the tutorial's policy and on policies made to trip each rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{attestgate, b64, KeyKind, OpensslKey, POLICY_TYPE};
use serde_json::json;

fn findings(run: &common::Run) -> Vec<(String, String, String)> {
    let value: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.text()));
    value["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["location"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(found: &[(String, String, String)], severity: &str, location: &str, text: &str) -> bool {
    found
        .iter()
        .any(|(s, l, m)| s == severity && l == location && m.contains(text))
}

#[test]
fn the_tutorial_policy_gets_its_four_findings() {
    let run = attestgate(
        &common::root().join("examples/tutorial"),
        [
            "policy",
            "check",
            "-p",
            "policy.json",
            "--workflow",
            "build.yml",
            "--now",
            "2026-12-04T00:00:00Z",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    let found = findings(&run);
    // The build step requires the CycloneDX SBOM that the workflow makes in its sbom step.
    assert!(
        has(
            &found,
            "error",
            "steps.build.attestations[3]",
            "produced by the workflow's sbom run"
        ),
        "{found:#?}"
    );
    // The Fulcio functionary has no timestamp authority.
    assert!(has(
        &found,
        "warning",
        "steps.build.functionaries[0]",
        "without a timestamp authority"
    ));
    // The root is the tutorial's placeholder.
    assert!(has(
        &found,
        "error",
        "roots.sigstore-fulcio.certificate",
        "placeholder"
    ));
    // The Rego rule passes when the `ref` claim is missing.
    assert!(has(
        &found,
        "warning",
        "steps.build.attestations[4].regopolicies",
        "input.jwt.claims.ref"
    ));
}

#[test]
fn a_clean_signed_policy_passes_with_its_signature_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let key = OpensslKey::generate(tmp.path(), "k", KeyKind::Ed25519);
    let module = b64(b"package cmd\ndeny[m] { input.exitcode != 0; m := \"failed\" }\ndeny[m] { not input.exitcode; m := \"no exit code\" }\n");
    let policy = json!({
        "expires": "2030-01-01T00:00:00Z",
        "publickeys": {key.keyid(): key.policy_entry()},
        "steps": {"build": {"name": "build",
            "functionaries": [{"type": "publickey", "publickeyid": key.keyid()}],
            "attestations": [{"type": "https://witness.dev/attestations/command-run/v0.1",
                "regopolicies": [{"name": "exit", "module": module}]}]}}
    });
    let signed = tmp.path().join("p.json");
    std::fs::write(
        &signed,
        key.envelope(POLICY_TYPE, policy.to_string().as_bytes()),
    )
    .unwrap();
    let args = [
        "policy",
        "check",
        "-p",
        "p.json",
        "-k",
        "k.pub.pem",
        "--now",
        "2026-12-04T00:00:00Z",
    ];
    let run = attestgate(tmp.path(), args);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stdout.contains("signature verified"), "{}", run.stdout);
    assert!(
        run.stdout.contains("0 errors, 0 warnings"),
        "{}",
        run.stdout
    );

    // The same file checked with another key: the signature finding is an error.
    let other = OpensslKey::generate(tmp.path(), "other", KeyKind::EcdsaP256);
    let run = attestgate(
        tmp.path(),
        [
            "policy",
            "check",
            "-p",
            "p.json",
            "-k",
            other.public.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("policy signature does not verify"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_rule_reports_where_it_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = json!({
        "_comment": "kept for humans",
        "expires": "2026-12-20T00:00:00Z",
        "externalAttestations": {"x": {"name": "x"}},
        "steps": {
            "build": {"name": "compile",
                "functionaries": [{"type": "publickey", "publickeyid": "abc"}],
                "attestations": [{"type": "https://witness.dev/attestations/comand-run/v0.1",
                    "regopolicies": [{"name": "broken", "module": b64(b"package p\ndeny[m] { m := }\n")}]}],
                "artifactsFrom": ["nowhere"]},
            "test": {"name": "test", "functionaries": [], "attestations": [],
                "timestampConstraint": {"maxAge": "1h"}}
        }
    });
    std::fs::write(tmp.path().join("p.json"), policy.to_string()).unwrap();
    let run = attestgate(
        tmp.path(),
        [
            "policy",
            "check",
            "-p",
            "p.json",
            "--now",
            "2026-12-04T00:00:00Z",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    let found = findings(&run);
    let expect = [
        ("warning", "_comment", "unknown top-level key"),
        ("error", "externalAttestations", "cilock-only"),
        ("error", "steps.test.timestampConstraint", "cilock-only"),
        ("warning", "expires", "expires in 16 days"),
        ("error", "steps.build", "differs from its name"),
        (
            "error",
            "steps.build.artifactsFrom",
            "\"nowhere\" is not a step",
        ),
        (
            "warning",
            "steps.build.functionaries[0]",
            "not in publickeys",
        ),
        (
            "warning",
            "steps.build.attestations[0]",
            "not a known attestor type",
        ),
        (
            "error",
            "steps.build.attestations[0].regopolicies",
            "does not compile",
        ),
        ("error", "steps.test", "requires no attestation"),
        ("error", "steps.test", "no functionaries"),
    ];
    for (severity, location, text) in expect {
        assert!(
            has(&found, severity, location, text),
            "{severity} {location} {text}: {found:#?}"
        );
    }
}

#[test]
fn unreadable_or_non_json_input_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let run = attestgate(tmp.path(), ["policy", "check", "-p", "missing.json"]);
    assert_eq!(run.code, 2, "{}", run.text());
    std::fs::write(tmp.path().join("junk.json"), b"\x00\x01 not json").unwrap();
    let run = attestgate(tmp.path(), ["policy", "check", "-p", "junk.json"]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("not a valid witness policy"),
        "{}",
        run.stdout
    );
}
