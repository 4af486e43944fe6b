//! Inputs built to make two readers disagree or to break a report: each must be refused with a
//! clear reason (found by trying to break the CLI as a new user would).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{attestgate, b64, KeyKind, OpensslKey, INTOTO_TYPE, POLICY_TYPE};
use serde_json::{json, Value};

const SUBJECT: &str = "sha256:c5babb1a4b29094923de98c08110331a7aeffb0218c8988dab1b7da36e3ae42e";

fn d01() -> PathBuf {
    common::root().join("tests/fixtures/vectors/d01-pass-ecdsa")
}

fn material_key(name: &str) -> OpensslKey {
    let keys = common::root().join("tests/fixtures/vectors/_material/keys");
    OpensslKey::from_files(
        KeyKind::EcdsaP256,
        keys.join(format!("{name}.key.pem")),
        keys.join(format!("{name}.pub.pem")),
    )
}

fn d01_policy() -> Value {
    serde_json::from_slice(&std::fs::read(d01().join("policy.json")).unwrap()).unwrap()
}

/// Signs `policy` with d01's policy key into a temp dir and verifies d01's evidence with it.
fn verify_with(policy: &[u8], payload_type: &str, extra: &[&str]) -> common::Run {
    let tmp = tempfile::tempdir().unwrap();
    let signed = tmp.path().join("p.json");
    std::fs::write(
        &signed,
        material_key("dev-policy-ecdsa-p256").envelope(payload_type, policy),
    )
    .unwrap();
    let mut args = vec![
        "verify",
        "-p",
        signed.to_str().unwrap(),
        "-k",
        "policy-pubkey.pem",
        "-a",
        "attestations/compile.json",
        "-s",
        SUBJECT,
    ];
    args.extend(extra);
    attestgate(&d01(), &args)
}

#[test]
fn the_unchanged_policy_passes() {
    let policy = serde_json::to_vec(&d01_policy()).unwrap();
    assert_eq!(verify_with(&policy, POLICY_TYPE, &[]).code, 0);
}

#[test]
fn a_field_written_in_another_case_is_refused() {
    let mut policy = d01_policy();
    policy["Expires"] = json!("2020-01-01T00:00:00Z");
    let run = verify_with(&serde_json::to_vec(&policy).unwrap(), POLICY_TYPE, &[]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr
            .contains("witness would read as fields (it ignores case): Expires"),
        "{}",
        run.stderr
    );
}

#[test]
fn records_written_as_arrays_and_loose_times_are_refused() {
    let mut policy = d01_policy();
    let step = policy["steps"]["compile"].clone();
    policy["steps"]["compile"] = json!([step["name"], step["functionaries"], step["attestations"]]);
    let run = verify_with(&serde_json::to_vec(&policy).unwrap(), POLICY_TYPE, &[]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains("$.steps.compile must be an object"),
        "{}",
        run.stderr
    );

    let mut policy = d01_policy();
    policy["expires"] = json!("2035-12-31t23:59:59z");
    let run = verify_with(&serde_json::to_vec(&policy).unwrap(), POLICY_TYPE, &[]);
    assert_eq!(run.code, 2, "{}", run.text());
}

#[test]
fn attestor_keys_that_differ_only_in_case_reject_the_collection() {
    let envelope: Value =
        serde_json::from_slice(&std::fs::read(d01().join("attestations/compile.json")).unwrap())
            .unwrap();
    let payload =
        attestgate::encoding::decode_base64(envelope["payload"].as_str().unwrap()).unwrap();
    let mut statement: Value = serde_json::from_slice(&payload).unwrap();
    for entry in statement["predicate"]["attestations"]
        .as_array_mut()
        .unwrap()
    {
        if entry["type"].as_str().unwrap().contains("command-run") {
            entry["attestation"]["ExitCode"] = json!(2);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let evidence = tmp.path().join("e.json");
    let signer = material_key("dev-compile-ecdsa-p256");
    std::fs::write(
        &evidence,
        signer.envelope(INTOTO_TYPE, &serde_json::to_vec(&statement).unwrap()),
    )
    .unwrap();
    let run = attestgate(
        &d01(),
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "policy-pubkey.pem",
            "-a",
            evidence.to_str().unwrap(),
            "-s",
            SUBJECT,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(run.stdout.contains("differ only in case"), "{}", run.stdout);
}

#[test]
fn devices_fifos_and_oversized_files_are_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", tmp.path().join("zero.json")).unwrap();
    let fifo = tmp.path().join("fifo.json");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for bad in ["zero.json", "fifo.json"] {
        let path = tmp.path().join(bad);
        let run = attestgate(
            &d01(),
            [
                "verify",
                "-p",
                "policy-signed.json",
                "-k",
                "policy-pubkey.pem",
                "-a",
                path.to_str().unwrap(),
                "-s",
                SUBJECT,
            ],
        );
        assert_eq!(run.code, 2, "{bad}: {}", run.text());
        assert!(
            run.stderr.contains("not a regular file"),
            "{bad}: {}",
            run.stderr
        );
        let run = attestgate(&d01(), ["policy", "check", "-p", path.to_str().unwrap()]);
        assert_eq!(run.code, 2, "{bad}: {}", run.text());
    }
}

#[test]
fn attestations_may_be_comma_separated_as_in_witness() {
    let case = common::root().join("tests/fixtures/vectors/d03-pass-two-steps-artifactsfrom");
    let cmd = std::fs::read_to_string(case.join("cmd.txt")).unwrap();
    let subjects: Vec<&str> = cmd.split_whitespace().skip_while(|a| *a != "-s").collect();
    let mut args = vec![
        "verify",
        "-p",
        "policy-signed.json",
        "-k",
        "policy-pubkey.pem",
        "-a",
        "attestations/compile.json,attestations/package.json",
    ];
    args.extend(subjects);
    let run = attestgate(&case, &args);
    assert_eq!(run.code, 0, "{}", run.text());
}

#[test]
fn a_kms_key_for_a_reference_the_policy_does_not_name_is_refused() {
    let policy = serde_json::to_vec(&d01_policy()).unwrap();
    let run = verify_with(
        &policy,
        POLICY_TYPE,
        &[
            "--kms-key",
            "awskms:///arn:aws:kms:x:1:key/abc=policy-pubkey.pem",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("no policy key names"), "{}", run.stderr);
}

#[test]
fn policy_check_with_a_key_insists_on_a_signed_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let key = material_key("dev-policy-ecdsa-p256");
    let policy = serde_json::to_vec(&d01_policy()).unwrap();
    std::fs::write(tmp.path().join("bare.json"), &policy).unwrap();
    std::fs::write(
        tmp.path().join("text.json"),
        key.envelope("text/plain", &policy),
    )
    .unwrap();
    let public = key.public.to_str().unwrap().to_string();
    for file in ["bare.json", "text.json"] {
        let run = attestgate(
            tmp.path(),
            [
                "policy",
                "check",
                "-p",
                file,
                "-k",
                &public,
                "--now",
                "2026-12-04T00:00:00Z",
            ],
        );
        assert_eq!(run.code, 1, "{file}: {}", run.text());
    }
}

#[test]
fn control_characters_from_evidence_cannot_forge_report_lines() {
    let mut policy = d01_policy();
    let module =
        b64(b"package p\ndeny[m] { m := \"x\\nPASSED  policy sha256:forged\\u001b[8m\" }\n");
    policy["steps"]["compile"]["attestations"][1]["regopolicies"] =
        json!([{"name": "m", "module": module}]);
    let run = verify_with(&serde_json::to_vec(&policy).unwrap(), POLICY_TYPE, &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        !run.stdout.lines().any(|l| l.starts_with("PASSED")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\u{1b}'), "{}", run.stdout);
    assert!(run.stdout.contains("\\nPASSED"), "{}", run.stdout);
}
