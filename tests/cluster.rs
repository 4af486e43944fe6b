#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! attestgate against a REAL kube-apiserver v1.35.4 (with etcd and kube-controller-manager, all
//! on 127.0.0.1, from `tests/peers/start-cluster.sh`), driven with the real `kubectl` of the same
//! release as the admin (group system:masters) and as a tenant (group attestgate-tenants).
//!
//! `attestgate serve` runs as a child process on 127.0.0.1 with an rcgen certificate. The
//! ValidatingWebhookConfiguration is the chart's own (`helm template`), with only each entry's
//! `clientConfig.service` replaced by `url: https://127.0.0.1:PORT/validate/MODE` and the test
//! CA: the namespace selectors, rules, failure policies, side effects and timeouts are checked as
//! the chart renders them. Images live in the real Debian `docker-registry` on loopback (pushed
//! with skopeo), evidence in a directory, the policy is signed with openssl, as in webhook.rs.
//!
//! One cluster for the whole binary, so ONE test runs every scenario in sequence: each is a
//! step whose failure is recorded (with its panic message) without stopping the others, and the
//! test fails at the end naming every failed step. The cluster, the registry and the server are
//! drop guards owned by that test, so they are stopped when it returns or panics.
//!
//! Missing peers (kube-apiserver, kube-controller-manager, kubectl and etcd in
//! `$ATTESTGATE_PEERS/bin` from `.ci/peers-cluster.sh`; helm from `.ci/chart-tools.sh`;
//! docker-registry, skopeo, python3): the test fails under `CI=true` and prints "skipped"
//! elsewhere. Every address is 127.0.0.1; nothing else is contacted.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    panic_text, require_peer, require_peers, run_tool, write_serving_certificate, Cluster, KeyKind,
    OpensslKey, Out, PlainRegistry, Served, CLUSTER_PEERS,
};
use serde::Deserialize as _;
use serde_json::{json, Value};

const COMMIT: &str = "5b0c1d8a6f4e3b2a19087766554433221100ffee";
const OTHER_COMMIT: &str = "0000111122223333444455556666777788889999";
const SRC: &str = "https://github.com/example/webhook-demo";

/// The chart's release and namespace (the webhook's own namespace).
const RELEASE: &str = "attestgate";
const RELEASE_NAMESPACE: &str = "attestgate-system";
const MODES: [&str; 3] = ["enforce", "warn", "audit"];

const ENFORCE: &str = "team-enforce";
const WARN: &str = "team-warn";
const AUDIT: &str = "team-audit";
/// Labelled `attestgate.dev/mode=enforcee` before the label policy exists.
const TYPO: &str = "team-typo";
/// Labelled `attestgate.dev/mode=` (empty) before the label policy exists.
const EMPTY: &str = "team-empty";
/// Labelled enforce; the admin moves it to audit in the label policy step.
const RELABEL: &str = "team-relabel";

/// How long a poll waits for the API server to catch up (informers, controllers).
const CATCH_UP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Tools and the cluster

/// A tool: `$VAR`, then `$ATTESTGATE_PEERS/bin/NAME`, then NAME on PATH.
fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cached = common::peers_dir().join("bin").join(name);
    if cached.is_file() {
        return cached;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or(cached)
}

#[derive(Clone, Copy, PartialEq)]
enum Who {
    Admin,
    Tenant,
}

impl Who {
    fn kubeconfig(self, cluster: &Cluster) -> PathBuf {
        match self {
            Who::Admin => cluster.kubeconfig(),
            Who::Tenant => cluster.tenant_kubeconfig(),
        }
    }
}

/// Steps of this test on the shared cluster.
impl Cluster {
    fn kubectl_as(&self, who: Who, args: &[&str], stdin: Option<&str>) -> Out {
        self.kubectl_with(&who.kubeconfig(self), args, stdin)
    }

    /// Asserts that `kubectl args` fails and that its stderr holds every needle; returns stderr.
    fn refused(&self, who: Who, args: &[&str], stdin: Option<&str>, needles: &[&str]) -> String {
        let out = self.kubectl_as(who, args, stdin);
        assert!(!out.ok, "kubectl {args:?} succeeded:\n{}", out.text());
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "kubectl {args:?}: stderr lacks {needle:?}:\n{}",
                out.text()
            );
        }
        out.stderr
    }

    /// Whether `kind/name` exists in `namespace` (anything but NotFound fails the step).
    fn exists(&self, namespace: &str, kind: &str, name: &str) -> bool {
        let out = self.kubectl_as(Who::Admin, &["-n", namespace, "get", kind, name], None);
        if out.ok {
            return true;
        }
        assert!(out.stderr.contains("NotFound"), "{}", out.text());
        false
    }

    fn labels(&self, namespace: &str) -> Value {
        let text = self.admin(
            &[
                "get",
                "namespace",
                namespace,
                "-o",
                "jsonpath={.metadata.labels}",
            ],
            None,
        );
        serde_json::from_str(&text).unwrap()
    }
}

/// Polls `check` every 200 ms until it returns `Some`; fails the step after `timeout`.
fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// The chart

/// `helm template` of the chart (release `attestgate` in `attestgate-system`) for `kube`.
fn render_chart(helm: &Path, kube: &str) -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    let chart = common::root().join("charts/attestgate");
    let out = run_tool(
        helm,
        &[
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            RELEASE_NAMESPACE,
            "--kube-version",
            kube,
        ],
        &[
            ("HELM_CONFIG_HOME", &home.path().join("config")),
            ("HELM_CACHE_HOME", &home.path().join("cache")),
            ("HELM_DATA_HOME", &home.path().join("data")),
            ("KUBECONFIG", &home.path().join("no-kubeconfig")),
        ],
        None,
    );
    assert!(out.ok, "helm template failed:\n{}", out.text());
    serde_norway::Deserializer::from_str(&out.stdout)
        .map(|doc| serde_norway::Value::deserialize(doc).expect("the render parses"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// The chart's webhook configuration with each entry's `clientConfig` pointed at `port` on
/// loopback, trusting `ca_pem`; everything else as rendered.
fn loopback_webhooks(chart_vwc: &Value, port: u16, ca_pem: &str) -> Value {
    let mut vwc = chart_vwc.clone();
    let webhooks = vwc["webhooks"].as_array_mut().unwrap();
    assert_eq!(webhooks.len(), 3, "{chart_vwc}");
    for (webhook, mode) in webhooks.iter_mut().zip(MODES) {
        assert_eq!(webhook["name"], format!("{mode}.attestgate.dev"));
        let service = &webhook["clientConfig"]["service"];
        assert_eq!(service["namespace"], RELEASE_NAMESPACE);
        let path = service["path"].as_str().unwrap().to_owned();
        assert_eq!(path, format!("/validate/{mode}"));
        webhook["clientConfig"] = json!({
            "url": format!("https://127.0.0.1:{port}{path}"),
            "caBundle": common::b64(ca_pem.as_bytes()),
        });
    }
    vwc
}

// ---------------------------------------------------------------------------------------------
// Images, policy, evidence and the server

struct Images {
    _registry: PlainRegistry,
    dir: tempfile::TempDir,
    host: String,
    /// `HOST/demo/good:v1`, with evidence.
    good: String,
    /// `HOST/demo/bad:v1`, without.
    bad: String,
    /// The good image by digest: `HOST/demo/good@sha256:…`.
    good_by_digest: String,
}

impl Images {
    fn start() -> Option<Self> {
        let registry = PlainRegistry::start()?;
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        let good = common::mklayout(&tmp.join("good"), COMMIT, SRC);
        common::mklayout(&tmp.join("bad"), OTHER_COMMIT, SRC);
        registry.push(&tmp.join("good"), "v1", "demo/good:v1");
        registry.push(&tmp.join("bad"), "v1", "demo/bad:v1");
        let good_hex = good["v1"].trim_start_matches("sha256:");

        let policy_key = OpensslKey::generate(tmp, "policy", KeyKind::Ed25519);
        let builder = OpensslKey::generate(tmp, "builder", KeyKind::EcdsaP256);
        let policy = common::build_policy(&builder);
        std::fs::write(
            tmp.join("policy.json"),
            policy_key.envelope(common::POLICY_TYPE, policy.to_string().as_bytes()),
        )
        .unwrap();
        std::fs::create_dir(tmp.join("evidence")).unwrap();
        std::fs::write(
            tmp.join("evidence/good.json"),
            common::image_evidence(&builder, good_hex, COMMIT, SRC),
        )
        .unwrap();
        let host = registry.host.clone();
        Some(Self {
            good: format!("{host}/demo/good:v1"),
            bad: format!("{host}/demo/bad:v1"),
            good_by_digest: format!("{host}/demo/good@{}", good["v1"]),
            host,
            dir,
            _registry: registry,
        })
    }
}

/// `attestgate serve` on loopback, restartable on the same port.
struct Webhook {
    dir: tempfile::TempDir,
    ca_pem: String,
    served: Option<Served>,
    port: u16,
}

impl Webhook {
    fn config(images: &Images, dir: &Path, port: u16) -> String {
        let world = images.dir.path().display();
        let host = &images.host;
        format!(
            "server:\n  listen: 127.0.0.1:{port}\n  healthListen: 127.0.0.1:0\n  \
             certFile: {dir}/tls.crt\n  keyFile: {dir}/tls.key\n  shutdownGrace: 1s\n\
             webhookTimeoutSeconds: 10\n\
             deadline: 8s\n\
             policies:\n  - name: demo\n    images: [\"{host}/demo/**\"]\n    \
             policy: {world}/policy.json\n    \
             trust:\n      publicKeys: [\"{world}/policy.pub.pem\"]\n    \
             evidence:\n      directories: [\"{world}/evidence\"]\n\
             registry:\n  insecure: [\"{host}\"]\n  requestTimeout: 5s\n  maxRetries: 0\n",
            dir = dir.display(),
        )
    }

    /// Starts it on a port the kernel picks; later starts reuse that port.
    fn start(images: &Images) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = write_serving_certificate(dir.path());
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, Self::config(images, dir.path(), 0)).unwrap();
        let served = Served::start(&config, &ca_pem);
        let port = served.webhook.port();
        assert!(served.webhook.ip().is_loopback());
        // The config of every restart: the same port, which the registration names.
        std::fs::write(
            dir.path().join("config-fixed-port.yaml"),
            Self::config(images, dir.path(), port),
        )
        .unwrap();
        Self {
            dir,
            ca_pem,
            served: Some(served),
            port,
        }
    }

    /// Kills the server (SIGKILL, as a crash would).
    fn stop(&mut self) {
        self.served = None;
    }

    fn restart(&mut self) {
        assert!(self.served.is_none());
        let served = Served::start(
            &self.dir.path().join("config-fixed-port.yaml"),
            &self.ca_pem,
        );
        assert_eq!(served.webhook.port(), self.port);
        self.served = Some(served);
    }

    fn served(&self) -> &Served {
        self.served.as_ref().expect("the webhook runs")
    }

    /// The `admission decision` log lines so far (their `fields`).
    fn decisions(&self) -> Vec<Value> {
        self.served()
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["fields"].clone())
            .filter(|f| f["message"] == "admission decision")
            .collect()
    }

    /// Waits for the decision logged for `name` in `namespace` and returns it.
    fn decision(&self, namespace: &str, name: &str) -> Value {
        poll(
            &format!("the decision on {namespace}/{name} in the server's log"),
            Duration::from_secs(20),
            || {
                self.decisions()
                    .into_iter()
                    .find(|d| d["namespace"] == namespace && d["name"] == name)
            },
        )
    }
}

fn pod(name: &str, image: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": image}]}
    })
    .to_string()
}

fn namespace(name: &str, mode: Option<&str>) -> String {
    let labels = mode.map_or(json!({}), |m| json!({"attestgate.dev/mode": m}));
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
        .to_string()
}

/// The enforce entry's refusal, as kubectl prints it.
const DENIED_BY_ENFORCE: &str = "admission webhook \"enforce.attestgate.dev\" denied the request:";

// ---------------------------------------------------------------------------------------------
// The scenarios

struct World {
    cluster: Cluster,
    webhook: Webhook,
    images: Images,
    /// The chart's ValidatingWebhookConfiguration as rendered.
    chart_vwc: Value,
    chart_docs: Vec<Value>,
}

impl World {
    fn k(&self) -> &Cluster {
        &self.cluster
    }

    /// `kubectl create` of a Pod as the admin.
    fn create_pod(&self, namespace: &str, name: &str, image: &str, extra: &[&str]) -> Out {
        let mut args = vec!["-n", namespace, "create", "-f", "-"];
        args.extend_from_slice(extra);
        self.cluster
            .kubectl_as(Who::Admin, &args, Some(&pod(name, image)))
    }

    /// The enforce refusal of `image` in a Pod `name` of `namespace`, with our per-image line.
    fn pod_denied(&self, namespace: &str, name: &str, image: &str, extra: &[&str]) -> String {
        let mut args = vec!["-n", namespace, "create", "-f", "-"];
        args.extend_from_slice(extra);
        self.cluster.refused(
            Who::Admin,
            &args,
            Some(&pod(name, image)),
            &[DENIED_BY_ENFORCE, &format!("image {image}: denied: ")],
        )
    }
}

/// Step 1: enforce: a failing Pod and Deployment are refused with our message; passing ones are
/// created, and the controllers' ReplicaSet and Pod are admitted too.
fn enforce_namespace(w: &World) {
    let (good, bad) = (&w.images.good, &w.images.bad);
    let stderr = w.pod_denied(ENFORCE, "bad", bad, &[]);
    println!("    kubectl: {}", stderr.trim());
    assert!(
        !w.k().exists(ENFORCE, "pod", "bad"),
        "the refused Pod exists"
    );

    let stderr = w.k().refused(
        Who::Admin,
        &[
            "-n",
            ENFORCE,
            "create",
            "deployment",
            "web-bad",
            "--image",
            bad,
        ],
        None,
        &[DENIED_BY_ENFORCE, &format!("image {bad}: denied: ")],
    );
    println!("    kubectl: {}", stderr.trim());
    assert!(!w.k().exists(ENFORCE, "deployment", "web-bad"));
    let decision = w.webhook.decision(ENFORCE, "web-bad");
    assert_eq!(decision["kind"], "Deployment");
    assert_eq!(decision["decision"], "denied");
    assert_eq!(decision["mode"], "enforce");

    let out = w.create_pod(ENFORCE, "good", good, &[]);
    assert!(out.ok, "the passing Pod: {}", out.text());
    assert!(!out.stderr.contains("Warning"), "{}", out.text());
    let image = w.k().admin(
        &[
            "-n",
            ENFORCE,
            "get",
            "pod",
            "good",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ],
        None,
    );
    assert_eq!(&image, good);
    assert_eq!(w.webhook.decision(ENFORCE, "good")["decision"], "allowed");

    // A passing Deployment: the controller manager's ReplicaSet and Pod pass the webhook too.
    w.k().admin(
        &[
            "-n",
            ENFORCE,
            "create",
            "deployment",
            "web-good",
            "--image",
            good,
        ],
        None,
    );
    let pods = poll("the Deployment's Pod", CATCH_UP, || {
        let names = w.k().admin(
            &[
                "-n",
                ENFORCE,
                "get",
                "pods",
                "-l",
                "app=web-good",
                "-o",
                "name",
            ],
            None,
        );
        (!names.trim().is_empty()).then_some(names)
    });
    println!("    the controllers created {}", pods.trim());
    let decisions = w.webhook.decisions();
    for kind in ["ReplicaSet", "Pod"] {
        assert!(
            decisions.iter().any(|d| d["namespace"] == ENFORCE
                && d["kind"] == kind
                && d["operation"] == "CREATE"
                && d["decision"] == "allowed"
                && d["images"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(good.as_str())
                && d["name"] != "good"),
            "no allowed {kind} CREATE from the controllers in {decisions:?}"
        );
    }
}

/// Step 2: warn: created with our warning printed; audit: created silently, the decision logged.
fn warn_and_audit_namespaces(w: &World) {
    let bad = &w.images.bad;
    let out = w.create_pod(WARN, "bad", bad, &[]);
    assert!(out.ok, "{}", out.text());
    let warning = format!("Warning: image {bad}: would be denied: ");
    assert!(
        out.stderr.contains(&warning),
        "no {warning:?}: {}",
        out.text()
    );
    println!("    kubectl (warn): {}", out.stderr.trim());
    assert!(w.k().exists(WARN, "pod", "bad"));
    assert_eq!(w.webhook.decision(WARN, "bad")["decision"], "warned");

    let out = w.create_pod(AUDIT, "bad", bad, &[]);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stderr.trim().is_empty(),
        "audit must be silent: {}",
        out.text()
    );
    assert!(w.k().exists(AUDIT, "pod", "bad"));
    let decision = w.webhook.decision(AUDIT, "bad");
    assert_eq!(decision["decision"], "audited", "{decision}");
    assert_eq!(decision["mode"], "audit", "{decision}");
    assert!(
        decision["images"]
            .as_str()
            .unwrap()
            .contains(&format!("{bad}=violation@sha256:")),
        "{decision}"
    );
    println!("    server log (audit): {decision}");
}

fn ephemeral_containers(w: &World, namespace: &str, pod: &str) -> String {
    w.k().admin(
        &[
            "-n",
            namespace,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ],
        None,
    )
}

/// Step 3: `kubectl debug` (pods/ephemeralcontainers) with a failing image is refused, with a
/// passing one accepted. The passing one is the good image by digest: an UPDATE judges only
/// images the Pod does not run yet, and it runs the good image by tag.
fn kubectl_debug(w: &World) {
    let (good, bad) = (&w.images.good_by_digest, &w.images.bad);
    let stderr = w.k().refused(
        Who::Admin,
        &[
            "-n",
            ENFORCE,
            "debug",
            "good",
            "--image",
            bad,
            "--container=debug-bad",
            "--profile=general",
        ],
        None,
        &[DENIED_BY_ENFORCE, &format!("image {bad}: denied: ")],
    );
    println!("    kubectl debug (failing image): {}", stderr.trim());
    assert_eq!(ephemeral_containers(w, ENFORCE, "good"), "");

    let out = w.k().kubectl_as(
        Who::Admin,
        &[
            "-n",
            ENFORCE,
            "debug",
            "good",
            "--image",
            good,
            "--container=debug-good",
            "--profile=general",
        ],
        None,
    );
    assert!(out.ok, "kubectl debug (passing image): {}", out.text());
    assert_eq!(ephemeral_containers(w, ENFORCE, "good"), "debug-good");
    // Both updates of pods/ephemeralcontainers were judged (the log is read as it comes).
    let updates = poll(
        "two UPDATEs of team-enforce/good in the log",
        Duration::from_secs(20),
        || {
            let updates: Vec<Value> = w
                .webhook
                .decisions()
                .into_iter()
                .filter(|d| {
                    d["namespace"] == ENFORCE && d["name"] == "good" && d["operation"] == "UPDATE"
                })
                .collect();
            (updates.len() >= 2).then_some(updates)
        },
    );
    println!("    logged: {updates:?}");
    assert_eq!(updates[0]["decision"], "denied", "{updates:?}");
    assert_eq!(updates[1]["decision"], "allowed", "{updates:?}");
    assert!(
        updates[1]["images"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{good}=")),
        "only the debug image is judged: {updates:?}"
    );
}

/// Step 4: `--dry-run=server` reaches the webhook (sideEffects None): refused, or admitted and not
/// stored.
fn server_dry_run(w: &World) {
    w.pod_denied(ENFORCE, "dry-bad", &w.images.bad, &["--dry-run=server"]);
    let out = w.create_pod(ENFORCE, "dry-good", &w.images.good, &["--dry-run=server"]);
    assert!(out.ok, "{}", out.text());
    assert!(out.stdout.contains("(server dry run)"), "{}", out.text());
    assert!(
        !w.k().exists(ENFORCE, "pod", "dry-good"),
        "a dry run stored"
    );
    for (name, decision) in [("dry-bad", "denied"), ("dry-good", "allowed")] {
        let logged = w.webhook.decision(ENFORCE, name);
        assert_eq!(logged["dry_run"], true, "{logged}");
        assert_eq!(logged["decision"], decision, "{logged}");
    }
}

/// Step 5: the webhook down: enforce fails closed, warn and audit admit; then it comes back.
fn webhook_down(w: &mut World) {
    w.webhook.stop();
    // Everything is asked before anything is asserted, so that the server is restarted
    // whatever the answers (the later steps need it).
    let enforce = w.create_pod(ENFORCE, "down", &w.images.good, &[]);
    let warn = w.create_pod(WARN, "down", &w.images.bad, &[]);
    let audit = w.create_pod(AUDIT, "down", &w.images.bad, &[]);
    w.webhook.restart();

    assert!(!enforce.ok, "enforce admitted with the webhook down");
    assert!(
        enforce
            .stderr
            .contains("failed calling webhook \"enforce.attestgate.dev\""),
        "{}",
        enforce.text()
    );
    println!("    kubectl (enforce, down): {}", enforce.stderr.trim());
    assert!(warn.ok, "warn, webhook down: {}", warn.text());
    assert!(!warn.stderr.contains("Warning"), "{}", warn.text());
    assert!(audit.ok, "audit, webhook down: {}", audit.text());

    // Back: the same port, the same registration.
    poll("the restarted webhook's refusal", CATCH_UP, || {
        let out = w.create_pod(ENFORCE, "down", &w.images.bad, &["--dry-run=server"]);
        (!out.ok && out.stderr.contains(DENIED_BY_ENFORCE)).then_some(())
    });
    let out = w.create_pod(ENFORCE, "down", &w.images.good, &[]);
    assert!(out.ok, "after the restart: {}", out.text());
}

/// Step 6: kube-system and the webhook's own namespace are never reviewed, even labelled enforce.
fn system_namespaces(w: &World) {
    for namespace in ["kube-system", RELEASE_NAMESPACE] {
        w.k().admin(
            &[
                "label",
                "namespace",
                namespace,
                "attestgate.dev/mode=enforce",
                "--overwrite",
            ],
            None,
        );
        let out = w.create_pod(namespace, "bad", &w.images.bad, &[]);
        assert!(out.ok, "{namespace}: {}", out.text());
        assert!(!out.stderr.contains("Warning"), "{}", out.text());
    }
    // A barrier: once a later request is logged, the earlier ones would have been too.
    w.pod_denied(ENFORCE, "barrier", &w.images.bad, &["--dry-run=server"]);
    w.webhook.decision(ENFORCE, "barrier");
    let seen: Vec<Value> = w
        .webhook
        .decisions()
        .into_iter()
        .filter(|d| d["namespace"] == "kube-system" || d["namespace"] == RELEASE_NAMESPACE)
        .collect();
    assert!(seen.is_empty(), "reviewed: {seen:?}");
}

/// 7 and 8 (the label policy): the chart's ValidatingAdmissionPolicy for real. A tenant who may
/// edit namespaces cannot change the mode label, the admin can, and nobody can set an unknown
/// value; one already there is left alone.
fn label_policy(w: &World) {
    let policy: Vec<String> = w
        .chart_docs
        .iter()
        .filter(|d| {
            d["kind"]
                .as_str()
                .unwrap_or_default()
                .starts_with("ValidatingAdmissionPolicy")
        })
        .map(Value::to_string)
        .collect();
    assert_eq!(policy.len(), 2, "the policy and its binding");
    w.k().admin(&["apply", "-f", "-"], Some(&policy.join("\n")));
    w.k().admin(
        &[
            "create",
            "clusterrole",
            "ns-edit",
            "--verb=get,list,update,patch",
            "--resource=namespaces",
        ],
        None,
    );
    let group = w.cluster.env["TENANT_GROUP"].clone();
    w.k().admin(
        &[
            "create",
            "clusterrolebinding",
            "ns-edit",
            "--clusterrole=ns-edit",
            &format!("--group={group}"),
        ],
        None,
    );
    // The API server loads the policy and the RBAC through informers: probe with a dry run
    // (which stores nothing) until the policy answers.
    let guard = format!("ValidatingAdmissionPolicy '{RELEASE}-mode-label'");
    poll("the label policy to take effect", CATCH_UP, || {
        let out = w.k().kubectl_as(
            Who::Tenant,
            &[
                "label",
                "namespace",
                ENFORCE,
                "attestgate.dev/mode=audit",
                "--overwrite",
                "--dry-run=server",
            ],
            None,
        );
        // Until then the dry run may pass (the RBAC arrived first) or be forbidden by RBAC.
        (!out.ok && out.stderr.contains(&guard)).then_some(())
    });

    let only_admins = "attestgate.dev/* namespace labels may be added, changed or removed only \
                       by members of system:masters";
    let tenant_refused = |args: &[&str]| {
        let stderr = w
            .k()
            .refused(Who::Tenant, args, None, &[guard.as_str(), only_admins]);
        println!("    tenant {args:?}: {}", stderr.trim());
    };
    tenant_refused(&[
        "label",
        "namespace",
        ENFORCE,
        "attestgate.dev/mode=audit",
        "--overwrite",
    ]);
    tenant_refused(&["label", "namespace", ENFORCE, "attestgate.dev/mode-"]);
    tenant_refused(&[
        "label",
        "namespace",
        "default",
        "attestgate.dev/mode=enforce",
    ]);
    assert_eq!(w.k().labels(ENFORCE)["attestgate.dev/mode"], "enforce");

    let out = w.k().kubectl_as(
        Who::Tenant,
        &["label", "namespace", ENFORCE, "team=payments"],
        None,
    );
    assert!(out.ok, "the tenant's other label: {}", out.text());
    let labels = w.k().labels(ENFORCE);
    assert_eq!(labels["team"], "payments");
    assert_eq!(labels["attestgate.dev/mode"], "enforce");

    // The admin (system:masters, the chart's default group) relabels, and the webhook follows.
    w.k().admin(
        &[
            "label",
            "namespace",
            RELABEL,
            "attestgate.dev/mode=audit",
            "--overwrite",
        ],
        None,
    );
    assert_eq!(w.k().labels(RELABEL)["attestgate.dev/mode"], "audit");
    poll("the relabelled namespace to be audited", CATCH_UP, || {
        w.create_pod(RELABEL, "bad", &w.images.bad, &["--dry-run=server"])
            .ok
            .then_some(())
    });

    // Step 8: no unknown value, for anyone; one already there is kept through other changes.
    let invalid = "attestgate.dev/mode must be enforce, warn or audit";
    for value in ["enforcee", ""] {
        let label = format!("attestgate.dev/mode={value}");
        let stderr = w.k().refused(
            Who::Admin,
            &["label", "namespace", RELABEL, &label, "--overwrite"],
            None,
            &[&guard, invalid],
        );
        println!("    admin {label:?}: {}", stderr.trim());
    }
    w.k().refused(
        Who::Admin,
        &["create", "-f", "-"],
        Some(&namespace("team-new-typo", Some("Enforce"))),
        &[&guard, invalid],
    );
    assert_eq!(w.k().labels(RELABEL)["attestgate.dev/mode"], "audit");
    let out = w.k().kubectl_as(
        Who::Tenant,
        &["label", "namespace", TYPO, "team=typo"],
        None,
    );
    assert!(out.ok, "another label on {TYPO}: {}", out.text());
    assert_eq!(w.k().labels(TYPO)["attestgate.dev/mode"], "enforcee");
    // A namespace with an unknown value can still be deleted (the namespace controller
    // finalizes it through the policy).
    w.k()
        .admin(&["delete", "namespace", EMPTY, "--wait=false"], None);
    poll(
        &format!("{EMPTY} to be deleted"),
        Duration::from_secs(90),
        || {
            let out = w
                .k()
                .kubectl_as(Who::Admin, &["get", "namespace", EMPTY], None);
            (!out.ok && out.stderr.contains("NotFound")).then_some(())
        },
    );
    // The admin may fix the typo.
    w.k().admin(
        &[
            "label",
            "namespace",
            TYPO,
            "attestgate.dev/mode=enforce",
            "--overwrite",
        ],
        None,
    );
}

/// Step 8: a namespace whose mode label holds an unknown value (`enforcee`, or empty) is judged by
/// the enforce entry.
fn unknown_label_value_is_enforced(w: &World) {
    for namespace in [TYPO, EMPTY] {
        let stderr = w.pod_denied(namespace, "bad", &w.images.bad, &[]);
        println!("    {namespace}: {}", stderr.trim());
        let decision = w.webhook.decision(namespace, "bad");
        assert_eq!(decision["mode"], "enforce", "{decision}");
        let out = w.create_pod(namespace, "good", &w.images.good, &[]);
        assert!(out.ok, "{namespace}: {}", out.text());
    }
}

/// Labelled `attestgate.dev/mode=Enforce` (a typo) in the namespace-modes step, then `warn`.
const COUNT_TYPO: &str = "count-typo";

/// The `attestgate_namespaces` figures as the server's /metrics shows them: mode → count.
fn counted(served: &Served, runtime: &tokio::runtime::Runtime) -> BTreeMap<String, f64> {
    let (status, text) = runtime.block_on(served.health_get("/metrics"));
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter_map(|line| line.strip_prefix("attestgate_namespaces{mode=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(mode, value)| (mode.to_owned(), value.trim().parse().unwrap()))
        .collect()
}

fn gauge(served: &Served, runtime: &tokio::runtime::Runtime, series: &str) -> Option<f64> {
    runtime.block_on(served.metric(series))
}

/// What the metric must show, from `kubectl get namespaces`: the selectors' classes, written
/// out here independently of the server (exact `enforce`, `warn`, `audit`; any other value is
/// `unknown`; no label is `unlabelled`).
fn expected_counts(w: &World) -> BTreeMap<String, f64> {
    let list: Value =
        serde_json::from_str(&w.k().admin(&["get", "namespaces", "-o", "json"], None)).unwrap();
    let mut counts: BTreeMap<String, f64> = ["enforce", "warn", "audit", "unknown", "unlabelled"]
        .into_iter()
        .map(|m| (m.to_owned(), 0.0))
        .collect();
    for item in list["items"].as_array().unwrap() {
        let class = match item["metadata"]["labels"]["attestgate.dev/mode"].as_str() {
            None => "unlabelled",
            Some(value @ ("enforce" | "warn" | "audit")) => value,
            Some(_) => "unknown",
        };
        *counts.get_mut(class).unwrap() += 1.0;
    }
    counts
}

/// The `fields` of the server's log lines whose message starts with `prefix`.
fn logged(served: &Served, prefix: &str) -> Vec<Value> {
    served
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .map(|v| {
            let mut fields = v["fields"].clone();
            fields["level"] = v["level"].clone();
            fields
        })
        .collect()
}

/// Step 10: `kubernetes.namespaceModes` on the real API server. A second `attestgate serve`
/// (no registration: its admission path is not what is counted) reads the API as the tenant,
/// whose only right is the chart's own namespace ClusterRole once bound: without it the count
/// fails (the server stays ready and shows no figures), with it `attestgate_namespaces` matches
/// the namespaces (a typo counted as unknown and logged by name), a relabel moves the figures,
/// and when the right is taken away again the last figures stay, marked as failing.
fn namespace_modes_metric(w: &World) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, mode) in [
        ("count-enforce", Some("enforce")),
        ("count-warn", Some("warn")),
        (COUNT_TYPO, Some("Enforce")),
        ("count-none", None),
    ] {
        w.k()
            .admin(&["create", "-f", "-"], Some(&namespace(name, mode)));
    }
    let dir = w.webhook.dir.path();
    let config = dir.join("config-namespace-modes.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  \
             certFile: {dir}/tls.crt\n  keyFile: {dir}/tls.key\n  shutdownGrace: 1s\n\
             kubernetes:\n  kubeconfig: {tenant}\n  requestTimeout: 5s\n  \
             namespaceModes: {{enabled: true, interval: 1s}}\n",
            dir = dir.display(),
            tenant = w.k().tenant_kubeconfig().display(),
        ),
    )
    .unwrap();
    let served = Served::start(&config, &w.webhook.ca_pem);
    assert!(served.health.ip().is_loopback());

    // No right to list namespaces yet: the count fails, the server is ready all the same.
    poll("a failed count", Duration::from_secs(20), || {
        (gauge(
            &served,
            &runtime,
            "attestgate_namespace_modes_refresh_failing",
        ) == Some(1.0))
        .then_some(())
    });
    let failed = logged(&served, "cannot count the namespaces by mode label");
    assert_eq!(failed.len(), 1, "logged once, not every round: {failed:?}");
    assert_eq!(failed[0]["level"], "WARN", "{failed:?}");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("403"),
        "{failed:?}"
    );
    assert!(
        counted(&served, &runtime).is_empty(),
        "figures before any count"
    );
    assert_eq!(
        gauge(
            &served,
            &runtime,
            "attestgate_namespace_modes_last_success_timestamp_seconds"
        ),
        Some(0.0)
    );
    assert_eq!(runtime.block_on(served.health_get("/readyz")).0, 200);

    // The chart's own ClusterRole, bound to the tenant's group.
    let role = w
        .chart_docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "attestgate-namespaces")
        .expect("the chart's namespace ClusterRole")
        .clone();
    let group = w.cluster.env["TENANT_GROUP"].clone();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "count-namespaces"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "attestgate-namespaces"},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}],
    });
    w.k()
        .admin(&["apply", "-f", "-"], Some(&format!("{role}\n{binding}")));

    let expected = expected_counts(w);
    assert!(
        expected["unknown"] >= 1.0 && expected["unlabelled"] >= 1.0,
        "{expected:?}"
    );
    let t = Instant::now();
    poll(
        "attestgate_namespaces to match the namespaces",
        CATCH_UP,
        || (counted(&served, &runtime) == expected).then_some(()),
    );
    println!(
        "    counted after {:.1} s: {expected:?}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        gauge(
            &served,
            &runtime,
            "attestgate_namespace_modes_refresh_failing"
        ),
        Some(0.0)
    );
    let last = gauge(
        &served,
        &runtime,
        "attestgate_namespace_modes_last_success_timestamp_seconds",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "last success {last}, now {now}");
    let unknown = logged(&served, "namespaces whose mode label value is not");
    let line = unknown.last().expect("the unknown values are logged");
    println!("    logged: {line}");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["count"].as_f64(), Some(expected["unknown"]), "{line}");
    let names = line["namespaces"].as_str().unwrap();
    assert!(
        names.contains(&format!("{COUNT_TYPO}=\"Enforce\"")),
        "{line}"
    );
    assert!(
        !names.contains("count-enforce") && !names.contains("count-none"),
        "{line}"
    );

    // A relabel moves one namespace from unknown to warn.
    w.k().admin(
        &[
            "label",
            "namespace",
            COUNT_TYPO,
            "attestgate.dev/mode=warn",
            "--overwrite",
        ],
        None,
    );
    let mut relabelled = expected.clone();
    *relabelled.get_mut("unknown").unwrap() -= 1.0;
    *relabelled.get_mut("warn").unwrap() += 1.0;
    assert_eq!(expected_counts(w), relabelled);
    poll(
        "the relabel to show in attestgate_namespaces",
        CATCH_UP,
        || (counted(&served, &runtime) == relabelled).then_some(()),
    );
    let logged_after = logged(&served, "namespaces whose mode label value is not");
    let changed = logged_after.last().unwrap();
    let names = changed["namespaces"].as_str().unwrap_or_default();
    assert!(
        logged_after.len() > unknown.len() || relabelled["unknown"] == 0.0,
        "the changed set is logged: {logged_after:?}"
    );
    assert!(!names.contains(COUNT_TYPO), "{changed}");

    // The right taken away: the count fails again, the last figures stay.
    w.k()
        .admin(&["delete", "clusterrolebinding", "count-namespaces"], None);
    poll("the count to fail again", CATCH_UP, || {
        (gauge(
            &served,
            &runtime,
            "attestgate_namespace_modes_refresh_failing",
        ) == Some(1.0))
        .then_some(())
    });
    assert_eq!(counted(&served, &runtime), relabelled);
    assert_eq!(runtime.block_on(served.health_get("/readyz")).0, 200);
    assert_eq!(
        logged(&served, "cannot count the namespaces by mode label").len(),
        2,
        "one line per failing stretch"
    );
}

/// Step 9: the install manifests pass the API server's validation and admission
/// (`--dry-run=server`).
fn install_manifests(w: &World) {
    let manifests = common::root().join("manifests/attestgate.yaml");
    let out = w.k().kubectl_as(
        Who::Admin,
        &[
            "apply",
            "--dry-run=server",
            "-f",
            manifests.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.ok, "{}", out.text());
    for object in [
        "deployment.apps/attestgate",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/attestgate",
        "validatingadmissionpolicy.admissionregistration.k8s.io/attestgate-mode-label",
        "service/attestgate",
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(object) && l.ends_with("(server dry run)")),
            "{object} not applied: {}",
            out.text()
        );
    }
    // Nothing was stored: the registration still points at the test's server.
    let url = w.k().admin(
        &[
            "get",
            "validatingwebhookconfiguration",
            RELEASE,
            "-o",
            "jsonpath={.webhooks[0].clientConfig.url}",
        ],
        None,
    );
    assert_eq!(
        url,
        format!("https://127.0.0.1:{}/validate/enforce", w.webhook.port)
    );
    assert!(!w.k().exists(RELEASE_NAMESPACE, "deployment", RELEASE));
}

// ---------------------------------------------------------------------------------------------
// Setup and the run

/// The chart's webhook entries, registered for the test's server; checks that the API server
/// stored them as rendered and waits until they are in effect.
fn register(w: &World) {
    let vwc = loopback_webhooks(&w.chart_vwc, w.webhook.port, &w.webhook.ca_pem);
    w.k().admin(&["apply", "-f", "-"], Some(&vwc.to_string()));
    let stored: Value = serde_json::from_str(&w.k().admin(
        &[
            "get",
            "validatingwebhookconfiguration",
            RELEASE,
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let chart_entries = w.chart_vwc["webhooks"].as_array().unwrap();
    let stored_entries = stored["webhooks"].as_array().unwrap();
    assert_eq!(stored_entries.len(), chart_entries.len());
    for (chart, stored) in chart_entries.iter().zip(stored_entries) {
        for (key, value) in chart.as_object().unwrap() {
            if key != "clientConfig" {
                assert_eq!(&stored[key], value, "{}: {key}", chart["name"]);
            }
        }
    }
    let t = Instant::now();
    poll("the webhook registration to take effect", CATCH_UP, || {
        let out = w.create_pod(ENFORCE, "probe", &w.images.bad, &["--dry-run=server"]);
        (!out.ok && out.stderr.contains(DENIED_BY_ENFORCE)).then_some(())
    });
    println!(
        "registration effective after {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn setup(w: &World) {
    // Namespaces, the unknown values among them before any label policy exists.
    for (name, mode) in [
        (ENFORCE, "enforce"),
        (WARN, "warn"),
        (AUDIT, "audit"),
        (TYPO, "enforcee"),
        (EMPTY, ""),
        (RELABEL, "enforce"),
    ] {
        w.k()
            .admin(&["create", "-f", "-"], Some(&namespace(name, Some(mode))));
    }
    w.k()
        .admin(&["create", "namespace", RELEASE_NAMESPACE], None);
    // The ServiceAccount admission plugin refuses Pods until the controller manager has made
    // the namespace's `default` ServiceAccount.
    for name in [
        ENFORCE,
        WARN,
        AUDIT,
        TYPO,
        EMPTY,
        RELABEL,
        RELEASE_NAMESPACE,
        "kube-system",
    ] {
        poll(
            &format!("the default ServiceAccount in {name}"),
            CATCH_UP,
            || {
                w.k()
                    .kubectl_as(
                        Who::Admin,
                        &["-n", name, "get", "serviceaccount", "default"],
                        None,
                    )
                    .ok
                    .then_some(())
            },
        );
    }
    register(w);
}

#[test]
fn attestgate_against_the_real_kube_apiserver() {
    let started = Instant::now();
    if !require_peers(&CLUSTER_PEERS, "run .ci/peers-cluster.sh") {
        return;
    }
    let helm = tool("HELM", "helm");
    if !require_peer(&helm, "run .ci/chart-tools.sh") {
        return;
    }
    let Some(images) = Images::start() else {
        return;
    };
    println!(
        "registry, images, policy and evidence ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let cluster = Cluster::start();
    println!(
        "cluster (etcd, kube-apiserver, kube-controller-manager) started in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let version: Value = serde_json::from_str(&cluster.admin(&["version", "-o", "json"], None))
        .expect("kubectl version -o json");
    let kube_version = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .trim_start_matches('v')
        .to_owned();
    assert_eq!(kube_version, "1.35.4", "{version}");
    let chart_docs = render_chart(&helm, &kube_version);
    let chart_vwc = chart_docs
        .iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("the chart renders a ValidatingWebhookConfiguration")
        .clone();
    let webhook = Webhook::start(&images);
    println!(
        "attestgate serve on 127.0.0.1:{}, registry {}",
        webhook.port, images.host
    );
    let mut world = World {
        cluster,
        webhook,
        images,
        chart_vwc,
        chart_docs,
    };
    let t = Instant::now();
    setup(&world);
    println!("setup took {:.1} s", t.elapsed().as_secs_f64());

    type Step = fn(&mut World);
    let steps: [(&str, Step); 10] = [
        (
            "1. enforce namespace: refused with our message, passing Pod created",
            |w| {
                enforce_namespace(w);
            },
        ),
        (
            "2. warn namespace warns, audit namespace is silent and logged",
            |w| {
                warn_and_audit_namespaces(w);
            },
        ),
        ("3. kubectl debug is judged", |w| kubectl_debug(w)),
        ("4. --dry-run=server reaches the webhook", |w| {
            server_dry_run(w);
        }),
        (
            "5. webhook down: enforce fails closed, warn and audit admit",
            webhook_down,
        ),
        (
            "6. kube-system and the release namespace are never reviewed",
            |w| {
                system_namespaces(w);
            },
        ),
        // Before 7, which fixes team-typo's label and deletes team-empty.
        ("8. an unknown mode value is enforced", |w| {
            unknown_label_value_is_enforced(w);
        }),
        // Before 7 too: after it, nobody can set an unknown value.
        (
            "10. attestgate_namespaces counts the namespaces by mode label",
            |w| {
                namespace_modes_metric(w);
            },
        ),
        (
            "7. the label policy: tenants cannot relabel, admins can, no unknown values",
            |w| {
                label_policy(w);
            },
        ),
        ("9. the install manifests pass --dry-run=server", |w| {
            install_manifests(w);
        }),
    ];
    let mut failed = Vec::new();
    for (name, step) in steps {
        println!("step {name}");
        let t = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&mut world)));
        let took = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("  ok ({took:.1} s)"),
            Err(panic) => {
                let message = panic_text(panic.as_ref());
                println!("  FAILED ({took:.1} s): {message}");
                failed.push(format!("{name}: {message}"));
            }
        }
    }
    println!(
        "cluster test: {} steps, {} failed, {:.1} s in all",
        steps.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
}
