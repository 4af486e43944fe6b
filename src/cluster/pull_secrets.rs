//! The registry credentials the kubelet would use for a pod: its image pull secrets.
//!
//! The kubelet pulls with the secrets the pod's `spec.imagePullSecrets` names; a pod created
//! without any gets its service account's `imagePullSecrets` from the ServiceAccount admission
//! plugin. A workload's pod template has not met that plugin yet, so the same rule is applied
//! here to every pod spec: the pod's own secrets when it names any, else its service account's
//! (`serviceAccountName`, `default` when unset). Only `kubernetes.io/dockerconfigjson`
//! (`.dockerconfigjson`) and `kubernetes.io/dockercfg` (`.dockercfg`) secrets count, as for the
//! kubelet; a secret or service account that does not exist is skipped, as the kubelet skips it.
//!
//! Names come from the object under review, so a namespace, secret or service account name that
//! is not a valid Kubernetes name (it could walk out of its request path: names are not escaped
//! in URLs) is never sent: it names nothing, as it could not exist. At most
//! [`MAX_SECRETS_PER_POD`] secrets are read per pod.
//!
//! Secrets and service accounts are read with `get` (never `list`) and kept for the configured
//! refresh time ("not found" for at most 5 s, since a secret is often created just
//! before the workload that uses it); failures are never kept. Nothing here logs a secret's
//! content; a malformed secret is logged by name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PodSpec, Secret, ServiceAccount};
use kube::Api;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::client::{ask, connect, ApiSource, ClusterError};
use crate::admission::Review;
use crate::config::{KubernetesSettings, PullSecretSettings};
use crate::image::{DockerConfig, Keyring};

/// The longest a "not found" answer is kept.
const NOT_FOUND_TTL: Duration = Duration::from_secs(5);

/// The most image pull secrets read for one pod; the rest are not used.
pub const MAX_SECRETS_PER_POD: usize = 32;

/// Entries kept per cache before expired ones are swept out; if all are still live, the cache
/// is emptied.
const MAX_ENTRIES: usize = 8192;

/// `type` of a secret in `config.json` form, and its key.
const DOCKER_CONFIG_JSON: (&str, &str) = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson");
/// `type` of a secret in the legacy `.dockercfg` form, and its key.
const DOCKER_CFG: (&str, &str) = ("kubernetes.io/dockercfg", ".dockercfg");

/// What a pod spec says about its pull credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodPullSecrets {
    /// `spec.imagePullSecrets[].name`, in order (empty names left out).
    pub secrets: Vec<String>,
    /// `spec.serviceAccountName` (or the deprecated `spec.serviceAccount`), `default` when unset.
    pub service_account: String,
}

impl PodPullSecrets {
    /// From a typed pod spec.
    pub fn of(spec: &PodSpec) -> Self {
        Self {
            secrets: spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .filter(|name| !name.is_empty())
                .collect(),
            service_account: service_account(
                spec.service_account_name.as_deref(),
                spec.service_account.as_deref(),
            ),
        }
    }

    /// From a pod spec as JSON; entries that are not what the API server would store are
    /// left out.
    pub fn from_json(spec: &Map<String, Value>) -> Self {
        let secrets = match spec.get("imagePullSecrets") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.get("name")?.as_str())
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let text = |key: &str| spec.get(key).and_then(Value::as_str);
        Self {
            secrets,
            service_account: service_account(text("serviceAccountName"), text("serviceAccount")),
        }
    }

    /// The namespace and pod spec of an admission request for a Pod or a workload (its pod
    /// template); `None` for other kinds, cluster-scoped requests and unreadable objects.
    pub fn from_review(review: &Review) -> Option<(String, Self)> {
        let namespace = review.namespace.clone().filter(|n| !n.is_empty())?;
        let spec = review.pod_spec()?;
        let pod = Self {
            secrets: spec
                .image_pull_secret_names()
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect(),
            service_account: service_account(
                spec.service_account_name.as_str(),
                spec.service_account.as_str(),
            ),
        };
        Some((namespace, pod))
    }
}

fn service_account(name: Option<&str>, deprecated: Option<&str>) -> String {
    name.filter(|n| !n.is_empty())
        .or(deprecated.filter(|n| !n.is_empty()))
        .unwrap_or("default")
        .to_string()
}

/// A value kept until a moment.
#[derive(Debug, Clone)]
struct Kept<T> {
    until: Instant,
    value: T,
}

type Cache<T> = Mutex<HashMap<(String, String), Kept<T>>>;

/// The client: given, or made from its source on first use.
enum Client {
    Given(kube::Client),
    Lazy(ApiSource, OnceCell<kube::Client>),
}

/// Reads pods' image pull secrets through the Kubernetes API, with a cache.
pub struct PullSecrets {
    client: Client,
    refresh: Duration,
    request_timeout: Duration,
    /// Docker configs by (namespace, secret); `None`: not found, or not a docker config.
    secrets: Cache<Option<Arc<DockerConfig>>>,
    /// `imagePullSecrets` by (namespace, service account); `None`: not found.
    accounts: Cache<Option<Vec<String>>>,
}

impl fmt::Debug for PullSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.client {
            Client::Given(_) => None,
            Client::Lazy(source, _) => Some(source),
        };
        f.debug_struct("PullSecrets")
            .field("source", &source)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl PullSecrets {
    /// Pull secrets read from the API server `kubernetes` names (a kubeconfig, else the pod's
    /// own service account); the client is made on first use, so this needs no runtime.
    pub fn new(settings: PullSecretSettings, kubernetes: &KubernetesSettings) -> Self {
        let source = match &kubernetes.kubeconfig {
            Some(path) => ApiSource::Kubeconfig(path.clone()),
            None => ApiSource::InCluster,
        };
        Self {
            client: Client::Lazy(source, OnceCell::new()),
            refresh: settings.refresh,
            request_timeout: kubernetes.request_timeout,
            secrets: Mutex::default(),
            accounts: Mutex::default(),
        }
    }

    /// Pull secrets read with `client`.
    pub fn with_client(
        client: kube::Client,
        settings: PullSecretSettings,
        request_timeout: Duration,
    ) -> Self {
        Self {
            client: Client::Given(client),
            refresh: settings.refresh,
            request_timeout,
            secrets: Mutex::default(),
            accounts: Mutex::default(),
        }
    }

    /// The keyring the kubelet would pull with for a pod of `namespace` whose spec says `pod`:
    /// the docker configs of its pull secrets in order (see the module docs for which ones),
    /// finished before `deadline`.
    ///
    /// # Errors
    /// [`ClusterError`] when the API cannot be used (a missing secret is not an error).
    pub async fn keyring(
        &self,
        namespace: &str,
        pod: &PodPullSecrets,
        deadline: Instant,
    ) -> Result<Keyring, ClusterError> {
        if !super::is_namespace_name(namespace) {
            return Ok(Keyring::new());
        }
        let client = self.client().await?;
        let names = if pod.secrets.is_empty() {
            if !super::is_object_name(&pod.service_account) {
                return Ok(Keyring::new());
            }
            self.account_secrets(&client, namespace, &pod.service_account, deadline)
                .await?
        } else {
            pod.secrets.clone()
        };
        let names: Vec<&String> = names
            .iter()
            .filter(|name| super::is_object_name(name))
            .take(MAX_SECRETS_PER_POD)
            .collect();
        let configs = futures_util::future::try_join_all(
            names
                .iter()
                .map(|name| self.secret(&client, namespace, name, deadline)),
        )
        .await?;
        Ok(configs
            .into_iter()
            .flatten()
            .map(|c| DockerConfig::clone(&c))
            .collect())
    }

    async fn client(&self) -> Result<kube::Client, ClusterError> {
        match &self.client {
            Client::Given(client) => Ok(client.clone()),
            Client::Lazy(source, cell) => cell
                .get_or_try_init(|| connect(source, self.request_timeout))
                .await
                .cloned(),
        }
    }

    /// How long a request may take: the request timeout, never past `deadline`.
    fn budget(&self, deadline: Instant) -> Duration {
        self.request_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    async fn account_secrets(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, ClusterError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(kept) = kept(&self.accounts, &key) {
            return Ok(kept.unwrap_or_default());
        }
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let account = ask(
            || format!("get service account {namespace}/{name}"),
            self.budget(deadline),
            api.get_opt(name),
        )
        .await?;
        let secrets = account.map(|a| {
            a.image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.name)
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        });
        let ttl = if secrets.is_some() {
            self.refresh
        } else {
            self.refresh.min(NOT_FOUND_TTL)
        };
        keep(&self.accounts, key, ttl, secrets.clone());
        Ok(secrets.unwrap_or_default())
    }

    async fn secret(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<Arc<DockerConfig>>, ClusterError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(kept) = kept(&self.secrets, &key) {
            return Ok(kept);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = ask(
            || format!("get secret {namespace}/{name}"),
            self.budget(deadline),
            api.get_opt(name),
        )
        .await?;
        let found = secret.is_some();
        let config = secret.and_then(|s| docker_config(namespace, name, &s));
        if found && config.is_none() {
            tracing::debug!(
                namespace,
                secret = name,
                "image pull secret holds no usable docker config"
            );
        }
        let ttl = if found {
            self.refresh
        } else {
            self.refresh.min(NOT_FOUND_TTL)
        };
        let config = config.map(Arc::new);
        keep(&self.secrets, key, ttl, config.clone());
        Ok(config)
    }
}

/// The docker config a pull secret holds, if it is of a type the kubelet reads.
fn docker_config(namespace: &str, name: &str, secret: &Secret) -> Option<DockerConfig> {
    let kind = secret.type_.as_deref()?;
    let field = [DOCKER_CONFIG_JSON, DOCKER_CFG]
        .into_iter()
        .find_map(|(t, field)| (t == kind).then_some(field))?;
    let bytes = secret.data.as_ref()?.get(field)?;
    if bytes.0.is_empty() {
        return None;
    }
    match DockerConfig::from_json(&bytes.0) {
        Ok(config) => Some(config),
        Err(e) => {
            // The error names an entry's key at most, never a credential.
            tracing::warn!(
                namespace,
                secret = name,
                error = %crate::display_chain(&e),
                "image pull secret is not a usable docker config; skipped"
            );
            None
        }
    }
}

fn kept<T: Clone>(cache: &Cache<T>, key: &(String, String)) -> Option<T> {
    let cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .get(key)
        .filter(|k| k.until > Instant::now())
        .map(|k| k.value.clone())
}

fn keep<T>(cache: &Cache<T>, key: (String, String), ttl: Duration, value: T) {
    let now = Instant::now();
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= MAX_ENTRIES {
        cache.retain(|_, k| k.until > now);
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
    }
    cache.insert(
        key,
        Kept {
            until: now + ttl,
            value,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_pod_spec_names_its_secrets_and_service_account() {
        let pod = PodPullSecrets::from_json(&spec(json!({
            "imagePullSecrets": [{"name": "a"}, {"name": ""}, {}, {"name": "b"}],
            "serviceAccountName": "builder",
            "serviceAccount": "legacy"
        })));
        assert_eq!(pod.secrets, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(pod.service_account, "builder");

        let legacy = PodPullSecrets::from_json(&spec(json!({"serviceAccount": "legacy"})));
        assert_eq!(legacy.service_account, "legacy");
        let bare = PodPullSecrets::from_json(&spec(json!({"imagePullSecrets": "x"})));
        assert_eq!(bare.secrets, Vec::<String>::new());
        assert_eq!(bare.service_account, "default");
    }

    #[test]
    fn the_typed_and_json_readings_agree() {
        let value = json!({
            "containers": [{"name": "c", "image": "x"}],
            "imagePullSecrets": [{"name": "a"}],
            "serviceAccountName": "builder"
        });
        let typed: PodSpec = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            PodPullSecrets::of(&typed),
            PodPullSecrets::from_json(&spec(value))
        );
    }

    fn review(group: &str, kind: &str, namespace: Option<&str>, object: Value) -> Review {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": "x"},
                "namespace": namespace,
                "operation": "CREATE",
                "object": object,
            }
        });
        Review::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_review_gives_the_pod_spec_of_pods_and_templates() {
        let pod_spec = json!({"imagePullSecrets": [{"name": "s"}], "serviceAccountName": "sa"});
        let want = Some((
            "team".to_string(),
            PodPullSecrets {
                secrets: vec!["s".into()],
                service_account: "sa".into(),
            },
        ));
        let cases = [
            ("", "Pod", json!({"spec": pod_spec})),
            (
                "apps",
                "Deployment",
                json!({"spec": {"template": {"spec": pod_spec}}}),
            ),
            (
                "batch",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}),
            ),
            ("", "PodTemplate", json!({"template": {"spec": pod_spec}})),
        ];
        for (group, kind, object) in cases {
            let got = PodPullSecrets::from_review(&review(group, kind, Some("team"), object));
            assert_eq!(got, want, "{kind}");
        }
        let role = review("rbac.authorization.k8s.io", "Role", Some("team"), json!({}));
        assert_eq!(PodPullSecrets::from_review(&role), None);
        let no_namespace = review("", "Pod", None, json!({"spec": pod_spec}));
        assert_eq!(PodPullSecrets::from_review(&no_namespace), None);
    }

    fn secret(kind: &str, field: &str, data: &[u8]) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "type": kind,
            "data": {field: crate::encoding::encode_base64(data)},
        }))
        .unwrap()
    }

    #[test]
    fn only_docker_config_secrets_of_the_right_type_count() {
        let json = br#"{"auths": {"r.example": {"username": "u", "password": "p"}}}"#;
        let legacy = br#"{"r.example": {"username": "u", "password": "p"}}"#;
        let image = crate::image::ImageReference::parse("r.example/app:v1").unwrap();
        let usable = [
            secret(DOCKER_CONFIG_JSON.0, DOCKER_CONFIG_JSON.1, json),
            secret(DOCKER_CFG.0, DOCKER_CFG.1, legacy),
        ];
        for s in &usable {
            let config = docker_config("ns", "s", s).unwrap();
            let keyring: Keyring = [config].into_iter().collect();
            assert_eq!(keyring.lookup(&image).len(), 1);
        }
        let unusable = [
            secret("Opaque", DOCKER_CONFIG_JSON.1, json),
            secret(DOCKER_CONFIG_JSON.0, DOCKER_CFG.1, json),
            secret(DOCKER_CONFIG_JSON.0, DOCKER_CONFIG_JSON.1, b""),
            secret(DOCKER_CONFIG_JSON.0, DOCKER_CONFIG_JSON.1, b"not json"),
        ];
        for s in &unusable {
            assert!(docker_config("ns", "s", s).is_none(), "{:?}", s.type_);
        }
    }

    /// A client for a closed port of 127.0.0.1: any request it sends fails.
    fn nowhere() -> kube::Client {
        crate::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
        config.connect_timeout = Some(Duration::from_secs(2));
        kube::Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn names_that_are_not_kubernetes_names_are_never_requested() {
        let reader = PullSecrets::with_client(
            nowhere(),
            PullSecretSettings {
                refresh: Duration::from_secs(60),
            },
            Duration::from_secs(2),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let pod = |secrets: &[&str], account: &str| PodPullSecrets {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            service_account: account.into(),
        };
        let never_sent = [
            (
                "team",
                pod(&["../../team-p/secrets/regcred", "A", ""], "default"),
            ),
            ("team", pod(&[], "../../team-p/serviceaccounts/puller")),
            ("../team-p", pod(&["regcred"], "default")),
        ];
        for (namespace, pod) in &never_sent {
            let keyring = reader.keyring(namespace, pod, deadline).await.unwrap();
            assert!(keyring.is_empty(), "{namespace} {pod:?}");
        }
        // A valid name is asked for, and the closed port fails it.
        let valid = pod(&["regcred"], "default");
        let asked = reader.keyring("team", &valid, deadline).await;
        assert!(asked.unwrap_err().is_unreachable());
    }

    #[tokio::test]
    async fn kept_answers_expire() {
        let cache: Cache<u32> = Mutex::default();
        let key = ("ns".to_string(), "s".to_string());
        keep(&cache, key.clone(), Duration::from_millis(30), 7);
        assert_eq!(kept(&cache, &key), Some(7));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(kept(&cache, &key), None);
    }
}
