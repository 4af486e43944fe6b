//! Registry access: an image reference to a [`ResolvedImage`]. Every request is made by one
//! reqwest client per endpoint and credentials, with every body it reads capped; what
//! `GET /v2/` said (its auth challenge) is remembered per endpoint client for a few minutes
//! and tokens per repository (see `endpoint.rs`). `oci-client` is used for its types only.
//!
//! What [`Registry::resolve`] guarantees:
//! - a tag is resolved to a digest once; a digest in the reference wins over its tag;
//! - every manifest, index and config is hash-checked against the digest it was asked for by
//!   before it is read, and size-capped;
//! - every runnable platform child of an index is judged (only `unknown/unknown` entries, which
//!   no runtime selects, are skipped), so nobody can slip an unjudged platform into an index;
//! - every request has a timeout cut to the caller's deadline, 429 and 5xx are retried a bounded
//!   number of times inside that deadline and never past it, and the requests in flight to one
//!   registry are bounded.
//!
//! What is cached (see `cache.rs`): manifests, indexes and configs by digest after their hash
//! check, with no TTL, bounded by [`RegistryConfig::content_cache_bytes`]; a tag's digest for
//! [`RegistryConfig::tag_cache_ttl`]; the resolved image itself under the same byte bound, as
//! long as the tag answer it went through (for a reference by digest: the tag TTL); "not found"
//! for [`RegistryConfig::negative_cache_ttl`]; never "unauthorized" nor a transient failure.
//! Concurrent misses for one key make one request. Every key holds the registry, the
//! repository and a hash of the credentials.
//!
//! Plain HTTP is used only for the hosts listed in [`RegistryConfig::insecure_hosts`].
//!
//! Mirrors ([`RegistryConfig::mirrors`], containerd's `hosts.toml`): the endpoints of the
//! registry are tried in containerd's order, the server last. A tag is turned into a digest
//! only by endpoints with the `resolve` capability; manifests and configs by digest come from
//! endpoints with `pull`. The next endpoint is tried when one answers "not found", is
//! unreachable, times out or fails with a 5xx, and a mirror also when it refuses access (401
//! or 403: mirrors are asked anonymously, see below); anything else (a digest mismatch above
//! all: an attack signal, not an outage) stops. Whatever endpoint serves content, it is hash-checked;
//! cache keys name the registry, not the endpoint, since content by digest is the same
//! wherever it came from. A plain-HTTP endpoint is used only when its host is listed in
//! [`RegistryConfig::insecure_hosts`] (others are skipped). Refused with
//! [`RegistryError::Endpoint`]: `skip_verify` (content is hash-checked, but a tag resolved
//! over an unverified connection could be swapped, and TLS is never silently weakened), and
//! what this client does not honour: client certificates, extra headers, an API root other than
//! `/v2`. An endpoint's `ca` files are trusted for that endpoint only. Requests to a mirror
//! carry `?ns=<registry>`. The registry's credentials are sent to the registry only: a mirror
//! on another host is asked anonymously (as containerd's CRI sends credentials only to the
//! host they were configured for).
//!
//! Limitation: credentials configured for a mirror's own host are not looked up (the caller
//! hands over the registry's credentials only), so a mirror that needs auth cannot serve.
//!
//! Limitation: the bearer-token realm a registry names in `WWW-Authenticate` is followed
//! wherever it points (with the basic credentials, if any, as distribution's token protocol
//! wants), and requests follow redirects (up to 10, `Authorization` dropped when one leaves
//! the host), as registries that keep blobs in object storage need. A registry admins do not
//! trust can therefore make the webhook send requests elsewhere; content is still hash-checked.

mod cache;
mod endpoint;
mod error;
mod manifest;
mod request;
mod resolve;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::ClientProtocol;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use endpoint::EndpointClient;
pub use error::RegistryError;
pub(crate) use manifest::is_index_media_type;

use super::mirrors::{Endpoint, Mirrors};
use super::{ImageReference, ResolvedImage};

/// Default timeout of one request (connect, headers and body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of retries after a 429 or 5xx (so at most this plus one attempts).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default pause before the first retry; it doubles for each further one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Default number of requests in flight to one registry: enough for a Deployment with 30 new
/// multi-platform images to resolve in parallel (benches/RESULTS.md: 5.3 s at 8, under 2 s at
/// 32 with 100 ms per upstream answer), few enough not to flood a registry.
pub const DEFAULT_MAX_CONCURRENT_PER_REGISTRY: usize = 32;
/// Default cap on a manifest or index, as the distribution registry caps what it accepts.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Default cap on an image config.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Default cap on the entries of an index, counted over the indexes nested in it too.
pub const DEFAULT_MAX_INDEX_ENTRIES: usize = 64;
/// Default cap on index levels: an index may list indexes, which may list only manifests.
pub const DEFAULT_MAX_NESTING: usize = 2;
/// What every request to a registry says it is.
const USER_AGENT: &str = concat!("attestgate/", env!("CARGO_PKG_VERSION"));
/// Longest pause between two retries.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Clients kept (one per registry and credentials) before the cache is emptied.
const MAX_CACHED_CLIENTS: usize = 256;

/// How the registry client behaves. Every field has a named default ([`Default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `host[:port]` values reached over plain HTTP, compared exactly with the registry of a
    /// reference (`127.0.0.1:5000` is not `localhost:5000`; `docker.io` is reached as
    /// `index.docker.io`). Nothing else ever is: every other registry is HTTPS only.
    pub insecure_hosts: Vec<String>,
    /// PEM CA certificates trusted besides the system roots (for registries with a private CA).
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Timeout of one request; cut shorter when the caller's deadline is nearer.
    pub request_timeout: Duration,
    /// Retries after a 429 or 5xx, within the caller's deadline.
    pub max_retries: u32,
    /// Pause before the first retry; doubles for each further one (at most 2 s).
    pub retry_backoff: Duration,
    /// Requests in flight to one registry, over all resolutions sharing this client.
    pub max_concurrent_per_registry: usize,
    /// Cap on a manifest or index, in bytes.
    pub max_manifest_bytes: u64,
    /// Cap on an image config, in bytes.
    pub max_config_bytes: u64,
    /// Cap on the entries of an index, counted over the indexes nested in it too.
    pub max_index_entries: usize,
    /// Cap on index levels (1: an index may not list indexes).
    pub max_nesting: usize,
    /// Bound on the verified manifests, indexes and configs kept (no TTL: a digest names its
    /// bytes for ever) and on the resolved images kept (for as long as their tag's digest), in
    /// bytes (a resolved image is charged an estimate of its size in memory); 0 keeps none.
    pub content_cache_bytes: u64,
    /// How long a tag's digest is kept; zero keeps none.
    pub tag_cache_ttl: Duration,
    /// How long a "not found" is kept; zero keeps none. Nothing else that fails is ever kept.
    pub negative_cache_ttl: Duration,
    /// Mirrors and endpoint settings per registry (containerd `hosts.toml`); `None`: every
    /// registry is reached at itself.
    pub mirrors: Option<Mirrors>,
}

impl RegistryConfig {
    /// Default bound on the verified manifests, indexes and configs kept, in bytes (keys
    /// included). (Associated constants: `src/image/mod.rs` re-exports the module's others.)
    pub const DEFAULT_CONTENT_CACHE_BYTES: u64 = 64 * 1024 * 1024;
    /// Default time a tag's digest is kept: a tag moved meanwhile is seen this much later.
    pub const DEFAULT_TAG_CACHE_TTL: Duration = Duration::from_secs(30);
    /// Default time a "not found" is kept: short, since CI often asks before its push ends.
    pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(5);
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            extra_ca_pem: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            max_concurrent_per_registry: DEFAULT_MAX_CONCURRENT_PER_REGISTRY,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_config_bytes: DEFAULT_MAX_CONFIG_BYTES,
            max_index_entries: DEFAULT_MAX_INDEX_ENTRIES,
            max_nesting: DEFAULT_MAX_NESTING,
            content_cache_bytes: Self::DEFAULT_CONTENT_CACHE_BYTES,
            tag_cache_ttl: Self::DEFAULT_TAG_CACHE_TTL,
            negative_cache_ttl: Self::DEFAULT_NEGATIVE_CACHE_TTL,
            mirrors: None,
        }
    }
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryCredentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// A user name and password (or identity token): sent as HTTP basic auth, or to the
    /// registry's token realm to obtain a bearer token.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token, sent as is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// The user name under which registries that issue OAuth2 refresh tokens (docker's
/// `identitytoken`, e.g. Azure Container Registry) accept one as the password at their token
/// realm; `docker login` stores such tokens under it.
pub const IDENTITY_TOKEN_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

impl RegistryCredentials {
    /// What to send for credentials found in a docker config or by a credential provider
    /// (`None`: anonymous). An identity token is sent as the password of
    /// [`IDENTITY_TOKEN_USERNAME`] to the token realm, never to the registry itself; a
    /// registry that only takes the OAuth2 `refresh_token` grant refuses it with a 401.
    pub fn from_found(found: Option<crate::image::Credentials>) -> Self {
        use crate::image::Credentials;
        match found {
            None => Self::Anonymous,
            Some(Credentials::Basic { username, password }) => Self::Basic { username, password },
            Some(Credentials::Bearer(token)) => Self::Bearer { token },
            Some(Credentials::IdentityToken(token)) => Self::Basic {
                username: IDENTITY_TOKEN_USERNAME.to_string(),
                password: token,
            },
        }
    }

    fn to_oci(&self) -> RegistryAuth {
        match self {
            Self::Anonymous => RegistryAuth::Anonymous,
            Self::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Self::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        }
    }

    /// A hash that tells credentials apart without keeping them as a map key.
    pub(crate) fn fingerprint(&self) -> String {
        let fields: Vec<&str> = match self {
            Self::Anonymous => vec!["anonymous"],
            Self::Basic { username, password } => vec!["basic", username, password],
            Self::Bearer { token } => vec!["bearer", token],
        };
        let mut encoded = Vec::new();
        for field in fields {
            encoded.extend_from_slice(&(field.len() as u64).to_be_bytes());
            encoded.extend_from_slice(field.as_bytes());
        }
        crate::encoding::sha256_hex(&encoded)
    }
}

/// A registry client shared by every resolution: one HTTP client per registry and credentials,
/// one concurrency limit per registry.
pub struct Registry {
    config: RegistryConfig,
    /// One client per (registry, endpoint, credentials) triple, since each caches tokens per
    /// repository: tokens obtained with one tenant's pull secret are never used for
    /// another's. Each holds what its endpoint's `/v2/` said (see `endpoint.rs`).
    clients: Mutex<HashMap<(String, String, String), EndpointClient>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    caches: cache::Caches,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client with `config`. Installs the crate's rustls crypto provider if none is yet.
    ///
    /// # Errors
    /// [`RegistryError::InvalidCa`] for an extra CA that is not a PEM certificate,
    /// [`RegistryError::Setup`] if the HTTP client cannot be built.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        crate::install_crypto_provider();
        for (index, pem) in config.extra_ca_pem.iter().enumerate() {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
            if !certs.is_ok_and(|c| !c.is_empty()) {
                return Err(RegistryError::InvalidCa { index });
            }
        }
        let registry = Self {
            caches: cache::Caches::new(&config),
            config,
            clients: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
        };
        // Build one client now, so a configuration the HTTP stack refuses fails here.
        registry.build_client(ClientProtocol::Https, Vec::new())?;
        Ok(registry)
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Resolves `reference` at its registry with `credentials`, finishing before `deadline`.
    ///
    /// What is fetched: the tag's digest (unless the reference has a digest), the manifest or
    /// index it pins, and for every runnable platform image its manifest and config; nothing
    /// while an earlier resolution of the same reference with the same credentials is kept
    /// (see the caches above).
    ///
    /// # Errors
    /// [`RegistryError`]; [`RegistryError::is_transient`] tells which must not be cached.
    pub async fn resolve(
        &self,
        reference: &ImageReference,
        credentials: &RegistryCredentials,
        deadline: Instant,
    ) -> Result<ResolvedImage, RegistryError> {
        let identity = credentials.fingerprint();
        let key = |kind, name: &str| {
            cache::Key::new(
                reference.registry(),
                reference.repository(),
                &identity,
                kind,
                name,
            )
        };
        let resolved_key = key(cache::Kind::Resolved, &reference.to_string());
        if let Some(mut hit) = self.caches.resolved(&resolved_key) {
            hit.reference = reference.clone();
            return Ok(hit);
        }

        let started = Instant::now();
        let routes = self.routes_for(reference.registry(), credentials)?;
        let limit = self.limit_for(reference.registry());
        let session = resolve::Session {
            rules: request::Rules {
                config: &self.config,
                registry: reference.registry(),
                limit: &limit,
                started: Instant::now(),
                deadline,
            },
            routes: &routes,
            caches: &self.caches,
            identity: identity.clone(),
            reference,
            entries: AtomicUsize::new(0),
        };
        let resolved = session.resolve().await?;

        // Kept while the tag answer it went through is live and still names its digest (a
        // reference by digest: for the tag TTL from the start).
        let tag_ttl = self.config.tag_cache_ttl;
        let expires = match reference.digest() {
            Some(_) => (!tag_ttl.is_zero()).then(|| started + tag_ttl),
            None => {
                let tag = key(cache::Kind::Tag, reference.tag().unwrap_or("latest"));
                self.caches.digest_expiry(&tag, &resolved.digest)
            }
        };
        if let Some(expires) = expires {
            self.caches.keep_resolved(resolved_key, &resolved, expires);
        }
        Ok(resolved)
    }

    /// The endpoints to try for `registry`, in order, each with its client; plain-HTTP ones the
    /// operator did not allow are left out.
    ///
    /// # Errors
    /// [`RegistryError::Endpoint`] for an endpoint configured in a way that is refused or
    /// cannot be honoured (checked for every endpoint, so a broken one is never hidden by a
    /// working one before it).
    fn routes_for(
        &self,
        registry: &str,
        credentials: &RegistryCredentials,
    ) -> Result<Vec<Route>, RegistryError> {
        let endpoints = match &self.config.mirrors {
            Some(mirrors) => mirrors.endpoints(registry),
            None => Mirrors::new().endpoints(registry),
        };
        let mut routes = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            check_endpoint(registry, &endpoint)?;
            if !endpoint.permitted(&self.config.insecure_hosts) {
                tracing::debug!(
                    registry,
                    endpoint = %endpoint.url(),
                    "plain-HTTP endpoint skipped: its host is not listed as insecure"
                );
                continue;
            }
            // Credentials go to the registry's own host only (as containerd's CRI sends
            // them only to the host they are for): a mirror elsewhere is asked anonymously.
            let credentials = if is_registry_itself(registry, &endpoint) {
                credentials
            } else {
                &RegistryCredentials::Anonymous
            };
            let client = self.client_for(registry, &endpoint, credentials)?;
            let mirror = (!is_registry_itself(registry, &endpoint)).then(|| endpoint.host().into());
            routes.push(Route {
                endpoint,
                client,
                mirror,
                auth: credentials.to_oci(),
            });
        }
        Ok(routes)
    }

    fn client_for(
        &self,
        registry: &str,
        endpoint: &Endpoint,
        credentials: &RegistryCredentials,
    ) -> Result<EndpointClient, RegistryError> {
        let key = (
            registry.to_string(),
            endpoint.url(),
            credentials.fingerprint(),
        );
        if let Some(client) = lock(&self.clients).get(&key) {
            return Ok(client.clone());
        }
        let protocol = if endpoint.is_plain_http() {
            ClientProtocol::Http
        } else if is_registry_itself(registry, endpoint) {
            // As without mirrors: the registry itself is plain HTTP when listed as insecure.
            ClientProtocol::HttpsExcept(self.config.insecure_hosts.clone())
        } else {
            ClientProtocol::Https
        };
        let mut extra_ca = Vec::new();
        for path in endpoint.ca_files() {
            let refuse = |problem: String| RegistryError::Endpoint {
                registry: registry.to_string(),
                endpoint: endpoint.url(),
                problem,
            };
            let pem = crate::file::read_file(path, 4 * 1024 * 1024)
                .map_err(|e| refuse(format!("its CA file cannot be read ({e})")))?;
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
            if !certs.is_ok_and(|c| !c.is_empty()) {
                return Err(refuse(format!(
                    "its CA file {path:?} is not a PEM certificate"
                )));
            }
            extra_ca.push(pem);
        }
        let client = self.build_client(protocol, extra_ca)?;
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        Ok(clients.entry(key).or_insert(client).clone())
    }

    /// The endpoint's client: the configured extra roots (merged with the system's) and the
    /// endpoint's, the request timeout as connect and read timeout, our user agent, and
    /// reqwest's defaults for everything else (redirects: up to 10, `Authorization` dropped
    /// across hosts; proxies from the environment).
    fn build_client(
        &self,
        protocol: ClientProtocol,
        endpoint_ca_pem: Vec<Vec<u8>>,
    ) -> Result<EndpointClient, RegistryError> {
        let setup = |e: reqwest::Error| RegistryError::Setup { source: e.into() };
        let mut http = reqwest::Client::builder();
        for pem in self.config.extra_ca_pem.iter().chain(&endpoint_ca_pem) {
            http = http.tls_certs_merge([reqwest::Certificate::from_pem(pem).map_err(setup)?]);
        }
        let http = http
            .connect_timeout(self.config.request_timeout)
            .read_timeout(self.config.request_timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(setup)?;
        Ok(EndpointClient::new(http, protocol))
    }

    fn limit_for(&self, registry: &str) -> Arc<Semaphore> {
        let permits = self.config.max_concurrent_per_registry.max(1);
        lock(&self.limits)
            .entry(registry.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }
}

/// One endpoint of a registry, ready to be asked.
pub(super) struct Route {
    pub(super) endpoint: Endpoint,
    client: EndpointClient,
    /// The endpoint's host when it is not the registry itself (requests then carry
    /// `?ns=<registry>`).
    mirror: Option<String>,
    /// What the endpoint is sent: the registry's credentials, or nothing at a mirror on
    /// another host.
    auth: RegistryAuth,
}

impl Route {
    /// The name errors give the endpoint: the registry's own, or the mirror's host.
    pub(super) fn name<'a>(&'a self, registry: &'a str) -> &'a str {
        self.mirror.as_deref().unwrap_or(registry)
    }

    /// `reference` as asked of this endpoint.
    pub(super) fn target(&self, mut reference: Reference) -> Reference {
        if let Some(mirror) = &self.mirror {
            reference.set_mirror_registry(mirror.clone());
        }
        reference
    }
}

/// Whether `endpoint` is the registry itself (Docker Hub's API host for `docker.io`).
fn is_registry_itself(registry: &str, endpoint: &Endpoint) -> bool {
    endpoint.host() == registry
        || (registry == "docker.io" && endpoint.host() == "registry-1.docker.io")
}

/// Refuses an endpoint whose settings would weaken TLS or cannot be honoured.
fn check_endpoint(registry: &str, endpoint: &Endpoint) -> Result<(), RegistryError> {
    let problem = if endpoint.skip_verify() {
        // Content by digest is hash-checked wherever it comes from, but a tag resolved over a
        // connection nobody verified could be answered with another image's digest: refusing
        // is the only way not to weaken TLS silently.
        Some("`skip_verify = true` is refused: a tag resolved over an unverified connection could be swapped for another image; trust the endpoint's certificate with `ca` instead")
    } else if !endpoint.client_certificates().is_empty() {
        Some("client certificates are not supported by this registry client")
    } else if !endpoint.headers().is_empty() {
        Some("extra headers are not supported by this registry client")
    } else if endpoint.path() != "/v2" {
        Some("an API root other than `/v2` is not supported by this registry client")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(RegistryError::Endpoint {
            registry: registry.to_string(),
            endpoint: endpoint.url(),
            problem: problem.to_string(),
        }),
        None => Ok(()),
    }
}

/// Locks a map that is only ever read or written in one step (never across an `.await`), so a
/// poisoned lock still holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_their_secrets() {
        let basic = RegistryCredentials::Basic {
            username: "ci".into(),
            password: "hunter2".into(),
        };
        let bearer = RegistryCredentials::Bearer {
            token: "tok-123".into(),
        };
        let shown = format!("{basic:?} {bearer:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
        assert!(shown.contains("ci"));
    }

    #[test]
    fn fingerprints_tell_credentials_apart() {
        let basic = |u: &str, p: &str| RegistryCredentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        let prints = [
            RegistryCredentials::Anonymous.fingerprint(),
            basic("a", "bc").fingerprint(),
            basic("ab", "c").fingerprint(),
            RegistryCredentials::Bearer { token: "x".into() }.fingerprint(),
        ];
        for (i, a) in prints.iter().enumerate() {
            for b in prints.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused_at_setup() {
        let config = RegistryConfig {
            extra_ca_pem: vec![b"not a certificate".to_vec()],
            ..RegistryConfig::default()
        };
        assert!(matches!(
            Registry::new(config),
            Err(RegistryError::InvalidCa { index: 0 })
        ));
        assert!(Registry::new(RegistryConfig::default()).is_ok());
    }

    #[test]
    fn one_client_per_registry_and_credentials() {
        let registry = Registry::new(RegistryConfig::default()).unwrap();
        let anonymous = RegistryCredentials::Anonymous;
        let basic = RegistryCredentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        registry.routes_for("r1:5000", &anonymous).unwrap();
        registry.routes_for("r1:5000", &anonymous).unwrap();
        registry.routes_for("r1:5000", &basic).unwrap();
        registry.routes_for("r2:5000", &anonymous).unwrap();
        assert_eq!(lock(&registry.clients).len(), 3);
        assert!(Arc::ptr_eq(
            &registry.limit_for("r1:5000"),
            &registry.limit_for("r1:5000")
        ));
    }
}
