//! Mirrors directories laid out as containerd's `certs.d`, written into temp dirs.

use std::fs;

use super::*;

/// Writes `files` (relative path, content) under a new temp dir.
fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

fn urls(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints.iter().map(Endpoint::url).collect()
}

const PULL_ONLY: Capabilities = Capabilities {
    pull: true,
    resolve: false,
    push: false,
};
const PULL_RESOLVE: Capabilities = Capabilities {
    pull: true,
    resolve: true,
    push: false,
};

#[test]
fn docker_io_mirrors_come_first_in_file_order_then_the_server() {
    let dir = config_dir(&[(
        "docker.io/hosts.toml",
        r#"
server = "https://registry-1.docker.io"

[host."https://public-mirror.example.com"]
  capabilities = ["pull"]
[host."https://docker-mirror.internal"]
  capabilities = ["pull", "RESOLVE"]
  ca = "docker-mirror.crt"
  [host."https://docker-mirror.internal".header]
    x-custom-1 = "custom header"
    x-custom-2 = ["part a", "part b"]
[host."https://a-late-mirror.example.com"]
"#,
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();

    let endpoints = mirrors.endpoints("docker.io");

    assert_eq!(
        urls(&endpoints),
        vec![
            "https://public-mirror.example.com/v2",
            "https://docker-mirror.internal/v2",
            "https://a-late-mirror.example.com/v2",
            "https://registry-1.docker.io/v2",
        ]
    );
    let [public, internal, late, server] = endpoints.as_slice() else {
        panic!("four endpoints expected");
    };
    assert_eq!(public.capabilities(), PULL_ONLY);
    assert_eq!(internal.capabilities(), PULL_RESOLVE);
    assert_eq!(late.capabilities(), Capabilities::ALL);
    assert_eq!(server.capabilities(), Capabilities::ALL);
    assert_eq!(
        internal.ca_files(),
        [dir.path().join("docker.io/docker-mirror.crt")]
    );
    assert_eq!(
        internal.headers(),
        [
            ("x-custom-1".to_string(), "custom header".to_string()),
            ("x-custom-2".to_string(), "part a".to_string()),
            ("x-custom-2".to_string(), "part b".to_string()),
        ]
    );
    assert!(public.headers().is_empty() && public.ca_files().is_empty());
    assert!(!public.skip_verify() && !public.is_plain_http());

    // Other registries are not affected.
    assert_eq!(
        urls(&mirrors.endpoints("quay.io")),
        vec!["https://quay.io/v2"]
    );
}

#[test]
fn local_registry_with_port_ca_and_skip_verify() {
    let dir = config_dir(&[(
        "127.0.0.1_5000_/hosts.toml",
        r#"
server = "https://127.0.0.1:5000"
ca = ["registry-ca.pem", "/etc/ssl/extra-ca.pem"]
skip_verify = true
client = [["client.cert", "client.key"], ["/etc/ssl/combined.pem", ""]]
"#,
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();

    let endpoints = mirrors.endpoints("127.0.0.1:5000");

    let [server] = endpoints.as_slice() else {
        panic!("one endpoint expected: {endpoints:?}");
    };
    assert_eq!(server.url(), "https://127.0.0.1:5000/v2");
    assert_eq!(server.host(), "127.0.0.1:5000");
    assert!(server.skip_verify());
    let folder = dir.path().join("127.0.0.1_5000_");
    assert_eq!(
        server.ca_files(),
        [
            folder.join("registry-ca.pem"),
            PathBuf::from("/etc/ssl/extra-ca.pem")
        ]
    );
    assert_eq!(
        server.client_certificates(),
        [
            ClientCertificate {
                certificate: folder.join("client.cert"),
                key: Some(folder.join("client.key")),
            },
            ClientCertificate {
                certificate: PathBuf::from("/etc/ssl/combined.pem"),
                key: None,
            },
        ]
    );
    // Another port is another registry.
    assert_eq!(
        urls(&mirrors.endpoints("127.0.0.1:5001")),
        vec!["https://127.0.0.1:5001/v2"]
    );
}

#[test]
fn port_folders_prefer_the_underscore_form_then_the_colon_form() {
    let both = config_dir(&[
        (
            "reg.example.com_5000_/hosts.toml",
            "server = \"https://underscore.example.com\"",
        ),
        (
            "reg.example.com:5000/hosts.toml",
            "server = \"https://colon.example.com\"",
        ),
    ]);
    let colon_only = config_dir(&[(
        "reg.example.com:5000/hosts.toml",
        "server = \"https://colon.example.com\"",
    )]);

    let from_both = Mirrors::from_dir(both.path()).unwrap();
    let from_colon = Mirrors::from_dir(colon_only.path()).unwrap();

    assert_eq!(
        urls(&from_both.endpoints("reg.example.com:5000")),
        vec!["https://underscore.example.com/v2"]
    );
    assert_eq!(
        urls(&from_colon.endpoints("reg.example.com:5000")),
        vec!["https://colon.example.com/v2"]
    );
}

#[test]
fn default_folder_applies_to_registries_without_their_own() {
    let dir = config_dir(&[
        (
            "_default/hosts.toml",
            "[host.\"https://registry.example.com\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        ),
        ("quay.io/hosts.toml", "server = \"https://quay.io\"\n"),
    ]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();

    assert_eq!(
        urls(&mirrors.endpoints("ghcr.io")),
        vec!["https://registry.example.com/v2", "https://ghcr.io/v2"]
    );
    assert_eq!(
        urls(&mirrors.endpoints("docker.io")),
        vec![
            "https://registry.example.com/v2",
            "https://registry-1.docker.io/v2"
        ]
    );
    assert_eq!(
        urls(&mirrors.endpoints("quay.io")),
        vec!["https://quay.io/v2"]
    );
}

#[test]
fn a_default_server_replaces_every_upstream() {
    let dir = config_dir(&[(
        "_default/hosts.toml",
        "server = \"https://only.example.com\"\n",
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();

    for registry in ["docker.io", "ghcr.io", "localhost:5000"] {
        assert_eq!(
            urls(&mirrors.endpoints(registry)),
            vec!["https://only.example.com/v2"],
            "{registry}"
        );
    }
}

#[test]
fn no_configuration_means_the_registry_itself() {
    let mirrors = Mirrors::new();
    let cases = [
        ("docker.io", "https://registry-1.docker.io/v2"),
        ("quay.io", "https://quay.io/v2"),
        ("localhost:5000", "https://localhost:5000/v2"),
    ];
    for (registry, url) in cases {
        let endpoints = mirrors.endpoints(registry);
        assert_eq!(urls(&endpoints), vec![url]);
        assert_eq!(endpoints.first().unwrap().capabilities(), Capabilities::ALL);
    }
}

#[test]
fn top_level_tls_settings_serve_the_registry_when_no_server_is_set() {
    let dir = config_dir(&[(
        "registry.example.com/hosts.toml",
        "ca = \"upstream-ca.pem\"\nskip_verify = true\ncapabilities = [\"pull\"]\n\
         [header]\n  x-team = \"platform\"\n",
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();

    let endpoints = mirrors.endpoints("registry.example.com");

    let [upstream] = endpoints.as_slice() else {
        panic!("one endpoint expected");
    };
    assert_eq!(upstream.url(), "https://registry.example.com/v2");
    assert_eq!(
        upstream.ca_files(),
        [dir.path().join("registry.example.com/upstream-ca.pem")]
    );
    assert!(upstream.skip_verify());
    assert_eq!(upstream.headers(), [("x-team".into(), "platform".into())]);
    // As in containerd, the registry itself keeps every capability.
    assert_eq!(upstream.capabilities(), Capabilities::ALL);
}

#[test]
fn override_path_keeps_the_path_as_written() {
    let dir = config_dir(&[(
        "docker.io/hosts.toml",
        r#"
[host."https://non-compliant.example.com/v2/upstream"]
  capabilities = ["pull"]
  override_path = true
[host."https://prefixed.example.com/base"]
"#,
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();

    let endpoints = mirrors.endpoints("docker.io");

    assert_eq!(
        urls(&endpoints),
        vec![
            "https://non-compliant.example.com/v2/upstream",
            "https://prefixed.example.com/base/v2",
            "https://registry-1.docker.io/v2",
        ]
    );
    assert!(endpoints.first().unwrap().override_path());
    assert_eq!(endpoints.first().unwrap().path(), "/v2/upstream");
}

#[test]
fn plain_http_endpoints_are_flagged_and_permitted_only_when_listed() {
    let dir = config_dir(&[(
        "docker.io/hosts.toml",
        "[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();
    let endpoints = mirrors.endpoints("docker.io");
    let [http, https] = endpoints.as_slice() else {
        panic!("two endpoints expected");
    };

    assert!(http.is_plain_http());
    assert_eq!(http.url(), "http://127.0.0.1:5000/v2");
    assert!(!http.permitted(&[]));
    assert!(!http.permitted(&["localhost:5000".into(), "127.0.0.1".into()]));
    assert!(http.permitted(&["127.0.0.1:5000".into()]));
    assert!(!https.is_plain_http());
    assert!(https.permitted(&[]));
}

#[test]
fn a_folder_without_hosts_toml_uses_docker_certificate_files() {
    let dir = config_dir(&[
        ("registry.example.com:5000/ca.crt", "pem"),
        ("registry.example.com:5000/another.crt", "pem"),
        ("registry.example.com:5000/client.cert", "pem"),
        ("registry.example.com:5000/client.key", "pem"),
        ("registry.example.com:5000/lonely.cert", "pem"),
        ("registry.example.com:5000/readme.txt", "ignored"),
    ]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();
    let folder = dir.path().join("registry.example.com:5000");

    let endpoints = mirrors.endpoints("registry.example.com:5000");

    let [upstream] = endpoints.as_slice() else {
        panic!("one endpoint expected");
    };
    assert_eq!(upstream.url(), "https://registry.example.com:5000/v2");
    assert_eq!(
        upstream.ca_files(),
        [folder.join("another.crt"), folder.join("ca.crt")]
    );
    assert_eq!(
        upstream.client_certificates(),
        [
            ClientCertificate {
                certificate: folder.join("client.cert"),
                key: Some(folder.join("client.key")),
            },
            ClientCertificate {
                certificate: folder.join("lonely.cert"),
                key: None,
            },
        ]
    );
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let cases = [
        ("server = ", "ParseHostsFile"),
        ("server = 5", "ParseHostsFile"),
        ("host = \"x\"", "HostTable"),
        ("[host]\n\"https://m.example.com\" = 5\n", "HostTable"),
        ("server = \"ftp://m.example.com\"", "Url"),
        ("[host.\"https://user@m.example.com\"]\n", "Url"),
        (
            "[host.\"https://m.example.com\"]\ncapabilities = [\"pull\", \"steal\"]\n",
            "Capability",
        ),
        ("[host.\"https://m.example.com\"]\nca = 5\n", "Ca"),
        (
            "[host.\"https://m.example.com\"]\nclient = [[\"a\"]]\n",
            "Client",
        ),
        ("[host.\"https://m.example.com\"]\nclient = 5\n", "Client"),
        (
            "[host.\"https://m.example.com\".header]\n\"x y\" = \"v\"\n",
            "Header",
        ),
        (
            "[host.\"https://m.example.com\".header]\nx = \"a\\r\\nInjected: 1\"\n",
            "Header",
        ),
        ("[host.\"https://m.example.com\".header]\nx = 5\n", "Header"),
    ];
    for (text, variant) in cases {
        let dir = config_dir(&[("docker.io/hosts.toml", text)]);
        let err = Mirrors::from_dir(dir.path()).unwrap_err();
        assert!(format!("{err:?}").starts_with(variant), "{text}\n{err:?}");
        assert!(err.to_string().contains("hosts.toml"), "{err}");
    }
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Mirrors::from_dir(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, MirrorsError::ReadDir { .. }), "{err:?}");
}

#[test]
fn debug_leaves_header_values_out() {
    let dir = config_dir(&[(
        "docker.io/hosts.toml",
        "[host.\"https://m.example.com\".header]\nauthorization = \"Bearer hunter2-token\"\n",
    )]);
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();
    let printed = format!("{:?} {mirrors:?}", mirrors.endpoints("docker.io"));
    assert!(printed.contains("authorization"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}
