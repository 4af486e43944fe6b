//! `attestgate resolve` end to end: images pushed with skopeo to the REAL Debian
//! `docker-registry`, evidence (openssl-signed DSSE envelopes) uploaded to a REAL Archivista,
//! both on loopback and started by the test. Without those peers the tests print "skipped: ..."
//! and pass, except under `CI=true`, where they fail.
//!
//! The binding attacks: an image labelled with the good commit but built elsewhere; a good
//! collection whose base-image (`materialdigest:`) subject is the attacker's image; an index
//! with one verified and one unverified platform; a source label naming another repository
//! under commit binding. Each must fail with its own reason.
//!
//! Every reference points at 127.0.0.1; nothing else is contacted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex, Weak};

use common::{attestgate, Archivista, KeyKind, OpensslKey, PlainRegistry, Run, INTOTO_TYPE};
use serde_json::{json, Value};

const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";
const SRC: &str = "https://github.com/example/hello";
const DOCKER: &str = common::DOCKER_TYPE;
const GIT: &str = common::GIT_TYPE;

/// Everything the cases share: one registry, one Archivista, the images and the evidence.
struct World {
    registry: PlainRegistry,
    archivista: Archivista,
    dir: tempfile::TempDir,
    /// sha256 hex of what was pushed, by name.
    good: String,
    evil: String,
    based_on_evil: String,
    multi: String,
    amd64: String,
    /// Gitoids of the uploaded collections.
    good_gitoid: String,
    material_gitoid: String,
}

static WORLD: Mutex<Weak<World>> = Mutex::new(Weak::new());

fn world() -> Option<Arc<World>> {
    let mut slot = WORLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(world) = slot.upgrade() {
        return Some(world);
    }
    let registry = PlainRegistry::start()?;
    let archivista = Archivista::start()?;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();

    // The good build, and images built elsewhere with the good commit on their labels (their
    // source labels differ only in spelling, so they normalise to the good repository).
    let layout = |name: &str, source: &str| {
        let path = tmp.join(name);
        let digests = common::mklayout(&path, COMMIT, source);
        (path, digests)
    };
    let (good_layout, good) = layout("good", SRC);
    let (evil_layout, evil) = layout("evil", &format!("{SRC}.git"));
    let (based_layout, based) = layout("based", &format!("{SRC}/"));
    let (other_layout, _) = layout("other", "https://github.com/attacker/hello");
    registry.push(&good_layout, "v1", "demo/good:v1");
    registry.push(&good_layout, "multi", "demo/multi:v1");
    registry.push(&evil_layout, "v1", "demo/evil:v1");
    registry.push(&based_layout, "v1", "demo/based:v1");
    registry.push(&other_layout, "v1", "demo/other:v1");
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();

    let policy_key = OpensslKey::generate(tmp, "policy", KeyKind::Ed25519);
    let builder = OpensslKey::generate(tmp, "builder", KeyKind::EcdsaP256);
    let policy = common::build_policy(&builder);
    std::fs::write(
        tmp.join("policy.json"),
        policy_key.envelope(common::POLICY_TYPE, policy.to_string().as_bytes()),
    )
    .unwrap();

    // The good build names its image as produced and the commit it was built from.
    let good_hex = hex(&good["v1"]);
    let good_envelope = common::image_evidence(&builder, &good_hex, COMMIT, SRC);
    std::fs::write(tmp.join("good.json"), &good_envelope).unwrap();
    let good_gitoid = archivista.upload(&good_envelope);

    // Another good build whose base image (a material) is the attacker's image.
    let based_hex = hex(&based["v1"]);
    let unrelated = "ab".repeat(32);
    let material_gitoid = archivista.upload(&builder.envelope(
        INTOTO_TYPE,
        &collection(
            &[
                (
                    format!("{DOCKER}/imagedigest:{unrelated}"),
                    "sha256",
                    &unrelated,
                ),
                (
                    format!("{DOCKER}/materialdigest:{based_hex}"),
                    "sha256",
                    &based_hex,
                ),
            ],
            SRC,
        ),
    ));

    // The multi-platform build: evidence names only the amd64 image.
    let amd64_hex = hex(&good["amd64"]);
    archivista.upload(&builder.envelope(
        INTOTO_TYPE,
        &collection(
            &[(
                format!("{DOCKER}/imagedigest:{amd64_hex}"),
                "sha256",
                &amd64_hex,
            )],
            SRC,
        ),
    ));

    let world = Arc::new(World {
        registry,
        archivista,
        dir,
        good: good_hex,
        evil: hex(&evil["v1"]),
        based_on_evil: based_hex,
        multi: hex(&good["multi"]),
        amd64: amd64_hex,
        good_gitoid,
        material_gitoid,
    });
    *slot = Arc::downgrade(&world);
    Some(world)
}

/// A witness collection for step `build` with git (remote `remote`) and docker attestations.
fn collection(subjects: &[(String, &str, &str)], remote: &str) -> Vec<u8> {
    common::collection(subjects, COMMIT, remote)
}

impl World {
    fn resolve(&self, image: &str, extra: &[&str]) -> Run {
        let reference = format!("{}/{image}", self.registry.host);
        let mut args = vec![
            "resolve",
            &reference,
            "--insecure-registry",
            &self.registry.host,
            "--policy",
            "policy.json",
            "-k",
            "policy.pub.pem",
            "--enable-archivista",
            "--archivista-server",
            &self.archivista.url,
        ];
        args.extend_from_slice(extra);
        attestgate(self.dir.path(), args)
    }

    fn resolve_json(&self, image: &str, extra: &[&str]) -> (Run, Value) {
        let mut extra = extra.to_vec();
        extra.extend(["--output", "json"]);
        let run = self.resolve(image, &extra);
        let value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.text()));
        (run, value)
    }
}

fn reason(value: &Value) -> String {
    value["verdict"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_good_image_resolves_and_passes_with_digest_binding() {
    let Some(w) = world() else { return };
    let (run, out) = w.resolve_json("demo/good:v1", &[]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(
        out["reference"],
        format!("{}/demo/good:v1", w.registry.host)
    );
    assert_eq!(out["digest"], format!("sha256:{}", w.good));
    let identities = out["identities"].as_array().unwrap();
    assert_eq!(identities[0]["kind"], "pinned");
    assert_eq!(identities[0]["digest"], format!("sha256:{}", w.good));
    assert_eq!(identities[0]["platform"], Value::Null);
    assert_eq!(identities[1]["kind"], "config");
    assert_eq!(identities[1]["platform"], "linux/amd64");
    assert_eq!(out["commit"], COMMIT);
    assert_eq!(out["source"], SRC);
    let subjects = out["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), identities.len());
    assert!(subjects.contains(&json!(w.good)));
    let evidence = out["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert_eq!(evidence[0]["gitoid"], w.good_gitoid);
    assert_eq!(evidence[0]["step"], "build");
    assert_eq!(evidence[0]["types"], json!([GIT, DOCKER]));
    assert_eq!(evidence[0]["passed"], true);
    assert_passed(&out["verdict"]);

    // The same from a local file, and as text.
    let run = attestgate(
        w.dir.path(),
        [
            "resolve",
            &format!("{}/demo/good:v1", w.registry.host),
            "--insecure-registry",
            &w.registry.host,
            "-p",
            "policy.json",
            "-k",
            "policy.pub.pem",
            "-a",
            "good.json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stdout.starts_with("PASSED (bound)"), "{}", run.stdout);
    assert!(run.stdout.contains("good.json"), "{}", run.stdout);
    assert!(run.stdout.contains(COMMIT), "{}", run.stdout);

    // Without a policy: resolved, nothing judged.
    let run = attestgate(
        w.dir.path(),
        [
            "resolve",
            &format!("{}/demo/good:v1", w.registry.host),
            "--insecure-registry",
            &w.registry.host,
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["verdict"], Value::Null);
    assert_eq!(out["evidence"], json!([]));
}

#[test]
fn an_image_with_the_good_commit_built_elsewhere_fails_digest_binding() {
    let Some(w) = world() else { return };
    let (run, out) = w.resolve_json("demo/evil:v1", &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(
        out["commit"], COMMIT,
        "the attacker's label is the good commit"
    );
    assert_eq!(out["digest"], format!("sha256:{}", w.evil));
    assert_eq!(out["verdict"]["passed"], false);
    assert_eq!(out["verdict"]["bound"], false);
    assert!(
        reason(&out).contains("no collection names this image's subjects"),
        "{}",
        reason(&out)
    );
    assert_eq!(out["evidence"], json!([]));
}

#[test]
fn a_good_collection_naming_the_attacker_image_as_its_base_does_not_bind() {
    let Some(w) = world() else { return };
    let (run, out) = w.resolve_json("demo/based:v1", &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    // The collection is found by the digest value and passes the policy ...
    assert_eq!(out["evidence"][0]["gitoid"], w.material_gitoid);
    assert_eq!(out["evidence"][0]["passed"], true);
    assert_eq!(out["verdict"]["passed"], true);
    // ... but it names the image as a material, not as what it produced.
    assert_eq!(out["verdict"]["bound"], false);
    assert!(
        reason(&out).contains(&format!(
            "no passing collection names this image (sha256:{})",
            w.based_on_evil
        )),
        "{}",
        reason(&out)
    );
}

#[test]
fn an_index_with_one_unverified_platform_fails() {
    let Some(w) = world() else { return };
    let (run, out) = w.resolve_json("demo/multi:v1", &[]);
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(out["digest"], format!("sha256:{}", w.multi));
    let kinds: Vec<&str> = out["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "pinned",
            "platform_manifest",
            "config",
            "platform_manifest",
            "config"
        ]
    );
    assert!(out["subjects"]
        .as_array()
        .unwrap()
        .contains(&json!(w.amd64)));
    assert_eq!(out["verdict"]["passed"], true);
    assert_eq!(out["verdict"]["bound"], false);
    let reason = reason(&out);
    assert!(
        reason.contains("platforms not named by any passing collection: linux/arm64"),
        "{reason}"
    );
    assert!(!reason.contains("linux/amd64"), "{reason}");

    // The text report says so on its first line.
    let run = w.resolve("demo/multi:v1", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.lines().next().unwrap().contains("linux/arm64"),
        "{}",
        run.stdout
    );
}

#[test]
fn commit_binding_needs_the_source_label_and_the_remote_in_evidence() {
    let Some(w) = world() else { return };
    let commit = [
        "--binding",
        "commit",
        "--expected-source",
        "https://github.com/example/hello.git",
        "--trust-registry-push-rights",
    ];
    let (run, out) = w.resolve_json("demo/good:v1", &commit);
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(out["subjects"], json!([COMMIT]));
    assert!(out["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["gitoid"] == w.good_gitoid.as_str() && e["passed"] == true));
    assert_passed(&out["verdict"]);

    // A source label naming another repository fails, although the commit's evidence passes.
    let (run, out) = w.resolve_json("demo/other:v1", &commit);
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(out["verdict"]["passed"], true);
    assert_eq!(out["verdict"]["bound"], false);
    assert!(
        reason(&out).contains("source label is \"https://github.com/attacker/hello\""),
        "{}",
        reason(&out)
    );

    // Evidence that passed but was built from another repository does not bind either.
    let (run, out) = w.resolve_json(
        "demo/good:v1",
        &[
            "--binding",
            "commit",
            "--expected-source",
            "https://github.com/example/elsewhere",
            "--trust-registry-push-rights",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(reason(&out).contains("source label"), "{}", reason(&out));

    // What trusting push rights means: the image built elsewhere, labelled with the good
    // commit and the right repository, is admitted under commit binding (and refused under
    // digest binding, above).
    let (run, _) = w.resolve_json("demo/evil:v1", &commit);
    assert_eq!(run.code, 0, "{}", run.text());
}

#[test]
fn commit_binding_must_be_asked_for_in_so_many_words() {
    let dir = tempfile::tempdir().unwrap();
    let run = attestgate(
        dir.path(),
        [
            "resolve",
            "127.0.0.1:9/demo/good:v1",
            "--binding",
            "commit",
            "--expected-source",
            SRC,
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains("--trust-registry-push-rights"),
        "{}",
        run.stderr
    );
    let run = attestgate(
        dir.path(),
        [
            "resolve",
            "127.0.0.1:9/demo/good:v1",
            "--binding",
            "commit",
            "--trust-registry-push-rights",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("--expected-source"), "{}", run.stderr);
}

#[test]
fn a_registry_that_is_down_exits_3() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{port}");
    let run = attestgate(
        dir.path(),
        [
            "resolve",
            &format!("{host}/demo/good:v1"),
            "--insecure-registry",
            &host,
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 3, "{}", run.text());
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["exit_code"], 3);
    assert!(
        out["error"].as_str().unwrap().contains("unreachable"),
        "{out}"
    );
}

/// An htpasswd-mode registry holding `demo/private:v1`, shared by the credential cases.
struct AuthWorld {
    registry: common::HtpasswdRegistry,
    dir: tempfile::TempDir,
    digest: String,
}

static AUTH_WORLD: Mutex<Weak<AuthWorld>> = Mutex::new(Weak::new());

fn auth_world() -> Option<Arc<AuthWorld>> {
    let mut slot = AUTH_WORLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(world) = slot.upgrade() {
        return Some(world);
    }
    let registry = common::HtpasswdRegistry::start()?;
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let digests = common::mklayout(&layout, COMMIT, SRC);
    registry.push(&layout, "v1", "demo/private:v1");
    let world = Arc::new(AuthWorld {
        registry,
        dir,
        digest: digests["v1"].clone(),
    });
    *slot = Arc::downgrade(&world);
    Some(world)
}

impl AuthWorld {
    /// `attestgate resolve --output json` of the private image with `extra` flags.
    fn resolve(&self, extra: &[&str]) -> (Run, Value) {
        let host = &self.registry.registry.host;
        let reference = format!("{host}/demo/private:v1");
        let mut args = vec![
            "resolve",
            &reference,
            "--insecure-registry",
            host,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let run = attestgate(self.dir.path(), args);
        let value =
            serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.text()));
        // Whatever happens, no credential is printed.
        assert!(
            !run.text().contains(&self.registry.password),
            "{}",
            run.text()
        );
        (run, value)
    }

    /// Writes a docker config holding `password` under `name` in the world's dir.
    fn docker_config(&self, name: &str, password: &str) -> String {
        std::fs::write(
            self.dir.path().join(name),
            self.registry.docker_config(password),
        )
        .unwrap();
        name.to_string()
    }

    /// Refused credentials mean the image could not be checked: exit 3, as an outage, so that
    /// a soft-fail gate does not read them as a violation.
    fn assert_unauthorized(run: &Run, out: &Value) {
        assert_eq!(run.code, 3, "{}", run.text());
        assert_eq!(out["exit_code"], 3, "{out}");
        assert!(
            out["error"].as_str().unwrap().contains("unauthorized"),
            "{out}"
        );
    }
}

#[test]
fn a_docker_config_with_the_right_password_resolves_a_private_image() {
    let Some(w) = auth_world() else { return };
    // A config without an entry for this registry first: the one that has it is still found.
    std::fs::write(
        w.dir.path().join("elsewhere.json"),
        r#"{"auths": {"registry.example.com": {"username": "x", "password": "y"}}}"#,
    )
    .unwrap();
    let right = w.docker_config("right.json", &w.registry.password);
    let (run, out) = w.resolve(&[
        "--docker-config",
        "elsewhere.json",
        "--docker-config",
        &right,
    ]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(out["digest"], w.digest);
}

#[test]
fn a_docker_config_with_the_wrong_password_is_unauthorized() {
    let Some(w) = auth_world() else { return };
    let wrong = w.docker_config("wrong.json", "not-the-password");
    let (run, out) = w.resolve(&["--docker-config", &wrong]);
    AuthWorld::assert_unauthorized(&run, &out);
}

#[test]
fn a_private_image_without_credentials_is_unauthorized() {
    let Some(w) = auth_world() else { return };
    let (run, out) = w.resolve(&[]);
    AuthWorld::assert_unauthorized(&run, &out);
}

/// Reads the request and prints `$RESPONSE`; no network.
const PLUGIN: &str = "#!/bin/bash\nset -eu\ncat > /dev/null\nprintf '%s' \"$RESPONSE\"\n";

#[test]
fn a_credential_provider_plugin_with_the_right_password_resolves_a_private_image() {
    let Some(w) = auth_world() else { return };
    let plugins = tempfile::tempdir().unwrap();
    let bin = plugins.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // The executable is created by `install`, not by this (multi-threaded, forking) process,
    // so no child forked meanwhile holds it open for writing ("text file busy").
    let source = plugins.path().join("plugin.sh");
    std::fs::write(&source, PLUGIN).unwrap();
    let status = std::process::Command::new("install")
        .arg("-m")
        .arg("755")
        .arg(&source)
        .arg(bin.join("test-plugin"))
        .status()
        .unwrap();
    assert!(status.success());

    let host = &w.registry.registry.host;
    let response = json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Registry",
        "auth": {host.clone(): {"username": w.registry.user, "password": w.registry.password}},
    });
    let config = plugins.path().join("providers.json");
    std::fs::write(
        &config,
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": "test-plugin",
                "matchImages": [host],
                "defaultCacheDuration": "0s",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "env": [{"name": "RESPONSE", "value": response.to_string()}],
            }],
        })
        .to_string(),
    )
    .unwrap();

    let (run, out) = w.resolve(&[
        "--credential-provider-config",
        config.to_str().unwrap(),
        "--credential-provider-bin-dir",
        bin.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(out["digest"], w.digest);

    // A docker config that matches comes first: its wrong password is used, not the plugin's.
    let wrong = w.docker_config("wrong-first.json", "not-the-password");
    let (run, out) = w.resolve(&[
        "--docker-config",
        &wrong,
        "--credential-provider-config",
        config.to_str().unwrap(),
        "--credential-provider-bin-dir",
        bin.to_str().unwrap(),
    ]);
    AuthWorld::assert_unauthorized(&run, &out);
}

#[test]
fn an_identity_token_goes_to_the_realm_as_the_password_of_the_zero_user_never_printed() {
    use base64::Engine as _;
    use std::io::{BufRead as _, BufReader, Write as _};

    // A loopback registry front that challenges with a bearer realm on itself and records
    // what the realm is sent: the identity token goes to the realm only, as the password of
    // the all-zero user.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        let realm_host = host.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten().take(16) {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut authorization = None;
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") {
                            authorization = Some(value.trim().to_string());
                        }
                    }
                }
                let mut stream = stream;
                let to_realm = request_line.contains(" /token");
                let answer = match (to_realm, authorization) {
                    (true, Some(value)) => {
                        seen.lock().unwrap().push(format!("realm {value}"));
                        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                    }
                    (false, Some(value)) => {
                        seen.lock().unwrap().push(format!("registry {value}"));
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                    }
                    (_, None) => format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"s\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"identitytoken": "refresh-secret"}}}}}}"#),
    )
    .unwrap();
    let run = attestgate(
        dir.path(),
        [
            "resolve",
            &format!("{host}/demo/good:v1"),
            "--insecure-registry",
            &host,
            "--docker-config",
            "config.json",
            "--timeout",
            "10",
        ],
    );
    assert_ne!(run.code, 0, "{}", run.text());
    assert!(!run.text().contains("refresh-secret"), "{}", run.text());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:refresh-secret",
            attestgate::image::IDENTITY_TOKEN_USERNAME
        ))
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&format!("realm {expected}")), "{seen:?}");
    // The registry itself never receives it.
    assert!(!seen.iter().any(|s| s.starts_with("registry")), "{seen:?}");
}

/// A passing, bound verdict, with the key ids of the evidence signers.
fn assert_passed(verdict: &Value) {
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["bound"], true, "{verdict}");
    assert_eq!(verdict["reason"], Value::Null, "{verdict}");
    let signers = verdict["signers"].as_array().unwrap();
    assert!(
        !signers.is_empty()
            && signers
                .iter()
                .all(|s| s.as_str().is_some_and(|k| k.len() == 64)),
        "{verdict}"
    );
}
