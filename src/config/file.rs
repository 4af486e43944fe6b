//! The config file as written: YAML, camelCase keys, every unknown key refused.
//!
//! These types only describe the document; [`super::load`] checks what they mean and builds the
//! running configuration from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::units::{ByteSize, Seconds};
use crate::admission::Mode;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ConfigFile {
    /// The webhook server.
    #[serde(default)]
    pub server: ServerFile,
    /// How long one review may take, all images together.
    pub deadline: Option<Seconds>,
    /// The `timeoutSeconds` of the webhook configuration; the deadline must stay under it.
    pub webhook_timeout_seconds: Option<u32>,
    /// Cap on the unique images judged in one request.
    pub max_images_per_request: Option<usize>,
    /// What an image that no policy matches gets.
    pub no_match: Option<NoMatchFile>,
    /// Deny tag references in enforce.
    #[serde(default)]
    pub require_digest: bool,
    /// Deny short names (no registry).
    pub reject_short_names: Option<bool>,
    /// Judge workload templates in warn at most, and Pods for real.
    #[serde(default)]
    pub pods_only: bool,
    /// The weakest mode any namespace gets (a request on a weaker path is judged at this one).
    pub minimum_mode: Option<Mode>,
    /// The policies, each for a set of images.
    #[serde(default)]
    pub policies: Vec<PolicyFile>,
    /// Admin-owned exceptions.
    #[serde(default)]
    pub exceptions: Vec<ExceptionFile>,
    /// What is never admitted, whatever passed.
    #[serde(default)]
    pub denylist: DenylistFile,
    /// Registry access.
    #[serde(default)]
    pub registry: RegistryFile,
    /// Cache sizes and lifetimes.
    #[serde(default)]
    pub cache: CacheFile,
    /// How the Kubernetes API is reached (pull secrets, namespace modes).
    #[serde(default)]
    pub kubernetes: KubernetesFile,
}

/// `server:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ServerFile {
    pub listen: Option<String>,
    pub health_listen: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub reload_interval: Option<Seconds>,
    pub shutdown_grace: Option<Seconds>,
    pub self_managed_certificates: Option<SelfManagedCertificatesFile>,
}

/// `server.selfManagedCertificates:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SelfManagedCertificatesFile {
    pub secret_name: String,
    pub webhook_configuration_name: String,
    pub service_name: String,
    pub namespace: String,
    pub validity: Option<Seconds>,
    pub renew_before: Option<Seconds>,
    pub check_interval: Option<Seconds>,
}

/// `noMatch:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum NoMatchFile {
    Deny,
    Allow,
}

/// One entry of `policies:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PolicyFile {
    pub name: String,
    pub images: Vec<String>,
    pub policy: PathBuf,
    pub policy_digest: Option<String>,
    pub trust: TrustFile,
    pub binding: Option<BindingFile>,
    pub expected_source: Option<String>,
    #[serde(default)]
    pub trust_registry_push_rights: bool,
    pub evidence: EvidenceFile,
}

/// `binding:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum BindingFile {
    Digest,
    Commit,
}

/// `trust:` of a policy: who may sign it, and what its evidence may rely on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TrustFile {
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    #[serde(default)]
    pub ca_roots: Vec<PathBuf>,
    #[serde(default)]
    pub ca_intermediates: Vec<PathBuf>,
    #[serde(default)]
    pub timestamp_authorities: Vec<PathBuf>,
    pub signer_identity: Option<SignerIdentityFile>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub kms_keys: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub allow_untimestamped_certificates: bool,
}

/// `signerIdentity:`: constraints on a certificate policy signer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SignerIdentityFile {
    pub common_name: Option<String>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
    #[serde(default)]
    pub uris: Vec<String>,
}

/// `evidence:` of a policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct EvidenceFile {
    #[serde(default)]
    pub directories: Vec<PathBuf>,
    #[serde(default)]
    pub files: Vec<PathBuf>,
    pub archivista: Option<ArchivistaFile>,
}

/// `archivista:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ArchivistaFile {
    pub server: String,
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    #[serde(default, deserialize_with = "unique_keys")]
    pub headers: BTreeMap<String, String>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub request_timeout: Option<Seconds>,
}

/// One entry of `exceptions:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ExceptionFile {
    pub image: Option<String>,
    pub digest: Option<String>,
    pub reason: String,
    pub owner: String,
    pub expires: String,
}

/// `denylist:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct DenylistFile {
    #[serde(default)]
    pub digests: Vec<String>,
    #[serde(default)]
    pub commits: Vec<String>,
    #[serde(default)]
    pub keyids: Vec<String>,
}

/// `registry:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RegistryFile {
    #[serde(default)]
    pub insecure: Vec<String>,
    #[serde(default)]
    pub ca_files: Vec<PathBuf>,
    #[serde(default)]
    pub docker_configs: Vec<PathBuf>,
    pub credential_providers: Option<CredentialProvidersFile>,
    pub mirrors_dir: Option<PathBuf>,
    pub request_timeout: Option<Seconds>,
    pub max_retries: Option<u32>,
    pub max_concurrent_per_registry: Option<usize>,
    pub pull_secrets: Option<PullSecretsFile>,
}

/// `registry.pullSecrets:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PullSecretsFile {
    #[serde(default)]
    pub enabled: bool,
    pub refresh: Option<Seconds>,
}

/// `kubernetes:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct KubernetesFile {
    pub kubeconfig: Option<PathBuf>,
    pub request_timeout: Option<Seconds>,
    pub namespace_modes: Option<NamespaceModesFile>,
}

/// `kubernetes.namespaceModes:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NamespaceModesFile {
    #[serde(default)]
    pub enabled: bool,
    pub interval: Option<Seconds>,
}

/// `credentialProviders:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CredentialProvidersFile {
    pub config: PathBuf,
    pub bin_dir: PathBuf,
}

/// `cache:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct CacheFile {
    pub decisions_max_bytes: Option<ByteSize>,
    pub decisions_ttl: Option<Seconds>,
    pub failed_decisions_ttl: Option<Seconds>,
    pub content_max_bytes: Option<ByteSize>,
    pub tag_ttl: Option<Seconds>,
    pub not_found_ttl: Option<Seconds>,
    pub evidence_max_bytes: Option<ByteSize>,
    pub evidence_search_ttl: Option<Seconds>,
    pub evidence_empty_search_ttl: Option<Seconds>,
    pub stale_if_error: Option<Seconds>,
    pub background_verifications: Option<usize>,
}

/// A map whose keys are unique: serde's maps would keep the last of two equal keys silently,
/// where every other duplicate in the file (struct fields) is refused.
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key {key:?}")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique(std::marker::PhantomData))
}
