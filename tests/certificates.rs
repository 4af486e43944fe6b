#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Self-managed certificates (`server.selfManagedCertificates`) against a REAL kube-apiserver
//! (`tests/peers/start-cluster.sh`, on 127.0.0.1), with the chart's own Role, ClusterRole and
//! ValidatingWebhookConfiguration (`helm template --set selfManagedCertificates.enabled=true`).
//! Every request of attestgate is made as the tenant user of the test cluster, whose only rights
//! are the chart's Role and ClusterRole bound to its group: the narrowed RBAC is what is tested.
//!
//! Missing peers (kube-apiserver, kubectl, etcd, helm in `$ATTESTGATE_PEERS/bin`): the test
//! fails under `CI=true` and prints "skipped" elsewhere. Nothing but 127.0.0.1 is contacted, and
//! every client is given an explicit kubeconfig (never an inferred or in-cluster one).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use attestgate::cluster::certificates::{SecretChange, SelfManaged};
use attestgate::cluster::{connect, ApiSource};
use attestgate::config::SelfManagedCertificates;
use base64::Engine as _;
use common::{require_peers, run_tool, Cluster, Served};
use serde_json::Value;

const RELEASE: &str = "attestgate";
const NAMESPACE: &str = "attestgate-system";
const SECRET: &str = "attestgate-tls";
const HOST: &str = "attestgate.attestgate-system.svc";

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Steps of this test on the shared cluster.
impl Cluster {
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.admin(&all, None)).unwrap()
    }

    /// The Secret's values, decoded.
    fn secret(&self) -> BTreeMap<String, String> {
        let secret = self.json(&["-n", NAMESPACE, "get", "secret", SECRET]);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let bytes = unb64(v.as_str().unwrap());
                (k.clone(), String::from_utf8(bytes).unwrap())
            })
            .collect()
    }

    /// The caBundle of every webhook entry, still base64.
    fn ca_bundles(&self) -> Vec<String> {
        let config = self.json(&["get", "validatingwebhookconfiguration", RELEASE]);
        config["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }

    /// The test's attestgate client: the tenant, whose only rights are the chart's.
    async fn tenant_client(&self) -> kube::Client {
        connect(
            &ApiSource::Kubeconfig(self.path("KUBECONFIG_TENANT")),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    }
}

/// The chart's objects for self-managed certificates, as `helm template` renders them.
fn render_chart(helm: &Path) -> Vec<Value> {
    let chart = common::root().join("charts/attestgate");
    let out = run_tool(
        helm,
        &[
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            "1.35.4",
            "--set",
            "selfManagedCertificates.enabled=true",
        ],
        &[],
        None,
    );
    assert!(out.ok, "helm template:\n{}{}", out.stdout, out.stderr);
    let out = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.contains("PRIVATE KEY"), "a private key was rendered");
    out.split("\n---")
        .filter_map(|doc| serde_norway::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn settings(validity: Duration, renew_before: Duration) -> SelfManagedCertificates {
    SelfManagedCertificates {
        secret_name: SECRET.to_owned(),
        webhook_configuration_name: RELEASE.to_owned(),
        service_name: RELEASE.to_owned(),
        namespace: NAMESPACE.to_owned(),
        validity,
        renew_before,
        check_interval: Duration::from_secs(1),
    }
}

/// A TLS client that trusts only `ca_pem` reaches `addr` as the Service's name.
async fn connects(ca_pem: &str, addr: std::net::SocketAddr) -> Result<u16, String> {
    attestgate::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .resolve(HOST, addr)
        .timeout(Duration::from_secs(10));
    let roots: Vec<_> = reqwest::tls::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap();
    builder = builder.tls_certs_only(roots);
    let client = builder.build().unwrap();
    client
        .get(format!("https://{HOST}:{}/healthz", addr.port()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// Polls `check` every 100 ms for up to 30 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_ca_renew_it_and_need_only_the_narrowed_rbac() {
    let bin = common::peers_dir().join("bin");
    if !require_peers(
        &["etcd", "kube-apiserver", "kubectl", "helm"],
        "run .ci/peers-cluster.sh and .ci/chart-tools.sh",
    ) {
        return;
    }
    let cluster = Cluster::start_with(&["--no-controller-manager"]);
    let docs = render_chart(&bin.join("helm"));
    let group = cluster.env["TENANT_GROUP"].clone();

    // The chart's VWC, Role and ClusterRole; the bindings name the tenant's group instead of the
    // chart's ServiceAccount (there are no pods here).
    cluster.admin(&["create", "namespace", NAMESPACE], None);
    for kind in ["ValidatingWebhookConfiguration", "Role", "ClusterRole"] {
        let doc = docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str().is_some())
            .unwrap_or_else(|| panic!("the chart renders no {kind}"));
        cluster.admin(&["apply", "-f", "-"], Some(&doc.to_string()));
    }
    let role = format!("{RELEASE}-certificates");
    cluster.admin(
        &[
            "-n",
            NAMESPACE,
            "create",
            "rolebinding",
            "t",
            "--role",
            &role,
            "--group",
            &group,
        ],
        None,
    );
    cluster.admin(
        &[
            "create",
            "clusterrolebinding",
            "t",
            "--clusterrole",
            &role,
            "--group",
            &group,
        ],
        None,
    );
    assert!(cluster.ca_bundles().iter().all(String::is_empty));

    // RBAC: exactly the chart's rights.
    for (verb, what, ns, want) in [
        ("get", "secret/attestgate-tls", true, "yes"),
        ("update", "secret/attestgate-tls", true, "yes"),
        ("create", "secrets", true, "yes"),
        ("get", "secret/other", true, "no"),
        ("list", "secrets", true, "no"),
        ("create", "secrets", false, "no"),
        (
            "patch",
            "validatingwebhookconfiguration/attestgate",
            false,
            "yes",
        ),
        ("patch", "validatingwebhookconfiguration/other", false, "no"),
        ("list", "validatingwebhookconfigurations", false, "no"),
    ] {
        let namespace = if ns { NAMESPACE } else { "default" };
        let out = cluster.kubectl_with(
            &cluster.tenant_kubeconfig(),
            &["auth", "can-i", verb, what, "-n", namespace],
            None,
        );
        let out = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(
            out.lines().next().unwrap_or_default().trim(),
            want,
            "tenant can-i {verb} {what} in {namespace}"
        );
    }

    // 1. Two replicas at once, through the library: one creates, the other uses theirs.
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let replica = |i: usize, s: SelfManagedCertificates, client: kube::Client| {
        SelfManaged::new(
            client,
            s,
            dirs[i].path().join("tls.crt"),
            dirs[i].path().join("tls.key"),
            Duration::from_secs(10),
        )
    };
    let year = Duration::from_secs(365 * 86_400);
    let month = Duration::from_secs(30 * 86_400);
    let a = replica(0, settings(year, month), cluster.tenant_client().await);
    let b = replica(1, settings(year, month), cluster.tenant_client().await);
    let (ra, rb) = tokio::join!(a.reconcile(), b.reconcile());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.ca_bundle, rb.ca_bundle);
    assert_eq!(ra.certificate, rb.certificate);
    let mut changes = [ra.secret, rb.secret];
    changes.sort_by_key(|c| format!("{c:?}"));
    assert!(
        changes.contains(&SecretChange::Created)
            && (changes.contains(&SecretChange::CreatedElsewhere)
                || changes.contains(&SecretChange::Kept)),
        "{changes:?}"
    );
    let secret = cluster.secret();
    assert_eq!(secret["ca.crt"], ra.ca_bundle);
    assert_eq!(secret["tls.crt"], ra.certificate);
    for bundle in cluster.ca_bundles() {
        assert_eq!(unb64(&bundle), ra.ca_bundle.as_bytes());
    }
    for dir in &dirs[..2] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
            secret["tls.crt"]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.key")).unwrap(),
            secret["tls.key"]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    // A second pass changes nothing.
    let again = a.reconcile().await.unwrap();
    assert_eq!(again.secret, SecretChange::Kept);
    assert!(!again.files_written && !again.webhooks_patched);

    // 2. Two `attestgate serve` processes started together, after the Secret is gone.
    cluster.admin(&["-n", NAMESPACE, "delete", "secret", SECRET], None);
    let tenant = cluster.path("KUBECONFIG_TENANT");
    let configs: Vec<PathBuf> = (2..4)
        .map(|i| {
            let dir = dirs[i].path();
            let config = dir.join("config.yaml");
            std::fs::write(
                &config,
                format!(
                    "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  \
                     certFile: {d}/tls.crt\n  keyFile: {d}/tls.key\n  reloadInterval: 100ms\n  \
                     selfManagedCertificates:\n    secretName: {SECRET}\n    \
                     webhookConfigurationName: {RELEASE}\n    serviceName: {RELEASE}\n    \
                     namespace: {NAMESPACE}\n    validity: 2h\n    renewBefore: 1h\n    \
                     checkInterval: 1s\nkubernetes:\n  kubeconfig: {k}\n",
                    d = dir.display(),
                    k = tenant.display()
                ),
            )
            .unwrap();
            config
        })
        .collect();
    let kube_ca = std::fs::read_to_string(cluster.path("KUBE_CA")).unwrap();
    let servers: Vec<Served> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| {
                let ca = kube_ca.clone();
                scope.spawn(move || Served::start(c, &ca))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secret = cluster.secret();
    assert_ne!(secret["ca.crt"], ra.ca_bundle, "a new CA after the delete");
    for bundle in cluster.ca_bundles() {
        assert_eq!(unb64(&bundle), secret["ca.crt"].as_bytes());
    }
    for (i, server) in servers.iter().enumerate() {
        let cert = std::fs::read_to_string(dirs[i + 2].path().join("tls.crt")).unwrap();
        assert_eq!(cert, secret["tls.crt"], "replica {i}\n{}", server.log());
        let status = connects(&secret["ca.crt"], server.webhook).await;
        assert!(status.is_ok(), "replica {i}: {status:?}\n{}", server.log());
    }
    // A client trusting only the first (deleted) CA is refused.
    assert!(connects(&ra.ca_bundle, servers[0].webhook).await.is_err());

    // 3. renewBefore covering the leaf's lifetime (2h) but not the CA's (4h): a new leaf under
    // the same CA; the Secret and every replica's files follow.
    let hour = Duration::from_secs(3600);
    let renewer = replica(
        0,
        settings(2 * hour, 3 * hour),
        cluster.tenant_client().await,
    );
    let renewed = renewer.reconcile().await.unwrap();
    assert_eq!(renewed.secret, SecretChange::Renewed);
    assert_eq!(renewed.ca_bundle, secret["ca.crt"], "the CA is kept");
    assert_ne!(renewed.certificate, secret["tls.crt"]);
    assert!(!renewed.webhooks_patched);
    assert_eq!(cluster.secret()["tls.crt"], renewed.certificate);
    for dir in &dirs[2..4] {
        let file = dir.path().join("tls.crt");
        eventually("a replica writes the renewed leaf", || {
            std::fs::read_to_string(&file).is_ok_and(|c| c == renewed.certificate)
        });
    }

    // 4. renewBefore covering the CA's lifetime: a new CA, bundled in front of the old one;
    // the caBundle follows, and the replicas serve a leaf of the new CA.
    let rotator = replica(
        0,
        settings(2 * hour, 5 * hour),
        cluster.tenant_client().await,
    );
    let rotated = rotator.reconcile().await.unwrap();
    assert_eq!(rotated.secret, SecretChange::Renewed);
    assert!(rotated.webhooks_patched);
    assert_eq!(rotated.ca_bundle.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(rotated.ca_bundle.ends_with(secret["ca.crt"].as_str()));
    for bundle in cluster.ca_bundles() {
        assert_eq!(unb64(&bundle), rotated.ca_bundle.as_bytes());
    }
    let new_ca_only = rotated
        .ca_bundle
        .strip_suffix(secret["ca.crt"].as_str())
        .unwrap()
        .to_owned();
    for (i, server) in servers.iter().enumerate() {
        let file = dirs[i + 2].path().join("tls.crt");
        eventually("a replica writes the leaf of the new CA", || {
            std::fs::read_to_string(&file).is_ok_and(|c| c == rotated.certificate)
        });
        let start = Instant::now();
        loop {
            match connects(&new_ca_only, server.webhook).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "replica {i}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    // The key material never left the Secret: the webhook configuration holds certificates only.
    let config = cluster.admin(
        &[
            "get",
            "validatingwebhookconfiguration",
            RELEASE,
            "-o",
            "json",
        ],
        None,
    );
    assert!(!config.contains("PRIVATE KEY"));
    for bundle in cluster.ca_bundles() {
        assert!(!String::from_utf8(unb64(&bundle))
            .unwrap()
            .contains("PRIVATE KEY"));
    }
}
