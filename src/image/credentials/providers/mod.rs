//! The kubelet's credential-provider exec plugins (`credentialprovider.kubelet.k8s.io/v1`), run
//! from the same config file and binaries as the kubelet: this is how EKS, GKE and AKS nodes
//! get registry credentials.
//!
//! For an image, every provider whose `matchImages` match is asked in config order (from its
//! cache, else by running `<bin dir>/<name> <args>` with `CredentialProviderRequest` on stdin);
//! the `auth` maps of the answers are merged (on a key given by two providers the earlier one
//! wins, as in the kubelet) and the entries matching the image are returned, most specific
//! first. Concurrent misses for one image and provider run the plugin once.
//!
//! What this does not do: the kubelet's service-account-token mode (`tokenAttributes`, which
//! needs tokens minted for the pod being admitted) is refused when the config is read. A
//! failing plugin is an error here, where the kubelet logs it and pulls without its
//! credentials: the caller decides whether to go on anonymously.

mod cache;
mod config;
mod duration;
mod exec;
mod response;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

pub use response::ResponseError;

use self::cache::Cache;
use self::config::ProviderConfig;
use super::docker_config::{self, DockerConfig, Entry};
use super::Credentials;
use crate::image::ImageReference;

/// Default time a plugin may run before it is killed. The kubelet allows a minute; an
/// admission webhook answers within its own timeout (10 s by default), so much less here.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on a plugin's stdout. Real responses are a few kilobytes.
pub const DEFAULT_MAX_PLUGIN_OUTPUT_BYTES: usize = 1024 * 1024;
const REQUEST_KIND: &str = "CredentialProviderRequest";

/// Why credential providers could not be set up or could not answer. Messages name the
/// plugin, its exit status and the first line of its stderr; never a credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The config file could not be read.
    #[error("failed to read credential provider config {path:?}")]
    ReadConfig {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The config is not YAML/JSON of the expected shape.
    #[error("credential provider config is not a valid CredentialProviderConfig document")]
    ParseConfig(#[source] serde_norway::Error),
    /// Wrong `apiVersion` or `kind`.
    #[error(
        "credential provider config has apiVersion {api_version:?} and kind {kind:?}, \
         expected kubelet.config.k8s.io/v1 CredentialProviderConfig"
    )]
    ConfigKind {
        /// The config's `apiVersion`.
        api_version: String,
        /// The config's `kind`.
        kind: String,
    },
    /// The config lists no providers.
    #[error("credential provider config lists no providers")]
    NoProviders,
    /// A provider name is empty, `.`/`..`, or has a path separator.
    #[error("credential provider name {name:?} is not a plain file name")]
    ProviderName {
        /// The name.
        name: String,
    },
    /// Two providers have one name.
    #[error("credential provider {name:?} is listed twice")]
    DuplicateProvider {
        /// The name.
        name: String,
    },
    /// A provider has no `matchImages`.
    #[error("credential provider {name:?} has no matchImages")]
    NoMatchImages {
        /// The provider.
        name: String,
    },
    /// A `matchImages` entry is not a registry pattern.
    #[error("credential provider {name:?} has an invalid matchImages entry {pattern:?}")]
    MatchImage {
        /// The provider.
        name: String,
        /// The entry.
        pattern: String,
    },
    /// A provider's `apiVersion` is not a credential provider API version.
    #[error(
        "credential provider {name:?} has apiVersion {api_version:?}, expected \
         credentialprovider.kubelet.k8s.io/v1 (or v1beta1, v1alpha1)"
    )]
    ProviderApiVersion {
        /// The provider.
        name: String,
        /// Its `apiVersion`.
        api_version: String,
    },
    /// `defaultCacheDuration` is missing or not a non-negative Go duration.
    #[error("credential provider {name:?} has defaultCacheDuration {value:?}, expected a duration such as \"12h\"")]
    DefaultCacheDuration {
        /// The provider.
        name: String,
        /// The value, if any.
        value: Option<String>,
    },
    /// The provider asks for service account tokens.
    #[error(
        "credential provider {name:?} needs service account tokens (tokenAttributes), \
         which attestgate cannot provide"
    )]
    TokenAttributes {
        /// The provider.
        name: String,
    },
    /// An `env` entry has an empty name, or a name with `=` or NUL, or a value with NUL.
    #[error("credential provider {name:?} has an invalid env entry {var:?}")]
    EnvVar {
        /// The provider.
        name: String,
        /// The variable's name.
        var: String,
    },
    /// The plugin binary is missing from the bin dir.
    #[error("credential provider {plugin:?} has no executable at {path:?}")]
    PluginNotFound {
        /// The provider.
        plugin: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The plugin could not be started (missing, not executable, unreadable).
    #[error("failed to start credential provider {plugin:?} at {path:?}")]
    Spawn {
        /// The provider.
        plugin: String,
        /// The binary.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing the request or reading the answer failed.
    #[error("failed to exchange data with credential provider {plugin:?}")]
    Io {
        /// The provider.
        plugin: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The plugin ran past the timeout and was killed.
    #[error("credential provider {plugin:?} did not answer within {timeout:?} and was killed")]
    Timeout {
        /// The provider.
        plugin: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The plugin wrote more than the cap to stdout and was killed.
    #[error("credential provider {plugin:?} wrote more than {limit} bytes and was killed")]
    OutputTooLarge {
        /// The provider.
        plugin: String,
        /// The cap, in bytes.
        limit: usize,
    },
    /// The plugin exited with failure.
    #[error("credential provider {plugin:?} failed ({status}){}", stderr_note(.stderr))]
    Failed {
        /// The provider.
        plugin: String,
        /// Its exit status.
        status: ExitStatus,
        /// The first non-empty line of its stderr (shortened; may be empty).
        stderr: String,
    },
    /// The plugin's stdout is not a usable response.
    #[error("credential provider {plugin:?} gave an invalid response")]
    Response {
        /// The provider.
        plugin: String,
        /// What is wrong with it.
        #[source]
        source: ResponseError,
    },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The configured credential providers, each with its cache.
pub struct CredentialProviders {
    providers: Vec<Provider>,
    bin_dir: PathBuf,
    timeout: Duration,
    max_output_bytes: usize,
}

/// One provider and its state.
struct Provider {
    config: ProviderConfig,
    cache: Mutex<Cache>,
    /// One gate per image being asked about, so concurrent misses run the plugin once.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CredentialProviders {
    /// Reads the kubelet's `--image-credential-provider-config` file, with plugins in
    /// `bin_dir` (its `--image-credential-provider-bin-dir`).
    ///
    /// # Errors
    /// [`CredentialError`] if the file cannot be read, is invalid as the kubelet would judge
    /// it, or names a plugin missing from `bin_dir`.
    pub fn from_file(path: &Path, bin_dir: impl Into<PathBuf>) -> Result<Self, CredentialError> {
        // Regular files only, capped, like every other file the config names.
        let text = crate::file::read_file(path, 1024 * 1024)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))
            })
            .map_err(|message| CredentialError::ReadConfig {
                path: path.to_path_buf(),
                source: std::io::Error::other(message),
            })?;
        Self::from_config(&text, bin_dir)
    }

    /// Parses a `CredentialProviderConfig` (YAML or JSON), with plugins in `bin_dir`.
    ///
    /// # Errors
    /// As [`CredentialProviders::from_file`], without the read.
    pub fn from_config(text: &str, bin_dir: impl Into<PathBuf>) -> Result<Self, CredentialError> {
        let bin_dir = bin_dir.into();
        let providers = config::parse(text)?;
        for provider in &providers {
            let path = bin_dir.join(&provider.name);
            if let Err(source) = std::fs::metadata(&path) {
                return Err(CredentialError::PluginNotFound {
                    plugin: provider.name.clone(),
                    path,
                    source,
                });
            }
        }
        Ok(Self {
            providers: providers.into_iter().map(Provider::new).collect(),
            bin_dir,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_PLUGIN_OUTPUT_BYTES,
        })
    }

    /// Sets how long a plugin may run before it is killed.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the cap on a plugin's stdout.
    #[must_use]
    pub fn with_max_output_bytes(mut self, limit: usize) -> Self {
        self.max_output_bytes = limit;
        self
    }

    /// Whether any provider's `matchImages` match `image`.
    pub fn matches(&self, image: &ImageReference) -> bool {
        self.providers.iter().any(|p| p.matches(image))
    }

    /// The credentials the matching providers give for `image`, most specific key first
    /// (empty if no provider matches or none has credentials for it).
    ///
    /// Providers run one after another, each within the plugin timeout; wrap the call in the
    /// caller's deadline. Dropping the future kills a plugin that is still running.
    ///
    /// # Errors
    /// [`CredentialError`] naming the first provider that could not be run or gave an
    /// invalid answer. Errors are not cached.
    pub async fn credentials(
        &self,
        image: &ImageReference,
    ) -> Result<Vec<Credentials>, CredentialError> {
        let mut merged: Vec<Entry> = Vec::new();
        for provider in self.providers.iter().filter(|p| p.matches(image)) {
            let config = self.answer(provider, image).await?;
            for entry in config.entries() {
                if !merged.iter().any(|seen| seen.pattern == entry.pattern) {
                    merged.push(entry.clone());
                }
            }
        }
        Ok(docker_config::ranked(merged.iter(), image)
            .into_iter()
            .cloned()
            .collect())
    }

    /// The provider's answer for `image`: from its cache, else from one plugin run.
    async fn answer(
        &self,
        provider: &Provider,
        image: &ImageReference,
    ) -> Result<DockerConfig, CredentialError> {
        let name = &provider.config.name;
        if let Some(hit) = provider.cached(image) {
            tracing::debug!(provider = %name, image = %image, "credential provider cache hit");
            return Ok(hit);
        }

        let ticket = GateTicket::take(provider, image);
        let _turn = ticket.gate.lock().await;
        match provider.cached(image) {
            Some(hit) => Ok(hit),
            None => self.run(provider, image).await,
        }
    }

    async fn run(
        &self,
        provider: &Provider,
        image: &ImageReference,
    ) -> Result<DockerConfig, CredentialError> {
        let config = &provider.config;
        tracing::debug!(provider = %config.name, image = %image, "running credential provider");
        let request = serde_json::json!({
            "apiVersion": config.api_version,
            "kind": REQUEST_KIND,
            "image": image.name(),
        })
        .to_string();
        let path = self.bin_dir.join(&config.name);
        let stdout = exec::run(exec::Invocation {
            plugin: &config.name,
            path: &path,
            args: &config.args,
            env: &config.env,
            request: request.as_bytes(),
            timeout: self.timeout,
            max_output_bytes: self.max_output_bytes,
        })
        .await?;

        let response = response::parse(&stdout, &config.api_version).map_err(|source| {
            CredentialError::Response {
                plugin: config.name.clone(),
                source,
            }
        })?;
        let ttl = response
            .cache_duration
            .unwrap_or(config.default_cache_duration);
        if !ttl.is_zero() {
            provider.lock_cache().insert(
                response.cache_key_type,
                image,
                response.config.clone(),
                Instant::now(),
                ttl,
            );
        }
        Ok(response.config)
    }
}

impl fmt::Debug for CredentialProviders {
    /// Names only: args and env may carry secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .providers
            .iter()
            .map(|p| p.config.name.as_str())
            .collect();
        f.debug_struct("CredentialProviders")
            .field("providers", &names)
            .field("bin_dir", &self.bin_dir)
            .field("timeout", &self.timeout)
            .field("max_output_bytes", &self.max_output_bytes)
            .finish()
    }
}

impl Provider {
    fn new(config: ProviderConfig) -> Self {
        Self {
            config,
            cache: Mutex::default(),
            in_flight: Mutex::default(),
        }
    }

    fn matches(&self, image: &ImageReference) -> bool {
        self.config.match_images.iter().any(|p| p.matches(image))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters: at worst an entry is missing and the plugin runs again.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, image: &ImageReference) -> Option<DockerConfig> {
        self.lock_cache().get(image, Instant::now())
    }
}

/// A place in the queue of callers asking one provider about one image; leaving (even by
/// cancellation) drops the queue once nobody else is in it.
struct GateTicket<'a> {
    provider: &'a Provider,
    key: String,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> GateTicket<'a> {
    fn take(provider: &'a Provider, image: &ImageReference) -> Self {
        let key = image.name();
        let mut in_flight = provider
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let gate = Arc::clone(in_flight.entry(key.clone()).or_default());
        Self {
            provider,
            key,
            gate,
        }
    }
}

impl Drop for GateTicket<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .provider
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two references left (the map's and this ticket's): nobody else holds or awaits it.
        let ours = in_flight
            .get(&self.key)
            .is_some_and(|gate| Arc::ptr_eq(gate, &self.gate));
        if ours && Arc::strong_count(&self.gate) <= 2 {
            in_flight.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests;
