#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `attestgate audit` and image pull secrets against a REAL kube-apiserver v1.35.4 (with etcd
//! and kube-controller-manager, all on 127.0.0.1, from `tests/peers/start-cluster.sh`), the real
//! `kubectl` of the same release, Debian's `docker-registry` on loopback twice (one open, one
//! behind htpasswd), evidence in a folder and a policy signed with openssl.
//!
//! The controller manager turns Deployments into ReplicaSets into Pods, StatefulSets and Jobs
//! into Pods; with no nodes the Pods stay Pending and carry no container statuses, so a bare
//! Pod's status is patched (`kubectl patch --subresource=status`) with the `imageID`s a node
//! would report, to judge what runs rather than the tag.
//!
//! One cluster for the whole binary, so ONE test runs every cluster scenario in sequence: each
//! step's failure is recorded (with its panic message) without stopping the others, and the
//! test fails at the end naming every failed step. The tests that need no cluster (flags, an
//! unreachable API server, config keys) are separate.
//!
//! Every kubeconfig is explicit (the cluster's own, or one written here): kube's in-cluster
//! and home-directory defaults are never tried. Every address is 127.0.0.1.
//!
//! Missing peers (kube-apiserver, kube-controller-manager, kubectl, etcd in
//! `$ATTESTGATE_PEERS/bin` from `.ci/peers-cluster.sh`; docker-registry, skopeo, python3): the
//! test fails under `CI=true` and prints "skipped" elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestgate::cluster::PodPullSecrets;
use attestgate::config::Config;
use attestgate::decision::{CacheUse, Decider, Outcome};
use common::{
    attestgate, panic_text, require_peers, Cluster, HtpasswdRegistry, KeyKind, OpensslKey,
    PlainRegistry, Run, CLUSTER_PEERS, POLICY_TYPE,
};
use serde_json::{json, Value};

const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";
const OTHER_COMMIT: &str = "1111111111111111111111111111111111111111";
const PRIVATE_COMMIT: &str = "2222222222222222222222222222222222222222";
const SRC: &str = "https://github.com/example/hello";
/// How long a poll waits for the controllers to catch up.
const CATCH_UP: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Tools

/// Polls `check` every 250 ms until it returns `Some`; fails after `timeout`.
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
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// Steps of this test on the shared cluster.
impl Cluster {
    fn apply(&self, manifest: &Value) {
        self.admin(&["apply", "-f", "-"], Some(&manifest.to_string()));
    }

    /// Waits until `namespace` has `count` pods matching `selector`.
    fn wait_pods(&self, namespace: &str, selector: &str, count: usize) {
        poll(
            &format!("{count} pods {selector} in {namespace}"),
            CATCH_UP,
            || {
                let out = self.kubectl(
                    &["-n", namespace, "get", "pods", "-l", selector, "-o", "name"],
                    None,
                );
                (out.ok && out.stdout.lines().count() == count).then_some(())
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The world: two registries, images, keys, policies, evidence and the config

struct World {
    cluster: Cluster,
    _registry: PlainRegistry,
    private_registry: HtpasswdRegistry,
    dir: tempfile::TempDir,
    /// `HOST/demo/good:v1` (evidence exists), its digest, and by digest.
    good: String,
    good_digest: String,
    good_by_digest: String,
    /// `HOST/demo/bad:v1` (no evidence) and its digest (also pushed as `demo/good:old`).
    bad: String,
    bad_digest: String,
    /// `PRIVATE/private/app:v1` (evidence exists; pulled only with the password) and by digest.
    private: String,
    private_by_digest: String,
    /// The config: the `build` policy, pull secrets on, the cluster's admin kubeconfig.
    config: PathBuf,
}

impl World {
    fn start(cluster: Cluster) -> Option<Self> {
        let registry = PlainRegistry::start()?;
        let private_registry = HtpasswdRegistry::start()?;
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path();
        let good = common::mklayout(&tmp.join("good"), COMMIT, SRC)["v1"].clone();
        let bad = common::mklayout(&tmp.join("bad"), OTHER_COMMIT, SRC)["v1"].clone();
        let private = common::mklayout(&tmp.join("private"), PRIVATE_COMMIT, SRC)["v1"].clone();
        registry.push(&tmp.join("good"), "v1", "demo/good:v1");
        registry.push(&tmp.join("bad"), "v1", "demo/bad:v1");
        registry.push(&tmp.join("bad"), "v1", "demo/good:old");
        private_registry.push(&tmp.join("private"), "v1", "private/app:v1");

        let policy_key = OpensslKey::generate(tmp, "policy", KeyKind::Ed25519);
        let builder = OpensslKey::generate(tmp, "builder", KeyKind::EcdsaP256);
        let stranger = OpensslKey::generate(tmp, "stranger", KeyKind::EcdsaP256);
        // `policy.json` wants the builder's signature; the candidate `strict.json` another
        // functionary's; `unsigned-by-trust.json` is signed by a key the config does not trust.
        for (file, functionary, signer) in [
            ("policy.json", &builder, &policy_key),
            ("strict.json", &stranger, &policy_key),
            ("unsigned-by-trust.json", &builder, &stranger),
        ] {
            let body = common::build_policy(functionary).to_string();
            std::fs::write(
                tmp.join(file),
                signer.envelope(POLICY_TYPE, body.as_bytes()),
            )
            .unwrap();
        }
        std::fs::create_dir(tmp.join("evidence")).unwrap();
        for (name, digest, commit) in [
            ("good", &good, COMMIT),
            ("private", &private, PRIVATE_COMMIT),
        ] {
            std::fs::write(
                tmp.join(format!("evidence/{name}.json")),
                common::image_evidence(&builder, hex(digest), commit, SRC),
            )
            .unwrap();
        }

        let host = registry.host.clone();
        let private_host = private_registry.registry.host.clone();
        let config = tmp.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "registry:
  insecure: [\"{host}\", \"{private_host}\"]
  maxRetries: 0
  pullSecrets:
    enabled: true
    refresh: 60s
kubernetes:
  kubeconfig: {kubeconfig}
  requestTimeout: 10s
policies:
  - name: build
    images: [\"{host}/demo/**\", \"{private_host}/private/**\"]
    policy: policy.json
    trust:
      publicKeys: [policy.pub.pem]
    evidence:
      directories: [evidence]
",
                kubeconfig = cluster.kubeconfig().display()
            ),
        )
        .unwrap();
        Some(Self {
            good: format!("{host}/demo/good:v1"),
            good_by_digest: format!("{host}/demo/good@{good}"),
            good_digest: good,
            bad: format!("{host}/demo/bad:v1"),
            bad_digest: bad,
            private: format!("{private_host}/private/app:v1"),
            private_by_digest: format!("{private_host}/private/app@{private}"),
            cluster,
            _registry: registry,
            private_registry,
            dir,
            config,
        })
    }

    /// `attestgate audit --config CONFIG --kubeconfig ADMIN` with `args`.
    fn audit(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "audit".to_string(),
            "--config".into(),
            self.config.display().to_string(),
            "--kubeconfig".into(),
            self.cluster.kubeconfig().display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        attestgate(self.dir.path(), all)
    }

    /// The records of `audit --output json` with `args`, and the exit code.
    fn audit_json(&self, args: &[&str]) -> (i32, Vec<Value>) {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let run = self.audit(&all);
        let records: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("audit JSON: {e}\n{}", run.text()));
        (run.code, records.as_array().unwrap().clone())
    }
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// `(namespace, KIND/NAME, image, judgedBy, digest, outcome)` of each record, sorted.
fn summary(records: &[Value]) -> Vec<(String, String, String, String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut rows: Vec<_> = records
        .iter()
        .map(|r| {
            (
                text(&r["namespace"]),
                format!(
                    "{}/{}",
                    text(&r["workload"]["kind"]),
                    text(&r["workload"]["name"])
                ),
                text(&r["image"]),
                text(&r["judgedBy"]),
                text(&r["digest"]),
                text(&r["outcome"]),
            )
        })
        .collect();
    rows.sort();
    rows
}

// ---------------------------------------------------------------------------------------------
// Objects

fn namespace(name: &str, mode: Option<&str>) -> Value {
    let mut labels = serde_json::Map::new();
    if let Some(mode) = mode {
        labels.insert("attestgate.dev/mode".into(), mode.into());
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn pod_spec(image: &str, extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn deployment(namespace: &str, name: &str, replicas: u32, spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
        }
    })
}

/// Namespaces, workloads and pull secrets; waits until the controllers made every Pod.
fn setup(w: &World) {
    let c = &w.cluster;
    for (name, mode) in [
        ("team-a", Some("enforce")),
        ("team-b", Some("warn")),
        ("team-c", Some("audit")),
        ("team-p", Some("enforce")),
        ("team-q", Some("enforce")),
        ("unlabelled", None),
    ] {
        c.apply(&namespace(name, mode));
    }
    for ns in ["team-a", "team-c", "team-p", "team-q"] {
        poll(
            &format!("the default service account of {ns}"),
            CATCH_UP,
            || {
                c.kubectl(&["-n", ns, "get", "serviceaccount", "default"], None)
                    .ok
                    .then_some(())
            },
        );
    }

    // team-a: a Deployment by tag, a StatefulSet by digest, a CronJob's Job.
    c.apply(&deployment(
        "team-a",
        "web",
        2,
        pod_spec(&w.good, json!({})),
    ));
    c.apply(&json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "team-a"},
        "spec": {
            "serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": pod_spec(&w.good_by_digest, json!({}))}
        }
    }));
    c.apply(&json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {
            "schedule": "0 3 * * *", "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": pod_spec(&w.good, json!({"restartPolicy": "Never"}))}}}
        }
    }));
    c.admin(
        &[
            "-n",
            "team-a",
            "create",
            "job",
            "nightly-manual",
            "--from=cronjob/nightly",
        ],
        None,
    );
    // team-b: a Deployment without evidence; unlabelled: another, out of the default scope.
    c.apply(&deployment(
        "team-b",
        "legacy",
        1,
        pod_spec(&w.bad, json!({})),
    ));
    c.apply(&deployment(
        "unlabelled",
        "hidden",
        1,
        pod_spec(&w.bad, json!({})),
    ));

    // team-c: a bare Pod whose tag says `good` but whose node reports the `bad` digest.
    c.apply(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "drifted", "namespace": "team-c"},
        "spec": {
            "initContainers": [{"name": "init", "image": w.good}],
            "containers": [{"name": "app", "image": w.good}]
        }
    }));
    let status = |name: &str, image_id: String| {
        json!({"name": name, "image": w.good, "imageID": image_id, "ready": false, "restartCount": 0,
               "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
    };
    let host = w.good.split('/').next().unwrap();
    let patch = json!({"status": {
        "initContainerStatuses": [status("init", format!("docker-pullable://{host}/demo/good@{}", w.good_digest))],
        "containerStatuses": [status("app", format!("{host}/demo/good@{}", w.bad_digest))]
    }});
    c.admin(
        &[
            "-n",
            "team-c",
            "patch",
            "pod",
            "drifted",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    );

    // team-p: the private image with the pod's secret, through a service account, and without.
    let secret = |namespace: &str, password: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred", "namespace": namespace},
            "stringData": {".dockerconfigjson": w.private_registry.docker_config(password)}
        })
    };
    c.apply(&secret("team-p", &w.private_registry.password));
    c.apply(&secret("team-q", "not-the-password"));
    c.apply(&json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "puller", "namespace": "team-p"},
        "imagePullSecrets": [{"name": "regcred"}]
    }));
    let with_secret = json!({"imagePullSecrets": [{"name": "regcred"}]});
    c.apply(&deployment(
        "team-p",
        "private-ok",
        1,
        pod_spec(&w.private, with_secret),
    ));
    c.apply(&deployment(
        "team-p",
        "private-sa",
        1,
        pod_spec(&w.private, json!({"serviceAccountName": "puller"})),
    ));
    c.apply(&deployment(
        "team-p",
        "private-nosecret",
        1,
        pod_spec(&w.private, json!({})),
    ));

    for (ns, selector, count) in [
        ("team-a", "app=web", 2),
        ("team-a", "app=db", 1),
        ("team-a", "job-name=nightly-manual", 1),
        ("team-b", "app=legacy", 1),
        ("unlabelled", "app=hidden", 1),
        ("team-p", "app=private-ok", 1),
        ("team-p", "app=private-sa", 1),
        ("team-p", "app=private-nosecret", 1),
    ] {
        c.wait_pods(ns, selector, count);
    }
}

// ---------------------------------------------------------------------------------------------
// Steps

type Row = (String, String, String, String, String, String);

fn row(ns: &str, workload: &str, image: &str, by: &str, digest: &str, outcome: &str) -> Row {
    (
        ns.into(),
        workload.into(),
        image.into(),
        by.into(),
        digest.into(),
        outcome.into(),
    )
}

/// Every record of the labelled namespaces, rolled up, with what runs where it is known.
fn default_scope(w: &World) {
    let (code, records) = w.audit_json(&[]);
    assert_eq!(code, 1, "something is denied: {records:#?}");
    let (good, bad, private) = (&w.good_digest, &w.bad_digest, {
        w.private_by_digest.rsplit_once('@').unwrap().1
    });
    let mut want = vec![
        row(
            "team-a",
            "CronJob/nightly",
            &w.good,
            "spec",
            good,
            "admitted",
        ),
        row(
            "team-a",
            "Deployment/web",
            &w.good,
            "spec",
            good,
            "admitted",
        ),
        row(
            "team-a",
            "StatefulSet/db",
            &w.good_by_digest,
            "spec",
            good,
            "admitted",
        ),
        row(
            "team-b",
            "Deployment/legacy",
            &w.bad,
            "spec",
            bad,
            "violation",
        ),
        row(
            "team-c",
            "Pod/drifted",
            &w.good,
            "running",
            bad,
            "violation",
        ),
        row(
            "team-c",
            "Pod/drifted",
            &w.good,
            "running",
            good,
            "admitted",
        ),
        row(
            "team-p",
            "Deployment/private-nosecret",
            &w.private,
            "spec",
            "",
            "error",
        ),
        row(
            "team-p",
            "Deployment/private-ok",
            &w.private,
            "spec",
            private,
            "admitted",
        ),
        row(
            "team-p",
            "Deployment/private-sa",
            &w.private,
            "spec",
            private,
            "admitted",
        ),
    ];
    want.sort();
    assert_eq!(summary(&records), want, "{records:#?}");

    // The Deployment's two Pods are one record; the running image is judged by its digest.
    let web = records
        .iter()
        .find(|r| r["workload"]["name"] == "web")
        .unwrap();
    assert_eq!(web["pods"].as_array().unwrap().len(), 2, "{web}");
    assert_eq!(web["locations"], json!(["containers[app]"]));
    let drifted_bad = records
        .iter()
        .find(|r| r["workload"]["name"] == "drifted" && r["outcome"] == "violation")
        .unwrap();
    assert_eq!(
        drifted_bad["judged"],
        format!("{}/demo/good@{bad}", w.good.split('/').next().unwrap())
    );
    assert_eq!(drifted_bad["imageId"], drifted_bad["judged"]);
    assert_eq!(drifted_bad["locations"], json!(["containers[app]"]));
    let drifted_good = records
        .iter()
        .find(|r| r["workload"]["name"] == "drifted" && r["outcome"] == "admitted")
        .unwrap();
    assert!(drifted_good["imageId"]
        .as_str()
        .unwrap()
        .starts_with("docker-pullable://"));
    assert_eq!(drifted_good["locations"], json!(["initContainers[init]"]));
    let nosecret = records
        .iter()
        .find(|r| r["workload"]["name"] == "private-nosecret")
        .unwrap();
    assert!(
        nosecret["reason"]
            .as_str()
            .unwrap()
            .contains("unauthorized"),
        "{nosecret}"
    );
    assert!(records
        .iter()
        .all(|r| r["namespace"] != "unlabelled" && r["namespace"] != "team-q"));

    // The table says the same in columns.
    let run = w.audit(&[]);
    assert_eq!(run.code, 1, "{}", run.text());
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "WORKLOAD",
            "IMAGE",
            "DIGEST",
            "DECISION",
            "REASON"
        ]
    );
    assert_eq!(lines.len(), 1 + want.len(), "{}", run.stdout);
    let short = |d: &str| format!("sha256:{}", &hex(d)[..12]);
    let drifted: Vec<&&str> = lines.iter().filter(|l| l.contains("Pod/drifted")).collect();
    assert!(
        drifted
            .iter()
            .any(|l| l.contains(&short(bad)) && l.contains(" DENY ")),
        "{}",
        run.stdout
    );
    assert!(
        lines.iter().any(|l| l.contains("Deployment/web")
            && l.contains(&short(good))
            && l.trim_end().ends_with("ADMIT")),
        "{}",
        run.stdout
    );
    println!("{}", run.stdout);
}

/// One namespace where everything passes exits 0; every namespace includes the unlabelled one.
fn namespaces(w: &World) {
    let (code, records) = w.audit_json(&["--namespace", "team-a"]);
    assert_eq!(code, 0, "{records:#?}");
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(records.iter().all(|r| r["outcome"] == "admitted"));

    let (code, records) = w.audit_json(&["--namespace", "unlabelled"]);
    assert_eq!(code, 1);
    assert_eq!(
        summary(&records),
        vec![row(
            "unlabelled",
            "Deployment/hidden",
            &w.bad,
            "spec",
            &w.bad_digest,
            "violation"
        )]
    );

    let (code, records) = w.audit_json(&["--all-namespaces"]);
    assert_eq!(code, 1);
    let namespaces: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        namespaces.into_iter().collect::<Vec<_>>(),
        ["team-a", "team-b", "team-c", "team-p", "unlabelled"]
    );

    // A misspelt namespace is an error, not "nothing would be denied" (exit 0).
    let run = w.audit(&["--namespace", "no-such-namespace", "--output", "json"]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr
            .contains("namespace no-such-namespace does not exist"),
        "{}",
        run.text()
    );
}

/// A candidate policy is judged with the config policy's trust before it is rolled out.
fn candidate_policy(w: &World) {
    let strict = w.dir.path().join("strict.json");
    let (code, records) = w.audit_json(&[
        "--namespace",
        "team-a",
        "--policy",
        &format!("build={}", strict.display()),
    ]);
    assert_eq!(code, 1, "{records:#?}");
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r["outcome"], "violation", "{r}");
        assert!(
            r["reason"].as_str().unwrap().contains("policy build"),
            "{r}"
        );
        let policy = r["policies"][0].as_str().unwrap();
        assert!(policy.starts_with("build@sha256:"), "{r}");
    }
    // The config's single policy is replaced by a bare FILE too.
    let (code, bare) = w.audit_json(&["--namespace", "team-a", "--policy", "strict.json"]);
    assert_eq!(code, 1);
    assert_eq!(bare[0]["policies"], records[0]["policies"]);
    // The config itself still admits them.
    assert_eq!(w.audit_json(&["--namespace", "team-a"]).0, 0);

    let run = w.audit(&["--policy", "nosuch=strict.json"]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains("no policy is named \"nosuch\""),
        "{}",
        run.stderr
    );
    let run = w.audit(&["--policy", "build=unsigned-by-trust.json"]);
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("policies[0].policy"), "{}", run.stderr);
}

/// `attestgate review` reads the pod's pull secret through the API: admitted with it, refused
/// by the registry without it.
fn review_with_pull_secrets(w: &World) {
    for (secrets, allowed) in [(json!([{"name": "regcred"}]), true), (json!([]), false)] {
        let review = admission_review("team-p", &w.private, secrets);
        let file = w.dir.path().join("review.json");
        std::fs::write(&file, review.to_string()).unwrap();
        let run = attestgate(
            w.dir.path(),
            [
                "review",
                "--config",
                w.config.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, if allowed { 0 } else { 1 }, "{}", run.text());
        let answer: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(answer["response"]["allowed"], allowed, "{answer}");
        if !allowed {
            let message = answer["response"]["status"]["message"].as_str().unwrap();
            assert!(message.contains("unauthorized"), "{message}");
        }
    }
    // A name that would walk to another namespace's secret is never requested: the tenant of
    // team-q does not get team-p's credentials (team-q's own `regcred` holds a wrong password).
    for name in [
        "../../team-p/secrets/regcred",
        "regcred/../../../team-p/secrets/regcred",
    ] {
        let review = admission_review("team-q", &w.private, json!([{"name": name}]));
        let file = w.dir.path().join("review.json");
        std::fs::write(&file, review.to_string()).unwrap();
        let run = attestgate(
            w.dir.path(),
            [
                "review",
                "--config",
                w.config.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(run.code, 1, "{name}: {}", run.text());
        assert!(
            run.stdout.contains("unauthorized"),
            "{name}: {}",
            run.stdout
        );
    }
}

fn admission_review(namespace: &str, image: &str, secrets: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5f1d8f3a-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "tenant"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": image}], "imagePullSecrets": secrets}
            }
        }
    })
}

/// In one process: what tenant A's secret obtained (a pass, then cached) is never served to a
/// tenant without it or with other credentials, by tag or by digest.
fn cached_pass_is_not_shared(w: &World) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = Arc::new(Config::load(&w.config).unwrap());
        let decider = Decider::new(config);
        let reader = decider.pull_secrets().expect("registry.pullSecrets is on");
        let deadline = || tokio::time::Instant::now() + Duration::from_secs(30);
        let pod = |secrets: &[&str], account: &str| PodPullSecrets {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            service_account: account.into(),
        };
        let tenant_a = reader
            .keyring("team-p", &pod(&["regcred"], "default"), deadline())
            .await
            .unwrap();
        assert!(!tenant_a.is_empty());
        let via_account = reader
            .keyring("team-p", &pod(&[], "puller"), deadline())
            .await
            .unwrap();
        assert_eq!(via_account, tenant_a);
        let none = reader
            .keyring("team-p", &pod(&[], "default"), deadline())
            .await
            .unwrap();
        assert!(none.is_empty());
        let missing = reader
            .keyring("team-p", &pod(&["no-such-secret"], "default"), deadline())
            .await
            .unwrap();
        assert!(missing.is_empty());
        let tenant_q = reader
            .keyring("team-q", &pod(&["regcred"], "default"), deadline())
            .await
            .unwrap();
        assert!(!tenant_q.is_empty());
        assert_ne!(tenant_q, tenant_a);

        let first = decider
            .decide_with(&w.private, Some(&tenant_a), deadline())
            .await;
        assert_eq!(first.outcome, Outcome::Admitted, "{first:?}");
        assert_eq!(first.cache, CacheUse::Miss);
        let again = decider
            .decide_with(&w.private_by_digest, Some(&tenant_a), deadline())
            .await;
        assert_eq!(
            (again.outcome, again.cache),
            (Outcome::Admitted, CacheUse::Hit)
        );

        for image in [&w.private, &w.private_by_digest] {
            for (who, keyring) in [
                ("no secret", Some(&none)),
                ("no keyring", None),
                ("team-q", Some(&tenant_q)),
            ] {
                let other = decider.decide_with(image, keyring, deadline()).await;
                match &other.outcome {
                    Outcome::Error(reason) => {
                        assert!(reason.contains("unauthorized"), "{who}: {reason}")
                    }
                    outcome => panic!("{who} {image}: {outcome:?}"),
                }
                assert_ne!(other.cache, CacheUse::Hit, "{who}");
            }
        }

        // The webhook's review path reads the pod's secrets the same way.
        let metrics = attestgate::server::Metrics::new();
        for (secrets, allowed) in [(json!([{"name": "regcred"}]), true), (json!([]), false)] {
            let body = admission_review("team-p", &w.private, secrets).to_string();
            let reply = attestgate::webhook::judge_review(
                Some(&decider),
                None,
                attestgate::admission::Mode::Enforce,
                body.as_bytes(),
                &metrics,
            )
            .await;
            let attestgate::server::Reply::Review(bytes) = reply else {
                panic!("not a review answer");
            };
            let answer: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(answer["response"]["allowed"], allowed, "{answer}");
        }
    });
}

#[test]
fn audit_and_pull_secrets_against_the_real_kube_apiserver() {
    if !require_peers(&CLUSTER_PEERS, "run .ci/peers-cluster.sh") {
        return;
    }
    let started = Instant::now();
    let cluster = Cluster::start();
    println!(
        "cluster started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let Some(world) = World::start(cluster) else {
        return;
    };
    let t = Instant::now();
    setup(&world);
    println!("setup took {:.1} s", t.elapsed().as_secs_f64());

    type Step = fn(&World);
    let steps: [(&str, Step); 5] = [
        (
            "1. the labelled namespaces, rolled up, by spec and by what runs",
            default_scope,
        ),
        ("2. --namespace and --all-namespaces", namespaces),
        ("3. a candidate policy that would deny", candidate_policy),
        (
            "4. attestgate review with and without the pod's pull secret",
            review_with_pull_secrets,
        ),
        (
            "5. a cached pass is never served to another tenant",
            cached_pass_is_not_shared,
        ),
    ];
    let mut failed = Vec::new();
    for (name, step) in steps {
        println!("step {name}");
        let t = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(&world)));
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
    assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Without a cluster

/// A small valid config over the repository's fixture policy, with `extra` YAML appended.
fn fixture_config(dir: &Path, extra: &str) -> PathBuf {
    let vector = common::root().join("tests/fixtures/vectors/d03-pass-two-steps-artifactsfrom");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "policies:
  - name: build
    images: [\"127.0.0.1:5000/example/**\"]
    policy: {}
    trust:
      publicKeys: [{}]
    evidence:
      directories: [{}]
{extra}",
            vector.join("policy-signed.json").display(),
            vector.join("policy-pubkey.pem").display(),
            vector.join("attestations").display(),
        ),
    )
    .unwrap();
    path
}

/// A kubeconfig for an API server on `server`, with no credentials.
fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: u
  user: {{}}
contexts:
- name: x
  context: {{cluster: c, user: u, namespace: default}}
current-context: x
"
        ),
    )
    .unwrap();
    path
}

#[test]
fn audit_exits_3_when_the_api_server_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture_config(dir.path(), "kubernetes:\n  requestTimeout: 3s\n");
    // A port of 127.0.0.1 where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = kubeconfig(dir.path(), &format!("https://127.0.0.1:{port}"));
    for scope in [&["--namespace", "team-a"][..], &[], &["--all-namespaces"]] {
        let mut args = vec![
            "audit",
            "--config",
            config.to_str().unwrap(),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ];
        args.extend_from_slice(scope);
        let run = attestgate(dir.path(), &args);
        assert_eq!(run.code, 3, "{scope:?}: {}", run.text());
        assert!(
            run.stderr.contains("the kubernetes api failed to list")
                || run
                    .stderr
                    .contains("the kubernetes api failed to get namespace"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
}

#[test]
fn audit_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture_config(dir.path(), "");
    let config = config.to_str().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let kc = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["-n", "a", "--all-namespaces"], "cannot be used with"),
        (&[], "no-such-kubeconfig"),
        (
            &["--policy", "other=p.json"],
            "no policy is named \"other\"",
        ),
        (&["--output", "yaml"], "invalid value"),
        (&["-n", "../kube-system"], "is not a namespace name"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["audit", "--config", config, "--kubeconfig", kc];
        args.extend_from_slice(extra);
        let run = attestgate(dir.path(), &args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.text());
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn pull_secret_and_kubernetes_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let load = |extra: &str| Config::load(&fixture_config(dir.path(), extra));

    let on =
        load("registry:\n  pullSecrets: {enabled: true}\nkubernetes:\n  kubeconfig: kc\n").unwrap();
    assert_eq!(
        on.pull_secrets.map(|p| p.refresh),
        Some(Duration::from_secs(60))
    );
    assert_eq!(on.kubernetes.kubeconfig, Some(dir.path().join("kc")));
    assert_eq!(on.kubernetes.request_timeout, Duration::from_secs(5));
    let off = load("registry:\n  pullSecrets: {enabled: false, refresh: 5s}\n").unwrap();
    assert_eq!(off.pull_secrets, None);
    assert_eq!(load("").unwrap().pull_secrets, None);
    let set = load("registry:\n  pullSecrets: {enabled: true, refresh: 90s}\n").unwrap();
    assert_eq!(
        set.pull_secrets.map(|p| p.refresh),
        Some(Duration::from_secs(90))
    );

    for (extra, needle) in [
        (
            "registry:\n  pullSecrets: {enabled: true, refresh: 0s}\n",
            "registry.pullSecrets.refresh: ",
        ),
        (
            "registry:\n  pullSecrets: {enabled: true, refresh: 2h}\n",
            "registry.pullSecrets.refresh: ",
        ),
        (
            "registry:\n  pullSecrets: {enabled: true, refreh: 1s}\n",
            "unknown field `refreh`",
        ),
        (
            "kubernetes:\n  requestTimeout: 0s\n",
            "kubernetes.requestTimeout: ",
        ),
        ("kubernetes:\n  context: x\n", "unknown field `context`"),
    ] {
        let error = load(extra).unwrap_err().to_string();
        assert!(error.contains(needle), "{extra}: {error}");
    }
}
