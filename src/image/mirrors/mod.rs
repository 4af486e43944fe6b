//! Registry mirrors and rewrites configured as for containerd: a directory with one folder per
//! registry host (`docker.io`, `127.0.0.1_5000_` or `127.0.0.1:5000`, and `_default` for every
//! other registry), each holding a `hosts.toml`:
//!
//! ```toml
//! server = "https://registry-1.docker.io"
//!
//! [host."https://mirror.example.com"]
//!   capabilities = ["pull", "resolve"]
//!   ca = "mirror-ca.pem"                # or a list; relative to the folder
//!   skip_verify = false
//!   [host."https://mirror.example.com".header]
//!     x-custom = "value"
//! ```
//!
//! [`Mirrors::endpoints`] lists where to send a registry's requests, in the order containerd
//! tries them: the `host` tables in file order, then the `server` (the registry itself when
//! `server` is not set). A folder without `hosts.toml` uses Docker's certificate layout instead
//! (`*.crt` CA files, `*.cert`/`*.key` client pairs) for the registry itself.
//!
//! Trust: only endpoints with the `resolve` capability may turn a tag into a digest; a
//! `pull`-only mirror may serve content by digest, which the registry client checks by hash.
//! Plain `http://` endpoints are listed with [`Endpoint::is_plain_http`] set, and
//! [`Endpoint::permitted`] says whether the operator allowed them; the caller skips the others.
//! A request to a mirror should carry `?ns=<registry>` as containerd's do.
//!
//! Not read: `dial_timeout` and `proxy` (the registry client's timeouts and the process
//! environment apply), and containerd's plain-HTTP fallback for `localhost` registries.
//! Unlike containerd, which logs a broken `hosts.toml` and falls back to the certificate
//! layout, a broken file is an error here, so a typo cannot silently bypass a mirror.

mod hosts_file;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use self::hosts_file::HostsFile;

/// The folder that applies to registries without a folder of their own.
const DEFAULT_NAMESPACE: &str = "_default";
/// Where Docker Hub's API is served (`docker.io` is only its name).
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const DOCKER_HUB: &str = "docker.io";

/// Why a mirrors directory cannot be used. Messages name the file and the offending entry.
#[derive(Debug, thiserror::Error)]
pub enum MirrorsError {
    /// The directory or one of its folders cannot be listed.
    #[error("failed to read mirrors directory {path:?}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `hosts.toml` cannot be read.
    #[error("failed to read {path:?}")]
    ReadHostsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `hosts.toml` is not TOML of the expected shape.
    #[error("{path:?} is not a valid hosts.toml")]
    ParseHostsFile {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// `host` is not a table of tables.
    #[error("{path:?} has a `host` entry that is not a table of host tables")]
    HostTable {
        /// The file.
        path: PathBuf,
    },
    /// A `server` or `host` URL is not `http(s)://host[:port][/path]`.
    #[error("{path:?} has an invalid registry URL {url:?}")]
    Url {
        /// The file.
        path: PathBuf,
        /// The URL.
        url: String,
    },
    /// A capability is not `pull`, `resolve` or `push`.
    #[error("{path:?} gives {url:?} the unknown capability {capability:?}")]
    Capability {
        /// The file.
        path: PathBuf,
        /// The endpoint's URL.
        url: String,
        /// The capability.
        capability: String,
    },
    /// `ca` is neither a path nor a list of paths.
    #[error("{path:?} has an invalid `ca` for {url:?}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// The endpoint's URL.
        url: String,
    },
    /// `client` is neither a path, a list of paths nor a list of `[cert, key]` pairs.
    #[error("{path:?} has an invalid `client` for {url:?}")]
    Client {
        /// The file.
        path: PathBuf,
        /// The endpoint's URL.
        url: String,
    },
    /// A header name is not an HTTP token, or a value is not a string (or list of strings)
    /// without line breaks.
    #[error("{path:?} has an invalid header {name:?} for {url:?}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The endpoint's URL.
        url: String,
        /// The header's name.
        name: String,
    },
}

/// What an endpoint may be used for (containerd's host capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Fetch manifests and blobs by digest.
    pub pull: bool,
    /// Turn a tag into a digest: a trusted operation, never for a public mirror.
    pub resolve: bool,
    /// Push (listed for completeness; attestgate never pushes).
    pub push: bool,
}

impl Capabilities {
    /// `pull`, `resolve` and `push`: what a registry itself, and a host without
    /// `capabilities`, can do.
    pub const ALL: Self = Self {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// A client certificate and its key (`None`: the key is in the certificate file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertificate {
    /// PEM certificate (chain) file.
    pub certificate: PathBuf,
    /// PEM key file, if separate.
    pub key: Option<PathBuf>,
}

/// One place to send a registry's requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    plain_http: bool,
    host: String,
    path: String,
    capabilities: Capabilities,
    ca_files: Vec<PathBuf>,
    client_certificates: Vec<ClientCertificate>,
    skip_verify: bool,
    override_path: bool,
    headers: Vec<(String, String)>,
}

impl Endpoint {
    /// The API root: `scheme://host[:port]` and the path requests go under (`/v2` unless
    /// `override_path`), e.g. `https://mirror.example.com/v2`.
    pub fn url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}{}", self.host, self.path)
    }

    /// `host[:port]` to connect to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API root path (`/v2`, `/prefix/v2`, or the literal path with `override_path`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the endpoint is plain `http://`.
    pub fn is_plain_http(&self) -> bool {
        self.plain_http
    }

    /// Whether the endpoint may be used given the operator's list of `host[:port]` allowed
    /// over plain HTTP: HTTPS endpoints always, plain HTTP ones only when listed.
    pub fn permitted(&self, plain_http_hosts: &[String]) -> bool {
        !self.plain_http || plain_http_hosts.iter().any(|h| h == &self.host)
    }

    /// What the endpoint may be used for.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// CA certificate files trusted for this endpoint besides the usual roots.
    pub fn ca_files(&self) -> &[PathBuf] {
        &self.ca_files
    }

    /// Client certificates to present.
    pub fn client_certificates(&self) -> &[ClientCertificate] {
        &self.client_certificates
    }

    /// Whether the operator asked to skip TLS certificate verification.
    pub fn skip_verify(&self) -> bool {
        self.skip_verify
    }

    /// Whether [`Endpoint::path`] is the API root as written (no `/v2` added).
    pub fn override_path(&self) -> bool {
        self.override_path
    }

    /// Extra headers, in file order (a list value gives one header per element).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

impl fmt::Debug for Endpoint {
    /// Header values are left out: they may carry credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Endpoint")
            .field("url", &self.url())
            .field("capabilities", &self.capabilities)
            .field("ca_files", &self.ca_files)
            .field("client_certificates", &self.client_certificates)
            .field("skip_verify", &self.skip_verify)
            .field("override_path", &self.override_path)
            .field("headers", &header_names)
            .finish()
    }
}

/// The mirrors configuration of every registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors {
    /// Folder name (`docker.io`, `host_port_`, `host:port`, `_default`) to its config.
    namespaces: HashMap<String, HostsFile>,
}

impl Mirrors {
    /// No mirrors: every registry is reached at itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every registry folder of a containerd `config_path` directory (such as
    /// `/etc/containerd/certs.d`).
    ///
    /// # Errors
    /// [`MirrorsError`] if the directory cannot be listed or a `hosts.toml` is unreadable or
    /// invalid.
    pub fn from_dir(path: &Path) -> Result<Self, MirrorsError> {
        let read_dir_error = |source| MirrorsError::ReadDir {
            path: path.to_path_buf(),
            source,
        };
        let mut namespaces = HashMap::new();
        for entry in std::fs::read_dir(path).map_err(read_dir_error)? {
            let entry = entry.map_err(read_dir_error)?;
            let folder = entry.path();
            // Follows symlinks, as a configuration management tool may link folders in.
            if !folder.is_dir() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            namespaces.insert(name, HostsFile::load(&folder)?);
        }
        Ok(Self { namespaces })
    }

    /// Where to send requests for `registry` (`host[:port]`, as
    /// [`ImageReference::registry`](crate::image::ImageReference::registry) gives it), in the
    /// order to try them: mirrors in file order, then the server. Never empty.
    ///
    /// The folder is the registry's own (`host_port_` before `host:port`), else `_default`.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let folder = namespace_candidates(registry)
            .into_iter()
            .find_map(|name| self.namespaces.get(&name));
        match folder {
            Some(file) => file.endpoints(registry),
            None => vec![upstream(registry, hosts_file::Tls::default())],
        }
    }
}

/// The folders that may configure `registry`, in containerd's order of preference.
fn namespace_candidates(registry: &str) -> Vec<String> {
    let mut names = Vec::with_capacity(3);
    if let Some((host, port)) = registry.rsplit_once(':') {
        let bracketed_or_plain = !host.contains(':') || host.ends_with(']');
        if bracketed_or_plain && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            names.push(format!("{host}_{port}_"));
        }
    }
    names.push(registry.to_string());
    names.push(DEFAULT_NAMESPACE.to_string());
    names
}

/// The registry itself: `https://<registry>/v2` (Docker Hub's API host for `docker.io`),
/// able to do everything, with the folder's top-level TLS settings and headers.
fn upstream(registry: &str, tls: hosts_file::Tls) -> Endpoint {
    let host = if registry == DOCKER_HUB {
        DOCKER_HUB_API_HOST
    } else {
        registry
    };
    Endpoint {
        plain_http: false,
        host: host.to_string(),
        path: "/v2".to_string(),
        capabilities: Capabilities::ALL,
        ca_files: tls.ca_files,
        client_certificates: tls.client_certificates,
        skip_verify: tls.skip_verify,
        override_path: false,
        headers: tls.headers,
    }
}

#[cfg(test)]
mod tests;
