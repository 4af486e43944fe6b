//! Certificate signers and RFC 3161 timestamps, end to end through the binary: the developer
//! vector d09, the real Fulcio/freetsa policy of witness's own tests (read from
//! ../shared/fixtures/real, never copied), and negative cases made here with openssl, an
//! implementation independent of ours. Each negative case changes one thing from a passing
//! baseline and asserts the verdict and the reason.

// Test helpers may panic freely (clippy.toml allows it inside #[test] functions only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{attestgate, b64, pae, KeyKind, OpensslKey, Run, INTOTO_TYPE, POLICY_TYPE};
use serde_json::{json, Value};

const SUBJECT: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const ENVIRONMENT: &str = "https://witness.dev/attestations/environment/v0.1";
const COLLECTION: &str = "https://witness.testifysec.com/attestation-collection/v0.1";
const LEAF_EMAIL: &str = "ci@example.test";
const LEAF_URI: &str = "https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main";
/// OID of the id-smime-ct-TSTInfo content type.
const TST_INFO_OID: &str = "1.2.840.113549.1.9.16.1.4";

use common::{openssl, PKI_CNF};

/// The test PKI and the evidence signed under it, made once per test binary in a temporary
/// directory and kept in memory; tests write the files they need into their own directories.
struct Pki {
    /// Every file the build made, by name.
    files: BTreeMap<String, Vec<u8>>,
    /// The statement every evidence envelope carries.
    statement: Vec<u8>,
    /// Raw signature of the leaf over the statement's PAE.
    leaf_sig: Vec<u8>,
    /// Raw signature of the back-dated leaf over the statement's PAE.
    old_sig: Vec<u8>,
    /// A token from the good TSA over `leaf_sig`.
    token: Vec<u8>,
    /// A token from the good TSA over other bytes.
    token_other: Vec<u8>,
    /// A token over `leaf_sig` signed by a TSA certificate whose timeStamping EKU is not
    /// critical (re-signed with `openssl cms`, since `openssl ts` refuses such a signer).
    token_soft_eku: Vec<u8>,
    /// The same content re-signed with `openssl cms` by the good TSA certificate.
    token_cms_good: Vec<u8>,
}

impl Pki {
    fn get() -> &'static Self {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(Self::build)
    }

    fn build() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let o = |args: &[&str]| openssl(&dir, args);
        std::fs::write(dir.join("pki.cnf"), PKI_CNF).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::create_dir(dir.join("newcerts")).unwrap();
        std::fs::write(dir.join("ca.serial"), "1000\n").unwrap();
        std::fs::write(dir.join("tsa.serial"), "01\n").unwrap();

        let ec = |curve: &'static str| ["-newkey", "ec", "-pkeyopt", curve, "-nodes"];
        let p256 = ec("ec_paramgen_curve:P-256");
        let p384 = ec("ec_paramgen_curve:P-384");
        let self_signed = |name: &str, subject: &str, key: &[&str]| {
            let (k, c) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-new"];
            args.extend_from_slice(key);
            args.extend_from_slice(&["-keyout", &k, "-out", &c, "-days", "3650", "-subj"]);
            args.extend_from_slice(&[subject, "-config", "pki.cnf", "-extensions", "ca_ext"]);
            o(&args);
        };
        let request = |name: &str, subject: &str, key: &[&str]| {
            let (k, r) = (format!("{name}.key"), format!("{name}.csr"));
            let mut args = vec!["req", "-new"];
            args.extend_from_slice(key);
            args.extend_from_slice(&["-keyout", &k, "-out", &r, "-subj", subject]);
            args.extend_from_slice(&["-config", "pki.cnf"]);
            o(&args);
        };
        let issue = |name: &str, csr: &str, issuer: &str, days: &str, profile: &str| {
            let (ca, cakey) = (format!("{issuer}.pem"), format!("{issuer}.key"));
            let (r, c) = (format!("{csr}.csr"), format!("{name}.pem"));
            o(&[
                "x509",
                "-req",
                "-in",
                &r,
                "-CA",
                &ca,
                "-CAkey",
                &cakey,
                "-CAcreateserial",
                "-out",
                &c,
                "-days",
                days,
                "-extfile",
                "pki.cnf",
                "-extensions",
                profile,
            ]);
        };

        self_signed("root", "/O=Test/CN=Test Root", &p256);
        self_signed("other-root", "/O=Test/CN=Test Root", &p256);
        request("int", "/O=Test/CN=Test Issuing", &p256);
        issue("int", "int", "root", "3650", "ca_ext");
        request("leaf", "/O=Acme/CN=builder", &p256);
        issue("leaf", "leaf", "int", "30", "leaf_ext");
        request("old", "/O=Acme/CN=builder", &p256);
        o(&[
            "ca",
            "-batch",
            "-config",
            "pki.cnf",
            "-cert",
            "int.pem",
            "-keyfile",
            "int.key",
            "-in",
            "old.csr",
            "-out",
            "old.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200301000000Z",
            "-extfile",
            "pki.cnf",
            "-extensions",
            "leaf_ext",
            "-notext",
        ]);
        self_signed("tsa-root", "/CN=Test TSA Root", &p384);
        request("tsa", "/CN=Test TSA", &p384);
        issue("tsa", "tsa", "tsa-root", "3650", "tsa_ext");
        issue("tsa-soft", "tsa", "tsa-root", "3650", "tsa_soft_ext");

        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "https://witness.dev/attestations/product/v0.1/file:app", "digest": {"sha256": SUBJECT}}],
            "predicateType": COLLECTION,
            "predicate": {"name": "build", "attestations": [{
                "type": ENVIRONMENT,
                "attestation": {"os": "linux", "hostname": "ci", "username": "ci", "variables": {}},
                "starttime": "2026-11-01T10:00:00Z", "endtime": "2026-11-01T10:00:01Z"
            }]}
        }))
        .unwrap();
        let sign = |key: &str| {
            std::fs::write(dir.join("pae.bin"), pae(INTOTO_TYPE, &statement)).unwrap();
            o(&["dgst", "-sha256", "-sign", key, "pae.bin"])
        };
        let leaf_sig = sign("leaf.key");
        let old_sig = sign("old.key");

        let stamp = |data: &[u8]| {
            std::fs::write(dir.join("stamped.bin"), data).unwrap();
            o(&[
                "ts",
                "-query",
                "-data",
                "stamped.bin",
                "-sha256",
                "-cert",
                "-no_nonce",
                "-out",
                "q.tsq",
            ]);
            o(&[
                "ts",
                "-reply",
                "-config",
                "pki.cnf",
                "-queryfile",
                "q.tsq",
                "-token_out",
                "-out",
                "token.der",
            ]);
            std::fs::read(dir.join("token.der")).unwrap()
        };
        let token = stamp(&leaf_sig);
        let token_other = stamp(b"some other bytes");

        // Re-sign the TSTInfo of `token` with openssl cms, once with a TSA certificate whose
        // EKU is not critical, once with the good one.
        std::fs::write(dir.join("good.der"), &token).unwrap();
        o(&[
            "cms",
            "-verify",
            "-noverify",
            "-inform",
            "DER",
            "-in",
            "good.der",
            "-binary",
            "-out",
            "tst.der",
        ]);
        let resign = |cert: &str, out: &str| {
            o(&[
                "cms",
                "-sign",
                "-binary",
                "-nodetach",
                "-in",
                "tst.der",
                "-econtent_type",
                TST_INFO_OID,
                "-signer",
                cert,
                "-inkey",
                "tsa.key",
                "-md",
                "sha384",
                "-nosmimecap",
                "-outform",
                "DER",
                "-out",
                out,
            ]);
            std::fs::read(dir.join(out)).unwrap()
        };
        let token_soft_eku = resign("tsa-soft.pem", "soft.der");
        let token_cms_good = resign("tsa.pem", "cms-good.der");

        let files = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        Self {
            files,
            statement,
            leaf_sig,
            old_sig,
            token,
            token_other,
            token_soft_eku,
            token_cms_good,
        }
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        self.files[&format!("{name}.pem")].clone()
    }

    /// Writes the PKI file `name` into `dir` and returns its path.
    fn install(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.files[name]).unwrap();
        path
    }

    /// A DSSE envelope over the statement, signed by `leaf` (`leaf` or `old`), carrying the
    /// issuing CA as intermediate and `tokens` as timestamps.
    fn evidence(&self, leaf: &str, tokens: &[&[u8]]) -> Vec<u8> {
        let sig = if leaf == "old" {
            &self.old_sig
        } else {
            &self.leaf_sig
        };
        let timestamps: Vec<Value> = tokens
            .iter()
            .map(|t| json!({"type": "tsp", "data": b64(t)}))
            .collect();
        let mut signature = json!({
            "keyid": "",
            "sig": b64(sig),
            "certificate": b64(&self.pem(leaf)),
            "intermediates": [b64(&self.pem("int"))],
        });
        if !timestamps.is_empty() {
            signature["timestamps"] = json!(timestamps);
        }
        serde_json::to_vec(&json!({
            "payload": b64(&self.statement),
            "payloadType": INTOTO_TYPE,
            "signatures": [signature],
        }))
        .unwrap()
    }
}

/// The certificate functionary the baseline policy uses; each case changes one field.
fn functionary() -> Value {
    json!({
        "type": "root",
        "certConstraint": {
            "commonname": "builder",
            "dnsnames": [],
            "emails": [LEAF_EMAIL],
            "organizations": ["Acme"],
            "uris": [LEAF_URI],
            "roots": ["test-root"],
        }
    })
}

/// A policy with `functionary`, rooted at `root` (with the issuing CA as intermediate only for
/// the real root), and the good TSA when `tsa` is set.
fn policy(functionary: Value, root: &str, tsa: bool) -> Value {
    let pki = Pki::get();
    let intermediates = if root == "root" {
        vec![b64(&pki.pem("int"))]
    } else {
        Vec::new()
    };
    let mut policy = json!({
        "expires": "2099-01-01T00:00:00Z",
        "roots": {"test-root": {"certificate": b64(&pki.pem(root)), "intermediates": intermediates}},
        "steps": {"build": {
            "name": "build",
            "functionaries": [functionary],
            "attestations": [{"type": ENVIRONMENT}],
        }},
    });
    if tsa {
        policy["timestampauthorities"] =
            json!({"test-tsa": {"certificate": b64(&pki.pem("tsa-root"))}});
    }
    policy
}

/// One verification in its own directory: the policy signed by a fresh Ed25519 key.
struct Case {
    dir: tempfile::TempDir,
    key: OpensslKey,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = OpensslKey::generate(dir.path(), "policy", KeyKind::Ed25519);
        Self { dir, key }
    }

    fn run(&self, policy: &Value, evidence: &[u8], extra: &[&str]) -> Run {
        let bytes = serde_json::to_vec(policy).unwrap();
        std::fs::write(
            self.dir.path().join("policy.json"),
            self.key.envelope(POLICY_TYPE, &bytes),
        )
        .unwrap();
        std::fs::write(self.dir.path().join("evidence.json"), evidence).unwrap();
        let public = self.key.public.to_str().unwrap().to_string();
        let subject = format!("sha256:{SUBJECT}");
        // These cases exercise witness's chain rules, including checking at the verification
        // time without a timestamp authority, which attestgate does only when asked.
        let mut args = vec![
            "verify",
            "--allow-untimestamped-certificates",
            "-v",
            "-p",
            "policy.json",
            "-k",
            &public,
            "-a",
            "evidence.json",
            "-s",
            &subject,
        ];
        args.extend_from_slice(extra);
        attestgate(self.dir.path(), &args)
    }
}

fn verify(policy: &Value, evidence: &[u8]) -> Run {
    Case::new().run(policy, evidence, &[])
}

fn assert_passes(run: &Run) {
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stdout.starts_with("PASSED"), "{}", run.stdout);
}

fn assert_fails_with(run: &Run, reason: &str) {
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.text().contains(reason),
        "{reason:?} missing from\n{}",
        run.text()
    );
}

const NOT_A_FUNCTIONARY: &str = "which is not a functionary of the step";

// === The developer vector ===

#[test]
fn vector_d09_passes_with_the_certificate_signer_in_the_json_result() {
    let case = common::root().join("tests/fixtures/vectors/d09-pass-x509-timestamped");
    let cmd = std::fs::read_to_string(case.join("cmd.txt")).unwrap();
    let mut args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    args.extend(["--output", "json"]);
    let run = attestgate(&case, &args);
    assert_eq!(run.code, 0, "{}", run.text());
    let result: Value = serde_json::from_str(&run.stdout).unwrap();
    let signer = &result["steps"][0]["passed_collections"][0]["functionaries"][0];
    assert_eq!(signer["kind"], "certificate", "{signer}");
    assert_eq!(signer["identity"]["common_name"], "widget-ci");
    assert_eq!(signer["trusted_time"], "2026-12-04T15:58:55Z");
    assert_eq!(signer["timestamp_authority"], "acme-tsa");
    assert_eq!(signer["roots"], json!(["acme-root"]));
}

// === Evidence signed by certificates, policies made here ===

#[test]
fn baseline_passes_with_and_without_a_timestamp_authority() {
    let pki = Pki::get();
    assert_passes(&verify(
        &policy(functionary(), "root", true),
        &pki.evidence("leaf", &[&pki.token]),
    ));
    assert_passes(&verify(
        &policy(functionary(), "root", false),
        &pki.evidence("leaf", &[]),
    ));
    // A token that openssl cms (not openssl ts) signed with the proper TSA certificate.
    assert_passes(&verify(
        &policy(functionary(), "root", true),
        &pki.evidence("leaf", &[&pki.token_cms_good]),
    ));
}

#[test]
fn without_a_timestamp_authority_certificate_evidence_is_refused_by_default() {
    let pki = Pki::get();
    let case = Case::new();
    std::fs::write(
        case.dir.path().join("policy.json"),
        case.key.envelope(
            POLICY_TYPE,
            &serde_json::to_vec(&policy(functionary(), "root", false)).unwrap(),
        ),
    )
    .unwrap();
    std::fs::write(
        case.dir.path().join("evidence.json"),
        pki.evidence("leaf", &[]),
    )
    .unwrap();
    let subject = format!("sha256:{SUBJECT}");
    let public = case.key.public.to_str().unwrap().to_string();
    let run = attestgate(
        case.dir.path(),
        [
            "verify",
            "-p",
            "policy.json",
            "-k",
            &public,
            "-a",
            "evidence.json",
            "-s",
            &subject,
        ],
    );
    assert_fails_with(&run, "no timestamp authority is trusted");
}

#[test]
fn a_certificate_under_another_root_is_rejected() {
    let pki = Pki::get();
    let run = verify(
        &policy(functionary(), "other-root", false),
        &pki.evidence("leaf", &[]),
    );
    assert_fails_with(&run, "certificate does not chain to a trusted root");
}

#[test]
fn an_expired_leaf_is_rejected_at_the_verification_time() {
    let pki = Pki::get();
    let run = verify(
        &policy(functionary(), "root", false),
        &pki.evidence("old", &[]),
    );
    assert_fails_with(&run, "certificate expired at 2020-03-01T00:00:00Z");
}

#[test]
fn the_verification_time_comes_from_now_without_a_timestamp_authority() {
    let pki = Pki::get();
    let at = |days: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::days(days))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // The leaf is valid for 30 days from its issue.
    let (soon, later) = (at(1), at(60));
    let p = policy(functionary(), "root", false);
    assert_passes(&Case::new().run(&p, &pki.evidence("leaf", &[]), &["--now", &soon]));
    let run = Case::new().run(&p, &pki.evidence("leaf", &[]), &["--now", &later]);
    assert_fails_with(&run, "certificate expired at");
    // A timestamp authority's genTime, not --now, dates the chain once one is configured.
    let p = policy(functionary(), "root", true);
    let run = Case::new().run(&p, &pki.evidence("leaf", &[&pki.token]), &["--now", &later]);
    assert_passes(&run);
}

#[test]
fn with_a_timestamp_authority_a_signature_needs_a_timestamp() {
    let pki = Pki::get();
    let run = verify(
        &policy(functionary(), "root", true),
        &pki.evidence("leaf", &[]),
    );
    assert_fails_with(&run, "carries no timestamp");
}

#[test]
fn a_timestamp_over_other_bytes_is_rejected() {
    let pki = Pki::get();
    let run = verify(
        &policy(functionary(), "root", true),
        &pki.evidence("leaf", &[&pki.token_other]),
    );
    assert_fails_with(&run, "timestamp is over other bytes than this signature");
}

#[test]
fn a_tsa_certificate_without_a_critical_time_stamping_usage_is_rejected() {
    let pki = Pki::get();
    let run = verify(
        &policy(functionary(), "root", true),
        &pki.evidence("leaf", &[&pki.token_soft_eku]),
    );
    assert_fails_with(
        &run,
        "exactly one extended key usage, timeStamping, marked critical",
    );
    // One good token among bad ones is enough.
    let run = verify(
        &policy(functionary(), "root", true),
        &pki.evidence("leaf", &[&pki.token_soft_eku, &pki.token]),
    );
    assert_passes(&run);
}

#[test]
fn a_timestamp_from_an_untrusted_authority_is_rejected() {
    let pki = Pki::get();
    let mut p = policy(functionary(), "root", true);
    p["timestampauthorities"]["test-tsa"]["certificate"] = json!(b64(&pki.pem("other-root")));
    let run = verify(&p, &pki.evidence("leaf", &[&pki.token]));
    assert_fails_with(&run, "does not chain to timestamp authority \"test-tsa\"");
}

fn with_constraint(field: &str, value: Value) -> Value {
    let mut f = functionary();
    f["certConstraint"][field] = value;
    policy(f, "root", false)
}

#[test]
fn common_name_email_and_uri_must_match_exactly() {
    let pki = Pki::get();
    let evidence = pki.evidence("leaf", &[]);
    let cases = [
        (
            "commonname",
            json!("Builder"),
            "certificate common name \"builder\" is not allowed",
        ),
        ("commonname", json!(""), "no common name is allowed"),
        (
            "emails",
            json!(["other@example.test"]),
            "certificate email \"ci@example.test\" is not allowed",
        ),
        (
            "emails",
            json!([LEAF_EMAIL, "second@example.test"]),
            "do not meet every constraint",
        ),
        (
            "uris",
            json!(["https://github.com/acme/app/*"]),
            "certificate uri",
        ),
        ("organizations", json!([]), "no organization is allowed"),
        (
            "roots",
            json!(["unknown-root"]),
            "does not chain to any root named by the constraint",
        ),
    ];
    for (field, value, reason) in cases {
        let run = verify(&with_constraint(field, value.clone()), &evidence);
        assert_fails_with(&run, NOT_A_FUNCTIONARY);
        assert!(
            run.stderr.contains(reason),
            "{field}={value}: {reason:?} missing from\n{}",
            run.stderr
        );
    }
    // The same fields with their sole-`*` wildcard pass.
    for field in ["emails", "uris", "organizations", "dnsnames", "roots"] {
        assert_passes(&verify(&with_constraint(field, json!(["*"])), &evidence));
    }
    assert_passes(&verify(
        &with_constraint("commonname", json!("*")),
        &evidence,
    ));
}

#[test]
fn a_star_inside_a_list_is_a_literal() {
    let pki = Pki::get();
    let run = verify(
        &with_constraint("uris", json!(["*", LEAF_URI])),
        &pki.evidence("leaf", &[]),
    );
    assert_fails_with(&run, NOT_A_FUNCTIONARY);
    assert!(
        run.stderr.contains("do not meet every constraint"),
        "{}",
        run.stderr
    );
}

#[test]
fn extension_constraints_match_as_globs() {
    let pki = Pki::get();
    let evidence = pki.evidence("leaf", &[]);
    let matching = json!({
        "Issuer": "https://token.actions.*",
        "source_repository_ref": "refs/heads/{main,release/*}",
    });
    assert_passes(&verify(&with_constraint("extensions", matching), &evidence));

    let run = verify(
        &with_constraint("extensions", json!({"SourceRepositoryRef": "refs/tags/*"})),
        &evidence,
    );
    assert_fails_with(&run, NOT_A_FUNCTIONARY);
    assert!(
        run.stderr
            .contains("SourceRepositoryRef \"refs/heads/main\" does not match"),
        "{}",
        run.stderr
    );
}

#[test]
fn unknown_or_invalid_extension_constraints_refuse_the_policy() {
    let pki = Pki::get();
    let evidence = pki.evidence("leaf", &[]);
    let run = verify(
        &with_constraint("extensions", json!({"repository": "*"})),
        &evidence,
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr
            .contains("unknown certificate extension \"repository\""),
        "{}",
        run.stderr
    );

    let run = verify(
        &with_constraint("extensions", json!({"Issuer": "[https"})),
        &evidence,
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("invalid pattern"), "{}", run.stderr);
}

#[test]
fn an_unreadable_policy_root_refuses_the_policy() {
    let pki = Pki::get();
    let mut p = policy(functionary(), "root", false);
    p["roots"]["test-root"]["certificate"] = json!(b64(b"not a certificate"));
    let run = verify(&p, &pki.evidence("leaf", &[]));
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr
            .contains("policy root \"test-root\" cannot be loaded"),
        "{}",
        run.stderr
    );
}

// === Policies signed by a certificate ===

/// A policy envelope signed by the leaf certificate, optionally with its intermediate and a
/// timestamp over the signature.
fn certificate_signed_policy(dir: &Path, with_intermediate: bool, timestamp: bool) -> PathBuf {
    let pki = Pki::get();
    let body = serde_json::to_vec(&policy(functionary(), "root", false)).unwrap();
    std::fs::write(dir.join("pae.bin"), pae(POLICY_TYPE, &body)).unwrap();
    let key = pki.install(dir, "leaf.key");
    let sig = openssl(
        dir,
        &["dgst", "-sha256", "-sign", key.to_str().unwrap(), "pae.bin"],
    );
    let mut signature =
        json!({"keyid": "", "sig": b64(&sig), "certificate": b64(&pki.pem("leaf"))});
    if with_intermediate {
        signature["intermediates"] = json!([b64(&pki.pem("int"))]);
    }
    if timestamp {
        // Stamp this signature with the TSA, in a copy of the TSA files (openssl ts writes
        // its serial file).
        for f in [
            "pki.cnf",
            "tsa.pem",
            "tsa.key",
            "tsa-root.pem",
            "tsa.serial",
        ] {
            pki.install(dir, f);
        }
        std::fs::write(dir.join("sig.bin"), &sig).unwrap();
        openssl(
            dir,
            &[
                "ts",
                "-query",
                "-data",
                "sig.bin",
                "-sha256",
                "-cert",
                "-no_nonce",
                "-out",
                "q.tsq",
            ],
        );
        openssl(
            dir,
            &[
                "ts",
                "-reply",
                "-config",
                "pki.cnf",
                "-queryfile",
                "q.tsq",
                "-token_out",
                "-out",
                "t.der",
            ],
        );
        signature["timestamps"] =
            json!([{"type": "tsp", "data": b64(&std::fs::read(dir.join("t.der")).unwrap())}]);
    }
    let envelope =
        json!({"payload": b64(&body), "payloadType": POLICY_TYPE, "signatures": [signature]});
    let path = dir.join("policy.json");
    std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    std::fs::write(dir.join("evidence.json"), pki.evidence("leaf", &[])).unwrap();
    path
}

fn verify_ca_signed(dir: &Path, flags: &[&str]) -> Run {
    let subject = format!("sha256:{SUBJECT}");
    let mut args = vec![
        "verify",
        "--allow-untimestamped-certificates",
        "-p",
        "policy.json",
        "-a",
        "evidence.json",
        "-s",
        &subject,
    ];
    args.extend_from_slice(flags);
    attestgate(dir, &args)
}

#[test]
fn a_certificate_signed_policy_needs_explicit_identity_constraints() {
    let pki = Pki::get();
    let tmp = tempfile::tempdir().unwrap();
    certificate_signed_policy(tmp.path(), true, false);
    let root = pki.install(tmp.path(), "root.pem");
    let root = root.to_str().unwrap();

    let run = verify_ca_signed(
        tmp.path(),
        &["--policy-ca-roots", root, "--policy-emails", LEAF_EMAIL],
    );
    assert_passes(&run);

    let run = verify_ca_signed(tmp.path(), &["--policy-ca-roots", root]);
    assert_fails_with(
        &run,
        "no identity constraint is configured for certificate policy signers",
    );

    let run = verify_ca_signed(
        tmp.path(),
        &[
            "--policy-ca-roots",
            root,
            "--policy-uris",
            "https://example.test/other",
        ],
    );
    assert_fails_with(&run, "does not meet the policy signer constraints");

    let run = verify_ca_signed(
        tmp.path(),
        &["--policy-ca", root, "--policy-commonname", "other"],
    );
    assert_fails_with(&run, "certificate common name \"builder\" is not allowed");

    let other = pki.install(tmp.path(), "other-root.pem");
    let run = verify_ca_signed(
        tmp.path(),
        &[
            "--policy-ca-roots",
            other.to_str().unwrap(),
            "--policy-commonname",
            "*",
        ],
    );
    assert_fails_with(&run, "certificate does not chain to a trusted root");
}

#[test]
fn policy_intermediates_and_timestamp_servers_come_from_flags() {
    let pki = Pki::get();
    let tmp = tempfile::tempdir().unwrap();
    certificate_signed_policy(tmp.path(), false, true);
    let (root, int, tsa) = (
        pki.install(tmp.path(), "root.pem"),
        pki.install(tmp.path(), "int.pem"),
        pki.install(tmp.path(), "tsa-root.pem"),
    );
    let (root, int, tsa) = (
        root.to_str().unwrap(),
        int.to_str().unwrap(),
        tsa.to_str().unwrap(),
    );
    let id = [
        "--policy-commonname",
        "builder",
        "--policy-organizations",
        "Acme",
    ];

    let mut flags = vec!["--policy-ca-roots", root, "--policy-ca-intermediates", int];
    flags.extend(id);
    assert_passes(&verify_ca_signed(tmp.path(), &flags));
    flags.extend(["--policy-timestamp-servers", tsa]);
    assert_passes(&verify_ca_signed(tmp.path(), &flags));

    // Without the intermediate the leaf does not chain.
    let mut flags = vec!["--policy-ca-roots", root];
    flags.extend(id);
    assert_fails_with(
        &verify_ca_signed(tmp.path(), &flags),
        "does not chain to a trusted root",
    );

    // A policy TSA that did not stamp the signature.
    let mut flags = vec![
        "--policy-ca-roots",
        root,
        "--policy-ca-intermediates",
        int,
        "--policy-timestamp-servers",
        root,
    ];
    flags.extend(id);
    assert_fails_with(
        &verify_ca_signed(tmp.path(), &flags),
        "no timestamp verifies",
    );

    // Unreadable certificate files are usage errors.
    let run = verify_ca_signed(
        tmp.path(),
        &[
            "--policy-ca-roots",
            "policy.json",
            "--policy-commonname",
            "*",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
}

// === The real Fulcio-signed policy of witness's tests (set 03) ===

fn real_set_03() -> Option<PathBuf> {
    let dir = common::root().join("../shared/fixtures/real/witness/03-fulcio-tsa-signed-policy");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: ../shared/fixtures/real not present");
        None
    }
}

/// Verifies the real policy with `flags`; the policy has no published evidence, so an accepted
/// policy still fails its step, by name.
fn verify_real(dir: &Path, flags: &[&str]) -> Run {
    let subject = format!("sha256:{SUBJECT}");
    let mut args = vec![
        "verify",
        "-p",
        "fulcio-policy-presigned.json",
        "-s",
        &subject,
    ];
    args.extend_from_slice(flags);
    attestgate(dir, &args)
}

fn assert_policy_accepted(run: &Run) {
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .starts_with("FAILED  policy sha256:321550112fa88fdc"),
        "{}",
        run.text()
    );
    assert!(run.stdout.contains("step test: FAILED"), "{}", run.stdout);
    assert!(!run.stderr.contains("policy signature"), "{}", run.stderr);
}

const STARS: [&str; 10] = [
    "--policy-commonname",
    "*",
    "--policy-dns-names",
    "*",
    "--policy-emails",
    "*",
    "--policy-organizations",
    "*",
    "--policy-uris",
    "*",
];

#[test]
fn real_e1_fulcio_policy_with_freetsa_is_accepted() {
    let Some(dir) = real_set_03() else { return };
    let mut flags = vec![
        "--policy-ca-roots",
        "fulcio_v1.crt.pem",
        "--policy-timestamp-servers",
        "freetsa.pem",
    ];
    flags.extend(STARS);
    assert_policy_accepted(&verify_real(&dir, &flags));

    // The leaf's e-mail SAN, pinned exactly, is accepted; another one is not.
    let pinned = [
        "--policy-ca-roots",
        "fulcio_v1.crt.pem",
        "--policy-timestamp-servers",
        "freetsa.pem",
        "--policy-emails",
        "tpmeadows1@gmail.com",
    ];
    assert_policy_accepted(&verify_real(&dir, &pinned));
    let wrong = [
        "--policy-ca-roots",
        "fulcio_v1.crt.pem",
        "--policy-timestamp-servers",
        "freetsa.pem",
        "--policy-emails",
        "someone@example.com",
    ];
    assert_fails_with(
        &verify_real(&dir, &wrong),
        "certificate email \"tpmeadows1@gmail.com\" is not allowed",
    );
}

#[test]
fn real_e2_wrong_ca_is_rejected() {
    let Some(dir) = real_set_03() else { return };
    let mut flags = vec![
        "--policy-ca-roots",
        "freetsa.pem",
        "--policy-timestamp-servers",
        "freetsa.pem",
    ];
    flags.extend(STARS);
    let run = verify_real(&dir, &flags);
    assert_fails_with(&run, "policy signature does not verify");
    assert!(
        run.stderr
            .contains("certificate does not chain to a trusted root"),
        "{}",
        run.stderr
    );
}

#[test]
fn real_e3_without_a_timestamp_authority_the_leaf_has_expired() {
    let Some(dir) = real_set_03() else { return };
    // By default a certificate signature without a trusted time does not count at all.
    let mut flags = vec!["--policy-ca-roots", "fulcio_v1.crt.pem"];
    flags.extend(STARS);
    let run = verify_real(&dir, &flags);
    assert_fails_with(&run, "no trusted time");

    // witness's rule, asked for: the chain is checked now, when the leaf has long expired.
    let mut flags = vec![
        "--allow-untimestamped-certificates",
        "--policy-ca-roots",
        "fulcio_v1.crt.pem",
    ];
    flags.extend(STARS);
    let run = verify_real(&dir, &flags);
    assert_fails_with(&run, "certificate expired at 2024-02-19T18:54:08Z");

    // Inside the leaf's ten minutes the same check passes, which isolates the time as the cause.
    flags.extend(["--now", "2024-02-19T18:50:00Z"]);
    assert_policy_accepted(&verify_real(&dir, &flags));
}
