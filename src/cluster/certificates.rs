//! Self-managed serving certificates (`server.selfManagedCertificates`), for clusters without
//! cert-manager.
//!
//! Every replica runs [`SelfManaged::reconcile`] before it binds, then every
//! `checkInterval`. One pass:
//!
//! 1. reads the `kubernetes.io/tls` Secret. Missing: it makes an ECDSA P-256 CA and a serving
//!    certificate for `<service>.<namespace>.svc` (and `.svc.cluster.local`) and creates the
//!    Secret; when another replica created it first (`AlreadyExists`), it reads theirs, so every
//!    replica shares one CA. Present, with the CA or the leaf expiring within `renewBefore` (or
//!    unusable): it replaces them with an update that carries the `resourceVersion` read, and
//!    on a conflict reads again;
//! 2. writes `tls.crt` and `tls.key` to `certFile` and `keyFile` when they differ (each by a
//!    temporary file and a rename, the key with mode 0600); the server's file reload picks up a
//!    rotation;
//! 3. sets `clientConfig.caBundle` of every entry of the ValidatingWebhookConfiguration to the
//!    CA bundle (a merge patch of the entries read, with the `resourceVersion` read, retried on
//!    a conflict); nothing else in it changes.
//!
//! The Secret also holds `ca.key`, so a leaf is renewed under the same CA and the `caBundle`
//! stays the same. A renewed CA is put in front of the old one in `ca.crt` (and the
//! `caBundle`) until the old one expires, so certificates of replicas that have not re-read the
//! Secret yet keep verifying. Only the CA certificates ever leave the Secret.
//!
//! RBAC it needs: `get`, `create` and `update` on that Secret in its namespace, and `get` and
//! `patch` on that webhook configuration (the chart narrows each by `resourceNames`, except
//! `create`, which Kubernetes cannot narrow by name).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use der::Decode as _;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::client::{ask, ClusterError};
use crate::config::SelfManagedCertificates;

/// The Secret's keys.
const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
/// The annotation naming the DNS names the leaf was issued for: a changed Service name or
/// namespace calls for a new leaf.
const DNS_NAMES_ANNOTATION: &str = "attestgate.dev/dns-names";
/// The CA's common name.
const CA_COMMON_NAME: &str = "attestgate self-managed webhook ca";
/// How far back a new certificate's notBefore is set, for clocks a little behind.
const BACKDATE: time::Duration = time::Duration::minutes(5);
/// How many times a pass re-reads after a conflict before it gives up until the next check.
const MAX_ATTEMPTS: usize = 5;

/// Why a pass of [`SelfManaged::reconcile`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A request to the Kubernetes API failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// rcgen could not make a key or a certificate.
    #[error("cannot generate the {what}")]
    Generate {
        /// The key or certificate.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate or key file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Other replicas kept changing the object between this one's read and write.
    #[error("{what} kept changing under {MAX_ATTEMPTS} attempts; trying again at the next check")]
    Contended {
        /// The object.
        what: String,
    },
    /// The webhook configuration has no entries to give the CA to.
    #[error("the validatingwebhookconfiguration {0} has no webhooks")]
    NoWebhooks(String),
}

/// What one pass found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The CA bundle (PEM), as in the Secret's `ca.crt` and the webhook entries' `caBundle`.
    pub ca_bundle: String,
    /// The serving certificate (PEM), as written to the certificate file.
    pub certificate: String,
    /// The serving certificate's notAfter, in Unix seconds.
    pub not_after: i64,
    /// What happened to the Secret.
    pub secret: SecretChange,
    /// Whether the certificate or key file was (re)written.
    pub files_written: bool,
    /// Whether the webhook configuration was patched.
    pub webhooks_patched: bool,
}

/// What a pass did to the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretChange {
    /// Used as it was.
    Kept,
    /// Created by this replica.
    Created,
    /// Created by another replica at the same time; theirs is used.
    CreatedElsewhere,
    /// The leaf (and maybe the CA) was replaced by this replica.
    Renewed,
}

/// The self-managed certificates of one replica.
#[derive(Clone)]
pub struct SelfManaged {
    client: kube::Client,
    settings: SelfManagedCertificates,
    cert_file: PathBuf,
    key_file: PathBuf,
    request_timeout: Duration,
}

impl std::fmt::Debug for SelfManaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfManaged")
            .field("settings", &self.settings)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// What the Secret holds, parsed.
struct Material {
    ca_bundle: String,
    ca_key: String,
    leaf: String,
    leaf_key: String,
}

impl SelfManaged {
    /// The certificates of `settings`, written to `cert_file` and `key_file`, through `client`
    /// whose requests each get `request_timeout`.
    pub fn new(
        client: kube::Client,
        settings: SelfManagedCertificates,
        cert_file: PathBuf,
        key_file: PathBuf,
        request_timeout: Duration,
    ) -> Self {
        Self {
            client,
            settings,
            cert_file,
            key_file,
            request_timeout,
        }
    }

    /// The DNS names the serving certificate is for.
    pub fn dns_names(&self) -> Vec<String> {
        let SelfManagedCertificates {
            service_name,
            namespace,
            ..
        } = &self.settings;
        vec![
            format!("{service_name}.{namespace}.svc"),
            format!("{service_name}.{namespace}.svc.cluster.local"),
        ]
    }

    /// One pass: the Secret made or renewed as needed, the files written, the `caBundle` set.
    ///
    /// # Errors
    /// [`CertificateError`]: the API failed or kept conflicting, or a file cannot be written.
    pub async fn reconcile(&self) -> Result<Reconciled, CertificateError> {
        let (material, secret) = self.secret().await?;
        let files_written = self.write_files(&material)?;
        let webhooks_patched = self.patch_webhooks(&material.ca_bundle).await?;
        let not_after = first_not_after(&material.leaf).unwrap_or(0);
        Ok(Reconciled {
            ca_bundle: material.ca_bundle,
            certificate: material.leaf,
            not_after,
            secret,
            files_written,
            webhooks_patched,
        })
    }

    /// Runs [`Self::reconcile`] every `checkInterval`, forever (the caller aborts the task); a
    /// failed pass is logged and tried again at the next check.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.settings.check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the caller has just reconciled.
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.reconcile().await {
                Ok(done) => self.log(&done),
                Err(err) => tracing::warn!(
                    error = %error_text(&err),
                    secret = %self.settings.secret_name,
                    "self-managed certificates: the check failed; keeping the current files"
                ),
            }
        }
    }

    /// Logs a pass at info when it changed something, at debug otherwise.
    pub fn log(&self, done: &Reconciled) {
        if done.secret != SecretChange::Kept || done.files_written || done.webhooks_patched {
            tracing::info!(
                secret = %self.settings.secret_name,
                change = ?done.secret,
                files_written = done.files_written,
                webhooks_patched = done.webhooks_patched,
                not_after = done.not_after,
                "self-managed certificates updated"
            );
        } else {
            tracing::debug!(
                not_after = done.not_after,
                "self-managed certificates current"
            );
        }
    }

    /// Reads the Secret and creates or renews it as needed, retrying after a conflict.
    async fn secret(&self) -> Result<(Material, SecretChange), CertificateError> {
        let name = &self.settings.secret_name;
        let namespace = &self.settings.namespace;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let timeout = self.request_timeout;
        let mut lost_create = false;
        for _ in 0..MAX_ATTEMPTS {
            let current = ask(
                || format!("get secret {namespace}/{name}"),
                timeout,
                api.get_opt(name),
            )
            .await?;
            let now = OffsetDateTime::now_utc();
            let Some(current) = current else {
                let material = self.fresh(now, &[])?;
                let secret = self.secret_object(&material, None);
                match ask(
                    || format!("create secret {namespace}/{name}"),
                    timeout,
                    api.create(&PostParams::default(), &secret),
                )
                .await
                {
                    Ok(_) => return Ok((material, SecretChange::Created)),
                    Err(err) if is_conflict(&err) => {
                        lost_create = true;
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
            };
            let renewed = match self.assess(&current, now)? {
                Assessment::Usable(material) => {
                    let change = if lost_create {
                        SecretChange::CreatedElsewhere
                    } else {
                        SecretChange::Kept
                    };
                    return Ok((material, change));
                }
                Assessment::Renew(material) => material,
            };
            let version = current.metadata.resource_version.clone();
            let secret = self.secret_object(&renewed, version);
            match ask(
                || format!("update secret {namespace}/{name}"),
                timeout,
                api.replace(name, &PostParams::default(), &secret),
            )
            .await
            {
                Ok(_) => return Ok((renewed, SecretChange::Renewed)),
                Err(err) if is_conflict(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(CertificateError::Contended {
            what: format!("secret {namespace}/{name}"),
        })
    }

    /// Whether the Secret can be used as it is, or what replaces it.
    fn assess(&self, secret: &Secret, now: OffsetDateTime) -> Result<Assessment, CertificateError> {
        let renew_at = unix(now + self.settings.renew_before);
        let names = self.dns_names().join(",");
        let same_names = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DNS_NAMES_ANNOTATION))
            .is_some_and(|n| *n == names);
        let Some(material) = read_material(secret) else {
            tracing::warn!("self-managed certificates: the secret is unusable; replacing it");
            return self.fresh(now, &[]).map(Assessment::Renew);
        };
        let ca_expiry = first_not_after(&material.ca_bundle).unwrap_or(0);
        if ca_expiry <= renew_at {
            // Keep the current CA while it lasts: it verifies what other replicas serve.
            let kept = current_ca(&material.ca_bundle, unix(now));
            return self.fresh(now, &kept).map(Assessment::Renew);
        }
        let leaf_expiry = first_not_after(&material.leaf).unwrap_or(0);
        if leaf_expiry <= renew_at || !same_names || !issued_by_first(&material) {
            return match self.renew_leaf(&material, now) {
                Ok(renewed) => Ok(Assessment::Renew(renewed)),
                Err(err) => {
                    tracing::warn!(
                        error = %error_text(&err),
                        "self-managed certificates: cannot renew under the current ca; \
                         making a new one"
                    );
                    self.fresh(now, &[]).map(Assessment::Renew)
                }
            };
        }
        Ok(Assessment::Usable(material))
    }

    /// A new CA (followed by `older` CA certificates in the bundle) and a leaf under it.
    fn fresh(&self, now: OffsetDateTime, older: &[String]) -> Result<Material, CertificateError> {
        let ca_key = generate_key("ca key")?;
        let lifetime = self.settings.validity.saturating_mul(2);
        let params = ca_params(now - BACKDATE, now + lifetime)?;
        let ca = params
            .self_signed(&ca_key)
            .map_err(|source| CertificateError::Generate {
                what: "ca certificate",
                source,
            })?;
        let mut ca_bundle = ca.pem();
        for pem in older {
            ca_bundle.push_str(pem);
        }
        let ca_key_pem = ca_key.serialize_pem();
        let (leaf, leaf_key) = self.leaf(params, ca_key, now, unix(now + lifetime))?;
        Ok(Material {
            ca_bundle,
            ca_key: ca_key_pem,
            leaf,
            leaf_key,
        })
    }

    /// A new leaf under the Secret's current CA.
    fn renew_leaf(
        &self,
        material: &Material,
        now: OffsetDateTime,
    ) -> Result<Material, CertificateError> {
        let ca_key =
            KeyPair::from_pem(&material.ca_key).map_err(|source| CertificateError::Generate {
                what: "serving certificate (the ca key does not load)",
                source,
            })?;
        let ca_not_after = not_afters(&material.ca_bundle)
            .first()
            .copied()
            .unwrap_or(0);
        // Only the subject and key identifier of the issuer go into the leaf.
        let params = ca_params(now, now)?;
        let (leaf, leaf_key) = self.leaf(params, ca_key, now, ca_not_after)?;
        let renewed = Material {
            ca_bundle: material.ca_bundle.clone(),
            ca_key: material.ca_key.clone(),
            leaf,
            leaf_key,
        };
        if !issued_by_first(&renewed) {
            return Err(CertificateError::Generate {
                what: "serving certificate (the ca in the secret was not made by attestgate)",
                source: rcgen::Error::CouldNotParseCertificate,
            });
        }
        Ok(renewed)
    }

    /// A serving certificate for [`Self::dns_names`] from `issuer`, valid for `validity` but
    /// never past `ca_not_after`; (certificate PEM, key PEM).
    fn leaf(
        &self,
        issuer_params: CertificateParams,
        issuer_key: KeyPair,
        now: OffsetDateTime,
        ca_not_after: i64,
    ) -> Result<(String, String), CertificateError> {
        let issuer = Issuer::new(issuer_params, issuer_key);
        let key = generate_key("serving key")?;
        let generate = |source| CertificateError::Generate {
            what: "serving certificate",
            source,
        };
        let mut params = CertificateParams::new(self.dns_names()).map_err(generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, self.dns_names().remove(0));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - BACKDATE;
        let wanted = now + self.settings.validity;
        params.not_after =
            OffsetDateTime::from_unix_timestamp(ca_not_after).map_or(wanted, |ca| wanted.min(ca));
        let cert = params.signed_by(&key, &issuer).map_err(generate)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The Secret object for `material`, with `resource_version` for an update.
    fn secret_object(&self, material: &Material, resource_version: Option<String>) -> Secret {
        let data = [
            (CA_CRT, &material.ca_bundle),
            (CA_KEY, &material.ca_key),
            (TLS_CRT, &material.leaf),
            (TLS_KEY, &material.leaf_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(self.settings.secret_name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                resource_version,
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "attestgate".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    DNS_NAMES_ANNOTATION.to_owned(),
                    self.dns_names().join(","),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// Writes the leaf and its key where the server reads them, when they differ; whether
    /// anything was written.
    fn write_files(&self, material: &Material) -> Result<bool, CertificateError> {
        let key = write_if_changed(&self.key_file, material.leaf_key.as_bytes(), 0o600)?;
        let cert = write_if_changed(&self.cert_file, material.leaf.as_bytes(), 0o644)?;
        Ok(key || cert)
    }

    /// Sets every entry's `caBundle`; whether a patch was sent.
    async fn patch_webhooks(&self, ca_bundle: &str) -> Result<bool, CertificateError> {
        let name = &self.settings.webhook_configuration_name;
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let timeout = self.request_timeout;
        let wanted = ByteString(ca_bundle.as_bytes().to_vec());
        let encoded = base64::engine::general_purpose::STANDARD.encode(ca_bundle);
        for _ in 0..MAX_ATTEMPTS {
            let current = ask(
                || format!("get validatingwebhookconfiguration {name}"),
                timeout,
                api.get(name),
            )
            .await?;
            let webhooks = current.webhooks.unwrap_or_default();
            if webhooks.is_empty() {
                return Err(CertificateError::NoWebhooks(name.clone()));
            }
            if webhooks
                .iter()
                .all(|w| w.client_config.ca_bundle.as_ref() == Some(&wanted))
            {
                return Ok(false);
            }
            // The entries as read, with only caBundle changed; the resourceVersion makes a
            // change by someone else in between a conflict instead of a lost update.
            let mut entries = serde_json::to_value(&webhooks).unwrap_or_default();
            if let Some(list) = entries.as_array_mut() {
                for entry in list {
                    if let Some(config) = entry
                        .get_mut("clientConfig")
                        .and_then(|c| c.as_object_mut())
                    {
                        config.insert("caBundle".to_owned(), encoded.clone().into());
                    }
                }
            }
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "webhooks": entries,
            });
            match ask(
                || format!("patch validatingwebhookconfiguration {name}"),
                timeout,
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            {
                Ok(_) => return Ok(true),
                Err(err) if is_conflict(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(CertificateError::Contended {
            what: format!("validatingwebhookconfiguration {name}"),
        })
    }
}

/// The outcome of looking at the Secret.
enum Assessment {
    Usable(Material),
    Renew(Material),
}

/// The error on one line, with kube's message for API errors.
pub fn error_text(err: &CertificateError) -> String {
    match err {
        CertificateError::Cluster(cluster) => cluster.text(),
        other => crate::display_chain(other),
    }
}

/// Whether the API answered 409 (AlreadyExists on create, Conflict on update).
fn is_conflict(err: &ClusterError) -> bool {
    matches!(
        err,
        ClusterError::Api {
            source: kube::Error::Api(status),
            ..
        } if status.code == 409
    )
}

fn generate_key(what: &'static str) -> Result<KeyPair, CertificateError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| CertificateError::Generate { what, source })
}

/// The CA's parameters; the same subject and key give the same issuer name and key identifier
/// in a leaf, so a CA read back from the Secret issues leaves that chain to it.
fn ca_params(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CertificateError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|source| {
        CertificateError::Generate {
            what: "ca certificate",
            source,
        }
    })?;
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// The four PEM values of the Secret, when each holds what it should.
fn read_material(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let material = Material {
        ca_bundle: text(CA_CRT)?,
        ca_key: text(CA_KEY)?,
        leaf: text(TLS_CRT)?,
        leaf_key: text(TLS_KEY)?,
    };
    let usable = !not_afters(&material.ca_bundle).is_empty()
        && first_not_after(&material.leaf).is_some()
        && KeyPair::from_pem(&material.leaf_key).is_ok();
    usable.then_some(material)
}

/// The certificates of a PEM bundle, each as PEM and parsed (what does not parse is left out).
fn parse_all(pem: &str) -> Vec<(String, x509_cert::Certificate)> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|der| {
            let cert = x509_cert::Certificate::from_der(&der).ok()?;
            Some((to_pem(&der), cert))
        })
        .collect()
}

fn to_pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn not_after_of(cert: &x509_cert::Certificate) -> i64 {
    let secs = cert
        .tbs_certificate()
        .validity()
        .not_after
        .to_unix_duration()
        .as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The notAfter of each certificate in `pem`, in order.
fn not_afters(pem: &str) -> Vec<i64> {
    parse_all(pem)
        .iter()
        .map(|(_, c)| not_after_of(c))
        .collect()
}

/// The notAfter of the first certificate in `pem`.
fn first_not_after(pem: &str) -> Option<i64> {
    not_afters(pem).first().copied()
}

/// The bundle's current (first) CA as PEM, while it is still valid at `now`: a renewed CA is
/// bundled with it and nothing older, so the bundle never grows past two.
fn current_ca(bundle: &str, now: i64) -> Vec<String> {
    parse_all(bundle)
        .into_iter()
        .take(1)
        .filter(|(_, cert)| not_after_of(cert) > now)
        .map(|(pem, _)| pem)
        .collect()
}

/// Whether the leaf names the bundle's first CA as its issuer.
fn issued_by_first(material: &Material) -> bool {
    let cas = parse_all(&material.ca_bundle);
    let leaves = parse_all(&material.leaf);
    match (cas.first(), leaves.first()) {
        (Some((_, ca)), Some((_, leaf))) => {
            ca.tbs_certificate().subject() == leaf.tbs_certificate().issuer()
        }
        _ => false,
    }
}

fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

/// Replaces `path` with `contents` (a temporary file in the same folder, then a rename) unless
/// it already holds them; whether it wrote.
fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<bool, CertificateError> {
    if std::fs::read(path).is_ok_and(|current| current == contents) {
        return Ok(false);
    }
    let failed = |source| CertificateError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    // A leftover from an interrupted write would keep its old mode.
    let _ = std::fs::remove_file(&staging);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&staging).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(source) = written.and_then(|()| std::fs::rename(&staging, path)) {
        let _ = std::fs::remove_file(&staging);
        return Err(failed(source));
    }
    Ok(true)
}
