#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The install: the Helm chart (`charts/attestgate`), the plain manifests rendered from it
//! (`manifests/`) and the `Dockerfile`.
//!
//! The chart tests call real tools: `helm` (v4, from `.ci/chart-tools.sh`), `kubernetes-validate`
//! (strict Kubernetes schemas for the minimum and the newest supported version) and `promtool`
//! (the alert rules' PromQL). Each is found through its variable (`HELM`, `KUBERNETES_VALIDATE`,
//! `PROMTOOL`), then `$ATTESTGATE_PEERS/bin` (default `~/.cache/attestgate-peers/bin`), then
//! `PATH`. A missing tool fails the test under `CI=true` and skips it (with a note) elsewhere.
//! The Dockerfile test needs no tool: no container engine runs here, so it reads the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde::Deserialize as _;
use serde_norway::Value;

/// The chart's minimum Kubernetes version (Chart.yaml `kubeVersion`: VAP v1 is GA in 1.30).
const MIN_KUBE: &str = "1.30.0";
/// The newest version whose schemas kubernetes-validate 1.37.0 ships.
const NEWEST_KUBE: &str = "1.37.0";
const KUBE_VERSIONS: [&str; 2] = [MIN_KUBE, NEWEST_KUBE];
const RELEASE: &str = "attestgate";
const NAMESPACE: &str = "attestgate-system";
const MODES: [&str; 3] = ["enforce", "warn", "audit"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts/attestgate")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Finds a tool; `None` (with a note) outside CI when it is missing, a failure in CI.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return Some(path);
    }
    let cache = std::env::var_os("ATTESTGATE_PEERS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/attestgate-peers"))
        });
    let mut candidates: Vec<PathBuf> = cache
        .into_iter()
        .map(|c| c.join("bin").join(name))
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    assert!(
        !in_ci(),
        "{name} is missing and CI=true: run .ci/chart-tools.sh (or set {var})"
    );
    eprintln!("skipped: {name} not found (run .ci/chart-tools.sh, or set {var})");
    None
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// helm, run with its own empty config, cache and data folders.
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn find() -> Option<Self> {
        let bin = tool("HELM", "helm")?;
        Some(Helm {
            bin,
            home: tempfile::tempdir().unwrap(),
        })
    }

    fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        Command::new(&self.bin)
            .args(args)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECONFIG", home.join("no-kubeconfig"))
            .output()
            .expect("helm runs")
    }

    /// `helm template` of the chart in the release namespace for one Kubernetes version.
    fn template(&self, kube: &str, extra: &[&str]) -> Output {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            kube,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn render(&self, kube: &str, extra: &[&str]) -> String {
        let out = self.template(kube, extra);
        assert!(
            out.status.success(),
            "helm template {extra:?} (Kubernetes {kube}) failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Asserts that rendering fails, and returns helm's message.
    fn refuse(&self, kube: &str, extra: &[&str]) -> String {
        let out = self.template(kube, extra);
        assert!(
            !out.status.success(),
            "helm template {extra:?} rendered, but should have been refused:\n{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }
}

/// The documents of a multi-document YAML stream (empty ones left out).
fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn one<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == wanted).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {wanted}, found {}",
        found.len()
    );
    found[0]
}

fn strs(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// The attestgate config file inside the chart's ConfigMap.
fn rendered_config(docs: &[Value]) -> (String, Value) {
    let configmap = docs
        .iter()
        .find(|d| kind(d) == "ConfigMap" && d["metadata"]["name"] == "attestgate-config")
        .expect("the config ConfigMap");
    let text = configmap["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_owned();
    let value = serde_norway::from_str(&text).expect("config.yaml parses");
    (text, value)
}

/// The options each render is validated under: (name, helm arguments).
fn scenarios(values_dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    let ca_bundle = ca_bundle_base64();
    let restricted = values_dir.join("restricted-egress.yaml");
    std::fs::write(
        &restricted,
        r#"
networkPolicy:
  egress:
    restrict: true
    registries:
      - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
        ports: [{port: 443, protocol: TCP}]
    archivista:
      - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: archivista}}}]
        ports: [{port: 8082}]
    apiServer:
      - to: [{ipBlock: {cidr: 198.51.100.10/32}}]
        ports: [{port: 6443}]
"#,
    )
    .unwrap();
    let policies = values_dir.join("policies.yaml");
    std::fs::write(&policies, policies_values()).unwrap();
    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        ("default", vec![]),
        ("cert-manager", s(&["--set", "certManager.enabled=true"])),
        (
            "cert-manager with an issuer",
            s(&[
                "--set",
                "certManager.enabled=true",
                "--set",
                "certManager.issuerRef.name=corporate-ca",
                "--set",
                "certManager.issuerRef.kind=ClusterIssuer",
            ]),
        ),
        (
            "own certificate and client CA",
            vec![
                "--set".into(),
                format!("tls.caBundle={ca_bundle}"),
                "--set".into(),
                "tls.secretName=my-serving-cert".into(),
                "--set".into(),
                "tls.clientCaSecretName=apiserver-client-ca".into(),
            ],
        ),
        (
            "pull secrets, cluster-wide",
            s(&["--set", "pullSecrets.enabled=true"]),
        ),
        (
            "pull secrets, listed namespaces",
            s(&[
                "--set",
                "pullSecrets.enabled=true",
                "--set",
                "pullSecrets.namespaces={team-a,team-b}",
            ]),
        ),
        (
            "monitoring",
            s(&[
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.prometheusRule.enabled=true",
                "--set",
                "metrics.dashboard.enabled=true",
            ]),
        ),
        (
            "restricted egress",
            vec!["-f".into(), restricted.display().to_string()],
        ),
        (
            "policies",
            vec!["-f".into(), policies.display().to_string()],
        ),
        (
            "namespace modes off, monitoring on",
            s(&[
                "--set",
                "namespaceModes.enabled=false",
                "--set",
                "metrics.prometheusRule.enabled=true",
            ]),
        ),
        (
            "no network policy, no label guard, no spread",
            s(&[
                "--set",
                "networkPolicy.enabled=false",
                "--set",
                "modeLabelAdmins.enabled=false",
                "--set",
                "spread.nodes=Disabled",
                "--set",
                "spread.zones=Disabled",
                "--set",
                "podDisruptionBudget.enabled=false",
            ]),
        ),
    ]
}

/// A CA certificate (never its key) as the base64 of its PEM, the way `tls.caBundle` wants it.
fn ca_bundle_base64() -> String {
    use base64::Engine as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    base64::engine::general_purpose::STANDARD.encode(cert.pem())
}

/// Values with a real signed policy (the d03 vector, by absolute path), so the server can load
/// the rendered config with its policy verified.
fn policies_values() -> String {
    let vector = root().join("tests/fixtures/vectors/d03-pass-two-steps-artifactsfrom");
    format!(
        r#"
policyConfigMap: attestgate-policies
policySecret: attestgate-secrets
extraVolumes:
  - name: evidence
    emptyDir: {{}}
extraVolumeMounts:
  - name: evidence
    mountPath: /var/lib/attestgate/evidence
config:
  deadline: 9s
  requireDigest: true
  policies:
    - name: example-apps
      images: [127.0.0.1:5000/example/**]
      policy: {vector}/policy-signed.json
      trust:
        publicKeys: [{vector}/policy-pubkey.pem]
      binding: digest
      evidence:
        directories: [{vector}/attestations]
  exceptions:
    - image: registry.k8s.io/pause
      reason: the sandbox image is built outside our pipeline
      owner: platform-team@example.com
      expires: "2099-06-30"
  registry:
    maxRetries: 0
"#,
        vector = vector.display()
    )
}

/// kubernetes-validate --strict for one Kubernetes version. Custom resources of cert-manager and
/// the Prometheus operator have no schema there (a WARN); any other WARN is an error, since a
/// misspelt apiVersion or kind shows up the same way.
fn validate(validator: &Path, file: &Path, kube: &str) {
    let out = Command::new(validator)
        .args(["--strict", "--quiet", "-k", kube])
        .arg(file)
        .output()
        .expect("kubernetes-validate runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "kubernetes-validate --strict -k {kube} {}:\n{stdout}{}",
        file.display(),
        text(&out.stderr)
    );
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let known_crd = line.starts_with("WARN ")
            && line.contains("Couldn't find schema for kind")
            && (line.contains("api version cert-manager.io/v1")
                || line.contains("api version monitoring.coreos.com/v1"));
        assert!(known_crd, "kubernetes-validate -k {kube}: {line}");
    }
}

fn assert_no_private_key(name: &str, rendered: &str) {
    assert!(
        !rendered.contains("PRIVATE KEY"),
        "{name}: the render holds a private key"
    );
    for doc in documents(rendered) {
        assert_ne!(kind(&doc), "Secret", "{name}: the chart renders a Secret");
    }
}

// ---------------------------------------------------------------------------------------------
// Lint, render and validate every option

#[test]
fn every_option_lints_renders_and_validates_on_the_minimum_and_newest_kubernetes() {
    let Some(helm) = Helm::find() else { return };
    let Some(validator) = tool("KUBERNETES_VALIDATE", "kubernetes-validate") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let chart = chart_dir();
    for (name, args) in scenarios(work.path()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for kube in KUBE_VERSIONS {
            let mut lint = vec![
                "lint",
                "--strict",
                chart.to_str().unwrap(),
                "--kube-version",
                kube,
            ];
            lint.extend_from_slice(&args);
            let out = helm.run(&lint);
            assert!(
                out.status.success(),
                "{name}: helm lint --strict (Kubernetes {kube}):\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            let rendered = helm.render(kube, &args);
            assert_no_private_key(name, &rendered);
            assert!(!documents(&rendered).is_empty(), "{name}: nothing rendered");
            let file = work
                .path()
                .join(format!("{}-{kube}.yaml", name.replace([' ', ','], "-")));
            std::fs::write(&file, &rendered).unwrap();
            validate(&validator, &file, kube);
        }
    }
}

#[test]
fn the_minimum_kubernetes_version_is_enforced() {
    let Some(helm) = Helm::find() else { return };
    let chart_yaml = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    assert!(
        chart_yaml.contains("kubeVersion: \">=1.30.0-0\""),
        "Chart.yaml kubeVersion"
    );
    let message = helm.refuse("1.29.0", &[]);
    assert!(message.contains("kubeVersion"), "{message}");
    helm.render(MIN_KUBE, &[]);
}

#[test]
fn typos_and_inconsistent_values_are_refused_at_render() {
    let Some(helm) = Helm::find() else { return };
    let private_key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    };
    let key_arg = format!("tls.caBundle={private_key}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--set", "replicaCount=two"], "replicaCount"),
        (vec!["--set-string", "replicaCount=2"], "replicaCount"),
        (vec!["--set", "replicas=3"], "'replicas' not allowed"),
        (vec!["--set", "image.tag=v1.0.0"], "'tag' not allowed"),
        (vec!["--set", "image.digest=v1.0.0"], "/image/digest"),
        (vec!["--set", "image.digest="], "/image/digest"),
        (
            vec![
                "--set",
                "image.repository=registry.example.com/attestgate:v1",
            ],
            "/image/repository",
        ),
        (
            vec![
                "--set",
                "image.repository=registry.example.com/attestgate@sha256:00",
            ],
            "/image/repository",
        ),
        (
            vec!["--set", "config.cache.decisionMaxBytes=1Mi"],
            "'decisionMaxBytes' not allowed",
        ),
        (
            vec!["--set", "config.server.listen=0.0.0.0:9443"],
            "'listen' not allowed",
        ),
        (
            vec!["--set", "config.webhookTimeoutSeconds=20"],
            "'webhookTimeoutSeconds' not allowed",
        ),
        (vec!["--set", "config.noMatch=maybe"], "/config/noMatch"),
        (vec!["--set", "config.deadline=soon"], "/config/deadline"),
        (
            vec!["--set", "webhook.failurePolicy.enforce=Ignor"],
            "/webhook/failurePolicy/enforce",
        ),
        (
            vec!["--set", "webhook.timeoutSeconds=31"],
            "/webhook/timeoutSeconds",
        ),
        (
            vec!["--set", "networkPolicy.egress.restict=true"],
            "'restict' not allowed",
        ),
        (
            vec!["--set", "metrics.serviceMonitor.enable=true"],
            "'enable' not allowed",
        ),
        (
            vec!["--set", "certManager.issuerRef.kind=Issuers"],
            "/certManager/issuerRef/kind",
        ),
        (
            vec!["--set", "namespaceModes.interval=often"],
            "/namespaceModes/interval",
        ),
        // Out of the server's range (1s to 1h): refused at install, not in a crash loop.
        (
            vec!["--set", "namespaceModes.interval=2h"],
            "/namespaceModes/interval",
        ),
        (
            vec!["--set", "namespaceModes.interval=0s"],
            "/namespaceModes/interval",
        ),
        (
            vec!["--set", "namespaceModes.enable=false"],
            "'enable' not allowed",
        ),
        (
            vec!["--set", "config.kubernetes.namespaceModes.enabled=true"],
            "'kubernetes' not allowed",
        ),
        // Consistency the schema cannot express, checked by the templates.
        (
            vec!["--set", "config.deadline=9.5s"],
            "config.deadline (9500 ms)",
        ),
        (
            vec!["--set", "config.deadline=9001ms"],
            "config.deadline (9001 ms)",
        ),
        (
            vec!["--set", "webhook.timeoutSeconds=5"],
            "config.deadline (8000 ms)",
        ),
        (
            vec!["--set", "config.cache.contentMaxBytes=512Mi"],
            "resources.limits.memory",
        ),
        (
            vec!["--set", "resources.limits.memory=256Mi"],
            "resources.limits.memory",
        ),
        (
            vec!["--set", "podDisruptionBudget.minAvailable=2"],
            "podDisruptionBudget.minAvailable",
        ),
        (vec!["--set", key_arg.as_str()], "private key"),
        (
            vec!["--set", "tls.caBundle=bm90IGEgY2VydGlmaWNhdGU="],
            "tls.caBundle",
        ),
    ];
    for (args, expected) in cases {
        let message = helm.refuse(MIN_KUBE, &args);
        assert!(
            message.contains(expected),
            "{args:?}: expected {expected:?} in:\n{message}"
        );
    }
    // The boundaries themselves pass: the server accepts a deadline of exactly the timeout less 1 s.
    helm.render(MIN_KUBE, &["--set", "config.deadline=9s"]);
    helm.render(
        MIN_KUBE,
        &[
            "--set",
            "webhook.timeoutSeconds=30",
            "--set",
            "config.deadline=29s",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// What the default render holds

#[test]
fn the_webhook_configuration_has_one_entry_per_mode() {
    let Some(helm) = Helm::find() else { return };
    for namespace in [NAMESPACE, "kube-system"] {
        let chart = chart_dir();
        let out = helm.run(&[
            "template",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            namespace,
            "--kube-version",
            MIN_KUBE,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let docs = documents(&text(&out.stdout));
        let config = one(&docs, "ValidatingWebhookConfiguration");
        let service = one(&docs, "Service");
        let (_, attestgate_config) = rendered_config(&docs);
        let webhooks = config["webhooks"].as_sequence().expect("webhooks");
        assert_eq!(webhooks.len(), 3);
        let mut seen = BTreeSet::new();
        for (webhook, mode) in webhooks.iter().zip(MODES) {
            seen.insert(webhook["name"].as_str().unwrap().to_owned());
            assert_eq!(webhook["name"], format!("{mode}.attestgate.dev").as_str());
            let service_ref = &webhook["clientConfig"]["service"];
            assert_eq!(service_ref["path"], format!("/validate/{mode}").as_str());
            assert_eq!(service_ref["name"], service["metadata"]["name"]);
            assert_eq!(service_ref["namespace"], namespace);
            assert_eq!(service_ref["port"], service["spec"]["ports"][0]["port"]);
            assert_eq!(service["spec"]["ports"][0]["targetPort"], "https");
            let expected_policy = if mode == "enforce" { "Fail" } else { "Ignore" };
            assert_eq!(webhook["failurePolicy"], expected_policy, "{mode}");
            assert_eq!(webhook["sideEffects"], "None");
            assert_eq!(strs(&webhook["admissionReviewVersions"]), ["v1"]);
            assert_eq!(webhook["timeoutSeconds"], 10);
            assert_eq!(
                webhook["timeoutSeconds"], attestgate_config["webhookTimeoutSeconds"],
                "the server's webhookTimeoutSeconds is the webhook's timeoutSeconds"
            );
            assert!(
                webhook["clientConfig"].get("caBundle").is_none(),
                "no caBundle by default"
            );

            let expressions = webhook["namespaceSelector"]["matchExpressions"]
                .as_sequence()
                .unwrap();
            assert!(webhook["namespaceSelector"].get("matchLabels").is_none());
            // enforce takes every value of the label but warn and audit (an unknown value is
            // enforced); warn and audit take their own value only.
            let mode_expressions = if mode == "enforce" {
                assert_eq!(expressions.len(), 3);
                assert_eq!(expressions[0]["key"], "attestgate.dev/mode");
                assert_eq!(expressions[0]["operator"], "Exists");
                assert!(expressions[0].get("values").is_none());
                assert_eq!(expressions[1]["key"], "attestgate.dev/mode");
                assert_eq!(expressions[1]["operator"], "NotIn");
                assert_eq!(strs(&expressions[1]["values"]), ["warn", "audit"]);
                2
            } else {
                assert_eq!(expressions.len(), 2);
                assert_eq!(expressions[0]["key"], "attestgate.dev/mode");
                assert_eq!(expressions[0]["operator"], "In");
                assert_eq!(strs(&expressions[0]["values"]), [mode]);
                1
            };
            let names = &expressions[mode_expressions];
            assert_eq!(names["key"], "kubernetes.io/metadata.name");
            assert_eq!(names["operator"], "NotIn");
            let excluded: BTreeSet<String> = strs(&names["values"]).into_iter().collect();
            let wanted: BTreeSet<String> = ["kube-system", namespace]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            assert_eq!(
                excluded, wanted,
                "kube-system and the release namespace are left out"
            );

            let mut resources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for rule in webhook["rules"].as_sequence().unwrap() {
                assert_eq!(strs(&rule["operations"]), ["CREATE", "UPDATE"]);
                assert_eq!(strs(&rule["apiVersions"]), ["v1"]);
                assert_eq!(rule["scope"], "Namespaced");
                for group in strs(&rule["apiGroups"]) {
                    resources
                        .entry(group)
                        .or_default()
                        .extend(strs(&rule["resources"]));
                }
            }
            let expected: BTreeMap<String, BTreeSet<String>> = [
                (
                    "",
                    vec![
                        "pods",
                        "pods/ephemeralcontainers",
                        "replicationcontrollers",
                        "podtemplates",
                    ],
                ),
                (
                    "apps",
                    vec!["deployments", "replicasets", "statefulsets", "daemonsets"],
                ),
                ("batch", vec!["jobs", "cronjobs"]),
            ]
            .into_iter()
            .map(|(g, r)| (g.to_owned(), r.into_iter().map(str::to_owned).collect()))
            .collect();
            assert_eq!(resources, expected, "{mode}: the rules");
        }
        assert_eq!(seen.len(), 3, "entry names are unique");
    }
}

#[test]
fn cert_manager_injects_the_ca_and_a_user_ca_bundle_is_used_as_given() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(MIN_KUBE, &["--set", "certManager.enabled=true"]));
    let webhook_config = one(&docs, "ValidatingWebhookConfiguration");
    assert_eq!(
        webhook_config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "attestgate-system/attestgate-serving"
    );
    let certificates: Vec<&Value> = docs.iter().filter(|d| kind(d) == "Certificate").collect();
    let serving = certificates
        .iter()
        .find(|c| c["metadata"]["name"] == "attestgate-serving")
        .expect("the serving Certificate");
    assert_eq!(serving["spec"]["secretName"], "attestgate-tls");
    assert_eq!(
        strs(&serving["spec"]["dnsNames"]),
        [
            "attestgate.attestgate-system.svc",
            "attestgate.attestgate-system.svc.cluster.local"
        ]
    );
    let deployment = one(&docs, "Deployment");
    let tls_volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(tls_volume["secret"]["secretName"], "attestgate-tls");

    let bundle = ca_bundle_base64();
    let docs = documents(&helm.render(MIN_KUBE, &["--set", &format!("tls.caBundle={bundle}")]));
    let webhook_config = one(&docs, "ValidatingWebhookConfiguration");
    assert!(webhook_config["metadata"].get("annotations").is_none());
    for webhook in webhook_config["webhooks"].as_sequence().unwrap() {
        assert_eq!(webhook["clientConfig"]["caBundle"], bundle.as_str());
    }
}

#[test]
fn the_deployment_is_hardened_spread_and_pinned_by_digest() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(MIN_KUBE, &[]));
    let deployment = one(&docs, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    // Mounted for namespaceModes (on by default); see the namespace-mode RBAC test.
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let spread = pod["topologySpreadConstraints"].as_sequence().unwrap();
    assert!(spread
        .iter()
        .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
            && c["whenUnsatisfiable"] == "DoNotSchedule"));

    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let image = container["image"].as_str().unwrap();
    let (repository, digest) = image.split_once('@').expect("image pinned by digest");
    assert!(
        !repository.rsplit('/').next().unwrap().contains(':'),
        "no tag: {image}"
    );
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{image}"
    );
    assert_eq!(strs(&container["command"]), ["/attestgate"]);
    assert_eq!(
        strs(&container["args"]),
        ["serve", "--config", "/etc/attestgate/config.yaml"]
    );

    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    let ports: BTreeMap<String, u64> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["https"], 8443);
    assert_eq!(ports["http-health"], 8080);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"],
        "http-health"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http-health");

    // The config, TLS and the server's own addresses agree.
    let (_, config) = rendered_config(&docs);
    assert_eq!(config["server"]["listen"], "0.0.0.0:8443");
    assert_eq!(config["server"]["healthListen"], "0.0.0.0:8080");
    assert_eq!(config["server"]["certFile"], "/etc/attestgate/tls/tls.crt");
    assert_eq!(config["server"]["keyFile"], "/etc/attestgate/tls/tls.key");
    let mounts: BTreeMap<String, String> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(mounts["/etc/attestgate"], "config");
    assert_eq!(mounts["/etc/attestgate/tls"], "tls");

    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );

    // Narrowest RBAC: by default only list on namespaces (namespaceModes, tested on its own).
    for doc in &docs {
        if ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"].contains(&kind(doc)) {
            assert_eq!(
                doc["metadata"]["name"],
                "attestgate-namespaces",
                "unexpected RBAC: {}",
                kind(doc)
            );
        }
    }
}

#[test]
fn memory_is_sized_from_the_cache_caps() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(MIN_KUBE, &[]));
    let (_, config) = rendered_config(&docs);
    let size = |v: &Value| -> u64 {
        let t = v.as_str().unwrap();
        let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        n.parse::<u64>().unwrap()
            * match unit {
                "Ki" => 1 << 10,
                "Mi" => 1 << 20,
                "Gi" => 1 << 30,
                "" => 1,
                other => panic!("unit {other}"),
            }
    };
    let cache = &config["cache"];
    let caches = size(&cache["decisionsMaxBytes"])
        + size(&cache["contentMaxBytes"])
        + size(&cache["evidenceMaxBytes"]);
    let container = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let limit = size(&container["resources"]["limits"]["memory"]);
    let request = size(&container["resources"]["requests"]["memory"]);
    assert!(
        limit >= caches * 5 / 4 + (192 << 20),
        "limit {limit} for caches {caches}"
    );
    assert_eq!(request, limit, "memory: the request is the limit");
    // Raising the caches without the memory is refused; raising both renders.
    helm.refuse(MIN_KUBE, &["--set", "config.cache.evidenceMaxBytes=256Mi"]);
    helm.render(
        MIN_KUBE,
        &[
            "--set",
            "config.cache.evidenceMaxBytes=256Mi",
            "--set",
            "resources.limits.memory=640Mi",
            "--set",
            "resources.requests.memory=640Mi",
        ],
    );
}

#[test]
fn network_policy_opens_the_webhook_and_restricts_metrics() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(MIN_KUBE, &[]));
    let policy = one(&docs, "NetworkPolicy");
    let ingress = policy["spec"]["ingress"].as_sequence().unwrap();
    let webhook_rule = ingress
        .iter()
        .find(|r| r["ports"][0]["port"] == "https")
        .unwrap();
    assert!(
        webhook_rule.get("from").is_none(),
        "8443 is open to the API server, wherever it is"
    );
    let metrics_rule = ingress
        .iter()
        .find(|r| r["ports"][0]["port"] == "http-health")
        .unwrap();
    assert_eq!(
        metrics_rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(policy["spec"]["egress"].as_sequence().unwrap().len(), 1);
    assert!(
        policy["spec"]["egress"][0].as_mapping().unwrap().is_empty(),
        "egress allowed"
    );

    let docs = documents(&helm.render(MIN_KUBE, &["--set", "networkPolicy.egress.restrict=true"]));
    let policy = one(&docs, "NetworkPolicy");
    let egress = policy["spec"]["egress"].as_sequence().unwrap();
    assert_eq!(egress.len(), 1, "DNS only");
    assert_eq!(egress[0]["ports"][0]["port"], 53);
}

#[test]
fn pull_secret_rbac_is_get_only_and_only_when_asked() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(
        MIN_KUBE,
        &[
            "--set",
            "pullSecrets.enabled=true",
            "--set",
            "pullSecrets.namespaces={team-a,team-b}",
        ],
    ));
    let role = named(&docs, "ClusterRole", "attestgate-pull-secrets");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(strs(&rules[0]["verbs"]), ["get"]);
    assert_eq!(strs(&rules[0]["resources"]), ["secrets", "serviceaccounts"]);
    let bindings: Vec<&Value> = docs.iter().filter(|d| kind(d) == "RoleBinding").collect();
    let namespaces: Vec<&str> = bindings
        .iter()
        .map(|b| b["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b"]);
    assert!(docs
        .iter()
        .all(|d| kind(d) != "ClusterRoleBinding"
            || d["metadata"]["name"] != "attestgate-pull-secrets"));
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
}

/// The one object of `kind` named `name`.
fn named<'a>(docs: &'a [Value], kind_wanted: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == kind_wanted && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind_wanted} {name}");
    found[0]
}

#[test]
fn namespace_modes_list_namespaces_only_and_can_be_turned_off() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(MIN_KUBE, &[]));
    let role = named(&docs, "ClusterRole", "attestgate-namespaces");
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(strs(&rules[0]["apiGroups"]), [""]);
    assert_eq!(strs(&rules[0]["resources"]), ["namespaces"]);
    assert_eq!(strs(&rules[0]["verbs"]), ["list"]);
    assert!(rules[0].get("resourceNames").is_none());
    let binding = named(&docs, "ClusterRoleBinding", "attestgate-namespaces");
    assert_eq!(binding["roleRef"]["name"], "attestgate-namespaces");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], "attestgate");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    // The default render grants nothing else in the cluster.
    let cluster_roles: Vec<&str> = docs
        .iter()
        .filter(|d| kind(d) == "ClusterRole" || kind(d) == "Role")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(cluster_roles, ["attestgate-namespaces"]);
    let (_, config) = rendered_config(&docs);
    assert_eq!(config["kubernetes"]["namespaceModes"]["enabled"], true);
    assert_eq!(config["kubernetes"]["namespaceModes"]["interval"], "60s");
    assert!(
        config["kubernetes"].get("kubeconfig").is_none(),
        "in-cluster"
    );
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );

    let docs = documents(&helm.render(MIN_KUBE, &["--set", "namespaceModes.interval=5m"]));
    let (_, config) = rendered_config(&docs);
    assert_eq!(config["kubernetes"]["namespaceModes"]["interval"], "5m");

    // Off: no RBAC at all, no token, no key in the config.
    let docs = documents(&helm.render(MIN_KUBE, &["--set", "namespaceModes.enabled=false"]));
    assert!(
        docs.iter().all(|d| !kind(d).contains("Role")),
        "RBAC without namespaceModes"
    );
    let (_, config) = rendered_config(&docs);
    assert!(config.get("kubernetes").is_none(), "{config:?}");
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    assert_eq!(
        one(&docs, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
}

#[test]
fn the_mode_label_guard_binds_the_configured_group() {
    let Some(helm) = Helm::find() else { return };
    let docs = documents(&helm.render(
        MIN_KUBE,
        &["--set", "modeLabelAdmins.group=platform:admins"],
    ));
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1");
    let rules = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(
        strs(&rules["resources"]),
        ["namespaces", "namespaces/status", "namespaces/finalize"]
    );
    // No matchConditions: the policy sees every namespace write, the admins' too (the label
    // value check applies to everyone); the group only lifts the who-may-change check.
    assert!(policy["spec"].get("matchConditions").is_none());
    let variables = policy["spec"]["variables"].as_sequence().unwrap();
    let admin = variables
        .iter()
        .find(|v| v["name"] == "modeLabelAdmin")
        .expect("a modeLabelAdmin variable");
    assert_eq!(
        admin["expression"],
        r#""platform:admins" in request.userInfo.groups"#
    );
    let validations = policy["spec"]["validations"].as_sequence().unwrap();
    assert_eq!(validations.len(), 2);
    assert!(validations[0]["expression"]
        .as_str()
        .unwrap()
        .starts_with("variables.modeLabelAdmin ||"));
    assert_eq!(validations[0]["reason"], "Forbidden");
    assert!(validations[1]["expression"]
        .as_str()
        .unwrap()
        .contains("['enforce', 'warn', 'audit']"));
    assert_eq!(validations[1]["reason"], "Invalid");
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(strs(&binding["spec"]["validationActions"]), ["Deny"]);
}

#[test]
fn notes_explain_the_check_and_the_break_glass() {
    let Some(helm) = Helm::find() else { return };
    let chart = chart_dir();
    let out = helm.run(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let notes = stdout.split("NOTES:").nth(1).expect("NOTES");
    for needle in [
        "kubectl label namespace attestgate-try attestgate.dev/mode=warn",
        "kubectl label namespace NAMESPACE attestgate.dev/mode=audit --overwrite",
        "kubectl delete validatingwebhookconfiguration attestgate",
        "image.digest is the chart's placeholder",
        "no caBundle",
        "kubectl get ns -L attestgate.dev/mode",
        r#"attestgate_namespaces{mode="unknown"} counts them"#,
    ] {
        assert!(notes.contains(needle), "NOTES lacks {needle:?}:\n{notes}");
    }
}

// ---------------------------------------------------------------------------------------------
// The chart's config is the server's config

/// Runs `attestgate review` on a Pod with the given config; returns its exit code and output.
fn review_with(config_dir: &Path, config: &str) -> (i32, String) {
    std::fs::write(config_dir.join("config.yaml"), config).unwrap();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7d2c1c4e-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "demo", "namespace": "team-a"},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/team/app@sha256:4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689"}]}
            }
        }
    });
    let request = config_dir.join("review.json");
    std::fs::write(&request, review.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_attestgate"))
        .args(["review", "--config"])
        .arg(config_dir.join("config.yaml"))
        .args(["--mode", "audit"])
        .arg(&request)
        .output()
        .expect("attestgate runs");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn the_server_loads_the_config_the_chart_renders() {
    let Some(helm) = Helm::find() else { return };
    let work = tempfile::tempdir().unwrap();
    let values = work.path().join("policies.yaml");
    std::fs::write(&values, policies_values()).unwrap();
    for args in [
        vec![],
        vec!["-f", values.to_str().unwrap()],
        vec![
            "--set",
            "webhook.timeoutSeconds=30",
            "--set",
            "config.deadline=29s",
        ],
    ] {
        let docs = documents(&helm.render(MIN_KUBE, &args));
        let (config, _) = rendered_config(&docs);
        let (code, output) = review_with(work.path(), &config);
        assert_eq!(
            code, 0,
            "{args:?}: the server refuses the chart's config:\n{output}\n{config}"
        );
        assert!(output.contains("\"allowed\": true"), "{output}");
    }
    // Where the chart draws the deadline line, the server draws it too.
    let docs = documents(&helm.render(MIN_KUBE, &["--set", "config.deadline=9s"]));
    let (config, _) = rendered_config(&docs);
    assert_eq!(review_with(work.path(), &config).0, 0);
    let over = config.replace("deadline: 9s", "deadline: 9.5s");
    assert_ne!(over, config);
    let (code, output) = review_with(work.path(), &over);
    assert_eq!(
        code, 2,
        "the server accepts what the chart refuses:\n{output}"
    );
    assert!(output.contains("deadline"), "{output}");
}

// ---------------------------------------------------------------------------------------------
// Monitoring

#[test]
fn alert_rules_are_valid_promql_and_the_dashboard_is_json() {
    let Some(helm) = Helm::find() else { return };
    let Some(promtool) = tool("PROMTOOL", "promtool") else {
        return;
    };
    let docs = documents(&helm.render(
        MIN_KUBE,
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.dashboard.enabled=true",
        ],
    ));
    let rule = one(&docs, "PrometheusRule");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("rules.yaml");
    std::fs::write(&file, serde_norway::to_string(&rule["spec"]).unwrap()).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let rules: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .collect();
    let exprs: BTreeMap<&str, &str> = rules
        .iter()
        .map(|r| (r["alert"].as_str().unwrap(), r["expr"].as_str().unwrap()))
        .collect();
    for (alert, metric) in [
        (
            "AttestgatePolicyExpiringSoon",
            "attestgate_policy_expiry_timestamp_seconds",
        ),
        (
            "AttestgateServingCertificateExpiringSoon",
            "attestgate_serving_certificate_expiry_timestamp_seconds",
        ),
        ("AttestgateWebhookErrors", "decision=\"error\""),
        ("AttestgateDenialSpike", "decision=\"denied\""),
        (
            "AttestgateUpstreamErrors",
            "attestgate_upstream_errors_total",
        ),
        (
            "AttestgateConfigReloadFailing",
            "attestgate_config_reload_failing",
        ),
        (
            "AttestgateNamespaceModeUnknown",
            "attestgate_namespaces{namespace=\"attestgate-system\", mode=\"unknown\"}) > 0",
        ),
        (
            "AttestgateNamespaceModesStale",
            "attestgate_namespace_modes_refresh_failing",
        ),
    ] {
        assert!(
            exprs.get(alert).is_some_and(|e| e.contains(metric)),
            "{alert}: {exprs:?}"
        );
    }
    assert!(
        exprs["AttestgatePolicyExpiringSoon"].contains("1209600"),
        "14 days"
    );
    let unknown = rules
        .iter()
        .find(|r| r["alert"] == "AttestgateNamespaceModeUnknown")
        .unwrap();
    assert_eq!(unknown["for"], "10m");
    let description = unknown["annotations"]["description"].as_str().unwrap();
    for needle in ["judged as enforce", "kubectl get ns -L attestgate.dev/mode"] {
        assert!(description.contains(needle), "{description}");
    }
    // Without the count, no alert on it (it would never have data).
    let off = documents(&helm.render(
        MIN_KUBE,
        &[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "namespaceModes.enabled=false",
            "--set",
            "metrics.prometheusRule.unknownModeFor=30m",
        ],
    ));
    let off_rules = serde_norway::to_string(&one(&off, "PrometheusRule")["spec"]).unwrap();
    assert!(!off_rules.contains("attestgate_namespace"), "{off_rules}");
    let longer = documents(&helm.render(
        MIN_KUBE,
        &[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.prometheusRule.unknownModeFor=30m",
        ],
    ));
    let longer = one(&longer, "PrometheusRule")["spec"]["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "AttestgateNamespaceModeUnknown")
        .unwrap()
        .clone();
    assert_eq!(longer["for"], "30m");

    // Every metric the rules and the dashboard name is one the server exports.
    let exported = exported_metric_names();
    let dashboard = docs
        .iter()
        .find(|d| kind(d) == "ConfigMap" && d["metadata"]["name"] == "attestgate-dashboard")
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(dashboard["data"]["attestgate.json"].as_str().unwrap()).unwrap();
    let mut queries: Vec<String> = exprs.values().map(|s| (*s).to_owned()).collect();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for query in &queries {
        for name in metric_names(query) {
            assert!(
                exported.contains(&name),
                "{name} (in {query}) is not exported by the server"
            );
        }
    }
}

/// The metric families the server registers, read from `src/server/metrics.rs`.
fn exported_metric_names() -> BTreeSet<String> {
    let source = std::fs::read_to_string(root().join("src/server/metrics.rs")).unwrap();
    let mut names = BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(at) = rest.find("registry.register(") {
        rest = &rest[at + "registry.register(".len()..];
        let start = rest.find('"').unwrap() + 1;
        let end = start + rest[start..].find('"').unwrap();
        let name = format!("attestgate_{}", &rest[start..end]);
        for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
            names.insert(format!("{name}{suffix}"));
        }
        rest = &rest[end..];
    }
    assert!(names.len() > 20, "metric names found: {names:?}");
    names
}

fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("attestgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

// ---------------------------------------------------------------------------------------------
// manifests/

#[test]
fn manifests_match_the_chart_and_hold_no_secret() {
    let Some(helm) = Helm::find() else { return };
    let out = Command::new("bash")
        .arg(root().join("scripts/render-manifests.sh"))
        .arg("--check")
        .env("HELM", &helm.bin)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "manifests/ and the chart differ (run scripts/render-manifests.sh):\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let manifests = std::fs::read_to_string(root().join("manifests/attestgate.yaml")).unwrap();
    assert_no_private_key("manifests/attestgate.yaml", &manifests);
    let docs = documents(&manifests);
    assert_eq!(kind(&docs[0]), "Namespace");
    assert_eq!(docs[0]["metadata"]["name"], NAMESPACE);
    one(&docs, "ValidatingWebhookConfiguration");
    one(&docs, "Deployment");
    if let Some(validator) = tool("KUBERNETES_VALIDATE", "kubernetes-validate") {
        for kube in KUBE_VERSIONS {
            validate(&validator, &root().join("manifests/attestgate.yaml"), kube);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile (read, not built: no container engine runs here)

struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

/// The Dockerfile's stages, with continuation lines joined and comments dropped.
fn dockerfile() -> (Vec<(String, String)>, Vec<Stage>) {
    static TEXT: OnceLock<String> = OnceLock::new();
    let source = TEXT.get_or_init(|| std::fs::read_to_string(root().join("Dockerfile")).unwrap());
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in source.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut global = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (op, args) = line.split_once(' ').unwrap_or((&line, ""));
        let (op, args) = (op.to_ascii_uppercase(), args.trim().to_owned());
        if op == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = (words.len() == 3 && words[1].eq_ignore_ascii_case("AS"))
                .then(|| words[2].to_owned());
            stages.push(Stage {
                from: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((op, args));
        } else {
            global.push((op, args));
        }
    }
    (global, stages)
}

#[test]
fn dockerfile_builds_locked_with_the_pinned_toolchain_into_a_small_nonroot_image() {
    let (global, stages) = dockerfile();
    assert!(stages.len() >= 2, "multi-stage");

    // The toolchain is the one rust-toolchain.toml pins.
    let toolchain = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let rust_version = global
        .iter()
        .find_map(|(op, args)| {
            (op == "ARG")
                .then(|| args.strip_prefix("RUST_VERSION="))
                .flatten()
        })
        .expect("ARG RUST_VERSION=");
    assert_eq!(
        rust_version, channel,
        "Dockerfile RUST_VERSION vs rust-toolchain.toml"
    );
    let builder = &stages[0];
    assert!(
        builder
            .from
            .starts_with("docker.io/library/rust:${RUST_VERSION}-"),
        "builder: {}",
        builder.from
    );
    let builder_name = builder.name.clone().expect("the builder stage is named");
    let build = builder
        .instructions
        .iter()
        .find(|(op, args)| op == "RUN" && args.contains("cargo build"))
        .expect("a cargo build");
    for flag in ["--release", "--locked"] {
        assert!(
            build.1.contains(flag),
            "cargo build without {flag}: {}",
            build.1
        );
    }

    // The final stage: distroless or scratch, non-root, the binary as entrypoint.
    let last = stages.last().unwrap();
    assert!(
        last.from.starts_with("gcr.io/distroless/static")
            || last.from.starts_with("gcr.io/distroless/cc")
            || last.from == "scratch",
        "final stage: {}",
        last.from
    );
    if builder.from.ends_with("-bookworm") && last.from.starts_with("gcr.io/distroless/cc") {
        assert!(
            last.from.contains("debian12"),
            "glibc: a bookworm build runs on debian12, not {}",
            last.from
        );
    }
    let users: Vec<&String> = last
        .instructions
        .iter()
        .filter(|(op, _)| op == "USER")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(users.len(), 1, "one USER in the final stage");
    let uid: u32 = users[0]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric uid (runAsNonRoot checks it)");
    assert_eq!(uid, 65532);
    let entrypoint = last
        .instructions
        .iter()
        .find(|(op, _)| op == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    assert_eq!(entrypoint.1, r#"["/attestgate"]"#);
    let copy = last
        .instructions
        .iter()
        .find(|(op, args)| op == "COPY" && args.starts_with(&format!("--from={builder_name} ")))
        .expect("the binary comes from the builder");
    assert!(copy.1.ends_with(" /attestgate"), "{}", copy.1);
    assert!(
        !last.instructions.iter().any(|(op, _)| op == "RUN"),
        "nothing runs in the final stage (it has no shell)"
    );

    // .dockerignore lets in exactly what the builder copies, and keeps target/ and .git out.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rules.first(), Some(&"*"), ".dockerignore is an allow-list");
    let allowed: BTreeSet<&str> = rules
        .iter()
        .filter_map(|r| r.strip_prefix('!'))
        .map(|r| r.trim_end_matches('/'))
        .collect();
    for (op, args) in &builder.instructions {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                allowed.contains(source),
                "{source} is copied but .dockerignore leaves it out"
            );
            assert!(root().join(source).exists(), "{source} does not exist");
        }
    }
    assert!(!allowed.contains("target") && !allowed.contains(".git"));
}

// ---------------------------------------------------------------------------------------------
// A real API server (tests/peers/start-cluster.sh: etcd and kube-apiserver on loopback)

/// A control plane started for one test, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Cluster {
    /// `None` where this checkout has no cluster peer (tests/peers/start-cluster.sh), or (outside
    /// CI) where kube-apiserver was not built.
    fn start() -> Option<Self> {
        let script = root().join("tests/peers/start-cluster.sh");
        if !script.is_file() {
            eprintln!("skipped: no tests/peers/start-cluster.sh in this checkout");
            return None;
        }
        tool("KUBE_APISERVER", "kube-apiserver")?;
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir.path())
            .arg("--no-controller-manager")
            .output()
            .expect("bash runs");
        // Built before the check, so that a half-started cluster is stopped too.
        let mut cluster = Cluster {
            env: BTreeMap::new(),
            dir,
        };
        assert!(
            out.status.success(),
            "start-cluster.sh:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        cluster.env = std::fs::read_to_string(cluster.dir.path().join("cluster.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(cluster)
    }

    /// kubectl as the admin (`tenant == false`, group system:masters) or as the tenant.
    fn kubectl(&self, tenant: bool, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let config = if tenant {
            "KUBECONFIG_TENANT"
        } else {
            "KUBECONFIG"
        };
        let mut child = Command::new(&self.env["KUBECTL"])
            .args(args)
            .env("KUBECONFIG", &self.env[config])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn admin_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(false, args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("tests/peers/stop.sh"))
            .arg(self.dir.path())
            .output();
    }
}

/// The render without the custom resources of cert-manager and the Prometheus operator, whose
/// definitions the test cluster does not have.
fn core_objects(rendered: &str) -> String {
    documents(rendered)
        .into_iter()
        .filter(|d| {
            let api = d["apiVersion"].as_str().unwrap_or_default();
            !api.starts_with("cert-manager.io/") && !api.starts_with("monitoring.coreos.com/")
        })
        .map(|d| serde_norway::to_string(&d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn the_api_server_accepts_every_render_and_the_label_guard_works() {
    let Some(helm) = Helm::find() else { return };
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let version = cluster.admin_ok(&["version", "-o", "json"], None);
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .trim_start_matches('v')
        .to_owned();
    for namespace in [NAMESPACE, "team-a", "team-b"] {
        cluster.admin_ok(&["create", "namespace", namespace], None);
    }

    // Every option, and manifests/, pass the API server's own validation (--dry-run=server:
    // admission and validation run, nothing is stored).
    let work = tempfile::tempdir().unwrap();
    for (name, args) in scenarios(work.path()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let objects = core_objects(&helm.render(&server, &args));
        let out = cluster.kubectl(
            false,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&objects),
        );
        assert!(
            out.status.success(),
            "{name}: the API server ({server}) refuses the render:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let manifests = std::fs::read_to_string(root().join("manifests/attestgate.yaml")).unwrap();
    cluster.admin_ok(&["apply", "--dry-run=server", "-f", "-"], Some(&manifests));

    // The mode-label guard, for real: the admin may set attestgate.dev/* labels, a tenant who may
    // edit namespaces may not, on create, update, the status subresource, add, change or remove.
    let docs = documents(&helm.render(&server, &[]));
    let guard: Vec<String> = docs
        .iter()
        .filter(|d| kind(d).starts_with("ValidatingAdmissionPolicy"))
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    assert_eq!(guard.len(), 2);
    cluster.admin_ok(&["apply", "-f", "-"], Some(&guard.join("---\n")));
    let tenant_group = cluster.env["TENANT_GROUP"].clone();
    let rbac = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: namespace-editor}}
rules:
  - apiGroups: [""]
    resources: [namespaces, namespaces/status]
    verbs: [get, list, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: namespace-editor}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: namespace-editor}}
subjects:
  - {{kind: Group, apiGroup: rbac.authorization.k8s.io, name: {tenant_group}}}
"#
    );
    cluster.admin_ok(&["apply", "-f", "-"], Some(&rbac));

    // The policy takes effect once the API server has loaded it: wait for a first denial.
    let labelled = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{attestgate.dev/mode: audit}}\n"
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("probe-{attempt}");
        let out = cluster.kubectl(true, &["create", "-f", "-"], Some(&labelled(&name)));
        if !out.status.success() {
            let message = text(&out.stderr);
            assert!(message.contains("attestgate-mode-label"), "{message}");
            break;
        }
        cluster.admin_ok(&["delete", "namespace", &name, "--wait=false"], None);
        assert!(
            std::time::Instant::now() < deadline,
            "the label guard never took effect"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }

    cluster.kubectl(true, &["create", "namespace", "tenant-ns"], None);
    let cases: Vec<(bool, Vec<&str>, bool)> = vec![
        // (as tenant, kubectl arguments, allowed)
        (
            true,
            vec![
                "label",
                "namespace",
                "tenant-ns",
                "attestgate.dev/mode=audit",
            ],
            false,
        ),
        (
            true,
            vec!["label", "namespace", "tenant-ns", "team=payments"],
            true,
        ),
        (
            false,
            vec![
                "label",
                "namespace",
                "tenant-ns",
                "attestgate.dev/mode=enforce",
            ],
            true,
        ),
        (
            true,
            vec![
                "label",
                "namespace",
                "tenant-ns",
                "attestgate.dev/mode=audit",
                "--overwrite",
            ],
            false,
        ),
        (
            true,
            vec!["label", "namespace", "tenant-ns", "attestgate.dev/mode-"],
            false,
        ),
        (
            true,
            vec!["label", "namespace", "tenant-ns", "attestgate.dev/other=1"],
            false,
        ),
        (
            true,
            vec![
                "label",
                "namespace",
                "tenant-ns",
                "team=billing",
                "--overwrite",
            ],
            true,
        ),
        (
            true,
            vec![
                "patch",
                "namespace",
                "tenant-ns",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"metadata":{"labels":{"attestgate.dev/mode":"audit"}}}"#,
            ],
            false,
        ),
        (
            false,
            vec![
                "label",
                "namespace",
                "tenant-ns",
                "attestgate.dev/mode=audit",
                "--overwrite",
            ],
            true,
        ),
    ];
    for (tenant, args, allowed) in cases {
        let out = cluster.kubectl(tenant, &args, None);
        let who = if tenant { "tenant" } else { "admin" };
        assert_eq!(
            out.status.success(),
            allowed,
            "{who} {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        if !allowed {
            let message = text(&out.stderr);
            assert!(
                message
                    .contains("may be added, changed or removed only by members of system:masters"),
                "{message}"
            );
        }
    }
    let labels = cluster.admin_ok(
        &[
            "get",
            "namespace",
            "tenant-ns",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
        None,
    );
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["attestgate.dev/mode"], "audit");
    assert_eq!(labels["team"], "billing");
    assert!(labels.get("attestgate.dev/other").is_none());
}
