//! One registry folder: its `hosts.toml` read as containerd reads it, or, without one, Docker's
//! certificate files.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{upstream, Capabilities, ClientCertificate, Endpoint, MirrorsError};

const HOSTS_FILE: &str = "hosts.toml";

/// A folder's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostsFile {
    /// `[host."..."]` tables, in file order.
    hosts: Vec<Endpoint>,
    /// `server`, if set.
    server: Option<Endpoint>,
    /// Top-level TLS settings and headers, for the registry itself when `server` is not set.
    root: Tls,
}

/// TLS settings and headers of one endpoint.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Tls {
    pub(super) ca_files: Vec<PathBuf>,
    pub(super) client_certificates: Vec<ClientCertificate>,
    pub(super) skip_verify: bool,
    pub(super) headers: Vec<(String, String)>,
}

impl fmt::Debug for Tls {
    /// Header values are left out: they may carry credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Tls")
            .field("ca_files", &self.ca_files)
            .field("client_certificates", &self.client_certificates)
            .field("skip_verify", &self.skip_verify)
            .field("headers", &header_names)
            .finish()
    }
}

/// The fields of a host table, also allowed at the top level for the server.
#[derive(Deserialize)]
struct HostFields {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    ca: Option<toml::Value>,
    client: Option<toml::Value>,
    #[serde(default)]
    skip_verify: bool,
    header: Option<toml::Table>,
    #[serde(default)]
    override_path: bool,
}

/// The file being read (for errors) and its folder (for relative paths).
struct Place<'a> {
    file: &'a Path,
    folder: &'a Path,
}

impl Place<'_> {
    /// `path`, relative to the folder unless absolute (containerd's rule).
    fn absolute(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.folder.join(path)
        }
    }
}

/// Largest `hosts.toml` read.
const MAX_HOSTS_FILE_BYTES: u64 = 1024 * 1024;

impl HostsFile {
    /// Reads `folder/hosts.toml`, or the certificate files when it is missing or empty.
    pub(super) fn load(folder: &Path) -> Result<Self, MirrorsError> {
        let file = folder.join(HOSTS_FILE);
        let text = match fs::metadata(&file) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
            // Regular files only, capped: a hosts.toml linked to a device must not be read whole.
            _ => crate::file::read_file(&file, MAX_HOSTS_FILE_BYTES)
                .and_then(|bytes| {
                    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", file.display()))
                })
                .map_err(|message| MirrorsError::ReadHostsFile {
                    path: file.clone(),
                    source: io::Error::other(message),
                })?,
        };
        if text.is_empty() {
            return Self::from_certificate_files(folder);
        }
        Self::parse(
            &text,
            &Place {
                file: &file,
                folder,
            },
        )
    }

    /// The endpoints for `registry`: hosts in file order, then the server.
    pub(super) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let server = match &self.server {
            Some(server) => server.clone(),
            None => upstream(registry, self.root.clone()),
        };
        self.hosts.iter().cloned().chain([server]).collect()
    }

    fn parse(text: &str, place: &Place<'_>) -> Result<Self, MirrorsError> {
        let parse_error = |source| MirrorsError::ParseHostsFile {
            path: place.file.to_path_buf(),
            source,
        };
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        let root: HostFields = toml::Value::Table(table.clone())
            .try_into()
            .map_err(parse_error)?;

        let mut hosts = Vec::new();
        match table.get("host") {
            None => {}
            Some(toml::Value::Table(tables)) => {
                for (url, fields) in tables {
                    let toml::Value::Table(_) = fields else {
                        return Err(MirrorsError::HostTable {
                            path: place.file.to_path_buf(),
                        });
                    };
                    let fields: HostFields = fields.clone().try_into().map_err(parse_error)?;
                    hosts.push(endpoint(url, &fields, place)?);
                }
            }
            Some(_) => {
                return Err(MirrorsError::HostTable {
                    path: place.file.to_path_buf(),
                })
            }
        }

        let server = match &root.server {
            Some(url) => Some(endpoint(url, &root, place)?),
            None => None,
        };
        let root = tls(&root, place, root.server.as_deref().unwrap_or("<registry>"))?;
        Ok(Self {
            hosts,
            server,
            root,
        })
    }

    /// Docker's layout: `*.crt` are CA files, `*.cert` client certificates with the `*.key`
    /// of the same name when present; all for the registry itself.
    fn from_certificate_files(folder: &Path) -> Result<Self, MirrorsError> {
        let read_dir_error = |source| MirrorsError::ReadDir {
            path: folder.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in fs::read_dir(folder).map_err(read_dir_error)? {
            let path = entry.map_err(read_dir_error)?.path();
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();

        let mut root = Tls::default();
        for path in files {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => root.ca_files.push(path),
                Some("cert") => {
                    let key = path.with_extension("key");
                    root.client_certificates.push(ClientCertificate {
                        key: key.is_file().then_some(key),
                        certificate: path,
                    });
                }
                _ => {}
            }
        }
        Ok(Self {
            hosts: Vec::new(),
            server: None,
            root,
        })
    }
}

/// An endpoint from its URL and fields.
fn endpoint(url: &str, fields: &HostFields, place: &Place<'_>) -> Result<Endpoint, MirrorsError> {
    let (plain_http, host, path) =
        parse_url(url, fields.override_path).ok_or_else(|| MirrorsError::Url {
            path: place.file.to_path_buf(),
            url: url.to_string(),
        })?;

    let mut capabilities = if fields.capabilities.is_empty() {
        Capabilities::ALL
    } else {
        Capabilities {
            pull: false,
            resolve: false,
            push: false,
        }
    };
    for capability in &fields.capabilities {
        match capability.to_ascii_lowercase().as_str() {
            "pull" => capabilities.pull = true,
            "resolve" => capabilities.resolve = true,
            "push" => capabilities.push = true,
            _ => {
                return Err(MirrorsError::Capability {
                    path: place.file.to_path_buf(),
                    url: url.to_string(),
                    capability: capability.clone(),
                })
            }
        }
    }

    let tls = tls(fields, place, url)?;
    Ok(Endpoint {
        plain_http,
        host,
        path,
        capabilities,
        ca_files: tls.ca_files,
        client_certificates: tls.client_certificates,
        skip_verify: tls.skip_verify,
        override_path: fields.override_path,
        headers: tls.headers,
    })
}

/// `[http[s]://]host[:port][/path]` to (plain HTTP, host, API root path). Without a scheme,
/// HTTPS. The path is cleaned and gets `/v2` appended unless it ends with it or
/// `override_path` is set.
fn parse_url(url: &str, override_path: bool) -> Option<(bool, String, String)> {
    let (plain_http, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if url.contains("://") {
        return None;
    } else {
        (false, url)
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if !valid_authority(authority) || path.contains(['?', '#', ' ', '\t', '\\']) {
        return None;
    }

    let mut components: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop();
            }
            other => components.push(other),
        }
    }
    let mut path: String = components.iter().map(|c| format!("/{c}")).collect();
    if !override_path && !path.ends_with("/v2") {
        path.push_str("/v2");
    }
    Some((plain_http, authority.to_ascii_lowercase(), path))
}

/// `host[:port]` or `[v6][:port]`, without user info.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => {
                let port = match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None if after.is_empty() => None,
                    None => return false,
                };
                let v6_valid = !v6.is_empty()
                    && v6
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !v6_valid {
                    return false;
                }
                ("v6", port)
            }
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let port_valid = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_valid && port_valid
}

fn tls(fields: &HostFields, place: &Place<'_>, url: &str) -> Result<Tls, MirrorsError> {
    let ca_files = match &fields.ca {
        None => Vec::new(),
        Some(value) => strings(value)
            .ok_or_else(|| MirrorsError::Ca {
                path: place.file.to_path_buf(),
                url: url.to_string(),
            })?
            .into_iter()
            .map(|path| place.absolute(path))
            .collect(),
    };
    let client_certificates = match &fields.client {
        None => Vec::new(),
        Some(value) => client_certificates(value, place).ok_or_else(|| MirrorsError::Client {
            path: place.file.to_path_buf(),
            url: url.to_string(),
        })?,
    };
    let headers = match &fields.header {
        None => Vec::new(),
        Some(table) => headers(table).map_err(|name| MirrorsError::Header {
            path: place.file.to_path_buf(),
            url: url.to_string(),
            name,
        })?,
    };
    Ok(Tls {
        ca_files,
        client_certificates,
        skip_verify: fields.skip_verify,
        headers,
    })
}

/// `client`: a path, or a list of paths and `[certificate, key]` pairs (an empty key: the
/// key is in the certificate file). `None` for any other shape.
fn client_certificates(value: &toml::Value, place: &Place<'_>) -> Option<Vec<ClientCertificate>> {
    let items = match value {
        toml::Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| match item {
            toml::Value::String(certificate) => Some(ClientCertificate {
                certificate: place.absolute(certificate),
                key: None,
            }),
            toml::Value::Array(pair) => match pair.as_slice() {
                [toml::Value::String(certificate), toml::Value::String(key)] => {
                    Some(ClientCertificate {
                        certificate: place.absolute(certificate),
                        key: (!key.is_empty()).then(|| place.absolute(key)),
                    })
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `[header]`: each name with a string or a list of strings (one header per element). The
/// error is the offending header's name: not an HTTP token, or a value that is not a string
/// or holds a line break (which would smuggle another header in).
fn headers(table: &toml::Table) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (name, value) in table {
        if !valid_header_name(name) {
            return Err(name.clone());
        }
        for value in strings(value).ok_or_else(|| name.clone())? {
            if value.contains(['\r', '\n', '\0']) {
                return Err(name.clone());
            }
            headers.push((name.clone(), value.to_string()));
        }
    }
    Ok(headers)
}

/// A string, or an array of strings.
fn strings(value: &toml::Value) -> Option<Vec<&str>> {
    match value {
        toml::Value::String(text) => Some(vec![text.as_str()]),
        toml::Value::Array(items) => items.iter().map(toml::Value::as_str).collect(),
        _ => None,
    }
}

/// An HTTP token (RFC 9110 `tchar`s).
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_scheme_host_and_api_root() {
        // (url, override_path, expected)
        let cases = [
            (
                "https://mirror.example.com",
                false,
                Some((false, "mirror.example.com", "/v2")),
            ),
            (
                "mirror.example.com",
                false,
                Some((false, "mirror.example.com", "/v2")),
            ),
            (
                "http://127.0.0.1:5000",
                false,
                Some((true, "127.0.0.1:5000", "/v2")),
            ),
            (
                "https://Mirror.Example.com/",
                false,
                Some((false, "mirror.example.com", "/v2")),
            ),
            (
                "https://m.example.com/v2",
                false,
                Some((false, "m.example.com", "/v2")),
            ),
            (
                "https://m.example.com/v2/",
                false,
                Some((false, "m.example.com", "/v2")),
            ),
            (
                "https://m.example.com/base",
                false,
                Some((false, "m.example.com", "/base/v2")),
            ),
            (
                "https://m.example.com//a/./b/../c",
                false,
                Some((false, "m.example.com", "/a/c/v2")),
            ),
            (
                "https://m.example.com/v2/upstream",
                true,
                Some((false, "m.example.com", "/v2/upstream")),
            ),
            (
                "https://m.example.com",
                true,
                Some((false, "m.example.com", "")),
            ),
            (
                "https://[::1]:5000",
                false,
                Some((false, "[::1]:5000", "/v2")),
            ),
            ("ftp://m.example.com", false, None),
            ("https://", false, None),
            ("https://user:pw@m.example.com", false, None),
            ("https://m.example.com:port", false, None),
            ("https://m.example.com/?x=1", false, None),
            ("https://[::1", false, None),
            ("https://[zz]:1", false, None),
        ];
        for (url, override_path, expected) in cases {
            let parsed = parse_url(url, override_path);
            let expected =
                expected.map(|(http, host, path)| (http, host.to_string(), path.to_string()));
            assert_eq!(parsed, expected, "{url} override_path={override_path}");
        }
    }

    #[test]
    fn header_names_are_http_tokens() {
        assert!(valid_header_name("x-custom-1"));
        assert!(valid_header_name("Authorization"));
        assert!(!valid_header_name(""));
        assert!(!valid_header_name("x custom"));
        assert!(!valid_header_name("x:y"));
        assert!(!valid_header_name("x\r\ny"));
    }
}
