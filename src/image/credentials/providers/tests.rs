//! Real plugins (small bash scripts) run through [`CredentialProviders`]. They only read
//! stdin, write files in the test's temp dir and print; none touches the network.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const V1: &str = "credentialprovider.kubelet.k8s.io/v1";

/// Answers with `$RESPONSE` after `$DELAY` seconds; records the call in `$COUNTER`, the
/// request in `$REQUEST_FILE` and the arguments in `$ARGS_FILE` when those are set.
const RESPOND: &str = r#"#!/bin/bash
set -eu
request=$(cat)
if [[ -n "${REQUEST_FILE:-}" ]]; then printf '%s' "$request" > "$REQUEST_FILE"; fi
if [[ -n "${ARGS_FILE:-}" ]]; then printf '%s\n' "$@" > "$ARGS_FILE"; fi
echo call >> "$COUNTER"
sleep "${DELAY:-0}"
printf '%s' "$RESPONSE"
"#;

const FAIL: &str = r#"#!/bin/bash
cat > /dev/null
echo 'boom: cannot reach the token service' >&2
echo 'second line with more detail' >&2
exit 3
"#;

/// Writes its pid and becomes `sleep`, so the pid is the process that must be killed.
const HANG: &str = r#"#!/bin/bash
echo $$ > "$PID_FILE"
exec sleep 30
"#;

const FLOOD: &str = "#!/bin/bash\nexec cat /dev/zero\n";

/// Prefix of the per-process plugin directory under the temp dir; the rest is the pid.
const PLUGIN_DIR_PREFIX: &str = "attestgate-test-plugins-";

/// The plugins, written once before any test runs one: writing an executable while another
/// thread forks can make exec fail with "text file busy", so no test writes its own. The test
/// harness has no hook to remove the directory at exit, so each run removes those left by
/// processes that are gone.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir();
        remove_stale_plugin_dirs(&root);
        let dir = root.join(format!("{PLUGIN_DIR_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let plugins = [
            ("respond", RESPOND, 0o755),
            ("respond-b", RESPOND, 0o755),
            ("fail", FAIL, 0o755),
            ("hang", HANG, 0o755),
            ("flood", FLOOD, 0o755),
            ("not-executable", RESPOND, 0o644),
        ];
        for (name, script, mode) in plugins {
            let path = dir.join(name);
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    })
}

fn remove_stale_plugin_dirs(root: &Path) {
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PLUGIN_DIR_PREFIX))
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A provider entry: name, matchImages, defaultCacheDuration, env.
fn provider(
    name: &str,
    match_images: &[&str],
    default_cache: &str,
    env: &[(&str, String)],
) -> Value {
    json!({
        "name": name,
        "matchImages": match_images,
        "defaultCacheDuration": default_cache,
        "apiVersion": V1,
        "args": ["get-credentials", "--verbose"],
        "env": env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
    })
}

fn providers(entries: Vec<Value>) -> CredentialProviders {
    let config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": entries,
    });
    CredentialProviders::from_config(&config.to_string(), bin_dir()).unwrap()
}

fn response(cache_key_type: &str, cache_duration: Option<&str>, auth: Value) -> String {
    let mut response = json!({
        "apiVersion": V1,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": cache_key_type,
        "auth": auth,
    });
    if let (Some(duration), Some(fields)) = (cache_duration, response.as_object_mut()) {
        fields.insert("cacheDuration".into(), json!(duration));
    }
    response.to_string()
}

fn user(name: &str) -> Value {
    json!({"username": name, "password": format!("{name}-password")})
}

fn basic(name: &str) -> Credentials {
    Credentials::Basic {
        username: name.into(),
        password: format!("{name}-password"),
    }
}

fn image(text: &str) -> ImageReference {
    ImageReference::parse(text).unwrap()
}

fn calls(counter: &Path) -> usize {
    fs::read_to_string(counter).map_or(0, |text| text.lines().count())
}

/// Env for the `respond` plugin, with its counter in `dir`.
fn respond_env(dir: &Path, response: String) -> Vec<(&'static str, String)> {
    vec![
        ("COUNTER", dir.join("calls").display().to_string()),
        (
            "REQUEST_FILE",
            dir.join("request.json").display().to_string(),
        ),
        ("ARGS_FILE", dir.join("args").display().to_string()),
        ("RESPONSE", response),
    ]
}

#[tokio::test]
async fn registry_cache_key_serves_the_whole_registry_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let answer = response(
        "Registry",
        Some("1h"),
        json!({"registry.example.com": user("u")}),
    );
    let env = respond_env(dir.path(), answer);
    let providers = providers(vec![provider("respond", &["*.example.com"], "0", &env)]);

    let first = providers
        .credentials(&image("registry.example.com/team/app:1"))
        .await
        .unwrap();
    let second = providers
        .credentials(&image("registry.example.com/other/thing:2"))
        .await
        .unwrap();

    assert_eq!(first, vec![basic("u")]);
    assert_eq!(second, vec![basic("u")]);
    assert_eq!(calls(&dir.path().join("calls")), 1);

    // The request is the kubelet's, for the repository (no tag), with the configured args.
    let request: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("request.json")).unwrap())
            .unwrap();
    assert_eq!(
        request,
        json!({"apiVersion": V1, "kind": "CredentialProviderRequest",
               "image": "registry.example.com/team/app"})
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("args")).unwrap(),
        "get-credentials\n--verbose\n"
    );
}

#[tokio::test]
async fn image_cache_key_is_per_repository() {
    let dir = tempfile::tempdir().unwrap();
    let answer = response(
        "Image",
        Some("1h"),
        json!({"registry.example.com": user("u")}),
    );
    let env = respond_env(dir.path(), answer);
    let providers = providers(vec![provider(
        "respond",
        &["registry.example.com"],
        "0",
        &env,
    )]);
    let counter = dir.path().join("calls");

    for reference in ["registry.example.com/a:1", "registry.example.com/a:2"] {
        assert_eq!(
            providers.credentials(&image(reference)).await.unwrap(),
            vec![basic("u")]
        );
    }
    assert_eq!(calls(&counter), 1);

    providers
        .credentials(&image("registry.example.com/b:1"))
        .await
        .unwrap();
    assert_eq!(calls(&counter), 2);
}

#[tokio::test]
async fn cache_duration_zero_or_absent_with_zero_default_is_not_cached() {
    // (response cacheDuration, defaultCacheDuration, plugin runs for two lookups)
    let cases = [
        (Some("0s"), "1h", 2),
        (None, "0", 2),
        (None, "1h", 1),
        (Some("1h"), "0", 1),
    ];
    for (cache_duration, default_cache, expected_runs) in cases {
        let dir = tempfile::tempdir().unwrap();
        let answer = response(
            "Global",
            cache_duration,
            json!({"registry.example.com": user("u")}),
        );
        let env = respond_env(dir.path(), answer);
        let providers = providers(vec![provider(
            "respond",
            &["*.example.com"],
            default_cache,
            &env,
        )]);
        for _ in 0..2 {
            providers
                .credentials(&image("registry.example.com/a"))
                .await
                .unwrap();
        }
        assert_eq!(
            calls(&dir.path().join("calls")),
            expected_runs,
            "{cache_duration:?} / {default_cache}"
        );
    }
}

#[tokio::test]
async fn failing_plugin_error_names_it_with_exit_status_and_first_stderr_line() {
    let providers = providers(vec![provider("fail", &["*.example.com"], "1h", &[])]);

    let err = providers
        .credentials(&image("registry.example.com/a"))
        .await
        .unwrap_err();

    let CredentialError::Failed {
        plugin,
        status,
        stderr,
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(plugin, "fail");
    assert_eq!(status.code(), Some(3));
    assert_eq!(stderr, "boom: cannot reach the token service");
    let message = err.to_string();
    assert!(message.contains("\"fail\""), "{message}");
    assert!(message.contains("exit status: 3"), "{message}");
    assert!(!message.contains("second line"), "{message}");
}

#[tokio::test]
async fn hanging_plugin_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let env = [("PID_FILE", pid_file.display().to_string())];
    let providers = providers(vec![provider("hang", &["*.example.com"], "1h", &env)])
        .with_timeout(Duration::from_millis(500));

    let started = std::time::Instant::now();
    let err = providers
        .credentials(&image("registry.example.com/a"))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, CredentialError::Timeout { plugin, timeout }
            if plugin == "hang" && *timeout == Duration::from_millis(500)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert!(
        !Path::new("/proc").join(pid.trim()).exists(),
        "plugin {} still running",
        pid.trim()
    );
}

#[tokio::test]
async fn garbage_output_is_an_invalid_response() {
    let cases = [
        ("this is not json".to_string(), "Json"),
        (
            response("Image", None, json!({}))
                .replace(V1, "credentialprovider.kubelet.k8s.io/v1beta1"),
            "ApiVersion",
        ),
        (response("Sometimes", None, json!({})), "CacheKeyType"),
    ];
    for (output, variant) in cases {
        let dir = tempfile::tempdir().unwrap();
        let env = respond_env(dir.path(), output.clone());
        let providers = providers(vec![provider("respond", &["*.example.com"], "1h", &env)]);

        let err = providers
            .credentials(&image("registry.example.com/a"))
            .await
            .unwrap_err();

        let CredentialError::Response { plugin, source } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(plugin, "respond");
        assert!(
            format!("{source:?}").starts_with(variant),
            "{output}: {source:?}"
        );
    }
}

#[tokio::test]
async fn huge_output_is_capped_and_the_plugin_killed() {
    let providers = providers(vec![provider("flood", &["*.example.com"], "1h", &[])])
        .with_max_output_bytes(64 * 1024)
        .with_timeout(Duration::from_secs(20));

    let started = std::time::Instant::now();
    let err = providers
        .credentials(&image("registry.example.com/a"))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, CredentialError::OutputTooLarge { plugin, limit }
            if plugin == "flood" && *limit == 64 * 1024),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not cut at the cap"
    );
}

#[tokio::test]
async fn provider_whose_match_images_do_not_match_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let answer = response("Global", None, json!({"quay.io": user("u")}));
    let env = respond_env(dir.path(), answer);
    let providers = providers(vec![provider(
        "respond",
        &["*.example.com", "registry.example.com:5000/team"],
        "1h",
        &env,
    )]);

    for reference in [
        "quay.io/a",
        "example.com/a",
        "registry.example.com:5000/other/a",
        "registry.example.com:5001/team/a",
    ] {
        assert!(!providers.matches(&image(reference)), "{reference}");
        assert_eq!(
            providers.credentials(&image(reference)).await.unwrap(),
            Vec::<Credentials>::new()
        );
    }
    assert!(!dir.path().join("calls").exists());
    assert!(providers.matches(&image("registry.example.com:5000/team/a")));
}

#[tokio::test]
async fn providers_merge_with_the_earlier_winning_on_one_key() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let answer_a = response("Global", None, json!({"registry.example.com": user("a")}));
    let answer_b = response(
        "Global",
        None,
        json!({"registry.example.com": user("b"), "registry.example.com/team": user("b-team")}),
    );
    let providers = providers(vec![
        provider(
            "respond",
            &["*.example.com"],
            "1h",
            &respond_env(dir_a.path(), answer_a),
        ),
        provider(
            "respond-b",
            &["*.example.com"],
            "1h",
            &respond_env(dir_b.path(), answer_b),
        ),
    ]);

    assert_eq!(
        providers
            .credentials(&image("registry.example.com/team/app"))
            .await
            .unwrap(),
        vec![basic("b-team"), basic("a")]
    );
    assert_eq!(
        providers
            .credentials(&image("registry.example.com/other/app"))
            .await
            .unwrap(),
        vec![basic("a")]
    );
}

#[tokio::test]
async fn concurrent_misses_for_one_image_run_the_plugin_once() {
    let dir = tempfile::tempdir().unwrap();
    let answer = response(
        "Image",
        Some("1h"),
        json!({"registry.example.com": user("u")}),
    );
    let mut env = respond_env(dir.path(), answer);
    env.push(("DELAY", "0.3".into()));
    let providers = providers(vec![provider("respond", &["*.example.com"], "0", &env)]);
    let reference = image("registry.example.com/a");

    let lookups = (0..5).map(|_| providers.credentials(&reference));
    let results = futures_util::future::join_all(lookups).await;

    for result in results {
        assert_eq!(result.unwrap(), vec![basic("u")]);
    }
    assert_eq!(calls(&dir.path().join("calls")), 1);
}

#[tokio::test]
async fn plugin_that_cannot_be_executed_is_a_spawn_error() {
    let providers = providers(vec![provider(
        "not-executable",
        &["*.example.com"],
        "1h",
        &[],
    )]);

    let err = providers
        .credentials(&image("registry.example.com/a"))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, CredentialError::Spawn { plugin, .. } if plugin == "not-executable"),
        "{err:?}"
    );
}

#[test]
fn missing_plugin_is_rejected_when_the_config_is_read() {
    let config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [provider("absent", &["*.example.com"], "1h", &[])],
    });
    let err = CredentialProviders::from_config(&config.to_string(), bin_dir()).unwrap_err();
    assert!(
        matches!(&err, CredentialError::PluginNotFound { plugin, .. } if plugin == "absent"),
        "{err:?}"
    );
}

#[test]
fn debug_lists_names_but_no_env() {
    let env = [("SECRET_TOKEN", "hunter2-value".to_string())];
    let providers = providers(vec![provider("respond", &["*.example.com"], "1h", &env)]);
    let printed = format!("{providers:?}");
    assert!(printed.contains("respond"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}
