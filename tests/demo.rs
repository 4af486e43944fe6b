#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The quickstart and the release script, as a newcomer and a CI workflow run them.
//!
//! - `scripts/demo.sh` on the bundled data (examples/demo), against the REAL Debian
//!   `docker-registry` it starts on loopback: one review admitted, one denied, one warned, each
//!   for the expected reason, and nothing left behind.
//! - `examples/demo/regenerate.sh` into a temporary folder: the new data verifies (and the demo
//!   runs on it), the images and reviews are byte-identical to the bundled ones, the keys are
//!   new; the bundled data verifies too and its policy is far from expiring.
//! - The corrected tutorial policies lint clean against their workflows, and the corrected
//!   "must come from main" module denies what the original let through.
//! - `scripts/release.sh` packages a binary into a reproducible tarball whose `.sha256` file
//!   `sha256sum -c` accepts (a system ELF binary stands in for attestgate: packaging the 300 MB
//!   debug build would take a minute, and the real static build eight).
//!
//! A test whose tools are missing prints "skipped: ..." and passes, except under `CI=true`,
//! where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{attestgate, require_peer, root, Run};
use serde_json::{json, Value};

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn demo_dir() -> PathBuf {
    root().join("examples/demo")
}

fn tools(names: &[&str], why: &str) -> bool {
    names.iter().all(|t| require_peer(Path::new(t), why))
}

/// Runs a script of the repository with bash, from the repository root.
fn script(path: &str, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut command = Command::new("bash");
    command
        .arg(root().join(path))
        .args(args)
        .current_dir(root());
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The digests of demo.json by image name.
fn digest(data: &Path, name: &str) -> String {
    read_json(&data.join("demo.json"))["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in demo.json"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn verify(data: &Path, subject: &str) -> Run {
    attestgate(
        data,
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "policy-pubkey.pem",
            "--attestations-dir",
            "evidence",
            "-s",
            subject,
        ],
    )
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (left, right) = (files(a), files(b));
    assert_eq!(left, right, "{} and {} differ", a.display(), b.display());
    for file in left {
        assert!(
            std::fs::read(a.join(&file)).unwrap() == std::fs::read(b.join(&file)).unwrap(),
            "{} differs from the bundled copy",
            file.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The quickstart

/// Runs scripts/demo.sh --keep on `data` with this build's binary; returns the run and the work
/// folder it kept (inside a temporary TMPDIR, which must hold nothing else afterwards).
fn run_demo(data: &Path) -> (Run, tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_attestgate"));
    let run = script(
        "scripts/demo.sh",
        &["--keep", "--data", data.to_str().unwrap()],
        &[("ATTESTGATE", &bin), ("TMPDIR", tmp.path())],
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "one work folder expected: {kept:?}");
    let work = kept[0].clone();
    (run, tmp, work)
}

/// The three answers the demo must give, read from the AdmissionReview answers themselves.
fn assert_demo_answers(run: &Run, work: &Path) {
    assert_eq!(run.code, 0, "{}", run.text());
    let out = &run.stdout;
    for line in [
        "Deployment shop/storefront",
        "-> ADMITTED\n",
        "-> DENIED (403)",
        "-> ADMITTED WITH A WARNING",
        "build did not come from main: refs/heads/feature/new-checkout",
        "3 of 3 reviews answered as expected",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{}", run.text());
    }

    let answer = |file: &str| read_json(&work.join("answers").join(file))["response"].clone();
    let admitted = answer("1-storefront.json");
    assert_eq!(admitted["allowed"], true, "{admitted}");
    assert!(admitted.get("warnings").is_none(), "{admitted}");
    let records: Value =
        serde_json::from_str(admitted["auditAnnotations"]["images"].as_str().unwrap()).unwrap();
    assert_eq!(records[0]["outcome"], "admitted", "{records}");
    assert_eq!(records[0]["binding"], "digest", "{records}");
    assert!(
        records[0]["evidence"][0]
            .as_str()
            .unwrap()
            .ends_with("evidence/app-v1.json"),
        "{records}"
    );

    let denied = answer("2-storefront-preview.json");
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["status"]["code"], 403, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("/demo/app:feature: denied: policy demo"),
        "{message}"
    );
    assert!(
        message.contains("rego must-come-from-main denied"),
        "{message}"
    );

    let warned = answer("3-toolbox.json");
    assert_eq!(warned["allowed"], true, "{warned}");
    let warnings = warned["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warned}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("/demo/untested:v1: would be denied: policy demo"),
        "{warned}"
    );
    assert_eq!(warned["auditAnnotations"]["decision"], "warned", "{warned}");

    // The registry the script started is stopped (stop.sh removes the pid files it signalled).
    let pids = work.join("registry/pids");
    let left: Vec<_> = std::fs::read_dir(&pids)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "still recorded as running: {left:?}");
}

#[test]
fn the_quickstart_admits_one_review_denies_one_and_warns_one() {
    if !tools(
        &["docker-registry", "skopeo", "python3", "curl", "openssl"],
        "the demo's registry and its push tool",
    ) {
        return;
    }
    let (run, _tmp, work) = run_demo(&demo_dir());
    assert_demo_answers(&run, &work);
}

#[test]
fn the_quickstart_cleans_up_after_itself() {
    if !tools(
        &["docker-registry", "skopeo", "python3", "curl", "openssl"],
        "the demo's registry and its push tool",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_attestgate"));
    let run = script(
        "scripts/demo.sh",
        &[],
        &[("ATTESTGATE", &bin), ("TMPDIR", tmp.path())],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[test]
fn the_demo_refuses_unknown_arguments_with_usage() {
    let run = script("scripts/demo.sh", &["--frobnicate"], &[]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("unknown argument"), "{}", run.text());
    let help = script("scripts/demo.sh", &["--help"], &[]);
    assert_eq!(help.code, 0, "{}", help.text());
    assert!(help.stdout.contains("--data DIR"), "{}", help.text());
}

// ---------------------------------------------------------------------------------------------
// The demo data: bundled and regenerated

#[test]
fn the_bundled_demo_data_verifies_and_its_policy_is_far_from_expiring() {
    let data = demo_dir();
    let check = attestgate(
        &data,
        [
            "policy",
            "check",
            "-p",
            "policy-signed.json",
            "-k",
            "policy-pubkey.pem",
        ],
    );
    assert_eq!(check.code, 0, "{}", check.text());
    assert!(
        check.stdout.contains("0 errors, 0 warnings"),
        "{}",
        check.text()
    );
    assert!(
        check.stdout.contains("expires 2036-01-01T00:00:00Z"),
        "{}",
        check.text()
    );
    let days: i64 = check
        .stdout
        .split_once(" days left")
        .and_then(|(before, _)| before.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no days left in:\n{}", check.text()));
    assert!(
        days > 180,
        "the demo policy expires in {days} days: run examples/demo/regenerate.sh"
    );

    // policy-signed.json signs exactly the readable policy.json.
    let envelope = read_json(&data.join("policy-signed.json"));
    let payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(payload, std::fs::read(data.join("policy.json")).unwrap());

    let good = verify(&data, &digest(&data, "demo/app:v1"));
    assert_eq!(good.code, 0, "{}", good.text());
    let feature = verify(&data, &digest(&data, "demo/app:feature"));
    assert_eq!(feature.code, 1, "{}", feature.text());
    assert!(
        feature
            .stdout
            .contains("build did not come from main: refs/heads/feature/new-checkout"),
        "{}",
        feature.text()
    );
    let untested = verify(&data, &digest(&data, "demo/untested:v1"));
    assert_eq!(untested.code, 1, "{}", untested.text());
}

#[test]
fn regenerate_rebuilds_data_that_verifies_with_new_keys_and_identical_images() {
    if !tools(&["openssl", "python3"], "examples/demo/regenerate.sh") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let run = script(
        "examples/demo/regenerate.sh",
        &[out.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    let (new, old) = (out.path(), demo_dir());

    // Deterministic parts: the same bytes as the bundled ones.
    assert_same_tree(&new.join("images"), &old.join("images"));
    assert_same_tree(&new.join("reviews"), &old.join("reviews"));
    assert_eq!(
        std::fs::read(new.join("config.yaml")).unwrap(),
        std::fs::read(old.join("config.yaml")).unwrap()
    );
    for name in ["demo/app:v1", "demo/app:feature", "demo/untested:v1"] {
        assert_eq!(digest(new, name), digest(&old, name), "{name}");
    }

    // New keys: the key ids change, and the new evidence does not pass the bundled policy.
    let (new_meta, old_meta) = (
        read_json(&new.join("demo.json")),
        read_json(&old.join("demo.json")),
    );
    assert_ne!(new_meta["policyKeyid"], old_meta["policyKeyid"]);
    assert_ne!(new_meta["buildKeyid"], old_meta["buildKeyid"]);
    assert!(!files(new)
        .iter()
        .any(|f| f.to_string_lossy().contains(".key")));

    // The new data verifies as the bundled data does.
    let check = attestgate(
        new,
        [
            "policy",
            "check",
            "-p",
            "policy-signed.json",
            "-k",
            "policy-pubkey.pem",
        ],
    );
    assert_eq!(check.code, 0, "{}", check.text());
    let good = verify(new, &digest(new, "demo/app:v1"));
    assert_eq!(good.code, 0, "{}", good.text());
    let feature = verify(new, &digest(new, "demo/app:feature"));
    assert_eq!(feature.code, 1, "{}", feature.text());
    assert!(
        feature.stdout.contains("rego must-come-from-main denied"),
        "{}",
        feature.text()
    );

    let crossed = attestgate(
        new,
        [
            "verify",
            "-p",
            old.join("policy-signed.json").to_str().unwrap(),
            "-k",
            old.join("policy-pubkey.pem").to_str().unwrap(),
            "--attestations-dir",
            "evidence",
            "-s",
            &digest(new, "demo/app:v1"),
        ],
    );
    assert_eq!(crossed.code, 1, "{}", crossed.text());

    // And the quickstart runs on it, where the registry tools are installed.
    if tools(
        &["docker-registry", "skopeo", "curl"],
        "the demo's registry and its push tool",
    ) {
        let (run, _tmp, work) = run_demo(new);
        assert_demo_answers(&run, &work);
    }
}

// ---------------------------------------------------------------------------------------------
// The tutorial, corrected

#[test]
fn the_corrected_tutorial_policies_lint_clean_and_the_original_does_not() {
    let dir = root().join("examples/tutorial");
    let lint = |policy: &str, workflow: &str| {
        attestgate(
            &dir,
            ["policy", "check", "-p", policy, "--workflow", workflow],
        )
    };
    let original = lint("policy.json", "build.yml");
    assert_eq!(original.code, 1, "{}", original.text());
    assert!(
        original.stdout.contains("3 errors, 2 warnings"),
        "{}",
        original.text()
    );

    for (policy, workflow) in [
        ("policy-corrected.json", "build.yml"),
        ("policy-corrected.json", "build-with-image.yml"),
        ("policy-admission.json", "build-with-image.yml"),
    ] {
        let run = lint(policy, workflow);
        assert_eq!(run.code, 0, "{policy} with {workflow}: {}", run.text());
        assert!(
            run.stdout.contains("0 errors, 0 warnings"),
            "{policy} with {workflow}: {}",
            run.text()
        );
    }
    // The admission policy needs the image step the tutorial's own workflow does not run.
    let run = lint("policy-admission.json", "build.yml");
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains("the workflow has no cilock/witness run for step \"image\""),
        "{}",
        run.text()
    );
}

/// The verdict of a one-step policy whose github attestation carries `module`, on evidence
/// whose github attestation has `jwt` as its `jwt` field (signed with openssl keys).
fn rego_verdict(module: &[u8], jwt: Value) -> Run {
    use common::{KeyKind, OpensslKey};
    const GITHUB: &str = "https://witness.dev/attestations/github/v0.1";
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let dir = tempfile::tempdir().unwrap();
    let policy_key = OpensslKey::generate(dir.path(), "policy", KeyKind::EcdsaP256);
    let builder = OpensslKey::generate(dir.path(), "builder", KeyKind::EcdsaP256);
    let policy = json!({
        "expires": "2035-01-01T00:00:00Z",
        "publickeys": {builder.keyid(): builder.policy_entry()},
        "steps": {"build": {"name": "build",
            "functionaries": [{"type": "publickey", "publickeyid": builder.keyid()}],
            "attestations": [{"type": GITHUB, "regopolicies": [
                {"name": "must come from main", "module": common::b64(module)}]}]}}
    });
    std::fs::write(
        dir.path().join("policy.json"),
        policy_key.envelope(common::POLICY_TYPE, policy.to_string().as_bytes()),
    )
    .unwrap();
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": [{"name": format!("https://witness.dev/attestations/git/v0.1/commithash:{COMMIT}"),
                     "digest": {"sha1": COMMIT}}],
        "predicateType": common::COLLECTION_TYPE,
        "predicate": {"name": "build", "attestations": [
            {"type": GITHUB, "attestation": {"jwt": jwt, "projecturl": "https://github.com/example/myapp"}}
        ]}
    });
    std::fs::write(
        dir.path().join("build.json"),
        builder.envelope(common::INTOTO_TYPE, statement.to_string().as_bytes()),
    )
    .unwrap();
    attestgate(
        dir.path(),
        [
            "verify",
            "-p",
            "policy.json",
            "-k",
            "policy.pub.pem",
            "-a",
            "build.json",
            "-s",
            &format!("sha1:{COMMIT}"),
        ],
    )
}

#[test]
fn the_corrected_must_come_from_main_module_denies_what_the_original_let_through() {
    if !tools(&["openssl"], "signing the evidence") {
        return;
    }
    let corrected =
        std::fs::read(root().join("examples/tutorial/must-come-from-main.rego")).unwrap();
    let original = {
        use base64::Engine as _;
        let policy = read_json(&root().join("examples/tutorial/policy.json"));
        let module = policy["steps"]["build"]["attestations"][4]["regopolicies"][0]["module"]
            .as_str()
            .unwrap()
            .to_string();
        base64::engine::general_purpose::STANDARD
            .decode(module)
            .unwrap()
    };
    let claims = |r: &str| json!({"claims": {"ref": r, "iss": "https://token.actions.githubusercontent.com"}});
    let cases = [
        ("refs/heads/main", claims("refs/heads/main"), 0, 0),
        (
            "a branch named feature/main",
            claims("refs/heads/feature/main"),
            0,
            1,
        ),
        ("a feature branch", claims("refs/heads/feature/x"), 1, 1),
        ("no ref claim", json!({"claims": {}}), 0, 1),
        ("no jwt at all", Value::Null, 0, 1),
    ];
    for (what, jwt, original_code, corrected_code) in cases {
        let run = rego_verdict(&original, jwt.clone());
        assert_eq!(run.code, original_code, "original, {what}: {}", run.text());
        let run = rego_verdict(&corrected, jwt);
        assert_eq!(
            run.code,
            corrected_code,
            "corrected, {what}: {}",
            run.text()
        );
        if corrected_code == 1 {
            assert!(
                run.stdout.contains("rego must come from main denied"),
                "corrected, {what}: {}",
                run.text()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The release script

#[test]
fn the_scripts_parse() {
    for path in [
        "scripts/demo.sh",
        "scripts/release.sh",
        "examples/demo/regenerate.sh",
    ] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(root().join(path))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_release_dry_run_plans_a_static_musl_tarball_with_a_checksum() {
    let run = script("scripts/release.sh", &["--dry-run"], &[]);
    assert_eq!(run.code, 0, "{}", run.text());
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("attestgate-{version}-x86_64-unknown-linux-musl.tar.gz");
    assert!(
        run.stdout.contains("target   x86_64-unknown-linux-musl"),
        "{}",
        run.text()
    );
    assert!(
        run.stdout
            .contains("cargo build --release --locked --target x86_64-unknown-linux-musl"),
        "{}",
        run.text()
    );
    assert!(run.stdout.contains(&format!("/{name}\n")), "{}", run.text());
    assert!(
        run.stdout.contains(&format!("/{name}.sha256\n")),
        "{}",
        run.text()
    );
}

/// An ELF executable of this system that prints something for `--version`.
fn system_elf() -> Option<PathBuf> {
    ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

#[test]
fn the_release_tarball_is_reproducible_and_its_checksum_file_passes_sha256sum() {
    if !tools(&["sha256sum", "tar", "gzip", "git"], "the release script") {
        return;
    }
    let Some(elf) = system_elf() else {
        eprintln!("skipped: no /usr/bin/true to package");
        return;
    };
    let target = "x86_64-unknown-linux-gnu";
    let name = format!("attestgate-{}-{target}", env!("CARGO_PKG_VERSION"));
    let package = |out: &Path| {
        let run = script(
            "scripts/release.sh",
            &[
                "--binary",
                elf.to_str().unwrap(),
                "--target",
                target,
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(run.code, 0, "{}", run.text());
        std::fs::read(out.join(format!("{name}.tar.gz"))).unwrap()
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = package(one.path());
    assert!(
        first == package(two.path()),
        "two runs gave different tarballs"
    );

    // What a workflow runs: sha256sum -c on the checksum file, then tar.
    let sums = std::fs::read_to_string(one.path().join(format!("{name}.tar.gz.sha256"))).unwrap();
    assert!(sums.ends_with(&format!("  {name}.tar.gz\n")), "{sums}");
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.tar.gz.sha256")])
        .current_dir(one.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let listing = Command::new("tar")
        .args(["-tzf", &format!("{name}.tar.gz")])
        .current_dir(one.path())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let mut entries: Vec<&str> = listing.lines().collect();
    entries.sort_unstable();
    assert_eq!(
        entries,
        [
            format!("{name}/"),
            format!("{name}/BUILD-INFO"),
            format!("{name}/README.md"),
            format!("{name}/attestgate"),
        ]
    );
    let extract = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .args(["-xzf"])
        .arg(one.path().join(format!("{name}.tar.gz")))
        .arg("-C")
        .arg(extract.path())
        .status()
        .unwrap();
    assert!(status.success());
    let packaged = extract.path().join(&name);
    assert_eq!(
        std::fs::read(packaged.join("attestgate")).unwrap(),
        std::fs::read(&elf).unwrap()
    );
    let info = std::fs::read_to_string(packaged.join("BUILD-INFO")).unwrap();
    assert!(info.contains(&format!("target  {target}")), "{info}");

    // A binary labelled static musl that is not static is refused.
    let refused = script(
        "scripts/release.sh",
        &[
            "--binary",
            elf.to_str().unwrap(),
            "--target",
            "x86_64-unknown-linux-musl",
            "--out",
            one.path().to_str().unwrap(),
        ],
        &[],
    );
    if require_peer(Path::new("readelf"), "the release script's linkage check") {
        assert_eq!(refused.code, 1, "{}", refused.text());
        assert!(
            refused.stderr.contains("but is dynamic"),
            "{}",
            refused.text()
        );
    }
}
