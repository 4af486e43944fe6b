//! The webhook's config file: what it means once validated, and how it is loaded.
//!
//! The file (YAML, camelCase keys) is admin-owned: it holds the policies with their trust
//! anchors, exceptions, the denylist and registry access. [`Config::load`] reads it, refuses
//! anything unknown or inconsistent with an error that names the key, and loads every file it
//! points to (policies are verified against the trust the config gives them). A loaded
//! [`Config`] is immutable; a reload builds a new one and swaps it in whole.

mod error;
mod file;
mod load;
mod pattern;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub use error::ConfigError;
pub use pattern::{ImagePattern, PatternError};

use crate::admission::Mode;
use crate::evidence::{ArchivistaSource, FileSource, Sources};
use crate::image::binding::Binding;
use crate::image::{CredentialProviders, Digest, ImageReference, Keyring, Registry};
use crate::policy::SignedPolicy;

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A loaded, validated config.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every other file and folder the load read (policies, keys, certificates, evidence,
    /// docker configs, mirrors): a change to any of them calls for a reload.
    pub watched: Vec<PathBuf>,
    /// `sha256:` of the file's bytes.
    pub digest: String,
    /// The HTTPS server.
    pub server: ServerSettings,
    /// How long one review may take, all images together.
    pub deadline: Duration,
    /// The webhook configuration's `timeoutSeconds`, which `deadline` stays under.
    pub webhook_timeout: Duration,
    /// Cap on the unique images judged in one request.
    pub max_images_per_request: usize,
    /// What an image that no policy matches gets.
    pub no_match: NoMatch,
    /// Deny tag references in enforce (the tag may move between admission and pull).
    pub require_digest: bool,
    /// Deny short names (no registry): node runtimes may resolve them via search registries.
    pub reject_short_names: bool,
    /// Judge workload templates in warn at most, and Pods for real.
    pub pods_only: bool,
    /// The weakest mode any request is judged in.
    pub minimum_mode: Mode,
    /// The policies, in file order.
    pub policies: Vec<Arc<PolicyEntry>>,
    /// Exceptions still in force at load, and the ones already expired (reported, not used).
    pub exceptions: Vec<Exception>,
    /// What is never admitted.
    pub denylist: Denylist,
    /// Registry access shared by every policy.
    pub registry: Arc<Registry>,
    /// Docker configs, searched in order.
    pub keyring: Arc<Keyring>,
    /// The kubelet's credential provider plugins, asked when no docker config matches.
    pub credential_providers: Option<Arc<CredentialProviders>>,
    /// Decision cache settings.
    pub cache: CacheSettings,
    /// Opt-in (`registry.pullSecrets`): the credentials of the pod's image pull secrets, read
    /// through the Kubernetes API; `None` is off.
    pub pull_secrets: Option<PullSecretSettings>,
    /// How the Kubernetes API is reached.
    pub kubernetes: KubernetesSettings,
}

/// `registry.pullSecrets`: the pod's image pull secrets (and its service account's), read
/// through the Kubernetes API, searched before the config's own docker configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullSecretSettings {
    /// How long a secret or service account read from the API is used before it is read again.
    pub refresh: Duration,
}

/// `kubernetes`: the API server the webhook reads pull secrets from and counts namespaces in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    /// A kubeconfig file; `None` is the pod's own service account (in-cluster config).
    pub kubeconfig: Option<PathBuf>,
    /// How long one API request may take (never past the review's deadline).
    pub request_timeout: Duration,
    /// Opt-in (`kubernetes.namespaceModes`): count the namespaces by their mode label for the
    /// `attestgate_namespaces` metric; `None` is off.
    pub namespace_modes: Option<NamespaceModesSettings>,
}

/// `kubernetes.namespaceModes`: the namespaces are listed (metadata only) and counted by the
/// value of their `attestgate.dev/mode` label, in the background (see
/// `crate::cluster::namespaces`). Read when the server starts; a change needs a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceModesSettings {
    /// How often the namespaces are listed again.
    pub interval: Duration,
}

/// The server part of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// HTTPS address.
    pub listen: SocketAddr,
    /// Plain-HTTP address of `/healthz`, `/readyz` and `/metrics`.
    pub health_listen: SocketAddr,
    /// Serving certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Its key (PEM).
    pub key_file: Option<PathBuf>,
    /// CA whose client certificates (the API server's) are required, when set.
    pub client_ca_file: Option<PathBuf>,
    /// How often certificate, config and policy files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight reviews may run after SIGTERM.
    pub shutdown_grace: Duration,
    /// The server makes and rotates its own CA and serving certificate (clusters without
    /// cert-manager); `None` reads `cert_file` and `key_file` as they are.
    pub self_managed_certificates: Option<SelfManagedCertificates>,
}

/// `server.selfManagedCertificates`: the CA and serving certificate kept in a Secret shared by
/// every replica, written to `certFile`/`keyFile`, and the CA written into the webhook
/// configuration's `caBundle` (see `crate::cluster::certificates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfManagedCertificates {
    /// The `kubernetes.io/tls` Secret that holds the CA and the serving certificate.
    pub secret_name: String,
    /// The ValidatingWebhookConfiguration whose entries get the CA as `caBundle`.
    pub webhook_configuration_name: String,
    /// The Service the API server calls: the certificate is for `<service>.<namespace>.svc`.
    pub service_name: String,
    /// The namespace of the Secret and the Service.
    pub namespace: String,
    /// Lifetime of the serving certificate (the CA lives twice as long).
    pub validity: Duration,
    /// A certificate (or the CA) expiring within this is replaced.
    pub renew_before: Duration,
    /// How often the Secret is checked again after the start.
    pub check_interval: Duration,
}

/// What an image no policy matches gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoMatch {
    /// Denied (in enforce; warned or audited in the other modes).
    Deny,
    /// Admitted.
    Allow,
}

/// The evidence a policy is checked against: local files, then Archivista.
pub type PolicySource = Sources<FileSource, ArchivistaSource>;

/// One policy of the config, loaded.
#[derive(Debug)]
pub struct PolicyEntry {
    /// Its name in the config (used in messages, metrics and records).
    pub name: String,
    /// The images it covers.
    pub images: Vec<ImagePattern>,
    /// The policy file.
    pub path: PathBuf,
    /// The verified policy.
    pub policy: Arc<SignedPolicy>,
    /// When a trusted timestamp says it was signed (certificate signers timestamped by a trusted
    /// authority); `None` when no signature carries one.
    pub signed_at: Option<OffsetDateTime>,
    /// How evidence is tied to the image.
    pub binding: Binding,
    /// Where evidence is searched.
    pub source: Arc<PolicySource>,
    /// Everything besides the policy bytes that changes what this policy decides: its trust,
    /// binding and evidence source settings (a part of every decision cache key).
    pub settings_digest: String,
}

impl PolicyEntry {
    /// Whether this policy covers `image`.
    pub fn covers(&self, image: &ImageReference) -> bool {
        self.images.iter().any(|p| p.matches(image))
    }

    /// `name@sha256:<policy digest>`, as decision records name it.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, self.policy.digest)
    }
}

/// An admin-owned exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    /// What it covers.
    pub target: ExceptionTarget,
    /// Why it exists.
    pub reason: String,
    /// Who owns it.
    pub owner: String,
    /// When it stops applying.
    pub expires: OffsetDateTime,
}

/// What an exception covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionTarget {
    /// Images whose name matches.
    Image(ImagePattern),
    /// The image with this digest (any of its identities).
    Digest(Digest),
}

impl Exception {
    /// A short description for messages: `image pattern (owner, until date)`.
    pub fn describe(&self) -> String {
        let target = match &self.target {
            ExceptionTarget::Image(p) => p.to_string(),
            ExceptionTarget::Digest(d) => d.to_string(),
        };
        // The last second it applies: a date in the config holds through that day.
        let until = (self.expires - time::Duration::SECOND)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        format!("{target} (owner {}, until {until})", self.owner)
    }

    /// Whether it still applies at `now`.
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        now < self.expires
    }
}

/// What is never admitted, whatever passed (checked on cached decisions too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denylist {
    /// Image digests (any identity: the pinned digest, a platform manifest, a config).
    pub digests: Vec<Digest>,
    /// Source commits (lowercase hex).
    pub commits: Vec<String>,
    /// Key ids of evidence signers.
    pub keyids: Vec<String>,
}

impl Denylist {
    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty() && self.commits.is_empty() && self.keyids.is_empty()
    }
}

/// Decision cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bound on the decisions kept, in bytes.
    pub decisions_max_bytes: u64,
    /// How long a passing decision is kept (never past the policy's expiry or a certificate
    /// checked at the current time).
    pub decisions_ttl: Duration,
    /// How long a failing decision (a violation, not an error) is kept: short, because CI often
    /// deploys before its evidence upload finishes.
    pub failed_decisions_ttl: Duration,
    /// Opt-in: how long past its TTL a passed decision may still answer when re-verifying fails
    /// with an error (never a violation); `None` is off.
    pub stale_if_error: Option<Duration>,
    /// Verifications that missed the deadline and may finish in the background to fill the
    /// cache, at most this many at once.
    pub background_verifications: usize,
}

impl Config {
    /// The credentials the registry client sends for `image`: the most specific docker config
    /// match, else the credential providers' answer, else none.
    ///
    /// # Errors
    /// A credential provider that failed.
    pub async fn credentials_for(
        &self,
        image: &ImageReference,
    ) -> Result<crate::image::RegistryCredentials, crate::image::CredentialError> {
        let found = self
            .keyring
            .select(self.credential_providers.as_deref(), image)
            .await?;
        Ok(crate::image::RegistryCredentials::from_found(found))
    }
}
