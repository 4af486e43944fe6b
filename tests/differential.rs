//! Differential matrix: the same evidence and policy judged by three verifiers.
//!
//! Every scenario runs in its own temporary directory. openssl makes the keys; the go-witness
//! v0.12.0 reference CLI (`tests/reference/witness-v012`, witness's `run`/`sign` flags) runs the
//! steps and signs the policy; then three verifiers judge the result with the same flags:
//! go-witness v0.12.0 (our compatibility target), go-witness v0.10.0 (the engine inside the
//! released witness CLI v0.11) and attestgate. A verdict is pass (exit 0) or fail (any other
//! exit), and each must equal the scenario's expectation for that verifier. Where the expected
//! verdicts differ the scenario says why, from the README table "Where witness and cilock
//! disagree".
//!
//! Subjects are given as bare hex to all three (the references take `-s` verbatim), except in
//! the one scenario that shows the `sha256:` prefix difference. Back-reference chains deeper than
//! two hops are left out: witness's verdict there depends on Go's map order.
//!
//! The references come from `.ci/peers.sh` (`$ATTESTGATE_PEERS/peers.env`, or the
//! `WITNESS_V012`/`WITNESS_V010` variables). Without them the test is skipped, unless `CI=true`,
//! where it fails: CI must never skip silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{attestgate, b64, hex, KeyKind, OpensslKey};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

/// The two reference verifiers.
struct Peers {
    v012: PathBuf,
    v010: PathBuf,
}

/// Finds the reference binaries: `WITNESS_V012`/`WITNESS_V010` from the environment, else from
/// `$ATTESTGATE_PEERS/peers.env` (default `~/.cache/attestgate-peers`).
fn peers() -> Option<Peers> {
    let cache = std::env::var_os("ATTESTGATE_PEERS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/attestgate-peers"))
        });
    let mut found: HashMap<String, PathBuf> = HashMap::new();
    if let Some(text) = cache.and_then(|c| std::fs::read_to_string(c.join("peers.env")).ok()) {
        for line in text.lines() {
            if let Some((name, path)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
            {
                found.insert(name.to_string(), PathBuf::from(path));
            }
        }
    }
    for name in ["WITNESS_V012", "WITNESS_V010"] {
        if let Some(path) = std::env::var_os(name).filter(|p| !p.is_empty()) {
            found.insert(name.to_string(), PathBuf::from(path));
        }
    }
    let get = |name: &str| found.get(name).filter(|p| p.is_file()).cloned();
    Some(Peers {
        v012: get("WITNESS_V012")?,
        v010: get("WITNESS_V010")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// A verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    Pass,
    Fail,
}
use V::{Fail, Pass};

impl V {
    fn of(code: i32) -> Self {
        if code == 0 {
            Pass
        } else {
            Fail
        }
    }

    fn word(self) -> &'static str {
        match self {
            Pass => "pass",
            Fail => "FAIL",
        }
    }
}

/// The verifiers, in the order of every `[_; 3]` below.
const VERIFIERS: [&str; 3] = ["witness-v012", "witness-v010", "attestgate"];

/// One row of the matrix.
struct Scenario {
    name: &'static str,
    /// Expected verdicts of witness-v012, witness-v010, attestgate.
    expect: [V; 3],
    /// attestgate's exact exit code, where it matters (2: the policy is refused as written).
    attestgate_code: Option<i32>,
    /// Why the verdicts differ; empty when all three agree.
    why: &'static str,
    /// Makes keys, evidence and the signed policy in the case directory.
    setup: fn(&Case) -> Verify,
}

impl Scenario {
    /// Whether the exit codes of the three verifiers are what the scenario expects.
    fn accepts(&self, codes: [i32; 3]) -> bool {
        codes.iter().zip(self.expect).all(|(c, e)| V::of(*c) == e)
            && self.attestgate_code.is_none_or(|c| c == codes[2])
    }
}

/// What to verify, relative to the case directory.
struct Verify {
    policy: String,
    policy_key: String,
    attestations: Vec<String>,
    subjects: Vec<String>,
    /// Flags given to attestgate only (witness's behaviour where attestgate asks for an option).
    attestgate_flags: Vec<&'static str>,
}

impl Verify {
    fn new(policy: String, policy_key: &OpensslKey, attestations: &[&str], subject: &str) -> Self {
        Self {
            policy,
            policy_key: file_name(&policy_key.public),
            attestations: attestations.iter().map(|a| (*a).to_string()).collect(),
            subjects: vec![subject.to_string()],
            attestgate_flags: Vec::new(),
        }
    }

    /// The verify arguments, as all three take them.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "verify".to_string(),
            "-p".into(),
            self.policy.clone(),
            "-k".into(),
            self.policy_key.clone(),
        ];
        for a in &self.attestations {
            args.extend(["-a".to_string(), a.clone()]);
        }
        for s in &self.subjects {
            args.extend(["-s".to_string(), s.clone()]);
        }
        args
    }
}

const ALL_PASS: [V; 3] = [Pass, Pass, Pass];
const ALL_FAIL: [V; 3] = [Fail, Fail, Fail];

fn scenarios() -> Vec<Scenario> {
    fn same(name: &'static str, expect: [V; 3], setup: fn(&Case) -> Verify) -> Scenario {
        Scenario {
            name,
            expect,
            attestgate_code: None,
            why: "",
            setup,
        }
    }
    fn differs(
        name: &'static str,
        expect: [V; 3],
        attestgate_code: Option<i32>,
        why: &'static str,
        setup: fn(&Case) -> Verify,
    ) -> Scenario {
        Scenario {
            name,
            expect,
            attestgate_code,
            why,
            setup,
        }
    }
    vec![
        // Passes everywhere.
        same("pass-ed25519-functionary", ALL_PASS, pass_ed25519),
        same("pass-ecdsa-p256-functionary", ALL_PASS, pass_ecdsa_p256),
        same("pass-rsa-functionary", ALL_PASS, pass_rsa),
        same("pass-two-steps-artifactsfrom", ALL_PASS, pass_two_steps),
        same("pass-step-found-by-commit-backref", ALL_PASS, pass_backref),
        same("pass-commit-hash-as-subject", ALL_PASS, pass_commit_subject),
        same(
            "pass-several-candidates-one-good",
            ALL_PASS,
            pass_several_candidates,
        ),
        same("pass-rego-v1-with-import", ALL_PASS, pass_rego_v1_import),
        same("pass-certificate-functionary", ALL_PASS, pass_certificate),
        // Fails everywhere.
        same("fail-wrong-functionary", ALL_FAIL, fail_wrong_functionary),
        same(
            "fail-signer-not-in-policy",
            ALL_FAIL,
            fail_signer_not_in_policy,
        ),
        same("fail-tampered-payload", ALL_FAIL, fail_tampered_payload),
        same("fail-expired-policy", ALL_FAIL, fail_expired_policy),
        same(
            "fail-policy-signed-by-other-key",
            ALL_FAIL,
            fail_policy_other_key,
        ),
        same(
            "fail-policy-keyid-mismatch",
            ALL_FAIL,
            fail_policy_keyid_mismatch,
        ),
        same("fail-rego-deny", ALL_FAIL, fail_rego_deny),
        same("fail-rego-compile-error", ALL_FAIL, fail_rego_compile_error),
        same(
            "fail-rego-v1-without-import",
            ALL_FAIL,
            fail_rego_v1_without_import,
        ),
        same("fail-missing-attestation-type", ALL_FAIL, fail_missing_type),
        same(
            "fail-artifactsfrom-digest-mismatch",
            ALL_FAIL,
            fail_artifacts_mismatch,
        ),
        same("fail-unknown-subject", ALL_FAIL, fail_unknown_subject),
        same(
            "fail-certificate-extension-mismatch",
            ALL_FAIL,
            fail_certificate_extension,
        ),
        Scenario {
            name: "fail-step-key-differs-from-name",
            expect: ALL_FAIL,
            attestgate_code: Some(2),
            why: "",
            setup: fail_step_name,
        },
        // Deliberate differences.
        differs(
            "diff-rego-package-without-deny",
            [Pass, Pass, Fail],
            Some(1),
            "Rego package without `deny`: witness passes (empty result set); attestgate fails: \
             a missing rule must never read as \"no violations\"",
            diff_rego_without_deny,
        ),
        differs(
            "diff-rego-deny-masked-by-package-without-deny",
            [Pass, Pass, Fail],
            Some(1),
            "a Rego package without `deny` masks the other packages of the same attestation in \
             witness; attestgate fails: a missing rule must never read as \"no violations\"",
            diff_rego_deny_masked,
        ),
        differs(
            "diff-two-rego-modules-same-name",
            [Pass, Pass, Fail],
            Some(1),
            "two Rego modules with the same `name`: witness silently drops the earlier (which \
             denies); attestgate evaluates both: dropping a check silently is unsafe",
            diff_rego_same_name,
        ),
        differs(
            "diff-step-with-empty-attestations",
            [Fail, Pass, Fail],
            Some(2),
            "a step with no `attestations`: go-witness v0.10 passes everything, v0.12 fails \
             (security fix); attestgate refuses the policy (exit 2)",
            diff_empty_attestations,
        ),
        differs(
            "diff-artifactsfrom-zero-overlap",
            [Fail, Pass, Fail],
            Some(1),
            "`artifactsFrom` with no shared path: go-witness v0.10 passes vacuously, v0.12 fails \
             (zero-overlap `artifactsFrom` fails); attestgate implements the v0.12 rule",
            diff_zero_overlap,
        ),
        differs(
            "diff-cilock-timestampconstraint",
            [Pass, Pass, Fail],
            Some(2),
            "cilock-only key `timestampConstraint`: witness silently ignores it (the policy is \
             weaker than written); attestgate refuses the policy (exit 2): never ignore a check \
             the author wrote",
            diff_timestamp_constraint,
        ),
        differs(
            "diff-unknown-key-in-attestation",
            [Pass, Pass, Fail],
            Some(2),
            "unknown key (`regopolicy`, a typo) inside an attestation: witness ignores it; \
             attestgate refuses the policy: a typo silently drops a check",
            diff_unknown_key,
        ),
        differs(
            "diff-duplicate-json-keys",
            [Pass, Pass, Fail],
            Some(2),
            "duplicate JSON key (`expires` twice): witness takes the last one; attestgate \
             refuses the policy: two parsers must not read two different policies",
            diff_duplicate_keys,
        ),
        differs(
            "diff-aflock-type-twin",
            [Fail, Fail, Pass],
            Some(0),
            "attestation type twins (aflock.ai vs witness.dev command-run): witness matches \
             exactly, attestgate aliases (`--exact-types` for witness): the twins are one \
             attestor with one schema",
            diff_type_twin,
        ),
        differs(
            "diff-policy-payload-type",
            [Pass, Pass, Fail],
            None,
            "`payloadType` of the policy: witness does not check it; attestgate requires a \
             witness or aflock policy type: no producer violates it",
            diff_policy_payload_type,
        ),
        differs(
            "diff-sha256-prefixed-subject",
            [Fail, Fail, Pass],
            Some(0),
            "`alg:` prefix on `-s`: witness takes `sha256:<hex>` verbatim (never matches); \
             attestgate strips it, checking the value is hex: verbatim can only fail falsely",
            diff_prefixed_subject,
        ),
        differs(
            "diff-snake-case-fulcio-extension",
            [Pass, Pass, Fail],
            Some(1),
            "certConstraint extension key `source_repository_uri` (snake_case): witness silently \
             drops it (Go field names only); attestgate enforces both spellings: a dropped \
             constraint is an allow-all",
            diff_snake_case_extension,
        ),
        differs(
            "diff-untimestamped-certificate-signer",
            [Pass, Pass, Fail],
            Some(1),
            "certificate signer, policy without `timestampauthorities`: witness checks the chain \
             at verification time; attestgate refuses it (`--allow-untimestamped-certificates` \
             for witness): without a trusted time nothing says when the signature was made",
            diff_untimestamped_certificate,
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The case directory and what the reference makes in it
// ---------------------------------------------------------------------------------------------

const FUTURE: &str = "2035-01-01T00:00:00Z";
const WITNESS: &str = "https://witness.dev/attestations";
const CI_ROOT: &str = "ci";

fn t(name: &str) -> String {
    format!("{WITNESS}/{name}/v0.1")
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

/// One scenario's directory and the reference CLI that produces its evidence.
struct Case<'a> {
    dir: PathBuf,
    peers: &'a Peers,
}

/// Runs `cmd`, panicking with its stderr when it fails.
fn check(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Case<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn key(&self, name: &str, kind: KeyKind) -> OpensslKey {
        OpensslKey::generate(&self.dir, name, kind)
    }

    /// A command with a clean environment: no CI variable, token or proxy setting reaches the
    /// reference (its `environment` attestor records the environment).
    fn clean(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        cmd
    }

    /// A fresh directory `name`; a git work tree with one commit when `git`.
    fn workspace(&self, name: &str, git: bool) -> PathBuf {
        let ws = self.path(name);
        std::fs::create_dir_all(&ws).unwrap();
        if git {
            check(self.clean("git", &ws).args(["init", "-q", "."]), "git init");
            check(
                self.clean("git", &ws).args([
                    "-c",
                    "user.email=t@example.invalid",
                    "-c",
                    "user.name=t",
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    "init",
                ]),
                "git commit",
            );
        }
        ws
    }

    /// The HEAD commit of a workspace.
    fn commit(&self, ws: &Path) -> String {
        let out = check(
            self.clean("git", ws).args(["rev-parse", "HEAD"]),
            "git rev-parse",
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `witness run -s STEP -k KEY -a ATTESTORS -o OUT -- sh -c SCRIPT` in `ws`, with the v0.12
    /// reference. Returns OUT (relative to the case directory).
    fn run(&self, ws: &Path, step: &str, key: &Path, attestors: &str, out: &str, script: &str) {
        self.run_with(ws, step, key, None, attestors, out, script);
    }

    #[allow(clippy::too_many_arguments)]
    fn run_with(
        &self,
        ws: &Path,
        step: &str,
        key: &Path,
        cert: Option<&Path>,
        attestors: &str,
        out: &str,
        script: &str,
    ) {
        let mut cmd = self.clean(&self.peers.v012, ws);
        cmd.args(["run", "-s", step, "-k"]).arg(key);
        if let Some(cert) = cert {
            cmd.arg("--signer-file-cert-path").arg(cert);
        }
        cmd.args(["-a", attestors, "-o"])
            .arg(self.path(out))
            .args(["--", "sh", "-c", script]);
        check(&mut cmd, &format!("witness-v012 run -s {step}"));
    }

    /// Writes `text` as `name.json` and signs it with `witness sign`; returns the signed file.
    fn sign_text(
        &self,
        name: &str,
        text: &str,
        key: &OpensslKey,
        datatype: Option<&str>,
    ) -> String {
        let plain = format!("{name}.json");
        let signed = format!("{name}-signed.json");
        std::fs::write(self.path(&plain), text).unwrap();
        let mut cmd = self.clean(&self.peers.v012, &self.dir);
        cmd.args(["sign", "-k"])
            .arg(&key.private)
            .args(["-f", &plain, "-o", &signed]);
        if let Some(datatype) = datatype {
            cmd.args(["-t", datatype]);
        }
        check(&mut cmd, "witness-v012 sign");
        signed
    }

    fn sign(&self, policy: &Value, key: &OpensslKey) -> String {
        self.sign_text(
            "policy",
            &serde_json::to_string_pretty(policy).unwrap(),
            key,
            None,
        )
    }

    /// The bare-hex SHA-256 of a file.
    fn sha256(&self, path: &Path) -> String {
        use sha2::Digest as _;
        hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
    }

    /// Rewrites an envelope's payload (`from` replaced by `to`), keeping its signature.
    fn tamper(&self, file: &str, from: &str, to: &str) {
        use base64::Engine as _;
        let path = self.path(file);
        let mut envelope: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        let text = String::from_utf8(payload).unwrap();
        assert!(text.contains(from), "{file}: no {from:?} to tamper with");
        envelope["payload"] = json!(b64(text.replacen(from, to, 1).as_bytes()));
        std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
    }

    /// A test CA and a P-256 leaf under it with a code-signing EKU, an e-mail SAN and the
    /// Fulcio SourceRepositoryURI extension (1.3.6.1.4.1.57264.1.12), made by openssl.
    /// Returns (ca.pem, leaf.key, leaf.pem).
    fn certificate(&self) -> (PathBuf, PathBuf, PathBuf) {
        let openssl = |args: &[&str]| {
            check(
                self.clean("openssl", &self.dir).args(args),
                &format!("openssl {}", args[0]),
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=test root",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=builder/O=attestgate-tests",
        ]);
        std::fs::write(
            self.path("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=codeSigning\n\
             subjectAltName=email:builder@example.invalid\n\
             1.3.6.1.4.1.57264.1.12=ASN1:UTF8String:https://github.com/org/repo\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "7",
            "-extfile",
            "leaf.ext",
        ]);
        (
            self.path("ca.pem"),
            self.path("leaf.key"),
            self.path("leaf.pem"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Policy building blocks
// ---------------------------------------------------------------------------------------------

fn policy(keys: &[&OpensslKey], steps: Value) -> Value {
    let publickeys: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.keyid(), k.policy_entry())).collect();
    json!({"expires": FUTURE, "steps": steps, "publickeys": publickeys})
}

fn functionary(key: &OpensslKey) -> Value {
    json!([{"type": "publickey", "publickeyid": key.keyid()}])
}

/// `{"type": …}` entries for the named attestors.
fn types(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({"type": t(n)})).collect())
}

/// material, command-run (with `rego`) and product.
fn with_rego(rego: Value) -> Value {
    json!([
        {"type": t("material")},
        {"type": t("command-run"), "regopolicies": rego},
        {"type": t("product")},
    ])
}

fn module(name: &str, source: &str) -> Value {
    json!({"name": name, "module": b64(source.as_bytes())})
}

fn step(name: &str, key: &OpensslKey, attestations: Value) -> Value {
    json!({"name": name, "functionaries": functionary(key), "attestations": attestations})
}

const REGO_EXIT_V0: &str = "package build.exit\n\ndeny[msg] {\n\tinput.exitcode != 0\n\tmsg := sprintf(\"exit code %d\", [input.exitcode])\n}\n";
const REGO_SHELL_DENY: &str = "package build.shell\n\ndeny[msg] {\n\tinput.cmd[0] == \"sh\"\n\tmsg := \"commands must not run through a shell\"\n}\n";
const REGO_NO_DENY: &str = "package build.allow\n\nallow {\n\tinput.exitcode == 0\n}\n";

/// One `build` step writing `hello.txt`, signed by `signer`, in workspace `ws` (a git work tree
/// when `attestors` names git). Returns the evidence file and the subject (bare hex).
fn build(case: &Case, ws: &str, signer: &OpensslKey, attestors: &str, out: &str) -> String {
    let ws = case.workspace(ws, attestors.contains("git"));
    case.run(
        &ws,
        "build",
        &signer.private,
        attestors,
        out,
        "echo hi > hello.txt",
    );
    case.sha256(&ws.join("hello.txt"))
}

/// The common shape: a functionary key of `kind`, a policy key of `policy_kind`, one `build`
/// step requiring material, command-run (with `rego`) and product.
fn single(case: &Case, kind: KeyKind, policy_kind: KeyKind, rego: Value) -> Verify {
    let signer = case.key("signer", kind);
    let policy_key = case.key("policy", policy_kind);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, with_rego(rego))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

/// `build` writes hello.txt in a git work tree; `package` then tars it (after `between` runs,
/// if any) and requires `artifactsFrom: [build]`. The subject is the tarball, so `build` is
/// found only through the git commit back-reference.
fn two_steps(case: &Case, between: Option<fn(&Path)>) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let ws = case.workspace("ws", true);
    std::fs::write(ws.join("main.c"), "int main(void) { return 0; }\n").unwrap();
    case.run(
        &ws,
        "build",
        &signer.private,
        "environment,git",
        "build.json",
        "cp main.c hello.txt",
    );
    if let Some(between) = between {
        between(&ws);
    }
    case.run(
        &ws,
        "package",
        &signer.private,
        "environment,git",
        "package.json",
        "tar cf app.tar hello.txt",
    );
    let subject = case.sha256(&ws.join("app.tar"));
    let mut package = step("package", &signer, types(&["material", "product"]));
    package["artifactsFrom"] = json!(["build"]);
    let p = policy(
        &[&signer],
        json!({
            "build": step("build", &signer, types(&["material", "command-run", "product"])),
            "package": package,
        }),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json", "package.json"],
        &subject,
    )
}

/// A `build` step signed through the certificate of `Case::certificate`, and a policy whose
/// functionary is that certificate's identity with `extensions`.
fn certificate_case(case: &Case, extensions: Value, allow_untimestamped: bool) -> Verify {
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let (ca, leaf_key, leaf) = case.certificate();
    let ws = case.workspace("ws", false);
    case.run_with(
        &ws,
        "build",
        &leaf_key,
        Some(&leaf),
        "environment",
        "build.json",
        "echo hi > hello.txt",
    );
    let subject = case.sha256(&ws.join("hello.txt"));
    let p = json!({
        "expires": FUTURE,
        "roots": {CI_ROOT: {"certificate": b64(&std::fs::read(ca).unwrap())}},
        "steps": {"build": {
            "name": "build",
            "functionaries": [{"type": "root", "certConstraint": {
                "commonname": "builder",
                "dnsnames": [],
                "emails": ["builder@example.invalid"],
                "organizations": ["attestgate-tests"],
                "uris": [],
                "roots": [CI_ROOT],
                "extensions": extensions,
            }}],
            "attestations": types(&["material", "command-run", "product"]),
        }},
    });
    let mut v = Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    );
    if allow_untimestamped {
        // witness's behaviour, which attestgate gives only by this explicit option.
        v.attestgate_flags
            .push("--allow-untimestamped-certificates");
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Scenario setups
// ---------------------------------------------------------------------------------------------

fn pass_ed25519(case: &Case) -> Verify {
    let rego = json!([module("exit", REGO_EXIT_V0)]);
    single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, rego)
}

fn pass_ecdsa_p256(case: &Case) -> Verify {
    single(case, KeyKind::EcdsaP256, KeyKind::Ed25519, json!([]))
}

fn pass_rsa(case: &Case) -> Verify {
    single(case, KeyKind::RsaPss, KeyKind::RsaPss, json!([]))
}

fn pass_two_steps(case: &Case) -> Verify {
    two_steps(case, None)
}

/// `test` never sees hello.txt; only the commit of `build` finds it.
fn pass_backref(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment,git", "build.json");
    case.run(
        &case.path("ws"),
        "test",
        &signer.private,
        "environment,git",
        "test.json",
        "echo ok > report.txt",
    );
    let p = policy(
        &[&signer],
        json!({
            "build": step("build", &signer, types(&["material", "command-run", "product"])),
            "test": step("test", &signer, types(&["command-run", "git"])),
        }),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json", "test.json"],
        &subject,
    )
}

/// The subject is the commit itself (bare hex, a SHA-1 digest value).
fn pass_commit_subject(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    build(case, "ws", &signer, "environment,git", "build.json");
    let commit = case.commit(&case.path("ws"));
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["git", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &commit,
    )
}

/// Three collections for `build` with the same product: one signed by a key that is in the
/// policy but not a functionary, one tampered, one good.
fn pass_several_candidates(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let other = case.key("other", KeyKind::EcdsaP256);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    build(case, "ws1", &other, "environment", "by-other.json");
    build(case, "ws2", &signer, "environment", "tampered.json");
    case.tamper("tampered.json", "echo hi", "echo ho");
    let subject = build(case, "ws3", &signer, "environment", "good.json");
    let p = policy(
        &[&signer, &other],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["by-other.json", "tampered.json", "good.json"],
        &subject,
    )
}

fn pass_rego_v1_import(case: &Case) -> Verify {
    let src = "package build.exit\n\nimport rego.v1\n\ndeny contains msg if {\n\tinput.exitcode != 0\n\tmsg := \"nonzero exit\"\n}\n";
    single(
        case,
        KeyKind::Ed25519,
        KeyKind::EcdsaP256,
        json!([module("exit", src)]),
    )
}

fn pass_certificate(case: &Case) -> Verify {
    certificate_case(
        case,
        json!({"SourceRepositoryURI": "https://github.com/org/*"}),
        true,
    )
}

fn fail_wrong_functionary(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let other = case.key("other", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    // Both keys are trusted, but only `other` may sign the step.
    let p = policy(
        &[&signer, &other],
        json!({"build": step("build", &other, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

fn fail_signer_not_in_policy(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let other = case.key("other", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&other],
        json!({"build": step("build", &other, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

fn fail_tampered_payload(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    case.tamper("build.json", "echo hi", "echo ho");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

fn fail_expired_policy(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let mut p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    p["expires"] = json!("2020-01-01T00:00:00Z");
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

/// Signed by one key, verified with another's public key.
fn fail_policy_other_key(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let impostor = case.key("impostor", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &impostor),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

/// `publickeys` names the signer's key under a key id that is not its own.
fn fail_policy_keyid_mismatch(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let wrong: String = signer
        .keyid()
        .chars()
        .rev()
        .collect::<String>()
        .replace('0', "1");
    let mut entry = signer.policy_entry();
    entry["keyid"] = json!(wrong);
    let p = json!({
        "expires": FUTURE,
        "publickeys": {wrong.clone(): entry},
        "steps": {"build": {
            "name": "build",
            "functionaries": [{"type": "publickey", "publickeyid": wrong}],
            "attestations": types(&["material", "command-run", "product"]),
        }},
    });
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

fn fail_rego_deny(case: &Case) -> Verify {
    let rego = json!([
        module("exit", REGO_EXIT_V0),
        module("shell", REGO_SHELL_DENY)
    ]);
    single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, rego)
}

fn fail_rego_compile_error(case: &Case) -> Verify {
    let src = "package build.broken\n\ndeny[msg] {\n\tinput.exitcode ==\n}\n";
    let rego = json!([module("broken", src)]);
    single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, rego)
}

fn fail_rego_v1_without_import(case: &Case) -> Verify {
    let src = "package build.exit\n\ndeny contains msg if {\n\tinput.exitcode != 0\n\tmsg := \"nonzero exit\"\n}\n";
    single(
        case,
        KeyKind::Ed25519,
        KeyKind::EcdsaP256,
        json!([module("exit", src)]),
    )
}

/// The policy requires git; the run recorded no git attestation.
fn fail_missing_type(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product", "git"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

/// hello.txt changes between `build` and `package`.
fn fail_artifacts_mismatch(case: &Case) -> Verify {
    fn swap(ws: &Path) {
        std::fs::write(ws.join("hello.txt"), "swapped\n").unwrap();
    }
    two_steps(case, Some(swap))
}

fn fail_unknown_subject(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &"0".repeat(64),
    )
}

fn fail_certificate_extension(case: &Case) -> Verify {
    certificate_case(
        case,
        json!({"SourceRepositoryURI": "https://github.com/other/*"}),
        true,
    )
}

/// The step's key is `build` (the run's `-s`), its `name` is `compile`: witness skips the
/// collection and aborts; attestgate refuses the policy.
fn fail_step_name(case: &Case) -> Verify {
    single_with_step(case, |s| s["name"] = json!("compile"))
}

fn diff_rego_without_deny(case: &Case) -> Verify {
    let rego = json!([module("allow", REGO_NO_DENY)]);
    single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, rego)
}

/// `shell` denies; `allow` has no `deny`, which empties witness's whole result set.
fn diff_rego_deny_masked(case: &Case) -> Verify {
    let rego = json!([
        module("shell", REGO_SHELL_DENY),
        module("allow", REGO_NO_DENY)
    ]);
    single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, rego)
}

/// The denying module comes first; a passing one with the same name follows.
fn diff_rego_same_name(case: &Case) -> Verify {
    let rego = json!([
        module("checks", REGO_SHELL_DENY),
        module("checks", REGO_EXIT_V0)
    ]);
    single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, rego)
}

fn diff_empty_attestations(case: &Case) -> Verify {
    single_with_step(case, |s| s["attestations"] = json!([]))
}

fn diff_timestamp_constraint(case: &Case) -> Verify {
    single_with_step(case, |s| {
        s["timestampConstraint"] = json!({"maxAge": "24h"});
    })
}

/// `regopolicy` (for `regopolicies`) would have denied the shell.
fn diff_unknown_key(case: &Case) -> Verify {
    single_with_step(case, |s| {
        s["attestations"][1]["regopolicy"] = json!([module("shell", REGO_SHELL_DENY)]);
    })
}

/// The policy of `single` with its `build` step changed by `edit`.
fn single_with_step(case: &Case, edit: fn(&mut Value)) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let mut s = step(
        "build",
        &signer,
        types(&["material", "command-run", "product"]),
    );
    edit(&mut s);
    let p = policy(&[&signer], json!({ "build": s }));
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

/// `build` and `package` run in two directories of one git work tree: `package`'s materials
/// share no path with `build`'s artifacts.
fn diff_zero_overlap(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let ws = case.workspace("ws", true);
    let (b, p) = (ws.join("b"), ws.join("p"));
    std::fs::create_dir_all(&b).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("input.txt"), "unrelated\n").unwrap();
    case.run(
        &b,
        "build",
        &signer.private,
        "environment,git",
        "build.json",
        "echo hi > hello.txt",
    );
    case.run(
        &p,
        "package",
        &signer.private,
        "environment,git",
        "package.json",
        "tar cf app.tar input.txt",
    );
    let subject = case.sha256(&p.join("app.tar"));
    let mut package = step("package", &signer, types(&["material", "product"]));
    package["artifactsFrom"] = json!(["build"]);
    let p = policy(
        &[&signer],
        json!({
            "build": step("build", &signer, types(&["material", "command-run", "product"])),
            "package": package,
        }),
    );
    Verify::new(
        case.sign(&p, &policy_key),
        &policy_key,
        &["build.json", "package.json"],
        &subject,
    )
}

/// `expires` twice: an expired date first, a valid one last.
fn diff_duplicate_keys(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    let text = serde_json::to_string_pretty(&p).unwrap();
    let text = text.replacen('{', "{\n  \"expires\": \"2020-01-01T00:00:00Z\",", 1);
    Verify::new(
        case.sign_text("policy", &text, &policy_key, None),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

fn diff_type_twin(case: &Case) -> Verify {
    single_with_step(case, |s| {
        s["attestations"][1]["type"] = json!("https://aflock.ai/attestations/command-run/v0.1");
    })
}

/// The policy is signed as `application/json` instead of a policy type.
fn diff_policy_payload_type(case: &Case) -> Verify {
    let signer = case.key("signer", KeyKind::Ed25519);
    let policy_key = case.key("policy", KeyKind::EcdsaP256);
    let subject = build(case, "ws", &signer, "environment", "build.json");
    let p = policy(
        &[&signer],
        json!({"build": step("build", &signer, types(&["material", "command-run", "product"]))}),
    );
    Verify::new(
        case.sign_text(
            "policy",
            &serde_json::to_string_pretty(&p).unwrap(),
            &policy_key,
            Some("application/json"),
        ),
        &policy_key,
        &["build.json"],
        &subject,
    )
}

fn diff_prefixed_subject(case: &Case) -> Verify {
    let mut v = single(case, KeyKind::Ed25519, KeyKind::EcdsaP256, json!([]));
    v.subjects = vec![format!("sha256:{}", v.subjects[0])];
    v
}

fn diff_snake_case_extension(case: &Case) -> Verify {
    certificate_case(
        case,
        json!({"source_repository_uri": "https://github.com/other/*"}),
        true,
    )
}

/// The matching certificate of `pass-certificate-functionary`, without the option.
fn diff_untimestamped_certificate(case: &Case) -> Verify {
    certificate_case(
        case,
        json!({"SourceRepositoryURI": "https://github.com/org/*"}),
        false,
    )
}

// ---------------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------------

/// What the three verifiers said about one scenario.
struct Outcome {
    /// Exit codes of witness-v012, witness-v010, attestgate (`None` where setup failed).
    codes: Option<[i32; 3]>,
    /// Output of each verifier (or the setup panic).
    texts: Vec<String>,
    /// Commands that reproduce the verdicts, when they differ from the expectation.
    repro: String,
    elapsed: Duration,
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

/// The last `n` non-empty lines of `text` that are not go-witness INFO log lines.
fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("INFO"))
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

fn run_scenario(peers: &Peers, scenario: &Scenario) -> Outcome {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix(&format!("differential-{}-", scenario.name))
        .tempdir()
        .unwrap();
    let case = Case {
        dir: tmp.path().to_path_buf(),
        peers,
    };
    let verify = match std::panic::catch_unwind(AssertUnwindSafe(|| (scenario.setup)(&case))) {
        Ok(v) => v,
        Err(payload) => {
            return Outcome {
                codes: None,
                texts: vec![format!("setup failed: {}", panic_text(payload.as_ref()))],
                repro: format!("(kept {})", tmp.keep().display()),
                elapsed: started.elapsed(),
            }
        }
    };
    let args = verify.args();
    let mut codes = [0; 3];
    let mut texts = Vec::new();
    for (i, peer) in [&peers.v012, &peers.v010].into_iter().enumerate() {
        let out = Command::new(peer)
            .current_dir(&case.dir)
            .args(&args)
            .output()
            .expect("reference verify runs");
        codes[i] = out.status.code().unwrap_or(-1);
        texts.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut ours = args.clone();
    ours.extend(verify.attestgate_flags.iter().map(|f| (*f).to_string()));
    let run = attestgate(&case.dir, &ours);
    codes[2] = run.code;
    texts.push(run.text());

    let repro = if !scenario.accepts(codes) {
        let dir = tmp.keep();
        format!(
            "cd {dir}\n  {v012} {a}\n  {v010} {a}\n  {ag} {b}",
            dir = dir.display(),
            v012 = peers.v012.display(),
            v010 = peers.v010.display(),
            ag = env!("CARGO_BIN_EXE_attestgate"),
            a = args.join(" "),
            b = ours.join(" "),
        )
    } else {
        String::new()
    };
    Outcome {
        codes: Some(codes),
        texts,
        repro,
        elapsed: started.elapsed(),
    }
}

#[test]
fn witness_v012_v010_and_attestgate_agree_except_where_documented() {
    let Some(peers) = peers() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "reference peers not built (run .ci/peers.sh): CI must not skip the differential \
             matrix"
        );
        eprintln!("skipped: reference peers not built (run .ci/peers.sh)");
        return;
    };
    let scenarios = scenarios();
    assert!(scenarios.len() >= 22, "{} scenarios", scenarios.len());
    for s in &scenarios {
        let agree = s.expect.iter().all(|v| *v == s.expect[0]);
        assert_eq!(
            agree,
            s.why.is_empty(),
            "{}: a `why` is given exactly when the expected verdicts differ",
            s.name
        );
    }

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> =
        Mutex::new(scenarios.iter().map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(scenario) = scenarios.get(i) else {
                    break;
                };
                let outcome = run_scenario(&peers, scenario);
                outcomes.lock().unwrap()[i] = Some(outcome);
            });
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();

    // The summary table; ATTESTGATE_DIFF_VERBOSE=1 also prints what each verifier said.
    let verbose = std::env::var_os("ATTESTGATE_DIFF_VERBOSE").is_some_and(|v| v == "1");
    let mut table = format!(
        "{:<46} {:<13} {:<13} {:<13} {}\n",
        "scenario", VERIFIERS[0], VERIFIERS[1], VERIFIERS[2], "check"
    );
    let mut failures = String::new();
    for (s, o) in scenarios.iter().zip(&outcomes) {
        let cell = |i: usize| match o.codes {
            Some(codes) => {
                let got = V::of(codes[i]);
                let mark = if got == s.expect[i] { "" } else { "!" };
                format!("{}{} ({})", mark, got.word(), codes[i])
            }
            None => "setup?".to_string(),
        };
        let ok = o.codes.is_some_and(|codes| s.accepts(codes));
        if verbose {
            println!("== {}", s.name);
            for (name, text) in VERIFIERS.iter().zip(&o.texts) {
                println!("  -- {name}:\n     {}", last_lines(text, 4).join("\n     "));
            }
        }
        let _ = writeln!(
            table,
            "{:<46} {:<13} {:<13} {:<13} {} ({:.1} s)",
            s.name,
            cell(0),
            cell(1),
            cell(2),
            if ok { "ok" } else { "MISMATCH" },
            o.elapsed.as_secs_f64()
        );
        if !ok {
            let expected: Vec<&str> = s.expect.iter().map(|v| v.word()).collect();
            let _ = writeln!(
                failures,
                "\n== {}: expected {} / {} / {}{}\n  {}",
                s.name,
                expected[0],
                expected[1],
                expected[2],
                s.attestgate_code
                    .map(|c| format!(" (attestgate exit {c})"))
                    .unwrap_or_default(),
                o.repro
            );
            for (name, text) in VERIFIERS.iter().zip(&o.texts) {
                let tail = last_lines(text, 6).join("\n     ");
                let _ = writeln!(failures, "  -- {name}:\n     {tail}");
            }
        }
    }
    let _ = writeln!(table, "\nwhere the verdicts differ:");
    for s in scenarios.iter().filter(|s| !s.why.is_empty()) {
        let _ = writeln!(table, "  {}: {}", s.name, s.why);
    }
    let _ = writeln!(
        table,
        "\n{} scenarios, {} threads, {:.1} s",
        scenarios.len(),
        threads,
        started.elapsed().as_secs_f64()
    );
    println!("{table}");
    assert!(failures.is_empty(), "{table}{failures}");
}
