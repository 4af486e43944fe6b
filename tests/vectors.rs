//! The independent developer vectors (tests/fixtures/vectors, copied from the shared set made
//! by a Python producer with no witness code): every case gives its expected verdict through
//! the CLI, and every failing case fails for the reason the case was made for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::attestgate;

/// What a failing case's report must mention, so a right verdict for a wrong reason is caught.
const REASONS: &[(&str, &str)] = &[
    (
        "d04-fail-rego-deny-exitcode",
        "compile step failed with exit code 2",
    ),
    (
        "d05-fail-wrong-signing-key",
        "does not verify with any trusted key",
    ),
    (
        "d06-fail-policy-expired",
        "policy expired at 2026-01-31T12:00:00Z",
    ),
    (
        "d07-fail-envelope-tampered",
        "does not verify with any trusted key",
    ),
    (
        "d08-fail-missing-attestation-type",
        "missing attestation https://witness.dev/attestations/github/v0.1",
    ),
    (
        "d10-fail-unknown-subject",
        "no collection for this step carries the subjects",
    ),
];

#[test]
fn every_vector_gives_its_expected_verdict_and_reason() {
    let dir = common::root().join("tests/fixtures/vectors");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("cmd.txt").is_file())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 10, "all ten vectors are present");

    let mut wrong = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let cmd = fs::read_to_string(case.join("cmd.txt")).unwrap();
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let expected: serde_json::Value =
            serde_json::from_slice(&fs::read(case.join("expected.json")).unwrap()).unwrap();
        let want = if expected["verdict"] == "pass" { 0 } else { 1 };

        let run = attestgate(case, &args);
        if run.code != want {
            wrong.push(format!(
                "{name}: exit {} (want {want})\n{}",
                run.code,
                run.text()
            ));
            continue;
        }
        if let Some((_, reason)) = REASONS.iter().find(|(c, _)| *c == name) {
            if !run.text().contains(reason) {
                wrong.push(format!(
                    "{name}: reason {reason:?} missing from\n{}",
                    run.text()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn json_output_names_the_failed_step_and_its_reason() {
    let case = common::root().join("tests/fixtures/vectors/d04-fail-rego-deny-exitcode");
    let cmd = fs::read_to_string(case.join("cmd.txt")).unwrap();
    let mut args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    args.extend(["--output", "json"]);
    let run = attestgate(&case, &args);
    assert_eq!(run.code, 1);
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result["passed"], false);
    let step = &result["steps"][0];
    assert_eq!(step["step"], "compile");
    let reason = &step["rejected"][0]["reasons"][0];
    assert_eq!(reason["reason"], "rego_denied");
    assert_eq!(
        reason["messages"][0],
        "compile step failed with exit code 2"
    );
    assert_eq!(result["policy_digest"].as_str().unwrap().len(), 64);
}

#[test]
fn a_timestamped_collection_reports_its_trusted_signing_time() {
    let case = common::root().join("tests/fixtures/vectors/d09-pass-x509-timestamped");
    let cmd = fs::read_to_string(case.join("cmd.txt")).unwrap();
    let mut args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    args.extend(["--output", "json"]);
    let run = attestgate(&case, &args);
    assert_eq!(run.code, 0, "{}", run.text());
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let passed = &result["steps"][0]["passed_collections"][0];
    let generated = fs::read_to_string(case.join("../_material/generated-at.txt")).unwrap();
    assert_eq!(passed["signed_at"], generated.trim());
    assert_eq!(passed["functionaries"][0]["kind"], "certificate");
    assert_eq!(
        passed["functionaries"][0]["timestamp_authority"],
        "acme-tsa"
    );
}

#[test]
fn evidence_can_come_from_a_folder() {
    let case = common::root().join("tests/fixtures/vectors/d03-pass-two-steps-artifactsfrom");
    let cmd = fs::read_to_string(case.join("cmd.txt")).unwrap();
    let subjects: Vec<&str> = cmd.split_whitespace().skip_while(|a| *a != "-s").collect();
    let mut args = vec![
        "verify",
        "-p",
        "policy-signed.json",
        "-k",
        "policy-pubkey.pem",
        "--attestations-dir",
        "attestations",
    ];
    args.extend(subjects);
    let run = attestgate(&case, &args);
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stdout
            .contains("step package: passed (attestations/package.json)"),
        "{}",
        run.stdout
    );
}
