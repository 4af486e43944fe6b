//! Evidence from a real Archivista (v0.11.1 on PostgreSQL, started on loopback by the test):
//! search by subject and step, downloads checked against their gitoid, functionary-signed
//! envelopes preferred over a flood of junk, cilock collections found by subject, and the
//! tutorial's promotion-gate command lines. Failure paths a real server will not produce
//! (wrong bytes, oversized or garbage answers) use `tests/peers/archivista-standin.py`, a
//! stand-in that follows Archivista's documented wire protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command};

use common::{attestgate, Archivista, KeyKind, OpensslKey, INTOTO_TYPE, POLICY_TYPE};
use serde_json::json;

const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";

fn vector(name: &str) -> std::path::PathBuf {
    common::root().join("tests/fixtures/vectors").join(name)
}

#[test]
fn the_tutorial_gate_passes_with_evidence_found_by_commit() {
    let Some(archivista) = Archivista::start() else {
        return;
    };
    let case = vector("d02-pass-ed25519-commit-seed");
    let envelope = std::fs::read(case.join("attestations/compile.json")).unwrap();
    let gitoid = archivista.upload(&envelope);
    assert_eq!(gitoid, attestgate::evidence::gitoid_sha256(&envelope));

    // The tutorial's verify line with attestgate for cilock and Archivista for curl and jq.
    let subject = format!("sha1:{COMMIT}");
    let run = attestgate(
        &case,
        [
            "verify",
            "--policy",
            "./policy-signed.json",
            "--publickey",
            "./policy-pubkey.pem",
            "--enable-archivista",
            "--archivista-server",
            &archivista.url,
            "--subjects",
            &subject,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(
        run.stdout.contains(&format!("gitoid:{gitoid}")),
        "{}",
        run.stdout
    );

    // The tutorial's own fetch step, as written (curl and jq against /v1/query and
    // /v1/download), followed by its exact verify line.
    if !common::require_peer(Path::new("jq"), "jq runs the tutorial's fetch step") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for file in ["policy-signed.json", "policy-pubkey.pem"] {
        std::fs::copy(case.join(file), tmp.path().join(file)).unwrap();
    }
    let fetch = r#"curl -sS -H 'Content-Type: application/json' \
--data @<(jq -n --arg sha "$SHA" '{
query: "query($sha: String!) { dsses(where: {hasStatementWith: {hasSubjectsWith: {hasSubjectDigestsWith: {value: $sha}}}}) { edges { node { gitoidSha256 } } } }",
variables: { sha: $sha }
}') \
"$ARCHIVISTA_URL/v1/query" \
| jq -r '.data.dsses.edges[0].node.gitoidSha256' \
| xargs -I{} curl -sSfL "$ARCHIVISTA_URL/v1/download/{}" -o build.attestation.json"#;
    let status = Command::new("bash")
        .args(["-c", fetch])
        .current_dir(tmp.path())
        .env("SHA", COMMIT)
        .env("ARCHIVISTA_URL", &archivista.url)
        .status()
        .unwrap();
    assert!(status.success());
    let run = attestgate(
        tmp.path(),
        [
            "verify",
            "--policy",
            "./policy-signed.json",
            "--publickey",
            "./policy-pubkey.pem",
            "--attestations",
            "build.attestation.json",
            "--subjects",
            &subject,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());
}

/// A policy for one step `compile` signed by `functionary`, and a statement for it.
fn compile_policy(policy_key: &OpensslKey, functionary: &OpensslKey) -> Vec<u8> {
    let policy = json!({
        "expires": "2035-01-01T00:00:00Z",
        "publickeys": {functionary.keyid(): functionary.policy_entry()},
        "steps": {"compile": {"name": "compile",
            "functionaries": [{"type": "publickey", "publickeyid": functionary.keyid()}],
            "attestations": [{"type": "https://witness.dev/attestations/command-run/v0.1"}]}}
    });
    policy_key.envelope(POLICY_TYPE, policy.to_string().as_bytes())
}

fn compile_statement(predicate_type: &str, nonce: usize) -> Vec<u8> {
    json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": format!("https://witness.dev/attestations/git/v0.1/commithash:{COMMIT}"),
                     "digest": {"sha1": COMMIT}}],
        "predicateType": predicate_type,
        "predicate": {"name": "compile", "attestations": [
            {"type": "https://witness.dev/attestations/command-run/v0.1",
             "attestation": {"cmd": ["make", nonce.to_string()], "exitcode": 0}}]}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn junk_flooding_a_commit_does_not_crowd_out_the_real_envelope() {
    let Some(archivista) = Archivista::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let policy_key = OpensslKey::generate(tmp.path(), "policy", KeyKind::Ed25519);
    let real = OpensslKey::generate(tmp.path(), "real", KeyKind::Ed25519);
    let rogue = OpensslKey::generate(tmp.path(), "rogue", KeyKind::Ed25519);
    std::fs::write(
        tmp.path().join("policy.json"),
        compile_policy(&policy_key, &real),
    )
    .unwrap();

    // Sixty junk envelopes first, then the real one: more than the 50 candidates read per step.
    let witness = "https://witness.testifysec.com/attestation-collection/v0.1";
    for n in 0..60 {
        archivista.upload(&rogue.envelope(INTOTO_TYPE, &compile_statement(witness, n)));
    }
    let good = archivista.upload(&real.envelope(INTOTO_TYPE, &compile_statement(witness, 999)));

    let run = attestgate(
        tmp.path(),
        [
            "verify",
            "-p",
            "policy.json",
            "-k",
            "policy.pub.pem",
            "--enable-archivista",
            "--archivista-server",
            &archivista.url,
            "-s",
            &format!("sha1:{COMMIT}"),
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let step = &result["steps"][0];
    assert_eq!(step["passed_collections"][0]["reference"]["gitoid"], good);
    assert!(
        step["rejected"].as_array().unwrap().len() < 50,
        "capped per step"
    );
}

#[test]
fn cilock_collections_are_found_by_subject() {
    let Some(archivista) = Archivista::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let policy_key = OpensslKey::generate(tmp.path(), "policy", KeyKind::Ed25519);
    let real = OpensslKey::generate(tmp.path(), "real", KeyKind::EcdsaP256);
    std::fs::write(
        tmp.path().join("policy.json"),
        compile_policy(&policy_key, &real),
    )
    .unwrap();
    let aflock = "https://aflock.ai/attestation-collection/v0.1";
    let gitoid = archivista.upload(&real.envelope(INTOTO_TYPE, &compile_statement(aflock, 1)));

    let run = attestgate(
        tmp.path(),
        [
            "verify",
            "-p",
            "policy.json",
            "-k",
            "policy.pub.pem",
            "--enable-archivista",
            "--archivista-server",
            &archivista.url,
            "-s",
            COMMIT,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stdout.contains(&gitoid), "{}", run.stdout);
}

#[test]
fn an_unreachable_server_is_exit_code_3_and_flags_are_checked() {
    let case = vector("d02-pass-ed25519-commit-seed");
    let base = [
        "verify",
        "-p",
        "policy-signed.json",
        "-k",
        "policy-pubkey.pem",
        "-s",
        COMMIT,
    ];
    let run = attestgate(
        &case,
        base.iter().chain(&[
            "--enable-archivista",
            "--archivista-server",
            "http://127.0.0.1:1",
        ]),
    );
    assert_eq!(run.code, 3, "{}", run.text());
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);

    let run = attestgate(&case, base.iter().chain(&["--enable-archivista"]));
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("no default server"), "{}", run.stderr);
    let run = attestgate(
        &case,
        base.iter()
            .chain(&["--archivista-server", "http://127.0.0.1:1"]),
    );
    assert_eq!(run.code, 2, "{}", run.text());
}

/// A stand-in process, killed when dropped (also when a test fails).
struct Standin(Child);

impl Drop for Standin {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts the stand-in in `mode` and returns it with its URL.
fn standin(dir: &Path, mode: &str, gitoid: &str) -> (Standin, String) {
    let portfile = dir.join(format!("{mode}.port"));
    let child = Standin(
        Command::new("python3")
            .arg(common::root().join("tests/peers/archivista-standin.py"))
            .args([portfile.to_str().unwrap(), mode, gitoid])
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if let Ok(port) = std::fs::read_to_string(&portfile) {
            if !port.is_empty() {
                return (child, format!("http://127.0.0.1:{port}"));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("stand-in did not start");
}

#[test]
fn bad_answers_are_refused_with_their_reason() {
    let case = vector("d02-pass-ed25519-commit-seed");
    let tmp = tempfile::tempdir().unwrap();
    let gitoid = "ab".repeat(32);
    let cases = [
        ("wrong-bytes", 1, "downloaded bytes have gitoid"),
        ("huge", 1, "larger than"),
        ("garbage", 3, "not JSON"),
        ("graphql-error", 3, "boom"),
    ];
    for (mode, code, reason) in cases {
        let (child, url) = standin(tmp.path(), mode, &gitoid);
        let run = attestgate(
            &case,
            [
                "verify",
                "-p",
                "policy-signed.json",
                "-k",
                "policy-pubkey.pem",
                "-s",
                COMMIT,
                "--enable-archivista",
                "--archivista-server",
                &url,
            ],
        );
        drop(child);
        if mode == "huge" {
            // 2 MiB is under the CLI's envelope cap; the library test below shrinks the cap.
            assert_eq!(run.code, 1, "{mode}: {}", run.text());
            continue;
        }
        assert_eq!(run.code, code, "{mode}: {}", run.text());
        assert!(run.text().contains(reason), "{mode}: {}", run.text());
    }
}

#[test]
fn oversized_downloads_are_refused_whether_announced_or_not() {
    use attestgate::evidence::{ArchivistaConfig, ArchivistaSource, EvidenceSource, StepQuery};
    let tmp = tempfile::tempdir().unwrap();
    let gitoid = "cd".repeat(32);
    for mode in ["huge", "huge-chunked"] {
        let (child, url) = standin(tmp.path(), mode, &gitoid);
        let mut config = ArchivistaConfig::new(url);
        config.max_envelope_bytes = 1024 * 1024;
        let source = ArchivistaSource::new(config).unwrap();
        let query = StepQuery {
            step: "compile".into(),
            digests: [COMMIT.to_string()].into_iter().collect(),
            types: vec![],
            preferred_keyids: vec![],
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answers = runtime
            .block_on(source.search(std::slice::from_ref(&query), &Default::default()))
            .unwrap();
        drop(child);
        let problem = answers[0][0].fetch_error.clone().unwrap();
        assert!(
            problem.contains("larger than 1048576 bytes"),
            "{mode}: {problem}"
        );
    }
}
