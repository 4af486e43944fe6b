//! From the file to a [`Config`]: parse, check every value, load what the config points to.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::file::{
    ArchivistaFile, BindingFile, CacheFile, ConfigFile, NamespaceModesFile, NoMatchFile,
    PolicyFile, RegistryFile, ServerFile, TrustFile,
};
use super::pattern::ImagePattern;
use super::{
    CacheSettings, Config, ConfigError, Denylist, Exception, ExceptionTarget, KubernetesSettings,
    NamespaceModesSettings, NoMatch, PolicyEntry, PullSecretSettings, SelfManagedCertificates,
    ServerSettings, MAX_CONFIG_BYTES,
};
use crate::admission::Mode;
use crate::crypto::{Certificate, PublicKey, VerifiedSigner};
use crate::encoding::sha256_hex;
use crate::evidence::{ArchivistaConfig, ArchivistaSource, FileSource, Sources};
use crate::file::read_file;
use crate::image::binding::Binding;
use crate::image::{
    CredentialProviders, Digest, DockerConfig, Keyring, Mirrors, Registry, RegistryConfig,
};
use crate::policy::{PolicyOptions, PolicySignerIdentity, PolicyTrust, SignedPolicy};

/// Largest policy, key or certificate file read.
const MAX_POLICY_BYTES: u64 = 16 * 1024 * 1024;
const MAX_SMALL_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Defaults, chosen for a webhook whose configuration says `timeoutSeconds: 10`.
const DEFAULT_WEBHOOK_TIMEOUT_SECONDS: u32 = 10;
const DEFAULT_DEADLINE: Duration = Duration::from_secs(8);
/// Time kept between the deadline and the API server's timeout for the answer to travel.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);
const DEFAULT_MAX_IMAGES: usize = 64;
/// How long a pull secret read from the API is used before it is read again.
const DEFAULT_PULL_SECRETS_REFRESH: Duration = Duration::from_secs(60);
/// The longest `registry.pullSecrets.refresh` accepted.
const MAX_PULL_SECRETS_REFRESH: Duration = Duration::from_secs(3600);
/// How long one Kubernetes API request may take.
const DEFAULT_KUBERNETES_TIMEOUT: Duration = Duration::from_secs(5);
/// `kubernetes.namespaceModes.interval`: the default, and the range accepted (a list of every
/// namespace more often than every second only loads the API server; one an hour apart lets
/// the metric lag too far behind a relabel).
const DEFAULT_NAMESPACE_MODES_INTERVAL: Duration = Duration::from_secs(60);
const MIN_NAMESPACE_MODES_INTERVAL: Duration = Duration::from_secs(1);
const MAX_NAMESPACE_MODES_INTERVAL: Duration = Duration::from_secs(3600);
/// `server.selfManagedCertificates`: a serving certificate lives a year, is renewed 30 days
/// before it expires, and the Secret is checked every hour.
const DEFAULT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
const DEFAULT_CERTIFICATE_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

impl Config {
    /// Reads, checks and loads the config at `path`. Relative paths in it are relative to the
    /// file's folder.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = read_file(path, MAX_CONFIG_BYTES).map_err(ConfigError::Read)?;
        Self::from_bytes(path, &bytes)
    }

    /// Checks and loads `bytes` as the config at `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and key.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let file = parse(path, bytes)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Loader {
            path: path.to_path_buf(),
            base,
            now: OffsetDateTime::now_utc(),
            watched: std::cell::RefCell::default(),
        }
        .load(file, bytes)
    }

    /// Loads the config at `path` with candidate policy files in place of the files its
    /// policies point to (what `attestgate audit --policy` judges with before a candidate is
    /// rolled out): each pair names the policy (`None`: the config's only policy) and the
    /// candidate file, which is verified with that policy's own trust. A candidate replaces the
    /// policy's `policyDigest` pin too; a relative file is relative to the current directory.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and key; a name no policy has, or no name when the
    /// config has several policies, is [`ConfigError::Invalid`] on `policies`.
    pub fn load_with_candidates(
        path: &Path,
        candidates: &[(Option<String>, PathBuf)],
    ) -> Result<Self, ConfigError> {
        let bytes = read_file(path, MAX_CONFIG_BYTES).map_err(ConfigError::Read)?;
        let mut file = parse(path, &bytes)?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: "policies".into(),
            message,
        };
        for (name, candidate) in candidates {
            let names: Vec<String> = file.policies.iter().map(|p| p.name.clone()).collect();
            let policy = match name {
                Some(name) => file
                    .policies
                    .iter_mut()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| {
                        invalid(format!(
                            "no policy is named {name:?} (candidate {}; policies: {})",
                            candidate.display(),
                            names.join(", ")
                        ))
                    })?,
                None => match file.policies.as_mut_slice() {
                    [only] => only,
                    _ => {
                        return Err(invalid(format!(
                            "name the policy candidate {} replaces, as NAME=FILE (policies: {})",
                            candidate.display(),
                            names.join(", ")
                        )))
                    }
                },
            };
            policy.policy = std::path::absolute(candidate).unwrap_or_else(|_| candidate.clone());
            policy.policy_digest = None;
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Loader {
            path: path.to_path_buf(),
            base,
            now: OffsetDateTime::now_utc(),
            watched: std::cell::RefCell::default(),
        }
        .load(file, &bytes)
    }

    /// Refuses `self` as the successor of `previous` when it would downgrade a policy: a policy
    /// of the same name whose trusted signing time is older than the loaded one's (or missing
    /// when the loaded one had one).
    ///
    /// # Errors
    /// [`ConfigError::Downgrade`].
    pub fn check_successor_of(&self, previous: &Config) -> Result<(), ConfigError> {
        for (index, entry) in self.policies.iter().enumerate() {
            let Some(old) = previous.policies.iter().find(|p| p.name == entry.name) else {
                continue;
            };
            let Some(old_time) = old.signed_at else {
                continue;
            };
            let refused = match entry.signed_at {
                None => Some("carries no trusted signing timestamp".to_string()),
                Some(new_time) if new_time < old_time => Some(format!(
                    "was signed at {} by its trusted timestamp",
                    rfc3339(new_time)
                )),
                Some(_) => None,
            };
            if let Some(why) = refused {
                return Err(ConfigError::Downgrade {
                    path: self.path.clone(),
                    key: format!("policies[{index}].policy"),
                    message: format!(
                        "refused as a downgrade: the new policy {why}, but the loaded one was \
                         signed at {}",
                        rfc3339(old_time)
                    ),
                });
            }
        }
        Ok(())
    }

    /// The policies covering `image`, in file order.
    pub fn policies_for(&self, image: &crate::image::ImageReference) -> Vec<Arc<PolicyEntry>> {
        self.policies
            .iter()
            .filter(|p| p.covers(image))
            .cloned()
            .collect()
    }

    /// `name@sha256:digest` of every policy, comma-separated (for metrics and logs).
    pub fn policy_digests(&self) -> String {
        self.policies
            .iter()
            .map(|p| p.label())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// YAML to the file model; errors carry the key path and the position.
fn parse(path: &Path, bytes: &[u8]) -> Result<ConfigFile, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::Parse {
        path: path.to_path_buf(),
        message: "the file is not UTF-8".into(),
    })?;
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().to_string();
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&key, &message),
        }
    })
}

/// The YAML error for a reader: the key path once (the parser names the enclosing mapping
/// itself, which the path already holds), and "a mapping" for the file model's type names.
fn parse_message(key: &str, message: &str) -> String {
    let message = match message.split_once(": ") {
        Some((named, rest))
            if key == named
                || key.starts_with(&format!("{named}."))
                || key.starts_with(&format!("{named}[")) =>
        {
            rest
        }
        _ => message,
    };
    let message = match message.split_once("expected struct ") {
        Some((before, after)) => {
            let rest = after.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
            format!("{before}expected a mapping{rest}")
        }
        None => message.to_string(),
    };
    if key == "." || key.is_empty() {
        message
    } else {
        format!("{key}: {message}")
    }
}

struct Loader {
    path: PathBuf,
    base: PathBuf,
    now: OffsetDateTime,
    /// Every file and folder the load read, for change detection.
    watched: std::cell::RefCell<Vec<PathBuf>>,
}

impl Loader {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    fn read(&self, key: &str, path: &Path, limit: u64) -> Result<Vec<u8>, ConfigError> {
        let path = self.watch(path);
        read_file(&path, limit).map_err(|e| self.invalid(key, e))
    }

    /// `path` resolved, and remembered as one the loaded config depends on.
    fn watch(&self, path: &Path) -> PathBuf {
        let path = self.resolve(path);
        self.watched.borrow_mut().push(path.clone());
        path
    }

    fn load(&self, file: ConfigFile, bytes: &[u8]) -> Result<Config, ConfigError> {
        let webhook_timeout = match file.webhook_timeout_seconds {
            None => DEFAULT_WEBHOOK_TIMEOUT_SECONDS,
            Some(s @ 1..=30) => s,
            Some(s) => {
                return Err(self.invalid(
                    "webhookTimeoutSeconds",
                    format!("{s} is outside 1..=30, the range Kubernetes accepts"),
                ))
            }
        };
        let webhook_timeout = Duration::from_secs(u64::from(webhook_timeout));
        let deadline = file.deadline.map_or(DEFAULT_DEADLINE, |d| d.0);
        let latest = webhook_timeout.saturating_sub(DEADLINE_MARGIN);
        if deadline.is_zero() || deadline > latest {
            return Err(self.invalid(
                "deadline",
                format!(
                    "{} ms must be above zero and at most {} ms: the webhook timeout ({} s) \
                     less {} s for the answer to reach the API server",
                    deadline.as_millis(),
                    latest.as_millis(),
                    webhook_timeout.as_secs(),
                    DEADLINE_MARGIN.as_secs()
                ),
            ));
        }
        let max_images_per_request = file.max_images_per_request.unwrap_or(DEFAULT_MAX_IMAGES);
        if max_images_per_request == 0 {
            return Err(self.invalid("maxImagesPerRequest", "must be at least 1"));
        }

        let (registry, keyring, credential_providers) = self.registry(&file.registry, &file)?;
        let mut policies = Vec::new();
        let mut names = BTreeSet::new();
        for (index, policy) in file.policies.iter().enumerate() {
            let key = format!("policies[{index}]");
            if !names.insert(policy.name.clone()) {
                return Err(self.invalid(
                    format!("{key}.name"),
                    format!("policy name {:?} is used twice", policy.name),
                ));
            }
            policies.push(Arc::new(self.policy(&key, policy, &file.cache)?));
        }

        Ok(Config {
            path: self.path.clone(),
            digest: format!("sha256:{}", sha256_hex(bytes)),
            server: self.server(&file)?,
            deadline,
            webhook_timeout,
            max_images_per_request,
            no_match: match file.no_match {
                None | Some(NoMatchFile::Deny) => NoMatch::Deny,
                Some(NoMatchFile::Allow) => NoMatch::Allow,
            },
            require_digest: file.require_digest,
            reject_short_names: file.reject_short_names.unwrap_or(false),
            pods_only: file.pods_only,
            minimum_mode: file.minimum_mode.unwrap_or(Mode::Audit),
            policies,
            exceptions: self.exceptions(&file)?,
            denylist: self.denylist(&file)?,
            registry: Arc::new(registry),
            keyring: Arc::new(keyring),
            credential_providers: credential_providers.map(Arc::new),
            cache: self.cache(&file)?,
            pull_secrets: self.pull_secrets(&file.registry)?,
            kubernetes: self.kubernetes(&file)?,
            // Last: every file above has been read by now.
            watched: self.watched.take(),
        })
    }

    fn pull_secrets(
        &self,
        registry: &RegistryFile,
    ) -> Result<Option<PullSecretSettings>, ConfigError> {
        let Some(file) = registry.pull_secrets.as_ref().filter(|p| p.enabled) else {
            return Ok(None);
        };
        let refresh = file.refresh.map_or(DEFAULT_PULL_SECRETS_REFRESH, |d| d.0);
        if refresh.is_zero() || refresh > MAX_PULL_SECRETS_REFRESH {
            return Err(self.invalid(
                "registry.pullSecrets.refresh",
                format!(
                    "{} ms must be above zero and at most {} s: a revoked secret must stop \
                     serving soon",
                    refresh.as_millis(),
                    MAX_PULL_SECRETS_REFRESH.as_secs()
                ),
            ));
        }
        Ok(Some(PullSecretSettings { refresh }))
    }

    fn kubernetes(&self, file: &ConfigFile) -> Result<KubernetesSettings, ConfigError> {
        let kubernetes = &file.kubernetes;
        let request_timeout = kubernetes
            .request_timeout
            .map_or(DEFAULT_KUBERNETES_TIMEOUT, |d| d.0);
        if request_timeout.is_zero() {
            return Err(self.invalid("kubernetes.requestTimeout", "must be above zero"));
        }
        Ok(KubernetesSettings {
            kubeconfig: kubernetes.kubeconfig.as_deref().map(|p| self.resolve(p)),
            request_timeout,
            namespace_modes: self.namespace_modes(kubernetes.namespace_modes.as_ref())?,
        })
    }

    /// `kubernetes.namespaceModes`; its interval is checked even when it is off, so that a bad
    /// value is found before it is turned on.
    fn namespace_modes(
        &self,
        file: Option<&NamespaceModesFile>,
    ) -> Result<Option<NamespaceModesSettings>, ConfigError> {
        let Some(file) = file else {
            return Ok(None);
        };
        let interval = file
            .interval
            .map_or(DEFAULT_NAMESPACE_MODES_INTERVAL, |d| d.0);
        if !(MIN_NAMESPACE_MODES_INTERVAL..=MAX_NAMESPACE_MODES_INTERVAL).contains(&interval) {
            return Err(self.invalid(
                "kubernetes.namespaceModes.interval",
                format!(
                    "{} ms must be at least {} s and at most {} s",
                    interval.as_millis(),
                    MIN_NAMESPACE_MODES_INTERVAL.as_secs(),
                    MAX_NAMESPACE_MODES_INTERVAL.as_secs()
                ),
            ));
        }
        Ok(file.enabled.then_some(NamespaceModesSettings { interval }))
    }

    fn server(&self, file: &ConfigFile) -> Result<ServerSettings, ConfigError> {
        let server = &file.server;
        let address = |key: &str, value: &Option<String>, default: &str| {
            let text = value.as_deref().unwrap_or(default);
            text.parse::<SocketAddr>().map_err(|_| {
                self.invalid(
                    format!("server.{key}"),
                    format!("{text:?} is not an address such as 0.0.0.0:8443"),
                )
            })
        };
        let listen = address("listen", &server.listen, "0.0.0.0:8443")?;
        let health_listen = address("healthListen", &server.health_listen, "0.0.0.0:8080")?;
        if listen == health_listen && listen.port() != 0 {
            return Err(self.invalid(
                "server.healthListen",
                "must differ from server.listen (health and metrics are plain HTTP)",
            ));
        }
        if server.cert_file.is_some() != server.key_file.is_some() {
            return Err(self.invalid("server", "certFile and keyFile go together"));
        }
        Ok(ServerSettings {
            listen,
            health_listen,
            cert_file: server.cert_file.as_deref().map(|p| self.resolve(p)),
            key_file: server.key_file.as_deref().map(|p| self.resolve(p)),
            client_ca_file: server.client_ca_file.as_deref().map(|p| self.resolve(p)),
            reload_interval: server
                .reload_interval
                .map_or(Duration::from_secs(10), |d| d.0)
                .max(Duration::from_millis(50)),
            shutdown_grace: server
                .shutdown_grace
                .map_or(Duration::from_secs(15), |d| d.0),
            self_managed_certificates: self.self_managed_certificates(server)?,
        })
    }

    fn self_managed_certificates(
        &self,
        server: &ServerFile,
    ) -> Result<Option<SelfManagedCertificates>, ConfigError> {
        let Some(file) = &server.self_managed_certificates else {
            return Ok(None);
        };
        let key = |name: &str| format!("server.selfManagedCertificates.{name}");
        if server.cert_file.is_none() {
            return Err(self.invalid(
                "server.selfManagedCertificates",
                "needs server.certFile and server.keyFile (in a writable folder) to write to",
            ));
        }
        for (name, value) in [
            ("secretName", &file.secret_name),
            ("webhookConfigurationName", &file.webhook_configuration_name),
        ] {
            if !crate::cluster::is_object_name(value) {
                return Err(self.invalid(key(name), format!("{value:?} is not an object name")));
            }
        }
        for (name, value) in [
            ("serviceName", &file.service_name),
            ("namespace", &file.namespace),
        ] {
            if !crate::cluster::is_namespace_name(value) {
                return Err(self.invalid(key(name), format!("{value:?} is not a dns label")));
            }
        }
        let validity = file.validity.map_or(DEFAULT_CERTIFICATE_VALIDITY, |d| d.0);
        let renew_before = file
            .renew_before
            .map_or(DEFAULT_CERTIFICATE_RENEW_BEFORE, |d| d.0);
        let check_interval = file
            .check_interval
            .map_or(DEFAULT_CERTIFICATE_CHECK_INTERVAL, |d| d.0);
        if validity < Duration::from_secs(3600) {
            return Err(self.invalid(key("validity"), "must be at least 1h"));
        }
        if renew_before.is_zero() || renew_before >= validity {
            return Err(self.invalid(
                key("renewBefore"),
                "must be above zero and below validity, or every check would renew",
            ));
        }
        if check_interval.is_zero() || check_interval > renew_before {
            return Err(self.invalid(
                key("checkInterval"),
                "must be above zero and at most renewBefore, or a renewal could be missed",
            ));
        }
        Ok(Some(SelfManagedCertificates {
            secret_name: file.secret_name.clone(),
            webhook_configuration_name: file.webhook_configuration_name.clone(),
            service_name: file.service_name.clone(),
            namespace: file.namespace.clone(),
            validity,
            renew_before,
            check_interval,
        }))
    }

    fn registry(
        &self,
        registry: &RegistryFile,
        file: &ConfigFile,
    ) -> Result<(Registry, Keyring, Option<CredentialProviders>), ConfigError> {
        let mut config = RegistryConfig {
            insecure_hosts: registry.insecure.clone(),
            ..RegistryConfig::default()
        };
        for (i, path) in registry.ca_files.iter().enumerate() {
            config.extra_ca_pem.push(self.read(
                &format!("registry.caFiles[{i}]"),
                path,
                MAX_SMALL_FILE_BYTES,
            )?);
        }
        if let Some(dir) = &registry.mirrors_dir {
            config.mirrors = Some(
                Mirrors::from_dir(&self.watch(dir))
                    .map_err(|e| self.invalid("registry.mirrorsDir", crate::display_chain(&e)))?,
            );
        }
        if let Some(t) = registry.request_timeout {
            if t.0.is_zero() {
                return Err(self.invalid("registry.requestTimeout", "must be above zero"));
            }
            config.request_timeout = t.0;
        }
        if let Some(n) = registry.max_retries {
            if n > 10 {
                return Err(self.invalid("registry.maxRetries", "at most 10"));
            }
            config.max_retries = n;
        }
        if let Some(n) = registry.max_concurrent_per_registry {
            if n == 0 {
                return Err(self.invalid("registry.maxConcurrentPerRegistry", "must be at least 1"));
            }
            config.max_concurrent_per_registry = n;
        }
        let cache = &file.cache;
        if let Some(size) = cache.content_max_bytes {
            config.content_cache_bytes = size.0;
        }
        if let Some(ttl) = cache.tag_ttl {
            config.tag_cache_ttl = ttl.0;
        }
        if let Some(ttl) = cache.not_found_ttl {
            config.negative_cache_ttl = ttl.0;
        }
        let client = Registry::new(config)
            .map_err(|e| self.invalid("registry", crate::display_chain(&e)))?;

        let mut keyring = Keyring::new();
        for (i, path) in registry.docker_configs.iter().enumerate() {
            let key = format!("registry.dockerConfigs[{i}]");
            let config = DockerConfig::from_json(&self.read(&key, path, MAX_SMALL_FILE_BYTES)?)
                .map_err(|e| self.invalid(&key, crate::display_chain(&e)))?;
            keyring.push(config);
        }
        let providers = match &registry.credential_providers {
            None => None,
            Some(p) => Some(
                CredentialProviders::from_file(&self.watch(&p.config), self.resolve(&p.bin_dir))
                    .map_err(|e| {
                        self.invalid("registry.credentialProviders", crate::display_chain(&e))
                    })?,
            ),
        };
        Ok((client, keyring, providers))
    }

    fn policy(
        &self,
        key: &str,
        policy: &PolicyFile,
        cache: &CacheFile,
    ) -> Result<PolicyEntry, ConfigError> {
        if !valid_name(&policy.name) {
            return Err(self.invalid(
                format!("{key}.name"),
                format!(
                    "{:?} must be 1-63 characters of a-z, 0-9 and '-', starting with a letter",
                    policy.name
                ),
            ));
        }
        if policy.images.is_empty() {
            return Err(self.invalid(format!("{key}.images"), "names no image pattern"));
        }
        let images = policy
            .images
            .iter()
            .enumerate()
            .map(|(i, p)| {
                ImagePattern::new(p)
                    .map_err(|e| self.invalid(format!("{key}.images[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let binding = self.binding(key, policy)?;
        let (trust, options) = self.trust(&format!("{key}.trust"), &policy.trust)?;

        let policy_key = format!("{key}.policy");
        let bytes = self.read(&policy_key, &policy.policy, MAX_POLICY_BYTES)?;
        let signed = SignedPolicy::load(&bytes, &trust, options)
            .map_err(|e| self.invalid(&policy_key, crate::display_chain(&e)))?;
        if let Some(pin) = &policy.policy_digest {
            let want = pin
                .strip_prefix("sha256:")
                .unwrap_or(pin)
                .to_ascii_lowercase();
            if want != signed.digest {
                return Err(self.invalid(
                    format!("{key}.policyDigest"),
                    format!(
                        "the policy file's digest is sha256:{}, not the pinned {pin}",
                        signed.digest
                    ),
                ));
            }
        }
        let signed_at = signed
            .signers
            .iter()
            .filter_map(|s| match s {
                VerifiedSigner::Certificate {
                    trusted_time,
                    timestamp_authority: Some(_),
                    ..
                } => Some(*trusted_time),
                _ => None,
            })
            .max();
        if signed.policy.is_expired(self.now) {
            tracing::warn!(
                policy = %policy.name,
                "policy is expired: every image it covers is denied until it is replaced"
            );
        }

        let source = self.evidence(&format!("{key}.evidence"), policy, cache)?;
        let settings_digest = sha256_hex(
            format!("{:?}|{:?}|{:?}", policy.trust, binding, policy.evidence).as_bytes(),
        );
        Ok(PolicyEntry {
            name: policy.name.clone(),
            images,
            path: self.resolve(&policy.policy),
            policy: Arc::new(signed),
            signed_at,
            binding,
            source: Arc::new(source),
            settings_digest,
        })
    }

    fn binding(&self, key: &str, policy: &PolicyFile) -> Result<Binding, ConfigError> {
        match policy.binding.unwrap_or(BindingFile::Digest) {
            BindingFile::Digest => {
                if policy.expected_source.is_some() || policy.trust_registry_push_rights {
                    return Err(self.invalid(
                        format!("{key}.binding"),
                        "expectedSource and trustRegistryPushRights belong to binding: commit",
                    ));
                }
                Ok(Binding::Digest)
            }
            BindingFile::Commit => {
                let Some(source) = policy.expected_source.as_ref().filter(|s| !s.is_empty()) else {
                    return Err(self.invalid(
                        format!("{key}.expectedSource"),
                        "binding: commit needs the repository the image must be built from",
                    ));
                };
                if !policy.trust_registry_push_rights {
                    return Err(self.invalid(
                        format!("{key}.trustRegistryPushRights"),
                        "binding: commit needs `trustRegistryPushRights: true`: the revision \
                         label is written by whoever can push, so they can label another \
                         build's image with a good commit",
                    ));
                }
                if !looks_like_repository(source) {
                    return Err(self.invalid(
                        format!("{key}.expectedSource"),
                        format!(
                            "{source:?} is not a repository URL (https://github.com/org/repo or \
                             git@host:org/repo)"
                        ),
                    ));
                }
                Ok(Binding::Commit {
                    source: source.clone(),
                })
            }
        }
    }

    fn trust(
        &self,
        key: &str,
        trust: &TrustFile,
    ) -> Result<(PolicyTrust, PolicyOptions), ConfigError> {
        let mut policy_trust = PolicyTrust::default();
        policy_trust.allow_untimestamped_certificates(trust.allow_untimestamped_certificates);
        for (i, path) in trust.public_keys.iter().enumerate() {
            let k = format!("{key}.publicKeys[{i}]");
            let key = PublicKey::from_pem(&self.read(&k, path, MAX_SMALL_FILE_BYTES)?)
                .map_err(|e| self.invalid(&k, crate::display_chain(&e)))?;
            policy_trust.add_key(key);
        }
        let certificate = |k: String, path: &Path| -> Result<Certificate, ConfigError> {
            Certificate::from_pem(&self.read(&k, path, MAX_SMALL_FILE_BYTES)?)
                .map_err(|e| self.invalid(&k, crate::display_chain(&e)))
        };
        for (i, path) in trust.ca_roots.iter().enumerate() {
            policy_trust.add_ca_root(certificate(format!("{key}.caRoots[{i}]"), path)?);
        }
        for (i, path) in trust.ca_intermediates.iter().enumerate() {
            policy_trust
                .add_ca_intermediate(certificate(format!("{key}.caIntermediates[{i}]"), path)?);
        }
        for (i, path) in trust.timestamp_authorities.iter().enumerate() {
            policy_trust.add_timestamp_authority(
                path.display().to_string(),
                certificate(format!("{key}.timestampAuthorities[{i}]"), path)?,
            );
        }
        if policy_trust.is_empty() {
            return Err(self.invalid(
                key,
                "trusts no policy signer: give publicKeys or caRoots (with signerIdentity)",
            ));
        }
        if !trust.ca_roots.is_empty() && trust.signer_identity.is_none() {
            return Err(self.invalid(
                format!("{key}.signerIdentity"),
                "caRoots need signerIdentity: a certificate chaining to the root alone is not \
                 enough to sign policies",
            ));
        }
        if let Some(identity) = &trust.signer_identity {
            let constrains = identity.common_name.is_some()
                || !identity.dns_names.is_empty()
                || !identity.emails.is_empty()
                || !identity.organizations.is_empty()
                || !identity.uris.is_empty();
            if !constrains {
                return Err(self.invalid(
                    format!("{key}.signerIdentity"),
                    "names no constraint: give at least one of commonName, dnsNames, emails, \
                     organizations and uris (the others then default to \"*\")",
                ));
            }
            policy_trust.set_signer_identity(PolicySignerIdentity::with_defaults(
                identity.common_name.clone(),
                &identity.dns_names,
                &identity.emails,
                &identity.organizations,
                &identity.uris,
            ));
        }
        let mut options = PolicyOptions {
            untimestamped_certificates: trust.allow_untimestamped_certificates,
            ..PolicyOptions::default()
        };
        for (uri, path) in &trust.kms_keys {
            let k = format!("{key}.kmsKeys[{uri:?}]");
            let public = PublicKey::from_pem(&self.read(&k, path, MAX_SMALL_FILE_BYTES)?)
                .map_err(|e| self.invalid(&k, crate::display_chain(&e)))?;
            options.kms_keys.insert(uri.clone(), public);
        }
        Ok((policy_trust, options))
    }

    fn evidence(
        &self,
        key: &str,
        policy: &PolicyFile,
        cache: &CacheFile,
    ) -> Result<super::PolicySource, ConfigError> {
        let evidence = &policy.evidence;
        if evidence.directories.is_empty()
            && evidence.files.is_empty()
            && evidence.archivista.is_none()
        {
            return Err(self.invalid(
                key,
                "names no evidence source: give directories, files or archivista",
            ));
        }
        let files: Vec<PathBuf> = evidence.files.iter().map(|p| self.watch(p)).collect();
        let mut source = FileSource::from_paths(&files)
            .map_err(|e| self.invalid(format!("{key}.files"), crate::display_chain(&e)))?;
        for (i, dir) in evidence.directories.iter().enumerate() {
            source.merge(FileSource::from_directory(self.watch(dir)).map_err(|e| {
                self.invalid(format!("{key}.directories[{i}]"), crate::display_chain(&e))
            })?);
        }
        let archivista = match &evidence.archivista {
            None => None,
            Some(a) => Some(self.archivista(&format!("{key}.archivista"), a, cache)?),
        };
        Ok(Sources::new(source, archivista))
    }

    fn archivista(
        &self,
        key: &str,
        file: &ArchivistaFile,
        cache: &CacheFile,
    ) -> Result<ArchivistaSource, ConfigError> {
        let mut config = ArchivistaConfig::new(file.server.clone());
        config.headers = file
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (i, path) in file.ca_files.iter().enumerate() {
            config.ca_pem.push(self.read(
                &format!("{key}.caFiles[{i}]"),
                path,
                MAX_SMALL_FILE_BYTES,
            )?);
        }
        match (&file.client_certificate, &file.client_key) {
            (None, None) => {}
            (Some(cert), Some(private)) => {
                let mut pem = self.read(
                    &format!("{key}.clientCertificate"),
                    cert,
                    MAX_SMALL_FILE_BYTES,
                )?;
                pem.push(b'\n');
                pem.extend(self.read(
                    &format!("{key}.clientKey"),
                    private,
                    MAX_SMALL_FILE_BYTES,
                )?);
                config.client_identity_pem = Some(pem);
            }
            _ => {
                return Err(self.invalid(key, "clientCertificate and clientKey go together"));
            }
        }
        if let Some(t) = file.request_timeout {
            config.request_timeout = t.0;
        }
        if let Some(size) = cache.evidence_max_bytes {
            config.envelope_cache_bytes = usize::try_from(size.0).unwrap_or(usize::MAX);
        }
        if let Some(ttl) = cache.evidence_search_ttl {
            config.search_ttl = ttl.0;
        }
        if let Some(ttl) = cache.evidence_empty_search_ttl {
            config.negative_search_ttl = ttl.0;
        }
        ArchivistaSource::new(config).map_err(|e| self.invalid(key, crate::display_chain(&e)))
    }

    fn exceptions(&self, file: &ConfigFile) -> Result<Vec<Exception>, ConfigError> {
        let mut exceptions = Vec::new();
        for (i, e) in file.exceptions.iter().enumerate() {
            let key = format!("exceptions[{i}]");
            let target = match (&e.image, &e.digest) {
                (Some(image), None) => ExceptionTarget::Image(
                    ImagePattern::new(image)
                        .map_err(|err| self.invalid(format!("{key}.image"), err.to_string()))?,
                ),
                (None, Some(digest)) => ExceptionTarget::Digest(
                    Digest::parse(digest)
                        .filter(|d| d.algorithm() == "sha256")
                        .ok_or_else(|| {
                            self.invalid(
                                format!("{key}.digest"),
                                format!("{digest:?} is not sha256:<64 hex>"),
                            )
                        })?,
                ),
                _ => return Err(self.invalid(&key, "give exactly one of image and digest")),
            };
            if e.reason.trim().is_empty() {
                return Err(self.invalid(format!("{key}.reason"), "an exception needs a reason"));
            }
            if e.owner.trim().is_empty() {
                return Err(self.invalid(format!("{key}.owner"), "an exception needs an owner"));
            }
            let expires = parse_expiry(&e.expires).ok_or_else(|| {
                self.invalid(
                    format!("{key}.expires"),
                    format!(
                        "{:?} is not a date such as 2027-01-31 or an RFC 3339 time",
                        e.expires
                    ),
                )
            })?;
            let exception = Exception {
                target,
                reason: e.reason.clone(),
                owner: e.owner.clone(),
                expires,
            };
            if !exception.in_force(self.now) {
                tracing::warn!(
                    exception = %exception.describe(),
                    "exception has expired and no longer applies"
                );
            }
            exceptions.push(exception);
        }
        Ok(exceptions)
    }

    fn denylist(&self, file: &ConfigFile) -> Result<Denylist, ConfigError> {
        let list = &file.denylist;
        let mut denylist = Denylist::default();
        for (i, d) in list.digests.iter().enumerate() {
            denylist.digests.push(Digest::parse(d).ok_or_else(|| {
                self.invalid(
                    format!("denylist.digests[{i}]"),
                    format!("{d:?} is not sha256:<64 hex>"),
                )
            })?);
        }
        for (i, c) in list.commits.iter().enumerate() {
            let valid = matches!(c.len(), 40 | 64) && c.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(self.invalid(
                    format!("denylist.commits[{i}]"),
                    format!("{c:?} is not a full commit id (40 or 64 hex characters)"),
                ));
            }
            denylist.commits.push(c.to_ascii_lowercase());
        }
        for (i, k) in list.keyids.iter().enumerate() {
            if k.trim().is_empty() {
                return Err(self.invalid(format!("denylist.keyids[{i}]"), "is empty"));
            }
            denylist.keyids.push(k.clone());
        }
        Ok(denylist)
    }

    fn cache(&self, file: &ConfigFile) -> Result<CacheSettings, ConfigError> {
        let cache = &file.cache;
        let background = cache.background_verifications.unwrap_or(4);
        if background > 64 {
            return Err(self.invalid("cache.backgroundVerifications", "at most 64"));
        }
        Ok(CacheSettings {
            decisions_max_bytes: cache.decisions_max_bytes.map_or(16 << 20, |s| s.0),
            decisions_ttl: cache
                .decisions_ttl
                .map_or(Duration::from_secs(300), |d| d.0),
            failed_decisions_ttl: cache
                .failed_decisions_ttl
                .map_or(Duration::from_secs(10), |d| d.0),
            stale_if_error: cache.stale_if_error.map(|d| d.0),
            background_verifications: background,
        })
    }
}

/// `2027-01-31` (the exception holds through that day, UTC) or an RFC 3339 time.
fn parse_expiry(text: &str) -> Option<OffsetDateTime> {
    if let Some(time) = crate::policy::parse_rfc3339(text) {
        return Some(time);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).ok()?;
    Some(date.next_day()?.midnight().assume_utc())
}

/// `scheme://host/path` or scp-style `user@host:path`, as repositories are written.
fn looks_like_repository(text: &str) -> bool {
    let no_space = !text.chars().any(char::is_whitespace);
    let url = text
        .split_once("://")
        .and_then(|(scheme, rest)| {
            rest.split_once('/')
                .map(|(host, path)| (scheme, host, path))
        })
        .is_some_and(|(scheme, host, path)| {
            !scheme.is_empty() && !host.is_empty() && !path.trim_matches('/').is_empty()
        });
    let scp = text
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once(':'))
        .is_some_and(|(host, path)| !host.is_empty() && !path.is_empty() && !path.starts_with('/'));
    no_space && (url || scp)
}

/// A name usable in metrics labels, annotations and messages.
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::parse_message;

    #[test]
    fn parse_messages_name_the_key_once_and_no_rust_types() {
        assert_eq!(
            parse_message(
                "kubernetes.namespaceModes.enabld",
                "kubernetes.namespaceModes: unknown field `enabld`, expected `enabled` or `interval` at line 3 column 5"
            ),
            "kubernetes.namespaceModes.enabld: unknown field `enabld`, expected `enabled` or `interval` at line 3 column 5"
        );
        assert_eq!(
            parse_message(
                "cache",
                "cache: invalid type: integer `5`, expected struct CacheFile at line 1 column 8"
            ),
            "cache: invalid type: integer `5`, expected a mapping at line 1 column 8"
        );
        assert_eq!(
            parse_message(".", "did not find expected key at line 2 column 1"),
            "did not find expected key at line 2 column 1"
        );
    }
}
