//! Evidence from a real Archivista (v0.11.1 on PostgreSQL, started on loopback by the test):
//! search by subject and step, downloads checked against their gitoid, functionary-signed
//! envelopes preferred over a flood of junk, cilock collections found by subject, and the
//! tutorial's promotion-gate command lines. Failure paths a real server will not produce
//! (wrong bytes, oversized or garbage answers) use `tests/peers/archivista-standin.py`, a
//! stand-in that follows Archivista's documented wire protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    attestgate, standin, Archivista, Counting, KeyKind, OpensslKey, INTOTO_TYPE, POLICY_TYPE,
};
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

/// The counting stand-in serving the d02 vector's real envelope.
fn counting(dir: &Path) -> Counting {
    let envelope = vector("d02-pass-ed25519-commit-seed").join("attestations/compile.json");
    Counting::start(dir, &envelope)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn compile_query() -> attestgate::evidence::StepQuery {
    attestgate::evidence::StepQuery {
        step: "compile".into(),
        digests: [COMMIT.to_string()].into_iter().collect(),
        types: vec![],
        preferred_keyids: vec![],
    }
}

#[test]
fn a_repeated_verification_is_served_from_the_caches() {
    use attestgate::crypto::PublicKey;
    use attestgate::policy::{verify, PolicyOptions, PolicyTrust, SignedPolicy, VerifyOptions};
    let tmp = tempfile::tempdir().unwrap();
    let server = counting(tmp.path());
    let case = vector("d02-pass-ed25519-commit-seed");
    let mut trust = PolicyTrust::default();
    trust.add_key(
        PublicKey::from_pem(&std::fs::read(case.join("policy-pubkey.pem")).unwrap()).unwrap(),
    );
    let policy = std::fs::read(case.join("policy-signed.json")).unwrap();
    let signed = SignedPolicy::load(&policy, &trust, PolicyOptions::default()).unwrap();
    let source = server.source(|_| {});
    let seeds = vec![COMMIT.to_string()];

    runtime().block_on(async {
        let first = verify(&signed, &source, &seeds, &VerifyOptions::default())
            .await
            .unwrap();
        assert!(first.passed, "{first:?}");
        let after_first = server.counts().await;
        assert_eq!(after_first.1, 1, "one download");
        assert!(after_first.0 >= 1);

        // Within the TTL: the same answer, without asking the server again.
        let second = verify(&signed, &source, &seeds, &VerifyOptions::default())
            .await
            .unwrap();
        assert!(second.passed, "{second:?}");
        assert_eq!(
            server.counts().await,
            after_first,
            "no second search or download"
        );

        // A clone shares the caches; a fresh source with no search cache still does not
        // download the envelope twice within one source.
        let clone = source.clone();
        verify(&signed, &clone, &seeds, &VerifyOptions::default())
            .await
            .unwrap();
        assert_eq!(server.counts().await, after_first);
        let uncached = server.source(|c| {
            c.search_ttl = std::time::Duration::ZERO;
            c.negative_search_ttl = std::time::Duration::ZERO;
        });
        for _ in 0..2 {
            let again = verify(&signed, &uncached, &seeds, &VerifyOptions::default())
                .await
                .unwrap();
            assert!(again.passed);
        }
        let (queries, downloads) = server.counts().await;
        assert_eq!(queries, after_first.0 * 3, "searches are asked again");
        assert_eq!(
            downloads, 2,
            "one more download, cached by gitoid after that"
        );
    });
}

#[test]
fn an_empty_answer_is_asked_again_after_its_short_ttl() {
    use attestgate::evidence::EvidenceSource;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let server = counting(tmp.path());
    let source = server.source(|c| c.negative_search_ttl = Duration::from_millis(400));
    let query = [compile_query()];
    runtime().block_on(async {
        server.control("empty", 0.0).await;
        let answer = source.search(&query, &Default::default()).await.unwrap();
        assert!(answer[0].is_empty());
        // The evidence is uploaded; the empty answer is still reused for a moment...
        server.control("hit", 0.0).await;
        let answer = source.search(&query, &Default::default()).await.unwrap();
        assert!(answer[0].is_empty());
        assert_eq!(server.counts().await, (1, 0));
        // ...and asked again once its short TTL has passed; the hit is then kept.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = source.search(&query, &Default::default()).await.unwrap();
        assert_eq!(answer[0].len(), 1);
        assert!(answer[0][0].fetch_error.is_none());
        tokio::time::sleep(Duration::from_millis(500)).await;
        source.search(&query, &Default::default()).await.unwrap();
        assert_eq!(server.counts().await, (2, 1));
    });
}

#[test]
fn concurrent_identical_searches_make_one_query() {
    use attestgate::evidence::EvidenceSource;
    let tmp = tempfile::tempdir().unwrap();
    let server = counting(tmp.path());
    let source = server.source(|_| {});
    let query = [compile_query()];
    runtime().block_on(async {
        server.control("hit", 0.3).await;
        let seen = Default::default();
        let answers =
            futures_util::future::join_all((0..10).map(|_| source.search(&query, &seen))).await;
        for answer in answers {
            assert_eq!(answer.unwrap()[0].len(), 1);
        }
        assert_eq!(server.counts().await, (1, 1));
    });
}

#[test]
fn a_server_error_is_not_cached() {
    use attestgate::evidence::EvidenceSource;
    let tmp = tempfile::tempdir().unwrap();
    let server = counting(tmp.path());
    let source = server.source(|_| {});
    let query = [compile_query()];
    runtime().block_on(async {
        server.control("error", 0.0).await;
        let err = source
            .search(&query, &Default::default())
            .await
            .unwrap_err();
        assert!(
            attestgate::display_chain(&err).contains("500"),
            "{}",
            attestgate::display_chain(&err)
        );
        assert!(source.search(&query, &Default::default()).await.is_err());
        assert_eq!(server.counts().await, (2, 0), "each error asked again");
        server.control("hit", 0.0).await;
        let answer = source.search(&query, &Default::default()).await.unwrap();
        assert_eq!(answer[0].len(), 1);
        assert_eq!(server.counts().await, (3, 1));
    });
}
