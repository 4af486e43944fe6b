//! Loading the webhook's config file (`attestgate::config::Config`): one test per validation,
//! each asserting that a bad file is refused with an error naming the key (and, for YAML that
//! does not fit the schema, its line); a good file loads with its relative paths resolved
//! against its own folder; and a replacement config that would downgrade a policy is refused.
//!
//! Keys and policies are made with openssl (an implementation independent of ours); the
//! timestamped policies of the downgrade tests are stamped by an `openssl ts` authority made
//! here. Nothing is contacted over the network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use attestgate::config::{Config, ConfigError, ExceptionTarget, NoMatch};
use common::{b64, openssl, pae, KeyKind, OpensslKey, PKI_CNF, POLICY_TYPE};
use serde_json::json;

/// The keys every case shares, made once per test binary.
struct Keys {
    dir: tempfile::TempDir,
    policy: OpensslKey,
    other: OpensslKey,
    builder: OpensslKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let policy = OpensslKey::generate(dir.path(), "policy", KeyKind::Ed25519);
        let other = OpensslKey::generate(dir.path(), "other", KeyKind::Ed25519);
        let builder = OpensslKey::generate(dir.path(), "builder", KeyKind::EcdsaP256);
        Keys {
            dir,
            policy,
            other,
            builder,
        }
    })
}

/// A folder holding what a good config points to, by relative path: `policy.json` (signed by
/// the policy key), `keys/policy.pub.pem`, `keys/other.pub.pem` and an `evidence/` folder.
fn folder() -> tempfile::TempDir {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let body = common::build_policy(&k.builder).to_string();
    std::fs::write(
        dir.path().join("policy.json"),
        k.policy.envelope(POLICY_TYPE, body.as_bytes()),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(&k.policy.public, dir.path().join("keys/policy.pub.pem")).unwrap();
    std::fs::copy(&k.other.public, dir.path().join("keys/other.pub.pem")).unwrap();
    std::fs::create_dir(dir.path().join("evidence")).unwrap();
    assert!(k.dir.path().is_dir());
    dir
}

/// One policy entry (a YAML list item at two spaces), with `extra` lines appended at its
/// indentation.
fn policy(name: &str, extra: &str) -> String {
    let mut entry = format!(
        "  - name: {name}
    images: [\"ghcr.io/acme/**\"]
    policy: policy.json
    trust:
      publicKeys: [keys/policy.pub.pem]
    evidence:
      directories: [evidence]
"
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        entry.push_str("    ");
        entry.push_str(line);
        entry.push('\n');
    }
    entry
}

/// Writes `yaml` as `config.yaml` into `dir` and loads it.
fn load(dir: &Path, yaml: &str) -> Result<Config, ConfigError> {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    Config::load(&path)
}

/// Asserts that `yaml` is refused as an invalid value at `key`, with `words` in the message;
/// returns the whole error text.
fn refused_at(dir: &Path, yaml: &str, key: &str, words: &str) -> String {
    let error = load(dir, yaml).expect_err("the config must be refused");
    let text = error.to_string();
    match &error {
        ConfigError::Invalid {
            path,
            key: named,
            message,
        } => {
            assert_eq!(named, key, "{text}");
            assert!(message.contains(words), "{text}");
            assert_eq!(path, &dir.join("config.yaml"), "{text}");
        }
        other => panic!("expected an invalid value at {key}, got {other:?}"),
    }
    assert!(text.contains(&format!("config.yaml: {key}: ")), "{text}");
    text
}

/// Asserts that `yaml` does not parse, with every one of `words` in the message.
fn unparsable(dir: &Path, yaml: &str, words: &[&str]) -> String {
    let error = load(dir, yaml).expect_err("the config must be refused");
    let text = error.to_string();
    assert!(matches!(error, ConfigError::Parse { .. }), "{error:?}");
    for word in words {
        assert!(text.contains(word), "{word:?} not in {text}");
    }
    text
}

// === A good config ===

#[test]
fn a_good_config_loads_with_paths_relative_to_its_folder() {
    let dir = folder();
    let yaml = format!(
        "deadline: 1500ms
webhookTimeoutSeconds: 5
noMatch: allow
requireDigest: true
server:
  listen: 127.0.0.1:9443
  healthListen: 127.0.0.1:9080
  certFile: tls/cert.pem
  keyFile: tls/key.pem
exceptions:
  - image: ghcr.io/acme/legacy
    reason: migrating
    owner: team-a
    expires: 2099-01-31
  - digest: sha256:{digest}
    reason: hotfix
    owner: team-b
    expires: 2099-01-31T12:00:00Z
denylist:
  commits: [ABCDEF0123456789ABCDEF0123456789ABCDEF01]
policies:
{policy}",
        digest = "ab".repeat(32),
        policy = policy("build", "policyDigest: sha256:PIN"),
    );
    let pin = sha256_file(&dir.path().join("policy.json"));
    let yaml = yaml.replace("PIN", &pin);
    // Loaded from another working directory: relative paths follow the config file.
    assert_ne!(std::env::current_dir().unwrap(), dir.path());
    let config = load(dir.path(), &yaml).unwrap();

    assert_eq!(config.path, dir.path().join("config.yaml"));
    assert_eq!(config.deadline, Duration::from_millis(1500));
    assert_eq!(config.webhook_timeout, Duration::from_secs(5));
    assert_eq!(config.no_match, NoMatch::Allow);
    assert!(config.require_digest);
    assert!(!config.reject_short_names, "off unless turned on");
    assert_eq!(
        config.server.cert_file.as_deref(),
        Some(dir.path().join("tls/cert.pem").as_path())
    );
    assert_eq!(
        config.server.key_file.as_deref(),
        Some(dir.path().join("tls/key.pem").as_path())
    );
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9443");

    let entry = &config.policies[0];
    assert_eq!(entry.name, "build");
    assert_eq!(entry.path, dir.path().join("policy.json"));
    assert_eq!(entry.policy.digest, pin);
    assert_eq!(entry.label(), format!("build@sha256:{pin}"));
    assert_eq!(
        entry.signed_at, None,
        "a key signature carries no timestamp"
    );
    assert_eq!(
        config.digest,
        format!("sha256:{}", sha256_bytes(yaml.as_bytes()))
    );

    // A date is the whole day, UTC.
    assert_eq!(config.exceptions.len(), 2);
    assert_eq!(
        config.exceptions[0].expires,
        time::macros::datetime!(2099-02-01 00:00 UTC)
    );
    assert!(matches!(
        &config.exceptions[1].target,
        ExceptionTarget::Digest(d) if d.to_string() == format!("sha256:{}", "ab".repeat(32))
    ));
    assert_eq!(
        config.denylist.commits,
        ["abcdef0123456789abcdef0123456789abcdef01"]
    );
}

#[test]
fn the_shipped_example_loads_from_another_folder() {
    let path = common::root().join("examples/webhook/config.yaml");
    let config = Config::load(&path).unwrap();
    let entry = &config.policies[0];
    assert_eq!(entry.name, "example-apps");
    assert!(entry.path.is_file(), "{}", entry.path.display());
    assert!(entry
        .path
        .starts_with(common::root().join("examples/webhook")));
    assert_eq!(config.deadline, Duration::from_secs(8));
    assert_eq!(config.exceptions.len(), 1);
}

#[test]
fn defaults_apply_to_a_config_without_policies() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), "{}\n").unwrap();
    assert_eq!(config.deadline, Duration::from_secs(8));
    assert_eq!(config.webhook_timeout, Duration::from_secs(10));
    assert_eq!(config.no_match, NoMatch::Deny);
    assert!(!config.reject_short_names);
    assert!(!config.require_digest);
    assert!(config.policies.is_empty());
    assert!(config.denylist.is_empty());
}

#[test]
fn an_expired_exception_loads_but_is_not_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        "exceptions:
  - image: ghcr.io/acme/old
    reason: was migrating
    owner: team-a
    expires: 2020-01-01
",
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(!config.exceptions[0].in_force(now));
    assert!(
        config.exceptions[0].describe().contains("owner team-a"),
        "{}",
        config.exceptions[0].describe()
    );
}

// === Top-level values ===

#[test]
fn a_deadline_over_the_webhook_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = refused_at(
        dir.path(),
        "webhookTimeoutSeconds: 5\ndeadline: 5s\n",
        "deadline",
        "at most 4000 ms",
    );
    assert!(text.contains("webhook timeout (5 s)"), "{text}");
    // The default deadline (8 s) does not fit a 5 s webhook either.
    refused_at(
        dir.path(),
        "webhookTimeoutSeconds: 5\n",
        "deadline",
        "8000 ms",
    );
    refused_at(dir.path(), "deadline: 0s\n", "deadline", "above zero");
    // Under the timeout less the margin, it loads.
    let config = load(dir.path(), "webhookTimeoutSeconds: 5\ndeadline: 4s\n").unwrap();
    assert_eq!(config.deadline, Duration::from_secs(4));
}

#[test]
fn a_webhook_timeout_outside_what_kubernetes_accepts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    refused_at(
        dir.path(),
        "webhookTimeoutSeconds: 31\n",
        "webhookTimeoutSeconds",
        "outside 1..=30",
    );
    refused_at(
        dir.path(),
        "webhookTimeoutSeconds: 0\n",
        "webhookTimeoutSeconds",
        "outside 1..=30",
    );
}

#[test]
fn an_unknown_key_is_refused_with_its_path_and_line() {
    let dir = folder();
    let yaml = format!("policies:\n{}", policy("build", "bindings: digest"));
    let text = unparsable(
        dir.path(),
        &yaml,
        &["policies[0]", "unknown field `bindings`", "line 9"],
    );
    assert!(text.contains("config.yaml"), "{text}");

    // At the top, and a key in another case than camelCase.
    unparsable(
        dir.path(),
        "deadline: 5s\nnomatch: deny\n",
        &["unknown field `nomatch`", "line 2"],
    );
    unparsable(
        dir.path(),
        "server:\n  listen: 127.0.0.1:8443\n  cert_file: a.pem\n",
        &["server", "unknown field `cert_file`", "line 3"],
    );
}

#[test]
fn a_value_of_the_wrong_shape_is_refused_with_its_path() {
    let dir = folder();
    unparsable(
        dir.path(),
        "deadline: soon\n",
        &["deadline", "\"soon\" is not a duration"],
    );
    unparsable(
        dir.path(),
        &format!("policies:\n{}", policy("build", "binding: tag")),
        &["policies[0].binding", "unknown variant `tag`"],
    );
    unparsable(
        dir.path(),
        "noMatch: maybe\n",
        &["noMatch", "unknown variant `maybe`"],
    );
}

#[test]
fn yaml_with_a_duplicate_key_is_refused() {
    let dir = folder();
    unparsable(dir.path(), "deadline: 5s\ndeadline: 6s\n", &["deadline"]);
    let yaml = format!(
        "policies:\n{}",
        policy("build", "evidence:\n  directories: [evidence]")
    );
    unparsable(dir.path(), &yaml, &["policies[0]", "evidence"]);
    // In a map of free-form keys too, where serde alone would keep the last one.
    let yaml = format!(
        "policies:\n{}",
        policy("build", "")
    )
    .replace(
        "    evidence:\n      directories: [evidence]\n",
        "    evidence:\n      archivista:\n        server: http://127.0.0.1:9\n        headers:\n          \
         Authorization: Bearer a\n          Authorization: Bearer b\n",
    );
    unparsable(
        dir.path(),
        &yaml,
        &[
            "policies[0].evidence.archivista.headers",
            "duplicate key \"Authorization\"",
        ],
    );
    unparsable(
        dir.path(),
        &format!("policies:\n{}", policy("build", "")).replace(
            "      publicKeys: [keys/policy.pub.pem]\n",
            "      publicKeys: [keys/policy.pub.pem]\n      kmsKeys:\n        \
             awskms:///k: keys/policy.pub.pem\n        awskms:///k: keys/other.pub.pem\n",
        ),
        &["policies[0].trust.kmsKeys", "duplicate key \"awskms:///k\""],
    );
}

#[test]
fn a_config_that_is_not_utf8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, b"deadline: 5s\n# caf\xe9\n").unwrap();
    let error = Config::load(&path).unwrap_err();
    assert!(matches!(error, ConfigError::Parse { .. }), "{error:?}");
    assert!(error.to_string().contains("not UTF-8"), "{error}");
    assert!(error.to_string().contains("config.yaml"), "{error}");
}

#[test]
fn a_config_over_the_size_cap_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let mut yaml = b"deadline: 5s\n".to_vec();
    yaml.resize(attestgate::config::MAX_CONFIG_BYTES as usize + 1, b'\n');
    std::fs::write(&path, yaml).unwrap();
    let error = Config::load(&path).unwrap_err();
    assert!(matches!(error, ConfigError::Read(_)), "{error:?}");
    assert!(error.to_string().contains("larger than"), "{error}");
}

#[test]
fn server_cert_file_without_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    refused_at(
        dir.path(),
        "server:\n  certFile: cert.pem\n",
        "server",
        "certFile and keyFile go together",
    );
    refused_at(
        dir.path(),
        "server:\n  keyFile: key.pem\n",
        "server",
        "certFile and keyFile go together",
    );
    refused_at(
        dir.path(),
        "server:\n  listen: 127.0.0.1:8443\n  healthListen: 127.0.0.1:8443\n",
        "server.healthListen",
        "must differ",
    );
    refused_at(
        dir.path(),
        "server:\n  listen: localhost\n",
        "server.listen",
        "not an address",
    );
}

// === Policies ===

#[test]
fn a_digest_binding_with_commit_settings_is_refused() {
    let dir = folder();
    let yaml = format!(
        "policies:\n{}",
        policy(
            "build",
            "binding: digest\nexpectedSource: https://github.com/acme/app"
        )
    );
    refused_at(dir.path(), &yaml, "policies[0].binding", "binding: commit");
    let yaml = format!(
        "policies:\n{}",
        policy("build", "trustRegistryPushRights: true")
    );
    refused_at(dir.path(), &yaml, "policies[0].binding", "binding: commit");
}

#[test]
fn a_commit_binding_needs_expected_source_and_trust_in_push_rights() {
    let dir = folder();
    let yaml = format!(
        "policies:\n{}",
        policy("build", "binding: commit\ntrustRegistryPushRights: true")
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].expectedSource",
        "needs the repository",
    );
    let yaml = format!(
        "policies:\n{}",
        policy(
            "build",
            "binding: commit\nexpectedSource: https://github.com/acme/app"
        )
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].trustRegistryPushRights",
        "trustRegistryPushRights: true",
    );
    let yaml = format!(
        "policies:\n{}",
        policy(
            "build",
            "binding: commit\nexpectedSource: https://github.com/acme/app\n\
             trustRegistryPushRights: true"
        )
    );
    let config = load(dir.path(), &yaml).unwrap();
    assert_eq!(
        config.policies[0].binding,
        attestgate::image::binding::Binding::Commit {
            source: "https://github.com/acme/app".into()
        }
    );
}

#[test]
fn a_duplicate_policy_name_is_refused() {
    let dir = folder();
    let yaml = format!("policies:\n{}{}", policy("build", ""), policy("build", ""));
    let text = refused_at(dir.path(), &yaml, "policies[1].name", "used twice");
    assert!(text.contains("\"build\""), "{text}");
    let yaml = format!("policies:\n{}", policy("Build_1", ""));
    refused_at(dir.path(), &yaml, "policies[0].name", "a-z, 0-9");
}

#[test]
fn an_image_pattern_without_a_registry_is_refused() {
    let dir = folder();
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "images: [\"ghcr.io/acme/**\"]",
        "images: [\"ghcr.io/acme/app\", \"acme/app\"]",
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].images[1]",
        "must start with its registry",
    );
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "images: [\"ghcr.io/acme/**\"]",
        "images: [\"ghcr.io/acme/app:v1\"]",
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].images[0]",
        "leave out the tag",
    );
    let yaml = format!("policies:\n{}", policy("build", ""))
        .replace("images: [\"ghcr.io/acme/**\"]", "images: []");
    refused_at(dir.path(), &yaml, "policies[0].images", "names no image");
}

#[test]
fn a_policy_without_trusted_keys_is_refused() {
    let dir = folder();
    let yaml = format!("policies:\n{}", policy("build", ""))
        .replace("publicKeys: [keys/policy.pub.pem]", "publicKeys: []");
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].trust",
        "trusts no policy signer",
    );
    // A key file that is not a key names the list entry.
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "publicKeys: [keys/policy.pub.pem]",
        "publicKeys: [keys/policy.pub.pem, policy.json]",
    );
    refused_at(dir.path(), &yaml, "policies[0].trust.publicKeys[1]", "");
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "publicKeys: [keys/policy.pub.pem]",
        "publicKeys: [keys/missing.pem]",
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].trust.publicKeys[0]",
        "missing.pem",
    );
}

#[test]
fn ca_roots_without_a_signer_identity_are_refused() {
    let dir = folder();
    let pki = pki();
    std::fs::write(dir.path().join("root.pem"), pki.file("root.pem")).unwrap();
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "publicKeys: [keys/policy.pub.pem]",
        "publicKeys: [keys/policy.pub.pem]\n      caRoots: [root.pem]",
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].trust.signerIdentity",
        "caRoots need signerIdentity",
    );
    // An identity that constrains nothing is no identity.
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "publicKeys: [keys/policy.pub.pem]",
        "publicKeys: [keys/policy.pub.pem]\n      caRoots: [root.pem]\n      signerIdentity: {}",
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].trust.signerIdentity",
        "names no constraint",
    );
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "publicKeys: [keys/policy.pub.pem]",
        "publicKeys: [keys/policy.pub.pem]\n      caRoots: [root.pem]\n      \
         signerIdentity: {emails: [ci@example.test]}",
    );
    load(dir.path(), &yaml).unwrap();
}

#[test]
fn a_policy_digest_that_does_not_match_the_pin_is_refused() {
    let dir = folder();
    let actual = sha256_file(&dir.path().join("policy.json"));
    let wrong = "0".repeat(64);
    let yaml = format!(
        "policies:\n{}",
        policy("build", &format!("policyDigest: sha256:{wrong}"))
    );
    let text = refused_at(
        dir.path(),
        &yaml,
        "policies[0].policyDigest",
        "not the pinned",
    );
    assert!(text.contains(&actual), "{text}");
    // The right pin, with or without its algorithm.
    for pin in [format!("sha256:{actual}"), actual.clone()] {
        let yaml = format!(
            "policies:\n{}",
            policy("build", &format!("policyDigest: {pin}"))
        );
        let config = load(dir.path(), &yaml).unwrap();
        assert_eq!(config.policies[0].policy.digest, actual);
    }
}

#[test]
fn a_policy_signed_by_a_key_not_in_its_trust_is_refused() {
    let dir = folder();
    let yaml = format!("policies:\n{}", policy("build", ""))
        .replace("keys/policy.pub.pem", "keys/other.pub.pem");
    refused_at(dir.path(), &yaml, "policies[0].policy", "");
    // The same file with the right key loads: the refusal is about trust, not the file.
    load(dir.path(), &format!("policies:\n{}", policy("build", ""))).unwrap();
}

#[test]
fn a_missing_policy_file_or_evidence_source_is_refused() {
    let dir = folder();
    let yaml = format!("policies:\n{}", policy("build", ""))
        .replace("policy: policy.json", "policy: gone.json");
    refused_at(dir.path(), &yaml, "policies[0].policy", "gone.json");
    let yaml = format!("policies:\n{}", policy("build", "")).replace(
        "    evidence:\n      directories: [evidence]\n",
        "    evidence: {}\n",
    );
    refused_at(
        dir.path(),
        &yaml,
        "policies[0].evidence",
        "names no evidence source",
    );
}

// === Exceptions and the denylist ===

/// An exception list of one entry with these lines.
fn exception(lines: &str) -> String {
    let mut yaml = "exceptions:\n".to_string();
    for (i, line) in lines.lines().enumerate() {
        yaml.push_str(if i == 0 { "  - " } else { "    " });
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

#[test]
fn an_exception_without_an_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    refused_at(
        dir.path(),
        &exception("image: ghcr.io/acme/app\nreason: r\nowner: \"  \"\nexpires: 2099-01-01"),
        "exceptions[0].owner",
        "needs an owner",
    );
    unparsable(
        dir.path(),
        &exception("image: ghcr.io/acme/app\nreason: r\nexpires: 2099-01-01"),
        &["exceptions[0]", "missing field `owner`"],
    );
    refused_at(
        dir.path(),
        &exception("image: ghcr.io/acme/app\nreason: \"\"\nowner: o\nexpires: 2099-01-01"),
        "exceptions[0].reason",
        "needs a reason",
    );
}

#[test]
fn an_exception_with_a_bad_expiry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["next week", "2099-13-01", "2099-01-01 10:00"] {
        refused_at(
            dir.path(),
            &exception(&format!(
                "image: ghcr.io/acme/app\nreason: r\nowner: o\nexpires: \"{bad}\""
            )),
            "exceptions[0].expires",
            "is not a date",
        );
    }
}

#[test]
fn an_exception_needs_exactly_one_of_image_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    refused_at(
        dir.path(),
        &exception(&format!(
            "image: ghcr.io/acme/app\ndigest: {digest}\nreason: r\nowner: o\nexpires: 2099-01-01"
        )),
        "exceptions[0]",
        "exactly one of image and digest",
    );
    refused_at(
        dir.path(),
        &exception("reason: r\nowner: o\nexpires: 2099-01-01"),
        "exceptions[0]",
        "exactly one of image and digest",
    );
    refused_at(
        dir.path(),
        &exception("digest: sha256:abc\nreason: r\nowner: o\nexpires: 2099-01-01"),
        "exceptions[0].digest",
        "not sha256:<64 hex>",
    );
    refused_at(
        dir.path(),
        &exception("image: app\nreason: r\nowner: o\nexpires: 2099-01-01"),
        "exceptions[0].image",
        "must start with its registry",
    );
}

#[test]
fn a_denylist_with_a_bad_digest_or_a_short_commit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = format!("sha256:{}", "ab".repeat(32));
    refused_at(
        dir.path(),
        &format!("denylist:\n  digests: [\"{good}\", \"sha256:1234\"]\n"),
        "denylist.digests[1]",
        "\"sha256:1234\"",
    );
    refused_at(
        dir.path(),
        &format!("denylist:\n  digests: [\"{}\"]\n", "ab".repeat(32)),
        "denylist.digests[0]",
        "not sha256:<64 hex>",
    );
    refused_at(
        dir.path(),
        "denylist:\n  commits: [\"68ea7a5\"]\n",
        "denylist.commits[0]",
        "not a full commit id",
    );
    refused_at(
        dir.path(),
        &format!("denylist:\n  commits: [\"{}\"]\n", "g".repeat(40)),
        "denylist.commits[0]",
        "not a full commit id",
    );
    refused_at(
        dir.path(),
        "denylist:\n  keyids: [\" \"]\n",
        "denylist.keyids[0]",
        "is empty",
    );
    let config = load(
        dir.path(),
        &format!(
            "denylist:\n  digests: [\"{good}\"]\n  commits: [\"{}\"]\n",
            "c".repeat(64)
        ),
    )
    .unwrap();
    assert_eq!(config.denylist.digests[0].to_string(), good);
    assert_eq!(config.denylist.commits, ["c".repeat(64)]);
}

// === Downgrades ===

#[test]
fn a_pinned_policy_cannot_be_swapped_for_another_signed_one() {
    // The pin holds even against a policy that the trusted key did sign.
    let dir = folder();
    let old = sha256_file(&dir.path().join("policy.json"));
    let yaml = format!(
        "policies:\n{}",
        policy("build", &format!("policyDigest: sha256:{old}"))
    );
    let first = load(dir.path(), &yaml).unwrap();
    // The same key signs a more lenient policy (no docker attestation) into the same file.
    let k = keys();
    let mut lenient = common::build_policy(&k.builder);
    lenient["steps"]["build"]["attestations"] = json!([{"type": common::GIT_TYPE}]);
    std::fs::write(
        dir.path().join("policy.json"),
        k.policy
            .envelope(POLICY_TYPE, lenient.to_string().as_bytes()),
    )
    .unwrap();
    refused_at(dir.path(), &yaml, "policies[0].policyDigest", &old);
    // Without a timestamp on either side, the successor check has nothing to compare.
    let unpinned = load(dir.path(), &format!("policies:\n{}", policy("build", ""))).unwrap();
    unpinned.check_successor_of(&first).unwrap();
}

/// A certificate PKI for timestamped policies: a root, a leaf for `ci@example.test` issued by
/// it, and a timestamp authority with its own root; made once per test binary.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    /// Writes `body` signed by the leaf, with an RFC 3161 token over the signature from the
    /// authority, into `dir/name`; returns when the token says it was made.
    fn timestamped_policy(&self, dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        for f in [
            "pki.cnf",
            "tsa.pem",
            "tsa.key",
            "tsa-root.pem",
            "tsa.serial",
            "leaf.key",
        ] {
            std::fs::write(w.join(f), self.file(f)).unwrap();
        }
        std::fs::write(w.join("pae.bin"), pae(POLICY_TYPE, body)).unwrap();
        let sig = openssl(w, &["dgst", "-sha256", "-sign", "leaf.key", "pae.bin"]);
        std::fs::write(w.join("sig.bin"), &sig).unwrap();
        openssl(
            w,
            &[
                "ts",
                "-query",
                "-data",
                "sig.bin",
                "-sha256",
                "-cert",
                "-no_nonce",
                "-out",
                "q.tsq",
            ],
        );
        openssl(
            w,
            &[
                "ts",
                "-reply",
                "-config",
                "pki.cnf",
                "-queryfile",
                "q.tsq",
                "-token_out",
                "-out",
                "t.der",
            ],
        );
        let envelope = json!({
            "payload": b64(body),
            "payloadType": POLICY_TYPE,
            "signatures": [{
                "keyid": "",
                "sig": b64(&sig),
                "certificate": b64(&self.file("leaf.pem")),
                "timestamps": [{"type": "tsp", "data": b64(&std::fs::read(w.join("t.der")).unwrap())}],
            }],
        });
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec(&envelope).unwrap()).unwrap();
        path
    }
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pki.cnf"), PKI_CNF).unwrap();
        std::fs::write(d.join("tsa.serial"), "01\n").unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let root = |name: &str, subject: &str| {
            let (k, c) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-new"];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&["-keyout", &k, "-out", &c, "-days", "3650", "-subj"]);
            args.extend_from_slice(&[subject, "-config", "pki.cnf", "-extensions", "ca_ext"]);
            openssl(d, &args);
        };
        let issued = |name: &str, subject: &str, issuer: &str, profile: &str| {
            let (k, r, c) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let mut args = vec!["req", "-new"];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&["-keyout", &k, "-out", &r, "-subj", subject]);
            args.extend_from_slice(&["-config", "pki.cnf"]);
            openssl(d, &args);
            let (ca, cakey) = (format!("{issuer}.pem"), format!("{issuer}.key"));
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &r,
                    "-CA",
                    &ca,
                    "-CAkey",
                    &cakey,
                    "-CAcreateserial",
                    "-out",
                    &c,
                    "-days",
                    "30",
                    "-extfile",
                    "pki.cnf",
                    "-extensions",
                    profile,
                ],
            );
        };
        root("root", "/O=Test/CN=Policy Root");
        issued("leaf", "/O=Acme/CN=policy-signer", "root", "leaf_ext");
        root("tsa-root", "/CN=Test TSA Root");
        issued("tsa", "/CN=Test TSA", "tsa-root", "tsa_ext");
        Pki { dir }
    })
}

/// A policy entry trusting the PKI's root for `ci@example.test`, and its timestamp authority.
fn certificate_policy(name: &str, file: &str) -> String {
    format!(
        "  - name: {name}
    images: [\"ghcr.io/acme/**\"]
    policy: {file}
    trust:
      caRoots: [root.pem]
      timestampAuthorities: [tsa-root.pem]
      signerIdentity:
        emails: [ci@example.test]
    evidence:
      directories: [evidence]
"
    )
}

#[test]
fn a_policy_signed_before_the_loaded_one_is_refused_as_a_downgrade() {
    let pki = pki();
    let dir = folder();
    for f in ["root.pem", "tsa-root.pem"] {
        std::fs::write(dir.path().join(f), pki.file(f)).unwrap();
    }
    let k = keys();
    let strict = common::build_policy(&k.builder).to_string();
    let mut lenient = common::build_policy(&k.builder);
    lenient["steps"]["build"]["attestations"] = json!([{"type": common::GIT_TYPE}]);

    // The old (lenient) policy, then one in a later second (timestamps count whole seconds).
    pki.timestamped_policy(dir.path(), "old.json", lenient.to_string().as_bytes());
    let stamped = std::time::SystemTime::now();
    let second =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    while second(std::time::SystemTime::now()) == second(stamped) {
        std::thread::sleep(Duration::from_millis(20));
    }
    pki.timestamped_policy(dir.path(), "new.json", strict.as_bytes());

    let config = |file: &str| {
        load(
            dir.path(),
            &format!("policies:\n{}", certificate_policy("build", file)),
        )
        .unwrap()
    };
    let old = config("old.json");
    let new = config("new.json");
    let (old_time, new_time) = (old.policies[0].signed_at, new.policies[0].signed_at);
    assert!(old_time.is_some() && new_time.is_some());
    assert!(old_time < new_time, "{old_time:?} {new_time:?}");

    // Forward is fine; back is a downgrade.
    new.check_successor_of(&old).unwrap();
    new.check_successor_of(&new).unwrap();
    let error = old.check_successor_of(&new).unwrap_err();
    match &error {
        ConfigError::Downgrade { key, message, .. } => {
            assert_eq!(key, "policies[0].policy");
            assert!(message.contains("refused as a downgrade"), "{message}");
        }
        other => panic!("expected a downgrade, got {other:?}"),
    }

    // A key-signed policy carries no timestamp: it cannot replace a timestamped one either.
    let keyed = load(dir.path(), &format!("policies:\n{}", policy("build", ""))).unwrap();
    let error = keyed.check_successor_of(&new).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("carries no trusted signing timestamp"),
        "{error}"
    );
    // Under another name it is another policy, with nothing to compare.
    let other = load(dir.path(), &format!("policies:\n{}", policy("other", ""))).unwrap();
    other.check_successor_of(&new).unwrap();
    // And a timestamped one may replace a key-signed one.
    new.check_successor_of(&keyed).unwrap();
}

fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    common::hex(&sha2::Sha256::digest(bytes))
}

fn sha256_file(path: &Path) -> String {
    sha256_bytes(&std::fs::read(path).unwrap())
}

// === kubernetes ===

#[test]
fn namespace_modes_are_off_by_default_and_their_interval_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let off = load(dir.path(), "{}\n").unwrap();
    assert_eq!(off.kubernetes.namespace_modes, None);
    let disabled = load(
        dir.path(),
        "kubernetes:\n  namespaceModes: {enabled: false, interval: 5s}\n",
    )
    .unwrap();
    assert_eq!(disabled.kubernetes.namespace_modes, None);

    let on = load(
        dir.path(),
        "kubernetes:\n  namespaceModes: {enabled: true}\n",
    )
    .unwrap();
    assert_eq!(
        on.kubernetes.namespace_modes.map(|m| m.interval),
        Some(Duration::from_secs(60))
    );
    let set = load(
        dir.path(),
        "kubernetes:\n  requestTimeout: 2s\n  namespaceModes: {enabled: true, interval: 1s}\n",
    )
    .unwrap();
    assert_eq!(
        set.kubernetes.namespace_modes.map(|m| m.interval),
        Some(Duration::from_secs(1))
    );
    assert_eq!(set.kubernetes.request_timeout, Duration::from_secs(2));

    // Out of range, on or off: the key is named.
    for (interval, enabled) in [("500ms", true), ("0s", false), ("2h", true)] {
        refused_at(
            dir.path(),
            &format!(
                "kubernetes:\n  namespaceModes: {{enabled: {enabled}, interval: {interval}}}\n"
            ),
            "kubernetes.namespaceModes.interval",
            "at least 1 s and at most 3600 s",
        );
    }
    unparsable(
        dir.path(),
        "kubernetes:\n  namespaceModes: {enabled: true, intervall: 60s}\n",
        &[
            "kubernetes.namespaceModes",
            "unknown field `intervall`",
            "line 2",
        ],
    );
    unparsable(
        dir.path(),
        "kubernetes:\n  namespaceModes: {enabled: yes please}\n",
        &["kubernetes.namespaceModes.enabled"],
    );
    unparsable(
        dir.path(),
        "kubernetes:\n  namespaceModes: {interval: often}\n",
        &[
            "kubernetes.namespaceModes.interval",
            "\"often\" is not a duration",
        ],
    );
}
