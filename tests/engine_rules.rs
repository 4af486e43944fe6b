//! One case per verification rule, on evidence and policies made in the test and signed with
//! openssl (an implementation independent of ours). Each negative case changes one thing from a
//! passing baseline and asserts the verdict and the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{attestgate, b64, KeyKind, OpensslKey, Run, INTOTO_TYPE, POLICY_TYPE};
use serde_json::{json, Value};

const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";
const SOURCE_DIGEST: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const BINARY_DIGEST: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const TARBALL_DIGEST: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const WITNESS: &str = "https://witness.dev/attestations";
const COLLECTION: &str = "https://witness.testifysec.com/attestation-collection/v0.1";

fn t(name: &str) -> String {
    format!("{WITNESS}/{name}/v0.1")
}

/// The exit-code rule as Rego v0.
const EXIT_RULE: &str = "package commandrun.exit\ndeny[msg] {\n  input.exitcode != 0\n  msg := sprintf(\"exit code %v\", [input.exitcode])\n}\n";

/// A statement for one `witness run` step.
fn statement(
    step: &str,
    subjects: &[(&str, &str, &str)],
    attestations: Vec<(String, Value)>,
) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": subjects.iter().map(|(n, a, v)| json!({"name": n, "digest": {*a: v}})).collect::<Vec<_>>(),
        "predicateType": COLLECTION,
        "predicate": {
            "name": step,
            "attestations": attestations.into_iter().map(|(kind, a)| json!({
                "type": kind, "attestation": a,
                "starttime": "2026-11-01T10:00:00.123Z", "endtime": "2026-11-01T10:00:01Z"
            })).collect::<Vec<_>>()
        }
    })
}

fn git(commit: &str) -> (String, Value) {
    (
        t("git"),
        json!({"commithash": commit, "author": "ci", "authoremail": "ci@example.invalid"}),
    )
}

fn build_statement(exitcode: i64) -> Value {
    statement(
        "build",
        &[
            (
                &format!("{WITNESS}/git/v0.1/commithash:{COMMIT}"),
                "sha1",
                COMMIT,
            ),
            (
                &format!("{WITNESS}/product/v0.1/file:bin/app"),
                "sha256",
                BINARY_DIGEST,
            ),
        ],
        vec![
            git(COMMIT),
            (t("material"), json!({"main.go": {"sha256": SOURCE_DIGEST}})),
            (
                t("command-run"),
                json!({"cmd": ["go", "build"], "exitcode": exitcode}),
            ),
            (
                t("product"),
                json!({"bin/app": {"mime_type": "application/x-executable", "digest": {"sha256": BINARY_DIGEST}}}),
            ),
        ],
    )
}

fn package_statement(material_digest: &str) -> Value {
    statement(
        "package",
        &[
            (
                &format!("{WITNESS}/git/v0.1/commithash:{COMMIT}"),
                "sha1",
                COMMIT,
            ),
            (
                &format!("{WITNESS}/product/v0.1/file:app.tgz"),
                "sha256",
                TARBALL_DIGEST,
            ),
        ],
        vec![
            git(COMMIT),
            (
                t("material"),
                json!({"bin/app": {"sha256": material_digest}}),
            ),
            (
                t("command-run"),
                json!({"cmd": ["tar", "czf", "app.tgz", "bin/app"], "exitcode": 0}),
            ),
            (
                t("product"),
                json!({"app.tgz": {"mime_type": "application/gzip", "digest": {"sha256": TARBALL_DIGEST}}}),
            ),
        ],
    )
}

/// Two steps, two signers, Rego on the build, `artifactsFrom` from package to build.
struct Scenario {
    dir: tempfile::TempDir,
    policy_key: OpensslKey,
    build_key: OpensslKey,
    package_key: OpensslKey,
    policy: Value,
}

impl Scenario {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy_key = OpensslKey::generate(dir.path(), "policy", KeyKind::EcdsaP256);
        let build_key = OpensslKey::generate(dir.path(), "build", KeyKind::Ed25519);
        let package_key = OpensslKey::generate(dir.path(), "package", KeyKind::RsaPss);
        let policy = json!({
            "expires": "2035-01-01T00:00:00Z",
            "publickeys": {
                build_key.keyid(): build_key.policy_entry(),
                package_key.keyid(): package_key.policy_entry(),
            },
            "steps": {
                "build": {"name": "build",
                    "functionaries": [{"type": "publickey", "publickeyid": build_key.keyid()}],
                    "attestations": [
                        {"type": t("material")},
                        {"type": t("command-run"), "regopolicies": [{"name": "exit", "module": b64(EXIT_RULE.as_bytes())}]},
                        {"type": t("product")}]},
                "package": {"name": "package",
                    "functionaries": [{"type": "publickey", "publickeyid": package_key.keyid()}],
                    "attestations": [{"type": t("material")}, {"type": t("product")}],
                    "artifactsFrom": ["build"]}
            }
        });
        Self {
            dir,
            policy_key,
            build_key,
            package_key,
            policy,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_policy(&self) -> PathBuf {
        let path = self.path().join("policy-signed.json");
        std::fs::write(
            &path,
            self.policy_key
                .envelope(POLICY_TYPE, self.policy.to_string().as_bytes()),
        )
        .unwrap();
        path
    }

    fn write(&self, name: &str, key: &OpensslKey, statement: &Value) -> String {
        std::fs::write(
            self.path().join(name),
            key.envelope(INTOTO_TYPE, statement.to_string().as_bytes()),
        )
        .unwrap();
        name.to_string()
    }

    fn verify(&self, files: &[String], subject: &str) -> Run {
        self.write_policy();
        let mut args = vec![
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "policy.pub.pem",
            "-s",
            subject,
            "--output",
            "json",
        ];
        for f in files {
            args.extend(["-a", f]);
        }
        attestgate(self.path(), args)
    }

    fn baseline(&self) -> Vec<String> {
        vec![
            self.write("build.json", &self.build_key, &build_statement(0)),
            self.write(
                "package.json",
                &self.package_key,
                &package_statement(BINARY_DIGEST),
            ),
        ]
    }
}

fn result(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.text()))
}

/// The first reason recorded for `step`.
fn first_reason(run: &Run, step: &str) -> Value {
    let r = result(run);
    let s = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap()
        .clone();
    s["rejected"][0]["reasons"][0].clone()
}

#[test]
fn baseline_passes_through_the_commit_back_reference() {
    let s = Scenario::new();
    let files = s.baseline();
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 0, "{}", run.text());
    let r = result(&run);
    assert_eq!(
        r["steps"][0]["passed_collections"][0]["reference"]["file"],
        "build.json"
    );
    assert_eq!(
        r["steps"][0]["passed_collections"][0]["functionaries"][0]["keyid"],
        s.build_key.keyid()
    );
}

#[test]
fn every_key_type_witness_uses_verifies() {
    for kind in [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP384,
        KeyKind::EcdsaP521,
        KeyKind::RsaPkcs1,
        KeyKind::RsaPss,
        KeyKind::Ed25519,
    ] {
        let mut s = Scenario::new();
        let signer = OpensslKey::generate(s.path(), "signer", kind);
        s.policy["publickeys"][signer.keyid()] = signer.policy_entry();
        s.policy["steps"]["build"]["functionaries"] =
            json!([{"type": "publickey", "publickeyid": signer.keyid()}]);
        let files = vec![
            s.write("build.json", &signer, &build_statement(0)),
            s.write(
                "package.json",
                &s.package_key,
                &package_statement(BINARY_DIGEST),
            ),
        ];
        let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
        assert_eq!(run.code, 0, "{kind:?}: {}", run.text());
    }
}

#[test]
fn a_signer_the_policy_does_not_list_is_rejected() {
    let s = Scenario::new();
    let rogue = OpensslKey::generate(s.path(), "rogue", KeyKind::Ed25519);
    let files = vec![
        s.write("build.json", &rogue, &build_statement(0)),
        s.write(
            "package.json",
            &s.package_key,
            &package_statement(BINARY_DIGEST),
        ),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    // The build collection is still found, and rejected for its signature.
    assert_eq!(first_reason(&run, "build")["reason"], "signature");
}

#[test]
fn a_policy_key_that_is_not_this_steps_functionary_is_rejected() {
    let s = Scenario::new();
    let files = vec![
        s.write("build.json", &s.package_key, &build_statement(0)),
        s.write(
            "package.json",
            &s.package_key,
            &package_statement(BINARY_DIGEST),
        ),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    let reason = first_reason(&run, "build");
    assert_eq!(reason["reason"], "not_a_functionary");
    assert_eq!(reason["signers"][0], s.package_key.keyid());
}

#[test]
fn a_tampered_payload_is_rejected() {
    let s = Scenario::new();
    let files = s.baseline();
    let path = s.path().join("build.json");
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let tampered = build_statement(0)
        .to_string()
        .replace(BINARY_DIGEST, &"4".repeat(64));
    envelope["payload"] = json!(b64(tampered.as_bytes()));
    std::fs::write(&path, envelope.to_string()).unwrap();
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert_eq!(first_reason(&run, "build")["reason"], "signature");
}

#[test]
fn url_safe_base64_and_an_extra_bad_signature_still_verify() {
    let s = Scenario::new();
    let files = s.baseline();
    let path = s.path().join("build.json");
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let url_safe = |v: &Value| {
        v.as_str()
            .unwrap()
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_string()
    };
    envelope["payload"] = json!(url_safe(&envelope["payload"]));
    let good = envelope["signatures"][0].clone();
    envelope["signatures"] = json!([{"keyid": "junk", "sig": b64(&[7u8; 64])}, good]);
    std::fs::write(&path, envelope.to_string()).unwrap();
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 0, "{}", run.text());
}

#[test]
fn a_statement_that_is_not_a_collection_is_rejected() {
    let s = Scenario::new();
    let mut files = s.baseline();
    let mut other = build_statement(0);
    other["predicateType"] = json!("https://slsa.dev/provenance/v1.0");
    files[0] = s.write("build.json", &s.build_key, &other);
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert_eq!(first_reason(&run, "build")["reason"], "predicate_type");
}

#[test]
fn an_attestation_body_that_is_not_an_object_refuses_the_collection() {
    // witness reads each body into its attestor's struct, so a string, an array or null
    // fails the whole collection, even for an attestor the policy runs no Rego on.
    for body in [json!("x"), json!([1]), Value::Null] {
        let s = Scenario::new();
        let mut files = s.baseline();
        let mut build = build_statement(0);
        build["predicate"]["attestations"][1]["attestation"] = body.clone();
        files[0] = s.write("build.json", &s.build_key, &build);
        let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
        assert_eq!(run.code, 1, "{body}: {}", run.stdout);
        assert!(
            run.stdout.contains("attestation 1 (") && run.stdout.contains("is not a JSON object"),
            "{body}: {}",
            run.stdout
        );
    }
}

#[test]
fn evidence_with_another_payload_type_is_rejected() {
    let s = Scenario::new();
    let mut files = s.baseline();
    std::fs::write(
        s.path().join("build.json"),
        s.build_key
            .envelope("text/plain", build_statement(0).to_string().as_bytes()),
    )
    .unwrap();
    files[0] = "build.json".into();
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert_eq!(first_reason(&run, "build")["reason"], "envelope");
}

#[test]
fn a_missing_required_attestation_is_named() {
    let mut s = Scenario::new();
    let files = s.baseline();
    s.policy["steps"]["build"]["attestations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": t("github")}));
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    let reason = first_reason(&run, "build");
    assert_eq!(reason["reason"], "missing_attestation");
    assert_eq!(reason["kind"], t("github"));
}

#[test]
fn rego_denies_and_runs_on_every_duplicate_attestor() {
    let s = Scenario::new();
    let files = vec![
        s.write("build.json", &s.build_key, &build_statement(3)),
        s.write(
            "package.json",
            &s.package_key,
            &package_statement(BINARY_DIGEST),
        ),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert_eq!(first_reason(&run, "build")["messages"][0], "exit code 3");

    // A second command-run attestor that failed must not hide behind a first one that passed.
    let mut twice = build_statement(0);
    twice["predicate"]["attestations"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "type": t("command-run"), "attestation": {"cmd": ["make"], "exitcode": 9}
        }));
    let files = vec![
        s.write("build.json", &s.build_key, &twice),
        s.write(
            "package.json",
            &s.package_key,
            &package_statement(BINARY_DIGEST),
        ),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert_eq!(first_reason(&run, "build")["messages"][0], "exit code 9");
}

#[test]
fn artifacts_from_needs_matching_and_overlapping_digests() {
    let s = Scenario::new();
    // package consumed a binary build did not produce.
    let files = vec![
        s.write("build.json", &s.build_key, &build_statement(0)),
        s.write(
            "package.json",
            &s.package_key,
            &package_statement(&"5".repeat(64)),
        ),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    let reason = first_reason(&run, "package");
    assert_eq!(reason["reason"], "artifacts_from");
    assert!(
        reason["detail"]
            .as_str()
            .unwrap()
            .contains("\"bin/app\" differs"),
        "{reason}"
    );

    // No shared path at all fails too (go-witness v0.12).
    let mut disjoint = package_statement(BINARY_DIGEST);
    disjoint["predicate"]["attestations"][1]["attestation"] =
        json!({"other": {"sha256": BINARY_DIGEST}});
    let files = vec![
        s.write("build.json", &s.build_key, &build_statement(0)),
        s.write("package.json", &s.package_key, &disjoint),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert!(first_reason(&run, "package")["detail"]
        .as_str()
        .unwrap()
        .contains("no material"));
}

#[test]
fn a_sha1_only_overlap_does_not_satisfy_artifacts_from() {
    let s = Scenario::new();
    let mut build = build_statement(0);
    build["predicate"]["attestations"][3]["attestation"]["bin/app"]["digest"] =
        json!({"sha256": BINARY_DIGEST, "sha1": "aa".repeat(20)});
    let mut package = package_statement(BINARY_DIGEST);
    package["predicate"]["attestations"][1]["attestation"] =
        json!({"bin/app": {"sha1": "aa".repeat(20)}});
    let files = vec![
        s.write("build.json", &s.build_key, &build),
        s.write("package.json", &s.package_key, &package),
    ];
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(first_reason(&run, "package")["reason"], "artifacts_from");
}

#[test]
fn expired_or_undated_policies_fail() {
    let mut s = Scenario::new();
    let files = s.baseline();
    s.policy["expires"] = json!("2026-01-01T00:00:00Z");
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert_eq!(
        result(&run)["policy_failure"],
        "policy expired at 2026-01-01T00:00:00Z"
    );
    s.policy.as_object_mut().unwrap().remove("expires");
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 1);
    assert!(result(&run)["policy_failure"]
        .as_str()
        .unwrap()
        .contains("no expiry"));
}

#[test]
fn a_policy_key_whose_id_does_not_match_refuses_the_policy() {
    let mut s = Scenario::new();
    let files = s.baseline();
    let id = s.build_key.keyid();
    s.policy["publickeys"][&id]["key"] = s.package_key.policy_entry()["key"].clone();
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains("does not match its key"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_subject_finds_nothing() {
    let s = Scenario::new();
    let files = s.baseline();
    let run = s.verify(&files, &"9".repeat(64));
    assert_eq!(run.code, 1);
    let r = result(&run);
    assert!(r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["rejected"].as_array().unwrap().is_empty()));
}

/// A subject as (name, algorithm, value).
type Subject = (String, &'static str, String);

#[test]
fn back_reference_chains_deeper_than_witness_rounds_are_followed() {
    // image -> deploy (pipeline A) -> build (commit) -> scan (pipeline B) -> sign: four hops,
    // each found only through the previous collection's back-reference.
    let mut s = Scenario::new();
    let keyid = s.build_key.keyid();
    let pipeline = |url: &str| {
        use sha2::Digest as _;
        common::hex(&sha2::Sha256::digest(url.as_bytes()))
    };
    let (pa, pb) = (
        pipeline("https://ci.example.invalid/runs/1"),
        pipeline("https://ci.example.invalid/runs/2"),
    );
    let gh = |url: &str| (t("github"), json!({"pipelineurl": url}));
    let sub = |kind: &str, local: &str| format!("{WITNESS}/{kind}/v0.1/{local}");
    let steps: Vec<(&str, Vec<Subject>)> = vec![
        (
            "deploy",
            vec![
                (
                    sub("product", "file:image"),
                    "sha256",
                    TARBALL_DIGEST.to_string(),
                ),
                (sub("github", "pipelineurl:a"), "sha256", pa.clone()),
            ],
        ),
        (
            "build",
            vec![
                (sub("github", "pipelineurl:a"), "sha256", pa.clone()),
                (
                    sub("git", &format!("commithash:{COMMIT}")),
                    "sha1",
                    COMMIT.to_string(),
                ),
            ],
        ),
        (
            "scan",
            vec![
                (sub("git", "authoremail:x"), "sha1", COMMIT.to_string()),
                (sub("github", "pipelineurl:b"), "sha256", pb.clone()),
            ],
        ),
        (
            "sign",
            vec![(sub("jenkins", "jenkinsurl:b"), "sha256", pb.clone())],
        ),
    ];
    let mut policy_steps = serde_json::Map::new();
    let mut files = Vec::new();
    for (name, subjects) in &steps {
        let subjects: Vec<(&str, &str, &str)> = subjects
            .iter()
            .map(|(n, a, v)| (n.as_str(), *a, v.as_str()))
            .collect();
        let st = statement(
            name,
            &subjects,
            vec![gh("x"), (t("command-run"), json!({"exitcode": 0}))],
        );
        files.push(s.write(&format!("{name}.json"), &s.build_key, &st));
        policy_steps.insert(
            name.to_string(),
            json!({"name": name,
            "functionaries": [{"type": "publickey", "publickeyid": keyid}],
            "attestations": [{"type": t("command-run")}]}),
        );
    }
    s.policy["steps"] = Value::Object(policy_steps);
    s.policy["publickeys"] = json!({keyid.clone(): s.build_key.policy_entry()});
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 0, "{}", run.text());

    // Files given in the reverse order give the same verdict: the search is a fixed point.
    files.reverse();
    let run = s.verify(&files, &format!("sha256:{TARBALL_DIGEST}"));
    assert_eq!(run.code, 0, "{}", run.text());
}
