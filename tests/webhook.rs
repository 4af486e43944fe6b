#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The webhook end to end: `attestgate serve` started as a child process on a config file,
//! answering AdmissionReviews over TLS (a CA and a serving certificate made with rcgen), with
//! the REAL Debian `docker-registry` on loopback behind it (images pushed with skopeo), evidence
//! signed with openssl in a local directory, and for the deadline case a REAL Archivista.
//!
//! Each test starts its own server (addresses learnt from its `serving` log line, the process
//! killed by a drop guard, also on panic) and talks to it only over the wire: HTTPS for the
//! reviews, plain HTTP for `/readyz` and `/metrics`. Registry requests are counted by a TCP proxy
//! written here (`common::TcpProxy`) where a test must prove that none were made, and the same
//! proxy slows Archivista down (it holds each request back) to make a verification miss its
//! deadline: no FIFO or other trick on the evidence itself.
//!
//! Without the registry peers (`docker-registry`, `skopeo`, `python3`) or Archivista the tests
//! print "skipped: ..." and pass, except under `CI=true`, where they fail. Every address is
//! 127.0.0.1; nothing else is contacted.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::{
    attestgate, eventually, write_atomically, write_serving_certificate, Archivista, KeyKind,
    OpensslKey, PlainRegistry, Served, TcpProxy, SERVED_WAIT,
};
use serde_json::{json, Value};

const COMMIT: &str = "5b0c1d8a6f4e3b2a19087766554433221100ffee";
const OTHER_COMMIT: &str = "0000111122223333444455556666777788889999";
const SRC: &str = "https://github.com/example/webhook-demo";
const RELOADS_OK: &str = r#"attestgate_config_reloads_total{result="success"}"#;
const RELOAD_FAILING: &str = "attestgate_config_reload_failing";
const BACKGROUND: &str = "attestgate_background_verifications";

// ---------------------------------------------------------------------------------------------
// The world: one registry with two images, a signed policy, and evidence for one of them

struct World {
    registry: PlainRegistry,
    dir: tempfile::TempDir,
    /// sha256 hex of `demo/good:v1`, which has evidence.
    good: String,
    /// sha256 hex of `demo/bad:v1`, which has none.
    bad: String,
    /// The good image's evidence (also in `evidence/good.json`), for Archivista.
    good_envelope: Vec<u8>,
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
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();

    let good = common::mklayout(&tmp.join("good"), COMMIT, SRC);
    let bad = common::mklayout(&tmp.join("bad"), OTHER_COMMIT, SRC);
    registry.push(&tmp.join("good"), "v1", "demo/good:v1");
    registry.push(&tmp.join("bad"), "v1", "demo/bad:v1");
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let (good, bad) = (hex(&good["v1"]), hex(&bad["v1"]));
    assert_ne!(good, bad);

    let policy_key = OpensslKey::generate(tmp, "policy", KeyKind::Ed25519);
    let builder = OpensslKey::generate(tmp, "builder", KeyKind::EcdsaP256);
    let policy = common::build_policy(&builder);
    std::fs::write(
        tmp.join("policy.json"),
        policy_key.envelope(common::POLICY_TYPE, policy.to_string().as_bytes()),
    )
    .unwrap();
    let good_envelope = common::image_evidence(&builder, &good, COMMIT, SRC);
    std::fs::create_dir(tmp.join("evidence")).unwrap();
    std::fs::write(tmp.join("evidence/good.json"), &good_envelope).unwrap();

    let world = Arc::new(World {
        registry,
        dir,
        good,
        bad,
        good_envelope,
    });
    *slot = Arc::downgrade(&world);
    Some(world)
}

/// The world, set up off the test's runtime (it runs skopeo and openssl).
async fn world_async() -> Option<Arc<World>> {
    tokio::task::spawn_blocking(world).await.unwrap()
}

/// What varies between the configs of the tests.
#[derive(Default, Clone)]
struct Settings {
    /// `deadline:` (default 8s).
    deadline: Option<&'static str>,
    /// The policy's `evidence:` block, indented for it (default: the evidence directory).
    evidence: Option<String>,
    /// More top-level YAML: `exceptions:`, `denylist:`, `cache:`.
    extra: String,
    /// A comment, so that a rewrite differs from the previous version.
    note: String,
}

impl World {
    /// `HOST/demo/NAME:v1` with the registry reached at `host`.
    fn image(host: &str, name: &str) -> String {
        format!("{host}/demo/{name}:v1")
    }

    /// The config of a server in `dir` whose policy covers `HOST/demo/**`, with the registry
    /// reached at `host` (the registry itself or a proxy in front of it).
    fn config(&self, dir: &Path, host: &str, settings: &Settings) -> String {
        let world = self.dir.path().display();
        let evidence = settings
            .evidence
            .clone()
            .unwrap_or_else(|| format!("      directories: [\"{world}/evidence\"]\n"));
        format!(
            "# {note}\n\
             server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  \
             certFile: {dir}/tls.crt\n  keyFile: {dir}/tls.key\n  reloadInterval: 100ms\n  \
             shutdownGrace: 1s\n\
             webhookTimeoutSeconds: 10\n\
             deadline: {deadline}\n\
             policies:\n  - name: demo\n    images: [\"{host}/demo/**\"]\n    \
             policy: {world}/policy.json\n    trust:\n      publicKeys: [\"{world}/policy.pub.pem\"]\n    \
             evidence:\n{evidence}\
             registry:\n  insecure: [\"{host}\"]\n  requestTimeout: 5s\n  maxRetries: 0\n\
             {extra}",
            note = settings.note,
            dir = dir.display(),
            deadline = settings.deadline.unwrap_or("8s"),
            extra = settings.extra,
        )
    }
}

/// A running server with its config file and certificate.
struct Hook {
    served: Served,
    dir: tempfile::TempDir,
    host: String,
}

impl Hook {
    /// Writes a config for `host` with `settings` and starts `attestgate serve` on it.
    fn start(world: &World, host: &str, settings: &Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = write_serving_certificate(dir.path());
        std::fs::write(
            Self::config_path(dir.path()),
            world.config(dir.path(), host, settings),
        )
        .unwrap();
        let served = Served::start(&Self::config_path(dir.path()), &ca);
        Self {
            served,
            dir,
            host: host.to_string(),
        }
    }

    fn config_path(dir: &Path) -> PathBuf {
        dir.join("config.yaml")
    }

    /// Replaces the config in one rename.
    fn rewrite(&self, text: &str) {
        write_atomically(&Self::config_path(self.dir.path()), text.as_bytes());
    }

    fn image(&self, name: &str) -> String {
        World::image(&self.host, name)
    }

    async fn reloads(&self) -> f64 {
        self.served.metric(RELOADS_OK).await.unwrap_or(0.0)
    }

    /// Rewrites the config and waits until the server has loaded it.
    async fn reload(&self, text: &str) {
        let before = self.reloads().await;
        self.rewrite(text);
        eventually("the config reload", SERVED_WAIT, || async {
            self.reloads().await > before
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// AdmissionReviews, as the API server sends them

fn review(
    uid: &str,
    kind: [&str; 3],
    resource: [&str; 3],
    operation: &str,
    object: Value,
    old: Option<Value>,
) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "resource": {"group": resource[0], "version": resource[1], "resource": resource[2]},
            "requestKind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "requestResource": {"group": resource[0], "version": resource[1], "resource": resource[2]},
            "name": object["metadata"]["name"],
            "namespace": "team-a",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old.unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": format!("{}Options", title(operation))}
        }
    })
}

fn title(operation: &str) -> String {
    let lower = operation.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn containers(images: &[&str]) -> Value {
    images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect()
}

fn deployment(name: &str, images: &[&str]) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team-a", "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers(images)}
            }
        }
    })
}

const DEPLOYMENT: [&str; 3] = ["apps", "v1", "Deployment"];
const DEPLOYMENTS: [&str; 3] = ["apps", "v1", "deployments"];

fn create_deployment(uid: &str, name: &str, images: &[&str]) -> Value {
    review(
        uid,
        DEPLOYMENT,
        DEPLOYMENTS,
        "CREATE",
        deployment(name, images),
        None,
    )
}

fn pod(name: &str, images: &[&str], ephemeral: &[&str]) -> Value {
    let ephemeral: Vec<Value> = ephemeral
        .iter()
        .enumerate()
        .map(|(i, image)| {
            json!({"name": format!("debugger-{i}"), "image": image, "stdin": true, "tty": true,
                   "targetContainerName": "c0"})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"containers": containers(images), "ephemeralContainers": ephemeral}
    })
}

fn cronjob(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": containers(&[image])
            }}}}
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Reading answers

fn allowed(answer: &Value) -> bool {
    answer["response"]["allowed"]
        .as_bool()
        .unwrap_or_else(|| panic!("no response.allowed: {answer}"))
}

fn decision(answer: &Value) -> &str {
    answer["response"]["auditAnnotations"]["decision"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision annotation: {answer}"))
}

fn message(answer: &Value) -> &str {
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no status message: {answer}"))
}

/// The per-image decision records of the `images` annotation.
fn records(answer: &Value) -> Vec<Value> {
    let text = answer["response"]["auditAnnotations"]["images"]
        .as_str()
        .unwrap_or_else(|| panic!("no images annotation: {answer}"));
    serde_json::from_str::<Vec<Value>>(text).unwrap()
}

fn warnings(answer: &Value) -> Vec<String> {
    answer["response"]["warnings"]
        .as_array()
        .map(|w| w.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    common::hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

// ---------------------------------------------------------------------------------------------
// 1. One failing Deployment on each path, and a passing one with its record

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_deployment_is_denied_warned_or_audited_by_its_path_and_a_passing_one_is_recorded(
) {
    let Some(w) = world_async().await else { return };
    let hook = Hook::start(&w, &w.registry.host, &Settings::default());
    let bad = hook.image("bad");
    let body = create_deployment("uid-bad", "web", &[&bad]);

    // enforce: 403, one short line naming the image and the reason.
    let answer = hook.served.review("enforce", &body).await;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], "uid-bad");
    assert!(!allowed(&answer), "{answer}");
    assert_eq!(answer["response"]["status"]["code"], 403);
    let denial = message(&answer);
    assert!(
        denial.starts_with(&format!("image {bad}: denied: policy demo: ")),
        "{denial}"
    );
    assert!(
        !denial.contains('\n') && denial.chars().count() <= 256,
        "{denial}"
    );
    assert_eq!(decision(&answer), "denied");
    assert!(answer["response"].get("warnings").is_none(), "{answer}");

    // warn: admitted, one warning of at most 120 characters.
    let answer = hook.served.review("warn", &body).await;
    assert!(allowed(&answer), "{answer}");
    assert!(answer["response"].get("status").is_none(), "{answer}");
    let lines = warnings(&answer);
    assert_eq!(lines.len(), 1, "{answer}");
    assert!(
        lines[0].starts_with(&format!("image {bad}: would be denied: policy demo")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 120), "{lines:?}");
    assert_eq!(decision(&answer), "warned");

    // audit: admitted silently, the failure only in the record.
    let answer = hook.served.review("audit", &body).await;
    assert!(allowed(&answer), "{answer}");
    assert!(answer["response"].get("warnings").is_none(), "{answer}");
    assert!(answer["response"].get("status").is_none(), "{answer}");
    assert_eq!(decision(&answer), "audited");
    let record = &records(&answer)[0];
    assert_eq!(record["image"], bad);
    assert_eq!(record["outcome"], "violation");
    assert_eq!(record["mode"], "audit");
    assert_eq!(record["digest"], format!("sha256:{}", w.bad));
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("policy demo: "),
        "{record}"
    );

    // A passing Deployment: allowed, and the record says what the decision rests on.
    let good = hook.image("good");
    let answer = hook
        .served
        .review(
            "enforce",
            &create_deployment("uid-good", "api", &[good.as_str()]),
        )
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(answer["response"]["uid"], "uid-good");
    assert_eq!(decision(&answer), "allowed");
    let policy_label = format!(
        "demo@sha256:{}",
        sha256_file(&w.dir.path().join("policy.json"))
    );
    let evidence = w.dir.path().join("evidence/good.json");
    assert_eq!(
        records(&answer),
        vec![json!({
            "image": good,
            "outcome": "admitted",
            "reason": null,
            "digest": format!("sha256:{}", w.good),
            "policies": [policy_label],
            "evidence": [evidence.display().to_string()],
            "binding": "digest",
            "cached": false,
            "mode": "enforce",
        })]
    );

    // The same image again: answered from the decision cache.
    let answer = hook
        .served
        .review(
            "enforce",
            &create_deployment("uid-good-2", "api", &[good.as_str()]),
        )
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(records(&answer)[0]["cached"], true, "{answer}");

    // The server checks its files every 100 ms; unchanged files are never loaded again (which
    // would flush the cache).
    assert_eq!(hook.reloads().await, 1.0, "{}", hook.served.log());
}

// ---------------------------------------------------------------------------------------------
// 2. kubectl debug, a CronJob, updates that add no image, objects being deleted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_shapes_judge_only_new_images_and_never_ask_the_registry_needlessly() {
    let Some(w) = world_async().await else { return };
    // The registry is reached through a proxy that counts requests.
    let proxy = TcpProxy::start(&w.registry.host);
    let hook = Hook::start(&w, &proxy.host(), &Settings::default());
    let (good, bad) = (hook.image("good"), hook.image("bad"));

    // An UPDATE that only changes labels: no new image, admitted without a registry request,
    // although its image fails.
    let old = deployment("web", &[&bad]);
    let mut new = old.clone();
    new["metadata"]["labels"]["tier"] = json!("frontend");
    let answer = hook
        .served
        .review(
            "enforce",
            &review(
                "uid-labels",
                DEPLOYMENT,
                DEPLOYMENTS,
                "UPDATE",
                new,
                Some(old),
            ),
        )
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(decision(&answer), "skipped");
    assert_eq!(
        answer["response"]["auditAnnotations"]["reason"],
        "the update adds no new image"
    );

    // An object being deleted, whose update brings a failing image: admitted, not judged.
    let old = deployment("web", &[&good]);
    let mut new = deployment("web", &[&bad]);
    new["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    new["metadata"]["finalizers"] = json!(["example.com/keep"]);
    let answer = hook
        .served
        .review(
            "enforce",
            &review(
                "uid-deleted",
                DEPLOYMENT,
                DEPLOYMENTS,
                "UPDATE",
                new,
                Some(old),
            ),
        )
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(
        answer["response"]["auditAnnotations"]["reason"],
        "the object is being deleted"
    );
    assert_eq!(proxy.requests(), 0, "the registry was asked");

    // The control: the same failing image in a CREATE is judged, through the proxy.
    let answer = hook
        .served
        .review("enforce", &create_deployment("uid-create", "web", &[&bad]))
        .await;
    assert!(!allowed(&answer), "{answer}");
    assert!(proxy.requests() > 0, "the proxy saw no request");

    // `kubectl debug`: an UPDATE of pods/ephemeralcontainers. The pod's own container (failing)
    // ran before; only the new debug container's image is judged.
    let ephemeral = |uid: &str, old: Value, new: Value| {
        let mut body = review(
            uid,
            ["", "v1", "Pod"],
            ["", "v1", "pods"],
            "UPDATE",
            new,
            Some(old),
        );
        body["request"]["subResource"] = json!("ephemeralcontainers");
        body["request"]["requestSubResource"] = json!("ephemeralcontainers");
        body
    };
    let answer = hook
        .served
        .review(
            "enforce",
            &ephemeral(
                "uid-debug",
                pod("app-0", &[&bad], &[]),
                pod("app-0", &[&bad], &[&good]),
            ),
        )
        .await;
    assert!(allowed(&answer), "{answer}");
    let judged = records(&answer);
    assert_eq!(judged.len(), 1, "{judged:?}");
    assert_eq!(judged[0]["image"], good);
    assert_eq!(judged[0]["outcome"], "admitted");

    // A second debug container with the failing image: denied for that image alone.
    let answer = hook
        .served
        .review(
            "enforce",
            &ephemeral(
                "uid-debug-2",
                pod("app-0", &[&good], &[&good]),
                pod("app-0", &[&good], &[&good, &bad]),
            ),
        )
        .await;
    assert!(!allowed(&answer), "{answer}");
    assert!(
        message(&answer).starts_with(&format!("image {bad}: denied: ")),
        "{answer}"
    );
    assert_eq!(records(&answer).len(), 1, "{answer}");

    // A CronJob: the image of its job template is judged.
    let cron = |uid: &str, image: &str| {
        review(
            uid,
            ["batch", "v1", "CronJob"],
            ["batch", "v1", "cronjobs"],
            "CREATE",
            cronjob("nightly", image),
            None,
        )
    };
    let answer = hook
        .served
        .review("enforce", &cron("uid-cron-bad", &bad))
        .await;
    assert!(!allowed(&answer), "{answer}");
    assert!(
        message(&answer).starts_with(&format!("image {bad}: denied: policy demo: ")),
        "{answer}"
    );
    let answer = hook
        .served
        .review("enforce", &cron("uid-cron-good", &good))
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(
        records(&answer)[0]["digest"],
        format!("sha256:{}", w.good),
        "{answer}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. An exception, in force and expired

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_admits_a_failing_image_until_it_expires() {
    let Some(w) = world_async().await else { return };
    let host = &w.registry.host;
    let exception = |expires: &str| {
        Settings {
        extra: format!(
            "exceptions:\n  - image: {host}/demo/bad\n    reason: vendor image, evidence pending\n    \
             owner: platform@example.com\n    expires: \"{expires}\"\n"
        ),
        ..Settings::default()
    }
    };
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let yesterday = today.previous_day().unwrap();
    let bad = World::image(host, "bad");
    let body = create_deployment("uid-excepted", "web", &[&bad]);

    let in_force = Hook::start(&w, host, &exception(&tomorrow.to_string()));
    let answer = in_force.served.review("enforce", &body).await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(decision(&answer), "allowed");
    let record = &records(&answer)[0];
    assert_eq!(record["outcome"], "excepted", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("owner platform@example.com"),
        "{record}"
    );
    drop(in_force);

    let expired = Hook::start(&w, host, &exception(&yesterday.to_string()));
    let answer = expired.served.review("enforce", &body).await;
    assert!(!allowed(&answer), "{answer}");
    let denial = message(&answer);
    // The expired exception is named first, so that the line, if cut, still shows it.
    assert!(
        denial.starts_with(&format!("image {bad}: denied: exception expired ")),
        "{denial}"
    );
    assert!(
        denial.contains("(owner platform@example.com); policy demo: "),
        "{denial}"
    );
    assert!(
        expired.served.log().contains("exception has expired"),
        "the load logs the expired exception"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A denylisted digest beats a warm cache

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_denylisted_by_a_reload_is_denied_although_it_was_admitted_and_cached() {
    let Some(w) = world_async().await else { return };
    let host = w.registry.host.clone();
    let hook = Hook::start(&w, &host, &Settings::default());
    let good = hook.image("good");
    let body = create_deployment("uid-warm", "api", &[&good]);

    let answer = hook.served.review("enforce", &body).await;
    assert!(allowed(&answer), "{answer}");
    let answer = hook.served.review("enforce", &body).await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(records(&answer)[0]["cached"], true, "the cache is warm");

    let denied = Settings {
        extra: format!("denylist:\n  digests: [\"sha256:{}\"]\n", w.good),
        ..Settings::default()
    };
    hook.reload(&w.config(hook.dir.path(), &host, &denied))
        .await;

    let answer = hook.served.review("enforce", &body).await;
    assert!(!allowed(&answer), "{answer}");
    assert_eq!(
        message(&answer),
        format!("image {good}: denied: denylisted digest sha256:{}", w.good)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A verification that misses its deadline finishes in the background for the retry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_is_an_error_and_the_retry_is_answered_from_the_cache() {
    let Some(w) = world_async().await else { return };
    let Some(archivista) = tokio::task::spawn_blocking(Archivista::start)
        .await
        .unwrap()
    else {
        return;
    };
    let gitoid = archivista.upload(&w.good_envelope);
    // Archivista behind a proxy that holds every request back 1.5 s: the search and download
    // of one verification take several seconds, far past the 1 s deadline.
    let slow = TcpProxy::start(archivista.url.trim_start_matches("http://"));
    slow.set_delay(Duration::from_millis(1500));
    let settings = Settings {
        deadline: Some("1s"),
        evidence: Some(format!(
            "      archivista:\n        server: http://{}\n        requestTimeout: 10s\n",
            slow.host()
        )),
        ..Settings::default()
    };
    let hook = Hook::start(&w, &w.registry.host, &settings);
    let good = hook.image("good");
    let body = create_deployment("uid-slow", "api", &[&good]);

    let started = Instant::now();
    let answer = hook.served.review("enforce", &body).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline held"
    );
    assert!(!allowed(&answer), "{answer}");
    let denial = message(&answer);
    assert!(
        denial.starts_with(&format!("image {good}: verification error: policy demo: ")),
        "{denial}"
    );
    assert!(denial.contains("in the background"), "{denial}");
    assert_eq!(hook.served.metric(BACKGROUND).await, Some(1.0));

    // A review of an image no policy covers is answered at once and refreshes the gauge of
    // background verifications; poll it until the verification has filled the cache.
    let probe = create_deployment("uid-probe", "probe", &["127.0.0.1:9/elsewhere/x:1"]);
    eventually(
        "the background verification",
        Duration::from_secs(30),
        || async {
            let answer = hook.served.review("enforce", &probe).await;
            assert!(!allowed(&answer), "{answer}");
            hook.served.metric(BACKGROUND).await == Some(0.0)
        },
    )
    .await;

    // The retry: allowed at once from the cache, without asking Archivista again.
    let asked = slow.requests();
    assert!(
        asked >= 2,
        "search and download went through the proxy: {asked}\n{}",
        hook.served.log()
    );
    let started = Instant::now();
    let answer = hook.served.review("enforce", &body).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(allowed(&answer), "{answer}");
    let record = &records(&answer)[0];
    assert_eq!(record["cached"], true, "{record}");
    assert_eq!(record["evidence"], json!([format!("gitoid:{gitoid}")]));
    assert_eq!(slow.requests(), asked);
}

// ---------------------------------------------------------------------------------------------
// 6. Config reloads under load

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_reloads_under_load_lose_no_request_and_a_bad_config_keeps_the_last_good_one() {
    let Some(w) = world_async().await else { return };
    let host = w.registry.host.clone();
    let hook = Arc::new(Hook::start(&w, &host, &Settings::default()));
    let good = hook.image("good");
    let bad = hook.image("bad");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (hook, stop, sent, good) = (hook.clone(), stop.clone(), sent.clone(), good.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let uid = format!("uid-load-{client}-{n}");
                let body = create_deployment(&uid, "api", &[&good]);
                match hook
                    .served
                    .send(
                        "/validate/enforce",
                        "application/json",
                        body.to_string().into(),
                    )
                    .await
                {
                    Err(e) => failures.push(format!("{uid}: transport: {e}")),
                    Ok(a) if a.status != 200 => {
                        failures.push(format!("{uid}: status {}: {}", a.status, a.body));
                    }
                    Ok(a) => {
                        let answer = a.json();
                        if answer["response"]["uid"] != uid.as_str() || !allowed(&answer) {
                            failures.push(format!("{uid}: {answer}"));
                        }
                    }
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }

    // Three valid versions while the clients run; the last adds an exception for the failing
    // image, so that it can be told apart from the first.
    eventually("the clients to start", SERVED_WAIT, || async {
        sent.load(Ordering::SeqCst) >= 8
    })
    .await;
    let first_reloads = hook.reloads().await;
    let last_good = Settings {
        note: "version 3".into(),
        extra: format!(
            "exceptions:\n  - image: {host}/demo/bad\n    reason: migration\n    \
             owner: platform@example.com\n    expires: \"2099-12-31\"\n"
        ),
        ..Settings::default()
    };
    for version in [
        Settings {
            note: "version 1".into(),
            ..Settings::default()
        },
        Settings {
            note: "version 2".into(),
            extra: "cache:\n  failedDecisionsTtl: 1s\n".into(),
            ..Settings::default()
        },
        last_good,
    ] {
        let before = sent.load(Ordering::SeqCst);
        hook.reload(&w.config(hook.dir.path(), &host, &version))
            .await;
        // Let some requests meet the new config before the next rewrite.
        eventually("requests after the reload", SERVED_WAIT, || async {
            sent.load(Ordering::SeqCst) >= before + 8
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert_eq!(failures, Vec::<String>::new());
    assert!(hook.reloads().await >= first_reloads + 3.0);
    assert!(sent.load(Ordering::SeqCst) >= 32);

    // An invalid version: refused, the last good one (version 3) keeps answering.
    hook.rewrite("# version 4\npolicies: [\nbogus");
    eventually("the failed reload", SERVED_WAIT, || async {
        hook.served.metric(RELOAD_FAILING).await == Some(1.0)
    })
    .await;
    assert_eq!(
        hook.served.health_get("/readyz").await,
        (200, "ok\n".to_string())
    );
    let answer = hook
        .served
        .review("enforce", &create_deployment("uid-after", "web", &[&bad]))
        .await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(records(&answer)[0]["outcome"], "excepted", "{answer}");
    let answer = hook
        .served
        .review(
            "enforce",
            &create_deployment("uid-after-2", "api", &[&good]),
        )
        .await;
    assert!(allowed(&answer), "{answer}");
    assert!(
        hook.served
            .metric(r#"attestgate_config_reloads_total{result="failure"}"#)
            .await
            >= Some(1.0)
    );
    assert!(hook.served.log().contains("config did not load"));
}

// ---------------------------------------------------------------------------------------------
// 7. Bad input over the wire

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_the_wire_gets_the_right_status() {
    let Some(w) = world_async().await else { return };
    let hook = Hook::start(&w, &w.registry.host, &Settings::default());
    let send = |body: Vec<u8>| {
        hook.served
            .send("/validate/enforce", "application/json", body)
    };

    let answer = send(b"this is not json".to_vec()).await.unwrap();
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("not valid JSON"), "{answer:?}");

    let mut wrong_kind = create_deployment("uid-kind", "web", &["127.0.0.1:9/x/y:1"]);
    wrong_kind["kind"] = json!("Deployment");
    let answer = send(wrong_kind.to_string().into()).await.unwrap();
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("not AdmissionReview"), "{answer:?}");

    let mut no_uid = create_deployment("uid-gone", "web", &["127.0.0.1:9/x/y:1"]);
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let answer = send(no_uid.to_string().into()).await.unwrap();
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("request.uid"), "{answer:?}");

    // Over the 6 MiB cap: refused before it is read.
    let mut huge = create_deployment("uid-huge", "web", &["127.0.0.1:9/x/y:1"]);
    huge["request"]["object"]["metadata"]["annotations"] =
        json!({"pad": "x".repeat(6 * 1024 * 1024)});
    let answer = send(huge.to_string().into()).await.unwrap();
    assert_eq!(answer.status, 413, "{answer:?}");

    let answer = hook
        .served
        .send("/validate/enforce", "text/plain", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(answer.status, 415, "{answer:?}");

    // A ConfigMap holds no pod spec: admitted, skipped.
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "team-a"}, "data": {"image": "evil:1"}});
    let answer = hook
        .served
        .review(
            "enforce",
            &review(
                "uid-cm",
                ["", "v1", "ConfigMap"],
                ["", "v1", "configmaps"],
                "CREATE",
                config_map,
                None,
            ),
        )
        .await;
    assert_eq!(
        answer,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": "uid-cm", "allowed": true,
            "auditAnnotations": {"decision": "skipped", "reason": "kind ConfigMap holds no pod spec"}
        }})
    );

    // v1beta1 in, v1beta1 out.
    let bad = hook.image("bad");
    let mut old = create_deployment("uid-beta", "web", &[&bad]);
    old["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let answer = hook.served.review("enforce", &old).await;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], "uid-beta");
    assert!(!allowed(&answer), "{answer}");

    // None of it upset the server.
    assert_eq!(hook.served.health_get("/healthz").await.0, 200);
    assert!(
        hook.served
            .metric(r#"attestgate_reviews_total{mode="enforce",decision="bad_request"}"#)
            .await
            >= Some(4.0)
    );
}

// ---------------------------------------------------------------------------------------------
// 8. `attestgate review` answers as the server does

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_command_gives_the_servers_answer() {
    let Some(w) = world_async().await else { return };
    for (mode, code) in [("warn", 0), ("enforce", 1)] {
        // A fresh server each time, and a fresh process: neither answers from a cache.
        let hook = Hook::start(&w, &w.registry.host, &Settings::default());
        let (good, bad) = (hook.image("good"), hook.image("bad"));
        let body = create_deployment("uid-cli", "web", &[&good, &bad]);
        let dir = hook.dir.path().to_path_buf();
        std::fs::write(dir.join("review.json"), body.to_string()).unwrap();
        let run = tokio::task::spawn_blocking(move || {
            attestgate(
                &dir,
                [
                    "review",
                    "--config",
                    "config.yaml",
                    "--mode",
                    mode,
                    "review.json",
                ],
            )
        })
        .await
        .unwrap();
        assert_eq!(run.code, code, "{}", run.text());
        let printed: Value = serde_json::from_str(&run.stdout).unwrap();
        let served = hook.served.review(mode, &body).await;
        assert_eq!(printed, served, "{mode}");
        assert_eq!(records(&served).len(), 2, "{served}");
        assert_eq!(records(&served)[0]["outcome"], "admitted", "{served}");
        assert_eq!(records(&served)[1]["outcome"], "violation", "{served}");
    }
}
