//! Registry resolution against real servers on loopback.
//!
//! - **The real registry:** Debian's `docker-registry` (distribution 2.8), started by
//!   `tests/peers/start-registry.sh` on a free port of 127.0.0.1 (plain, `--auth htpasswd`,
//!   `--auth token`, `--tls`) and stopped by `tests/peers/stop.sh` when the test is done. Images
//!   are OCI layouts written here (plus `tests/peers/mklayout.py`'s), pushed with skopeo; the one
//!   nested index is PUT with curl, because skopeo cannot copy an index of indexes. Without these
//!   peers (`.ci/peers-evidence.sh` installs them) the tests print "skipped: ..." and pass,
//!   except under `CI=true`, where they fail: CI must never skip silently.
//! - **A stand-in for what a real registry will not do:** a small Python HTTP server (standard
//!   library only, written into the test's temporary directory, on 127.0.0.1) answering from a
//!   route table: a manifest whose bytes do not match its digest, 429 and 503 before success,
//!   answers slower than the deadline, a config that passes the cap while streaming. It logs
//!   every request, and the most requests it had in flight, so the tests count what the client
//!   did.
//! - A registry that is down is a port nobody listens on.
//!
//! Every reference points at 127.0.0.1; nothing else is contacted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use attestgate::display_chain;
use attestgate::image::{
    Digest, IdentityKind, ImageReference, Mirrors, Place, Registry, RegistryConfig,
    RegistryCredentials, RegistryError, ResolvedImage, RevisionError, REVISION_KEY, SOURCE_KEY,
};
use serde_json::{json, Value};
use tokio::time::Instant;

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";
const MKLAYOUT_REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
const SRC: &str = "https://github.com/example/hello";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const BUDGET: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Running things
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn resolve_with(
    config: RegistryConfig,
    reference: &str,
    credentials: &RegistryCredentials,
    budget: Duration,
) -> Result<ResolvedImage, RegistryError> {
    let registry = Registry::new(config).unwrap();
    let reference = ImageReference::parse(reference).unwrap();
    block_on(async {
        registry
            .resolve(&reference, credentials, Instant::now() + budget)
            .await
    })
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Whether the registry peers are installed; fails under `CI=true` when they are not.
fn peers_present(test: &str) -> bool {
    let missing: Vec<_> = [
        "docker-registry",
        "skopeo",
        "python3",
        "openssl",
        "curl",
        "htpasswd",
    ]
    .into_iter()
    .filter(|tool| !on_path(tool))
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: registry peers missing ({missing:?}; run .ci/peers-evidence.sh): CI must not skip"
    );
    eprintln!("skipped: {test}: registry peers missing ({missing:?}; run .ci/peers-evidence.sh)");
    false
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", attestgate::encoding::sha256_hex(bytes))
}

// ---------------------------------------------------------------------------------------------
// OCI layouts
// ---------------------------------------------------------------------------------------------

/// An OCI image layout written by hand: content-addressed blobs and a tagged `index.json`.
struct Layout {
    dir: PathBuf,
    tags: Vec<Value>,
}

impl Layout {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        Self {
            dir,
            tags: Vec::new(),
        }
    }

    fn blob(&self, bytes: &[u8], media_type: &str) -> Value {
        let digest = sha256(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    fn path_of(&self, descriptor: &Value) -> PathBuf {
        let hex = descriptor["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        self.dir.join("blobs/sha256").join(hex)
    }

    /// A linux/`arch` image whose config carries `labels`; its manifest carries `annotations`.
    /// Returns the manifest's descriptor, with its platform.
    fn image(&self, arch: &str, labels: Value, annotations: Value) -> Value {
        // An empty tar archive: two zero blocks.
        let layer = self.blob(&[0u8; 1024], "application/vnd.oci.image.layer.v1.tar");
        let config = json!({
            "architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        });
        let config = self.blob(&serde_json::to_vec(&config).unwrap(), OCI_CONFIG);
        let mut manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer],
        });
        if annotations != json!({}) {
            manifest["annotations"] = annotations;
        }
        let mut descriptor = self.blob(&serde_json::to_vec(&manifest).unwrap(), OCI_MANIFEST);
        descriptor["platform"] = json!({"architecture": arch, "os": "linux"});
        descriptor
    }

    /// A BuildKit-style attestation manifest for `subject`; its config says `labels`.
    fn attestation(&self, subject: &Value, labels: Value) -> Value {
        let statement = self.blob(b"{}", "application/vnd.in-toto+json");
        let config = json!({"architecture": "unknown", "os": "unknown", "config": {"Labels": labels},
                            "rootfs": {"type": "layers", "diff_ids": [statement["digest"]]}});
        let config = self.blob(&serde_json::to_vec(&config).unwrap(), OCI_CONFIG);
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                              "layers": [statement]});
        let mut descriptor = self.blob(&serde_json::to_vec(&manifest).unwrap(), OCI_MANIFEST);
        descriptor["platform"] = json!({"architecture": "unknown", "os": "unknown"});
        descriptor["annotations"] = json!({
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject["digest"],
        });
        descriptor
    }

    fn index(&self, entries: Vec<Value>, annotations: Value) -> Value {
        let mut index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        if annotations != json!({}) {
            index["annotations"] = annotations;
        }
        self.blob(&serde_json::to_vec(&index).unwrap(), OCI_INDEX)
    }

    fn tag(&mut self, name: &str, descriptor: &Value) {
        let mut tagged = json!({
            "mediaType": descriptor["mediaType"], "digest": descriptor["digest"],
            "size": descriptor["size"],
        });
        tagged["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        self.tags.push(tagged);
    }

    fn finish(&self) {
        std::fs::write(
            self.dir.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.tags});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

fn digest_of(descriptor: &Value) -> String {
    descriptor["digest"].as_str().unwrap().to_string()
}

fn labels(revision: &str) -> Value {
    json!({REVISION_KEY: revision, SOURCE_KEY: SRC})
}

// ---------------------------------------------------------------------------------------------
// The real registry
// ---------------------------------------------------------------------------------------------

/// A docker-registry started from a temporary directory, stopped on drop.
struct TestRegistry {
    dir: tempfile::TempDir,
    facts: HashMap<String, String>,
}

impl TestRegistry {
    fn start(options: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new(root().join("tests/peers/start-registry.sh"))
            .arg(dir.path())
            .arg("0")
            .args(options));
        let text = std::fs::read_to_string(dir.path().join("registry.env")).unwrap();
        let facts = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self { dir, facts }
    }

    fn host(&self) -> &str {
        &self.facts["REGISTRY"]
    }

    fn tls(&self) -> bool {
        self.facts.get("REGISTRY_TLS").map(String::as_str) == Some("1")
    }

    fn user_password(&self) -> Option<(String, String)> {
        Some((
            self.facts.get("REGISTRY_USER")?.clone(),
            self.facts.get("REGISTRY_PASSWORD")?.clone(),
        ))
    }

    fn credentials(&self) -> RegistryCredentials {
        match self.user_password() {
            Some((username, password)) => RegistryCredentials::Basic { username, password },
            None => RegistryCredentials::Anonymous,
        }
    }

    /// The client configuration this registry needs: its CA, or its host listed as insecure.
    fn config(&self) -> RegistryConfig {
        if self.tls() {
            RegistryConfig {
                extra_ca_pem: vec![std::fs::read(&self.facts["REGISTRY_CA"]).unwrap()],
                ..RegistryConfig::default()
            }
        } else {
            RegistryConfig {
                insecure_hosts: vec![self.host().to_string()],
                ..RegistryConfig::default()
            }
        }
    }

    /// `skopeo copy --all` of `layout:tag` to `repository:tag`, digests preserved unless
    /// `extra` converts.
    fn push(&self, layout: &Path, tag: &str, destination: &str, extra: &[&str]) {
        let mut skopeo = Command::new("skopeo");
        skopeo.args(["--insecure-policy", "copy", "-q", "--all"]);
        if extra.is_empty() {
            skopeo.arg("--preserve-digests");
        }
        skopeo.args(extra);
        if self.tls() {
            skopeo
                .arg("--dest-cert-dir")
                .arg(&self.facts["REGISTRY_CERT_DIR"]);
        } else {
            skopeo.arg("--dest-tls-verify=false");
        }
        if let Some((user, password)) = self.user_password() {
            skopeo.arg("--dest-creds").arg(format!("{user}:{password}"));
        }
        skopeo
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{destination}", self.host()));
        run(&mut skopeo);
    }

    /// PUTs a manifest with curl (plain registries only).
    fn put_manifest(&self, repository: &str, tag: &str, body: &Path, media_type: &str) {
        let url = format!("http://{}/v2/{repository}/manifests/{tag}", self.host());
        let code = run(Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .arg("-H")
            .arg(format!("Content-Type: {media_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(url));
        assert_eq!(code, "201", "PUT {repository}:{tag}");
    }

    /// Uploads a blob with curl (plain registries only), as skopeo will not: it refuses configs
    /// over 4 MiB itself.
    fn put_blob(&self, repository: &str, file: &Path) {
        let digest = sha256(&std::fs::read(file).unwrap());
        let headers = run(Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST"])
            .arg(format!(
                "http://{}/v2/{repository}/blobs/uploads/",
                self.host()
            )));
        let location = headers
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no upload location in {headers}"));
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.host())
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let code = run(Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .args([
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
            ])
            .arg(format!("@{}", file.display()))
            .arg(format!("{url}{separator}digest={digest}")));
        assert_eq!(code, "201", "blob upload to {repository}");
    }

    fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/peers/stop.sh"))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .output();
    }
}

/// Digests of what was pushed to the shared plain registry.
struct Pushed {
    mk: HashMap<String, String>,
    annotated: String,
    annotated_amd64: String,
    annotated_arm64: String,
    annotated_attestation: String,
    disagree: String,
    index_only: String,
    unlabelled: String,
    nested: String,
    nested_inner: String,
    too_deep: String,
}

/// One plain registry shared by the tests that need nothing special; it stops when the last of
/// them is done.
struct Plain {
    registry: TestRegistry,
    pushed: Pushed,
    _layouts: tempfile::TempDir,
}

static PLAIN: Mutex<Weak<Plain>> = Mutex::new(Weak::new());

fn plain(test: &str) -> Option<Arc<Plain>> {
    if !peers_present(test) {
        return None;
    }
    let mut slot = PLAIN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(shared) = slot.upgrade() {
        return Some(shared);
    }
    let shared = Arc::new(Plain::start());
    *slot = Arc::downgrade(&shared);
    Some(shared)
}

impl Plain {
    fn start() -> Self {
        let registry = TestRegistry::start(&[]);
        let layouts = tempfile::tempdir().unwrap();

        // mklayout.py: `v1` (one image) and `multi` (two platforms), labels in the configs.
        let mk_dir = layouts.path().join("mk");
        let mk: HashMap<String, String> = serde_json::from_str(&run(Command::new("python3")
            .arg(root().join("tests/peers/mklayout.py"))
            .arg(&mk_dir)))
        .unwrap();
        registry.push(&mk_dir, "v1", "demo/hello:v1", &[]);
        registry.push(&mk_dir, "multi", "demo/hello:multi", &[]);
        registry.push(&mk_dir, "v1", "demo/docker:v1", &["--format", "v2s2"]);
        registry.push(&mk_dir, "multi", "demo/docker:multi", &["--format", "v2s2"]);

        let mut layout = Layout::new(layouts.path().join("own"));
        // Labels and annotations in every place, and an attestation manifest whose config
        // claims another commit: judging it would make the platforms disagree.
        let amd64 = layout.image(
            "amd64",
            json!({REVISION_KEY: C1, SOURCE_KEY: SRC, "org.example.label": "amd64"}),
            json!({REVISION_KEY: C1, "org.example.manifest": "amd64"}),
        );
        let arm64 = layout.image("arm64", labels(C1), json!({}));
        let attestation = layout.attestation(&amd64, labels(C2));
        let mut amd64_entry = amd64.clone();
        amd64_entry["annotations"] = json!({"org.example.entry": "amd64"});
        let annotated = layout.index(
            vec![amd64_entry, arm64.clone(), attestation.clone()],
            json!({SOURCE_KEY: SRC, "org.example.index": "yes"}),
        );
        layout.tag("annotated", &annotated);

        let disagree = layout.index(
            vec![
                layout.image("amd64", labels(C1), json!({})),
                layout.image("arm64", labels(C2), json!({})),
            ],
            json!({}),
        );
        layout.tag("disagree", &disagree);

        let index_only = layout.index(
            vec![
                layout.image("amd64", json!({}), json!({})),
                layout.image("arm64", json!({}), json!({})),
            ],
            labels(C1),
        );
        layout.tag("index-only", &index_only);

        let unlabelled = layout.image("amd64", json!({}), json!({}));
        layout.tag("unlabelled", &unlabelled);

        let big = layout.image(
            "amd64",
            json!({"filler": "x".repeat(4 * 1024 * 1024 + 1024)}),
            json!({}),
        );

        // An index of an index (pushed by PUT below) and one level deeper.
        let nested_inner = layout.index(
            vec![
                layout.image("amd64", labels(C1), json!({})),
                layout.image("arm64", labels(C1), json!({})),
            ],
            json!({"org.example.level": "inner"}),
        );
        layout.tag("nested-inner", &nested_inner);
        let mut inner_entry = nested_inner.clone();
        inner_entry["annotations"] = json!({"org.example.entry": "inner"});
        let nested = layout.index(vec![inner_entry], json!({}));
        let too_deep = layout.index(vec![nested.clone()], json!({}));
        layout.finish();

        let own = &layout.dir;
        for (tag, destination) in [
            ("annotated", "demo/app:annotated"),
            ("disagree", "demo/app:disagree"),
            ("index-only", "demo/app:index-only"),
            ("unlabelled", &format!("demo/app:{C1}")),
            ("nested-inner", "demo/nested:inner"),
        ] {
            registry.push(own, tag, destination, &[]);
        }
        let big_manifest: Value =
            serde_json::from_slice(&std::fs::read(layout.path_of(&big)).unwrap()).unwrap();
        registry.put_blob("demo/app", &layout.path_of(&big_manifest["layers"][0]));
        registry.put_blob("demo/app", &layout.path_of(&big_manifest["config"]));
        registry.put_manifest(
            "demo/app",
            "big-config",
            &layout.path_of(&big),
            OCI_MANIFEST,
        );
        registry.put_manifest("demo/nested", "nested", &layout.path_of(&nested), OCI_INDEX);
        registry.put_manifest("demo/nested", "deep", &layout.path_of(&too_deep), OCI_INDEX);

        Self {
            registry,
            pushed: Pushed {
                mk,
                annotated: digest_of(&annotated),
                annotated_amd64: digest_of(&amd64),
                annotated_arm64: digest_of(&arm64),
                annotated_attestation: digest_of(&attestation),
                disagree: digest_of(&disagree),
                index_only: digest_of(&index_only),
                unlabelled: digest_of(&unlabelled),
                nested: digest_of(&nested),
                nested_inner: digest_of(&nested_inner),
                too_deep: digest_of(&too_deep),
            },
            _layouts: layouts,
        }
    }

    fn resolve(&self, path: &str) -> Result<ResolvedImage, RegistryError> {
        self.resolve_with(self.registry.config(), path)
    }

    fn resolve_with(
        &self,
        config: RegistryConfig,
        path: &str,
    ) -> Result<ResolvedImage, RegistryError> {
        resolve_with(
            config,
            &self.registry.reference(path),
            &RegistryCredentials::Anonymous,
            BUDGET,
        )
    }
}

fn digests(resolved: &ResolvedImage) -> Vec<String> {
    resolved
        .images
        .iter()
        .map(|i| i.manifest_digest.to_string())
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Against the real registry
// ---------------------------------------------------------------------------------------------

#[test]
fn a_tag_resolves_to_the_digest_the_registry_serves() {
    let Some(plain) = plain("a_tag_resolves_to_the_digest_the_registry_serves") else {
        return;
    };
    let resolved = plain.resolve("demo/hello:v1").unwrap();
    assert_eq!(resolved.digest.to_string(), plain.pushed.mk["v1"]);
    assert!(!resolved.is_index());
    assert_eq!(resolved.media_type, OCI_MANIFEST);
    let [image] = resolved.images.as_slice() else {
        panic!("one image: {resolved:?}")
    };
    assert_eq!(image.manifest_digest, resolved.digest);
    assert_eq!(image.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(image.labels[REVISION_KEY], MKLAYOUT_REVISION);

    let info = resolved.source_info().unwrap();
    assert_eq!(info.commit.as_deref(), Some(MKLAYOUT_REVISION));
    assert_eq!(info.source.as_deref(), Some(SRC));
    let identities: Vec<_> = resolved
        .identities()
        .into_iter()
        .map(|i| (i.kind, i.digest))
        .collect();
    assert_eq!(
        identities,
        vec![
            (IdentityKind::Pinned, resolved.digest.clone()),
            (IdentityKind::Config, image.config_digest.clone()),
        ]
    );
}

#[test]
fn the_digest_wins_over_the_tag_and_an_index_is_judged_whole() {
    let Some(plain) = plain("the_digest_wins_over_the_tag_and_an_index_is_judged_whole") else {
        return;
    };
    let multi = &plain.pushed.mk["multi"];
    let resolved = plain.resolve(&format!("demo/hello:v1@{multi}")).unwrap();
    assert_eq!(resolved.digest.to_string(), *multi);
    assert_eq!(resolved.reference.tag(), Some("v1"));
    assert_eq!(resolved.media_type, OCI_INDEX);
    assert_eq!(
        digests(&resolved),
        vec![
            plain.pushed.mk["amd64"].clone(),
            plain.pushed.mk["arm64"].clone()
        ]
    );
    let platforms: Vec<_> = resolved.images.iter().map(|i| i.platform.clone()).collect();
    assert_eq!(
        platforms,
        vec![Some("linux/amd64".into()), Some("linux/arm64".into())]
    );
    assert_eq!(resolved.identities().len(), 5);
    assert_eq!(
        resolved.source_info().unwrap().commit.as_deref(),
        Some(MKLAYOUT_REVISION)
    );
}

#[test]
fn labels_and_annotations_are_read_and_attestation_manifests_skipped() {
    let Some(plain) = plain("labels_and_annotations_are_read_and_attestation_manifests_skipped")
    else {
        return;
    };
    let p = &plain.pushed;
    let resolved = plain.resolve("demo/app:annotated").unwrap();
    assert_eq!(resolved.digest.to_string(), p.annotated);
    assert_eq!(
        resolved.index_annotations,
        map(&[(SOURCE_KEY, SRC), ("org.example.index", "yes")])
    );
    assert_eq!(
        digests(&resolved),
        vec![p.annotated_amd64.clone(), p.annotated_arm64.clone()]
    );
    assert_eq!(
        resolved
            .skipped_attestations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![p.annotated_attestation.clone()]
    );

    let amd64 = &resolved.images[0];
    assert_eq!(amd64.labels["org.example.label"], "amd64");
    assert_eq!(
        amd64.manifest_annotations,
        map(&[(REVISION_KEY, C1), ("org.example.manifest", "amd64")])
    );
    assert_eq!(
        amd64.index_entry_annotations,
        map(&[("org.example.entry", "amd64")])
    );

    // The attestation's config claims C2; it was not judged, so nothing disagrees.
    let info = resolved.source_info().unwrap();
    assert_eq!(info.commit.as_deref(), Some(C1));
    let amd64_digest = Digest::parse(&p.annotated_amd64).unwrap();
    assert_eq!(
        info.commit_found_in[..2],
        [
            Place::ConfigLabels {
                manifest: amd64_digest.clone()
            },
            Place::ManifestAnnotations {
                manifest: amd64_digest
            },
        ]
    );
    assert!(info.source_found_in.contains(&Place::IndexAnnotations {
        index: resolved.digest.clone()
    }));
}

#[test]
fn platforms_that_disagree_on_the_revision_fail() {
    let Some(plain) = plain("platforms_that_disagree_on_the_revision_fail") else {
        return;
    };
    let resolved = plain.resolve("demo/app:disagree").unwrap();
    assert_eq!(resolved.digest.to_string(), plain.pushed.disagree);
    let err = resolved.source_info().unwrap_err();
    assert_eq!(
        err,
        RevisionError::PlatformsDisagree {
            key: REVISION_KEY,
            first_platform: "linux/amd64".into(),
            first: Some(C1.into()),
            second_platform: "linux/arm64".into(),
            second: Some(C2.into()),
        }
    );
    let text = err.to_string();
    assert!(text.contains(C1) && text.contains(C2), "{text}");
}

#[test]
fn a_revision_only_on_the_index_is_found() {
    let Some(plain) = plain("a_revision_only_on_the_index_is_found") else {
        return;
    };
    let resolved = plain.resolve("demo/app:index-only").unwrap();
    assert_eq!(resolved.digest.to_string(), plain.pushed.index_only);
    assert!(resolved.images.iter().all(|i| i.labels.is_empty()));
    let info = resolved.source_info().unwrap();
    assert_eq!(info.commit.as_deref(), Some(C1));
    assert_eq!(info.source.as_deref(), Some(SRC));
    assert_eq!(
        info.commit_found_in,
        vec![Place::IndexAnnotations {
            index: resolved.digest.clone()
        }]
    );
}

#[test]
fn a_tag_that_looks_like_a_commit_is_never_read_as_one() {
    let Some(plain) = plain("a_tag_that_looks_like_a_commit_is_never_read_as_one") else {
        return;
    };
    let resolved = plain.resolve(&format!("demo/app:{C1}")).unwrap();
    assert_eq!(resolved.digest.to_string(), plain.pushed.unlabelled);
    let info = resolved.source_info().unwrap();
    assert_eq!((info.commit, info.source), (None, None));
}

#[test]
fn a_config_over_the_cap_is_refused() {
    let Some(plain) = plain("a_config_over_the_cap_is_refused") else {
        return;
    };
    let err = plain.resolve("demo/app:big-config").unwrap_err();
    assert!(
        matches!(&err, RegistryError::TooLarge { limit, .. } if *limit == 4 * 1024 * 1024),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("config blob sha256:"), "{err}");
    assert!(!err.is_transient());

    // A small cap refuses an ordinary config, and a small manifest cap an ordinary manifest.
    let small = |config: RegistryConfig| plain.resolve_with(config, "demo/hello:v1");
    let config = RegistryConfig {
        max_config_bytes: 64,
        ..plain.registry.config()
    };
    assert!(matches!(
        small(config),
        Err(RegistryError::TooLarge { limit: 64, .. })
    ));
    let config = RegistryConfig {
        max_manifest_bytes: 64,
        ..plain.registry.config()
    };
    let err = small(config).unwrap_err();
    assert!(
        matches!(&err, RegistryError::TooLarge { limit: 64, what } if what.starts_with("manifest")),
        "{err:?}"
    );
}

#[test]
fn docker_media_types_resolve_like_oci_ones() {
    let Some(plain) = plain("docker_media_types_resolve_like_oci_ones") else {
        return;
    };
    let single = plain.resolve("demo/docker:v1").unwrap();
    assert_eq!(single.media_type, DOCKER_MANIFEST);
    assert_eq!(single.images[0].labels[REVISION_KEY], MKLAYOUT_REVISION);

    let list = plain.resolve("demo/docker:multi").unwrap();
    assert_eq!(list.media_type, DOCKER_LIST);
    assert!(list.is_index());
    assert_eq!(list.images.len(), 2);
    // The converted manifests carry the very same configs.
    let oci = plain.resolve("demo/hello:multi").unwrap();
    let configs = |r: &ResolvedImage| {
        r.images
            .iter()
            .map(|i| i.config_digest.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(configs(&list), configs(&oci));
    assert_ne!(digests(&list), digests(&oci));
}

#[test]
fn nested_indexes_are_judged_within_the_nesting_cap() {
    let Some(plain) = plain("nested_indexes_are_judged_within_the_nesting_cap") else {
        return;
    };
    let p = &plain.pushed;
    let resolved = plain.resolve("demo/nested:nested").unwrap();
    assert_eq!(resolved.digest.to_string(), p.nested);
    assert_eq!(resolved.images.len(), 2);
    for image in &resolved.images {
        let [inner] = image.nested_in.as_slice() else {
            panic!("one nested index: {image:?}")
        };
        assert_eq!(inner.digest.to_string(), p.nested_inner);
        assert_eq!(inner.annotations, map(&[("org.example.level", "inner")]));
        assert_eq!(
            inner.entry_annotations,
            map(&[("org.example.entry", "inner")])
        );
    }
    assert_eq!(resolved.source_info().unwrap().commit.as_deref(), Some(C1));

    // Three levels: the innermost index is one too many.
    let err = plain
        .resolve(&format!("demo/nested@{}", p.too_deep))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::TooDeep { limit: 2, what } if what.contains(&p.nested_inner)),
        "{err:?}"
    );
    let one_level = RegistryConfig {
        max_nesting: 1,
        ..plain.registry.config()
    };
    let err = plain
        .resolve_with(one_level, "demo/nested:nested")
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooDeep { limit: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn index_entries_over_the_cap_are_refused() {
    let Some(plain) = plain("index_entries_over_the_cap_are_refused") else {
        return;
    };
    let config = RegistryConfig {
        max_index_entries: 2,
        ..plain.registry.config()
    };
    // Two platforms and an attestation manifest: three entries.
    let err = plain
        .resolve_with(config, "demo/app:annotated")
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::TooManyEntries { limit: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("lists more than 2 entries"),
        "{err}"
    );
}

#[test]
fn a_missing_tag_or_repository_is_not_found() {
    let Some(plain) = plain("a_missing_tag_or_repository_is_not_found") else {
        return;
    };
    for path in ["demo/hello:nope", "demo/nothing-here:v1"] {
        let err = plain.resolve(path).unwrap_err();
        assert!(
            matches!(err, RegistryError::NotFound { .. }),
            "{path}: {err:?}"
        );
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("was not found at registry"),
            "{err}"
        );
    }
    let absent = format!("sha256:{}", "0".repeat(64));
    let err = plain.resolve(&format!("demo/hello@{absent}")).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
}

#[test]
fn plain_http_is_refused_for_a_host_not_listed_as_insecure() {
    let Some(plain) = plain("plain_http_is_refused_for_a_host_not_listed_as_insecure") else {
        return;
    };
    let started = std::time::Instant::now();
    let err = plain
        .resolve_with(RegistryConfig::default(), "demo/hello:v1")
        .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(5));
    // Listing another port of the same host does not help either.
    let other_port = RegistryConfig {
        insecure_hosts: vec!["127.0.0.1:1".into()],
        ..RegistryConfig::default()
    };
    let err = plain.resolve_with(other_port, "demo/hello:v1").unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
}

#[test]
fn basic_auth_needs_the_right_password() {
    if !peers_present("basic_auth_needs_the_right_password") {
        return;
    }
    let registry = TestRegistry::start(&["--auth", "htpasswd"]);
    let layouts = tempfile::tempdir().unwrap();
    let mk: HashMap<String, String> = serde_json::from_str(&run(Command::new("python3")
        .arg(root().join("tests/peers/mklayout.py"))
        .arg(layouts.path())))
    .unwrap();
    registry.push(layouts.path(), "multi", "demo/hello:multi", &[]);
    let reference = registry.reference("demo/hello:multi");

    let resolved = resolve_with(
        registry.config(),
        &reference,
        &registry.credentials(),
        BUDGET,
    )
    .unwrap();
    assert_eq!(resolved.digest.to_string(), mk["multi"]);
    assert_eq!(resolved.images.len(), 2);

    let (username, _) = registry.user_password().unwrap();
    let wrong = RegistryCredentials::Basic {
        username,
        password: "not-the-password".into(),
    };
    for credentials in [wrong, RegistryCredentials::Anonymous] {
        let err = resolve_with(registry.config(), &reference, &credentials, BUDGET).unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains("unauthorized"), "{err}");
    }
}

#[test]
fn token_auth_goes_through_the_realm_and_takes_a_bearer_token() {
    if !peers_present("token_auth_goes_through_the_realm_and_takes_a_bearer_token") {
        return;
    }
    let registry = TestRegistry::start(&["--auth", "token"]);
    let layouts = tempfile::tempdir().unwrap();
    let mk: HashMap<String, String> = serde_json::from_str(&run(Command::new("python3")
        .arg(root().join("tests/peers/mklayout.py"))
        .arg(layouts.path())))
    .unwrap();
    registry.push(layouts.path(), "v1", "demo/hello:v1", &[]);
    let reference = registry.reference("demo/hello:v1");

    let resolved = resolve_with(
        registry.config(),
        &reference,
        &registry.credentials(),
        BUDGET,
    )
    .unwrap();
    assert_eq!(resolved.digest.to_string(), mk["v1"]);

    // A token fetched from the realm by hand, given as a bearer token.
    let (user, password) = registry.user_password().unwrap();
    let answer = run(Command::new("curl")
        .args(["-s", "--fail", "-u"])
        .arg(format!("{user}:{password}"))
        .arg(format!(
            "{}?service=attestgate-test-registry&scope=repository:demo/hello:pull",
            registry.facts["REGISTRY_TOKEN_REALM"]
        )));
    let token: Value = serde_json::from_str(&answer).unwrap();
    let bearer = RegistryCredentials::Bearer {
        token: token["token"].as_str().unwrap().to_string(),
    };
    let resolved = resolve_with(registry.config(), &reference, &bearer, BUDGET).unwrap();
    assert_eq!(resolved.digest.to_string(), mk["v1"]);

    let wrong = RegistryCredentials::Basic {
        username: user,
        password: "not-the-password".into(),
    };
    for credentials in [wrong, RegistryCredentials::Anonymous] {
        let err = resolve_with(registry.config(), &reference, &credentials, BUDGET).unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    }
}

#[test]
fn a_tls_registry_is_trusted_only_with_its_ca() {
    if !peers_present("a_tls_registry_is_trusted_only_with_its_ca") {
        return;
    }
    let registry = TestRegistry::start(&["--tls"]);
    let layouts = tempfile::tempdir().unwrap();
    let mk: HashMap<String, String> = serde_json::from_str(&run(Command::new("python3")
        .arg(root().join("tests/peers/mklayout.py"))
        .arg(layouts.path())))
    .unwrap();
    registry.push(layouts.path(), "v1", "demo/hello:v1", &[]);
    let reference = registry.reference("demo/hello:v1");
    let anonymous = RegistryCredentials::Anonymous;

    let resolved = resolve_with(registry.config(), &reference, &anonymous, BUDGET).unwrap();
    assert_eq!(resolved.digest.to_string(), mk["v1"]);

    let err = resolve_with(RegistryConfig::default(), &reference, &anonymous, BUDGET).unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    let chain = display_chain(&err);
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
}

// ---------------------------------------------------------------------------------------------
// A registry that is down
// ---------------------------------------------------------------------------------------------

#[test]
fn a_registry_that_is_down_is_unreachable_at_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = format!("127.0.0.1:{port}");
    let config = RegistryConfig {
        insecure_hosts: vec![host.clone()],
        ..RegistryConfig::default()
    };
    let started = std::time::Instant::now();
    let err = resolve_with(
        config,
        &format!("{host}/demo/hello:v1"),
        &RegistryCredentials::Anonymous,
        BUDGET,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.to_string(), format!("registry {host} is unreachable"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// The stand-in
// ---------------------------------------------------------------------------------------------

/// The stand-in registry: answers from `routes.json` in its directory. A route is
/// `"METHOD /path"` → a list of answers, used in turn, the last one repeated. An answer has a
/// `status` and a `body` or a `file` (relative to the directory), optional `headers`, a `delay`
/// in seconds, and `chunked` (no Content-Length). A HEAD without its own route gets the GET
/// route's answer without the body. Every request is appended to `requests.log`; the most
/// requests in flight at once (from arrival to the start of the answer) are in `max-inflight`.
const STAND_IN: &str = r#"
import http.server, json, os, sys, threading, time

root = sys.argv[1]
with open(os.path.join(root, "routes.json")) as f:
    routes = json.load(f)
lock = threading.Lock()
counts = {}
inflight = [0, 0]
NOT_FOUND = {"status": 404, "body": '{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}'}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, method):
        key = method + " " + self.path
        sequence = routes.get(key)
        if sequence is None and method == "HEAD":
            sequence = routes.get("GET " + self.path)
        with lock:
            n = counts.get(key, 0)
            counts[key] = n + 1
            inflight[0] += 1
            inflight[1] = max(inflight[1], inflight[0])
            with open(os.path.join(root, "requests.log"), "a") as f:
                f.write(key + "\n")
            with open(os.path.join(root, "max-inflight"), "w") as f:
                f.write(str(inflight[1]))
        try:
            r = NOT_FOUND if sequence is None else sequence[min(n, len(sequence) - 1)]
            time.sleep(r.get("delay", 0))
            # In flight until the answer starts: the client cannot send its next request
            # before it has this answer, so the count never sees one request twice.
            with lock:
                inflight[0] -= 1
            if "file" in r:
                with open(os.path.join(root, r["file"]), "rb") as f:
                    body = f.read()
            else:
                body = r.get("body", "").encode()
            self.send_response(r["status"])
            for name, value in r.get("headers", {}).items():
                self.send_header(name, value)
            if r.get("chunked"):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if method != "HEAD":
                    for i in range(0, len(body), 65536):
                        chunk = body[i:i + 65536]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self.answer("GET")

    def do_HEAD(self):
        self.answer("HEAD")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running stand-in, killed on drop.
struct StandIn {
    dir: tempfile::TempDir,
    child: Child,
    host: String,
}

impl StandIn {
    /// Starts a stand-in over `layout`'s blobs with `routes` (plus `GET /v2/`).
    fn start(layout: &Layout, mut routes: serde_json::Map<String, Value>) -> Option<Self> {
        if !on_path("python3") {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 missing: CI must not skip"
            );
            eprintln!("skipped: python3 missing for the registry stand-in");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        routes.insert("GET /v2/".into(), json!([{"status": 200, "body": "{}"}]));
        std::fs::write(
            dir.path().join("routes.json"),
            Value::Object(routes).to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("stand-in.py"), STAND_IN).unwrap();
        std::os::unix::fs::symlink(layout.dir.join("blobs"), dir.path().join("blobs")).unwrap();
        let mut child = Command::new("python3")
            .arg(dir.path().join("stand-in.py"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let host = format!("127.0.0.1:{}", line.trim());
        Some(Self { dir, child, host })
    }

    fn config(&self) -> RegistryConfig {
        RegistryConfig {
            insecure_hosts: vec![self.host.clone()],
            retry_backoff: Duration::from_millis(20),
            ..RegistryConfig::default()
        }
    }

    fn resolve(
        &self,
        config: RegistryConfig,
        path: &str,
        budget: Duration,
    ) -> Result<ResolvedImage, RegistryError> {
        resolve_with(
            config,
            &format!("{}/{path}", self.host),
            &RegistryCredentials::Anonymous,
            budget,
        )
    }

    /// How many requests `route` ("METHOD /path") received.
    fn count(&self, route: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == route)
            .count()
    }

    fn max_inflight(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("max-inflight"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Routes serving `descriptor` (a manifest) and its config from `repository`, by digest.
fn serve_image(
    routes: &mut serde_json::Map<String, Value>,
    layout: &Layout,
    repository: &str,
    descriptor: &Value,
    answers_before: Vec<Value>,
) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(layout.path_of(descriptor)).unwrap()).unwrap();
    let digest = digest_of(descriptor);
    let mut answers = answers_before;
    answers.push(json!({
        "status": 200, "file": blob_file(descriptor),
        "headers": {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest},
    }));
    routes.insert(
        format!("GET /v2/{repository}/manifests/{digest}"),
        json!(answers),
    );
    let config = &manifest["config"];
    routes.insert(
        format!("GET /v2/{repository}/blobs/{}", digest_of(config)),
        json!([{"status": 200, "file": blob_file(config)}]),
    );
}

fn blob_file(descriptor: &Value) -> String {
    format!(
        "blobs/sha256/{}",
        descriptor["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    )
}

fn stand_in_layout() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("layout"));
    (dir, layout)
}

#[test]
fn a_manifest_whose_bytes_do_not_match_its_digest_is_refused() {
    let (_dir, layout) = stand_in_layout();
    let good = layout.image("amd64", labels(C1), json!({}));
    let other = layout.image("amd64", labels(C2), json!({}));
    let digest = digest_of(&good);
    let wrong_body =
        |headers: Value| json!([{"status": 200, "file": blob_file(&other), "headers": headers}]);
    let mut routes = serde_json::Map::new();
    // Claims the good digest in its header, serves other bytes.
    routes.insert(
        format!("GET /v2/bad/manifests/{digest}"),
        wrong_body(json!({"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest})),
    );
    routes.insert(
        "HEAD /v2/bad/manifests/v1".into(),
        json!([{"status": 200, "headers": {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}}]),
    );
    // Says nothing about the digest, serves other bytes.
    routes.insert(
        format!("GET /v2/quiet/manifests/{digest}"),
        wrong_body(json!({"Content-Type": OCI_MANIFEST})),
    );
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };

    for path in [
        format!("bad@{digest}"),
        "bad:v1".to_string(),
        format!("quiet@{digest}"),
    ] {
        let err = stand_in
            .resolve(stand_in.config(), &path, BUDGET)
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::DigestMismatch { expected, actual, .. }
                if *expected == digest && *actual == digest_of(&other)),
            "{path}: {err:?}"
        );
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
    }
}

#[test]
fn rate_limits_and_server_errors_are_retried_within_bounds() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let digest = digest_of(&image);
    let too_many = json!({"status": 429, "body": r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#});
    let unavailable = json!({"status": 503, "body": "busy"});
    let mut routes = serde_json::Map::new();
    serve_image(
        &mut routes,
        &layout,
        "flaky",
        &image,
        vec![too_many.clone(), unavailable],
    );
    routes.insert(
        format!("GET /v2/limited/manifests/{digest}"),
        json!([too_many]),
    );
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };

    // 429, then 503, then the manifest: two retries, inside the default of two.
    let resolved = stand_in
        .resolve(stand_in.config(), &format!("flaky@{digest}"), BUDGET)
        .unwrap();
    assert_eq!(resolved.source_info().unwrap().commit.as_deref(), Some(C1));
    assert_eq!(
        stand_in.count(&format!("GET /v2/flaky/manifests/{digest}")),
        3
    );

    // Always 429: one attempt and two retries, then the rate limit is reported as transient.
    let err = stand_in
        .resolve(stand_in.config(), &format!("limited@{digest}"), BUDGET)
        .unwrap_err();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        stand_in.count(&format!("GET /v2/limited/manifests/{digest}")),
        3
    );

    // No retries allowed: one attempt.
    let config = RegistryConfig {
        max_retries: 0,
        ..stand_in.config()
    };
    let err = stand_in
        .resolve(config, &format!("limited@{digest}"), BUDGET)
        .unwrap_err();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{err:?}");
    assert_eq!(
        stand_in.count(&format!("GET /v2/limited/manifests/{digest}")),
        4
    );
}

#[test]
fn a_slow_registry_times_out_at_the_deadline_and_per_request() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let digest = digest_of(&image);
    let mut routes = serde_json::Map::new();
    routes.insert(
        format!("GET /v2/slow/manifests/{digest}"),
        json!([{"status": 200, "delay": 5, "file": blob_file(&image)}]),
    );
    // Every answer slow and a 5xx: retries must stop at the deadline too.
    routes.insert(
        format!("GET /v2/slow-5xx/manifests/{digest}"),
        json!([{"status": 503, "delay": 0.4, "body": "busy"}]),
    );
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };

    // The caller's deadline (1 s) is nearer than the request timeout (5 s).
    let started = std::time::Instant::now();
    let err = stand_in
        .resolve(
            stand_in.config(),
            &format!("slow@{digest}"),
            Duration::from_secs(1),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );

    // The request timeout (300 ms) is nearer than the deadline; a timeout is not retried.
    let config = RegistryConfig {
        request_timeout: Duration::from_millis(300),
        ..stand_in.config()
    };
    let started = std::time::Instant::now();
    let err = stand_in
        .resolve(config, &format!("slow@{digest}"), BUDGET)
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, RegistryError::Timeout { waited, .. } if waited == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // Slow 503s with many retries allowed: the deadline still ends it.
    let config = RegistryConfig {
        max_retries: 50,
        ..stand_in.config()
    };
    let started = std::time::Instant::now();
    let err = stand_in
        .resolve(
            config,
            &format!("slow-5xx@{digest}"),
            Duration::from_secs(1),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(took < Duration::from_millis(1600), "{took:?}");
    assert!(stand_in.count(&format!("GET /v2/slow-5xx/manifests/{digest}")) <= 3);
}

#[test]
fn a_config_that_passes_the_cap_while_streaming_is_refused() {
    let (_dir, layout) = stand_in_layout();
    // The manifest declares a small config; the blob served is 5 MiB, chunked, so neither the
    // descriptor nor a Content-Length gives it away before it is read.
    let huge = vec![b' '; 5 * 1024 * 1024];
    let mut config = layout.blob(&huge, OCI_CONFIG);
    config["size"] = json!(100);
    let layer = layout.blob(&[0u8; 1024], "application/vnd.oci.image.layer.v1.tar");
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
    let manifest = layout.blob(&serde_json::to_vec(&manifest).unwrap(), OCI_MANIFEST);
    let digest = digest_of(&manifest);
    let mut routes = serde_json::Map::new();
    routes.insert(
        format!("GET /v2/huge/manifests/{digest}"),
        json!([{"status": 200, "file": blob_file(&manifest)}]),
    );
    routes.insert(
        format!("GET /v2/huge/blobs/{}", digest_of(&config)),
        json!([{"status": 200, "file": blob_file(&config), "chunked": true}]),
    );
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let err = stand_in
        .resolve(stand_in.config(), &format!("huge@{digest}"), BUDGET)
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::TooLarge { limit, what }
            if *limit == 4 * 1024 * 1024 && what.starts_with("config blob")),
        "{err:?}"
    );
}

#[test]
fn requests_to_one_registry_are_bounded_by_its_limit() {
    let (_dir, layout) = stand_in_layout();
    let mut routes = serde_json::Map::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64", "ppc64le", "s390x"] {
        let image = layout.image(arch, labels(C1), json!({}));
        let slow = json!({"status": 200, "delay": 0.25, "file": blob_file(&image),
                          "headers": {"Content-Type": OCI_MANIFEST}});
        serve_image(&mut routes, &layout, "wide", &image, vec![]);
        routes.insert(
            format!("GET /v2/wide/manifests/{}", digest_of(&image)),
            json!([slow]),
        );
        entries.push(image);
    }
    let index = layout.index(entries, json!({}));
    let digest = digest_of(&index);
    routes.insert(
        format!("GET /v2/wide/manifests/{digest}"),
        json!([{"status": 200, "file": blob_file(&index)}]),
    );
    let Some(stand_in) = StandIn::start(&layout, routes.clone()) else {
        return;
    };
    let one = RegistryConfig {
        max_concurrent_per_registry: 1,
        ..stand_in.config()
    };
    let started = std::time::Instant::now();
    let resolved = stand_in
        .resolve(one, &format!("wide@{digest}"), BUDGET)
        .unwrap();
    assert_eq!(resolved.images.len(), 4);
    assert_eq!(stand_in.max_inflight(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(stand_in);

    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let resolved = stand_in
        .resolve(stand_in.config(), &format!("wide@{digest}"), BUDGET)
        .unwrap();
    assert_eq!(resolved.images.len(), 4);
    // The default limit lets the four children be fetched side by side.
    assert!(stand_in.max_inflight() > 1, "{}", stand_in.max_inflight());
}

// ---------------------------------------------------------------------------------------------
// Caches, proven by counting what the stand-in saw
// ---------------------------------------------------------------------------------------------

/// Resolves `path` at the stand-in through `registry` (shared across calls, as the webhook
/// shares it), anonymously.
async fn resolve_on(
    registry: &Registry,
    stand_in: &StandIn,
    path: &str,
) -> Result<ResolvedImage, RegistryError> {
    let reference = ImageReference::parse(&format!("{}/{path}", stand_in.host)).unwrap();
    registry
        .resolve(
            &reference,
            &RegistryCredentials::Anonymous,
            Instant::now() + BUDGET,
        )
        .await
}

/// Routes for one image in `repository`: its manifest and config by digest, and tag `v1`
/// (HEAD, after `delay` seconds). Returns the manifest and config digests.
fn serve_tagged(
    routes: &mut serde_json::Map<String, Value>,
    layout: &Layout,
    repository: &str,
    image: &Value,
    delay: f64,
) -> (String, String) {
    serve_image(routes, layout, repository, image, vec![]);
    let digest = digest_of(image);
    routes.insert(
        format!("HEAD /v2/{repository}/manifests/v1"),
        json!([{"status": 200, "delay": delay,
                "headers": {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}}]),
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(layout.path_of(image)).unwrap()).unwrap();
    (digest, digest_of(&manifest["config"]))
}

#[test]
fn a_second_resolve_of_a_digest_fetches_no_manifest_or_config() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let mut routes = serde_json::Map::new();
    let (digest, config) = serve_tagged(&mut routes, &layout, "pinned", &image, 0.0);
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let registry = Registry::new(stand_in.config()).unwrap();
    block_on(async {
        for _ in 0..3 {
            let resolved = resolve_on(&registry, &stand_in, &format!("pinned@{digest}"))
                .await
                .unwrap();
            assert_eq!(resolved.source_info().unwrap().commit.as_deref(), Some(C1));
        }
    });
    assert_eq!(
        stand_in.count(&format!("GET /v2/pinned/manifests/{digest}")),
        1
    );
    assert_eq!(stand_in.count(&format!("GET /v2/pinned/blobs/{config}")), 1);

    // A registry with the content cache off asks every time.
    let off = Registry::new(RegistryConfig {
        content_cache_bytes: 0,
        ..stand_in.config()
    })
    .unwrap();
    block_on(async {
        for _ in 0..2 {
            resolve_on(&off, &stand_in, &format!("pinned@{digest}"))
                .await
                .unwrap();
        }
    });
    assert_eq!(
        stand_in.count(&format!("GET /v2/pinned/manifests/{digest}")),
        3
    );
}

#[test]
fn a_tag_is_kept_for_its_ttl_then_asked_again_with_one_head() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let mut routes = serde_json::Map::new();
    let (digest, config) = serve_tagged(&mut routes, &layout, "tagged", &image, 0.0);
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let ttl = Duration::from_millis(800);
    let registry = Registry::new(RegistryConfig {
        tag_cache_ttl: ttl,
        ..stand_in.config()
    })
    .unwrap();
    let head = "HEAD /v2/tagged/manifests/v1";
    let get_manifest = format!("GET /v2/tagged/manifests/{digest}");
    let get_config = format!("GET /v2/tagged/blobs/{config}");
    block_on(async {
        let first = resolve_on(&registry, &stand_in, "tagged:v1").await.unwrap();
        assert_eq!(first.digest.to_string(), digest);
        // Within the TTL: no request at all.
        let second = resolve_on(&registry, &stand_in, "tagged:v1").await.unwrap();
        assert_eq!(second.digest, first.digest);
        assert_eq!(stand_in.count(head), 1);
        assert_eq!(stand_in.count("GET /v2/tagged/manifests/v1"), 0);
        assert_eq!(stand_in.count(&get_manifest), 1);
        assert_eq!(stand_in.count(&get_config), 1);
        // After it: exactly one HEAD; the digest's content is still kept.
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        resolve_on(&registry, &stand_in, "tagged:v1").await.unwrap();
        assert_eq!(stand_in.count(head), 2);
        assert_eq!(stand_in.count(&get_manifest), 1);
        assert_eq!(stand_in.count(&get_config), 1);
    });

    // A zero TTL keeps no tag.
    let off = Registry::new(RegistryConfig {
        tag_cache_ttl: Duration::ZERO,
        ..stand_in.config()
    })
    .unwrap();
    block_on(async {
        resolve_on(&off, &stand_in, "tagged:v1").await.unwrap();
        resolve_on(&off, &stand_in, "tagged:v1").await.unwrap();
    });
    assert_eq!(stand_in.count(head), 4);
}

#[test]
fn concurrent_resolves_of_one_new_image_make_one_set_of_requests() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let mut routes = serde_json::Map::new();
    // A slow HEAD, so that all twenty resolutions miss together.
    let (digest, config) = serve_tagged(&mut routes, &layout, "fresh", &image, 0.3);
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let registry = Registry::new(stand_in.config()).unwrap();
    let results = block_on(futures_util::future::join_all(
        (0..20).map(|_| resolve_on(&registry, &stand_in, "fresh:v1")),
    ));
    for result in results {
        assert_eq!(result.unwrap().digest.to_string(), digest);
    }
    assert_eq!(stand_in.count("HEAD /v2/fresh/manifests/v1"), 1);
    assert_eq!(
        stand_in.count(&format!("GET /v2/fresh/manifests/{digest}")),
        1
    );
    assert_eq!(stand_in.count(&format!("GET /v2/fresh/blobs/{config}")), 1);
}

#[test]
fn a_server_error_is_never_kept() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let digest = digest_of(&image);
    let mut routes = serde_json::Map::new();
    let unavailable = json!({"status": 503, "body": "busy"});
    serve_image(
        &mut routes,
        &layout,
        "flaky",
        &image,
        vec![unavailable.clone(), unavailable],
    );
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let registry = Registry::new(RegistryConfig {
        max_retries: 0,
        ..stand_in.config()
    })
    .unwrap();
    let route = format!("GET /v2/flaky/manifests/{digest}");
    block_on(async {
        for expected in 1..=2 {
            let err = resolve_on(&registry, &stand_in, &format!("flaky@{digest}"))
                .await
                .unwrap_err();
            assert!(
                matches!(err, RegistryError::ServerError { status: 503, .. }),
                "{err:?}"
            );
            // Each call went upstream again.
            assert_eq!(stand_in.count(&route), expected);
        }
        resolve_on(&registry, &stand_in, &format!("flaky@{digest}"))
            .await
            .unwrap();
        assert_eq!(stand_in.count(&route), 3);
        // Now it is kept.
        resolve_on(&registry, &stand_in, &format!("flaky@{digest}"))
            .await
            .unwrap();
        assert_eq!(stand_in.count(&route), 3);
    });
}

#[test]
fn not_found_is_kept_for_its_short_ttl_only() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let digest = digest_of(&image);
    let mut routes = serde_json::Map::new();
    // Not pushed yet, then pushed.
    let missing = json!({"status": 404,
        "body": r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#});
    serve_image(&mut routes, &layout, "later", &image, vec![missing]);
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let ttl = Duration::from_millis(800);
    let registry = Registry::new(RegistryConfig {
        negative_cache_ttl: ttl,
        ..stand_in.config()
    })
    .unwrap();
    let route = format!("GET /v2/later/manifests/{digest}");
    // A missing tag (HEAD, then GET for the error) is kept the same way.
    let tag_requests = || {
        stand_in.count("HEAD /v2/later/manifests/v1") + stand_in.count("GET /v2/later/manifests/v1")
    };
    block_on(async {
        for _ in 0..2 {
            let err = resolve_on(&registry, &stand_in, &format!("later@{digest}"))
                .await
                .unwrap_err();
            assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
            assert!(!err.is_transient());
            let err = resolve_on(&registry, &stand_in, "later:v1")
                .await
                .unwrap_err();
            assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
        }
        assert_eq!(stand_in.count(&route), 1);
        let after_first = tag_requests();
        assert!((1..=2).contains(&after_first), "{after_first}");
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        // The TTL is over: asked again, and now it is there.
        resolve_on(&registry, &stand_in, &format!("later@{digest}"))
            .await
            .unwrap();
        assert_eq!(stand_in.count(&route), 2);
        resolve_on(&registry, &stand_in, "later:v1")
            .await
            .unwrap_err();
        assert_eq!(tag_requests(), 2 * after_first);
    });
}

#[test]
fn one_tenants_answers_are_not_served_to_another() {
    let (_dir, layout) = stand_in_layout();
    let image = layout.image("amd64", labels(C1), json!({}));
    let mut routes = serde_json::Map::new();
    let (digest, _) = serve_tagged(&mut routes, &layout, "shared", &image, 0.0);
    let Some(stand_in) = StandIn::start(&layout, routes) else {
        return;
    };
    let registry = Registry::new(stand_in.config()).unwrap();
    let reference = ImageReference::parse(&format!("{}/shared:v1", stand_in.host)).unwrap();
    let tenant = |token: &str| RegistryCredentials::Bearer {
        token: token.into(),
    };
    block_on(async {
        for credentials in [
            tenant("a"),
            tenant("a"),
            tenant("b"),
            RegistryCredentials::Anonymous,
        ] {
            registry
                .resolve(&reference, &credentials, Instant::now() + BUDGET)
                .await
                .unwrap();
        }
    });
    // Three identities, three sets of requests; the repeat of "a" made none.
    assert_eq!(stand_in.count("HEAD /v2/shared/manifests/v1"), 3);
    assert_eq!(
        stand_in.count(&format!("GET /v2/shared/manifests/{digest}")),
        3
    );
}

// ---------------------------------------------------------------------------------------------
// Mirrors (containerd hosts.toml)
// ---------------------------------------------------------------------------------------------

/// A mirrors directory configuring `registry` with `hosts_toml`, and the [`Mirrors`] read
/// from it.
fn mirrors_for(registry: &str, hosts_toml: &str) -> (tempfile::TempDir, Mirrors) {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(registry);
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("hosts.toml"), hosts_toml).unwrap();
    let mirrors = Mirrors::from_dir(dir.path()).unwrap();
    (dir, mirrors)
}

/// `127.0.0.1:<port>` where nothing listens.
fn down_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

#[test]
fn an_image_resolves_through_a_mirror_when_the_registry_is_down() {
    let Some(plain) = plain("an_image_resolves_through_a_mirror_when_the_registry_is_down") else {
        return;
    };
    let upstream = down_host();
    let mirror = plain.registry.host();
    let (_dir, mirrors) = mirrors_for(
        &upstream,
        &format!("[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    );
    let config = RegistryConfig {
        insecure_hosts: vec![mirror.to_string(), upstream.clone()],
        mirrors: Some(mirrors),
        ..RegistryConfig::default()
    };
    let resolved = resolve_with(
        config.clone(),
        &format!("{upstream}/demo/hello:v1"),
        &RegistryCredentials::Anonymous,
        BUDGET,
    )
    .unwrap();
    assert_eq!(resolved.digest.to_string(), plain.pushed.mk["v1"]);
    assert_eq!(resolved.images[0].labels[REVISION_KEY], MKLAYOUT_REVISION);

    // A plain-HTTP mirror whose host is not listed as insecure is skipped: only the registry
    // (down) is left.
    let not_listed = RegistryConfig {
        insecure_hosts: vec![upstream.clone()],
        ..config
    };
    let err = resolve_with(
        not_listed,
        &format!("{upstream}/demo/hello:v1"),
        &RegistryCredentials::Anonymous,
        BUDGET,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
}

#[test]
fn a_mirror_without_the_image_falls_through_to_the_registry() {
    let Some(plain) = plain("a_mirror_without_the_image_falls_through_to_the_registry") else {
        return;
    };
    let empty = TestRegistry::start(&[]);
    let upstream = plain.registry.host();
    let (_dir, mirrors) = mirrors_for(
        upstream,
        &format!(
            "server = \"http://{upstream}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            empty.host()
        ),
    );
    let config = RegistryConfig {
        insecure_hosts: vec![upstream.to_string(), empty.host().to_string()],
        mirrors: Some(mirrors),
        ..RegistryConfig::default()
    };
    let resolved = plain
        .resolve_with(config.clone(), "demo/hello:multi")
        .unwrap();
    assert_eq!(resolved.digest.to_string(), plain.pushed.mk["multi"]);
    assert!(resolved.is_index());
    // By digest too, and a tag neither has is still "not found".
    let by_digest = plain
        .resolve_with(
            config.clone(),
            &format!("demo/hello@{}", plain.pushed.mk["v1"]),
        )
        .unwrap();
    assert_eq!(by_digest.digest.to_string(), plain.pushed.mk["v1"]);
    let err = plain.resolve_with(config, "demo/hello:nope").unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
}

#[test]
fn a_pull_only_mirror_serves_content_but_never_resolves_tags() {
    let Some(plain) = plain("a_pull_only_mirror_serves_content_but_never_resolves_tags") else {
        return;
    };
    let digest = plain.pushed.mk["v1"].clone();
    // The registry: a stand-in that only knows the tag; every manifest and config it is asked
    // for by digest would be "not found".
    let (_layout_dir, layout) = stand_in_layout();
    let mut routes = serde_json::Map::new();
    routes.insert(
        "HEAD /v2/demo/hello/manifests/v1".into(),
        json!([{"status": 200,
                "headers": {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}}]),
    );
    let Some(upstream) = StandIn::start(&layout, routes) else {
        return;
    };
    let mirror = plain.registry.host();
    let (_dir, mirrors) = mirrors_for(
        &upstream.host,
        &format!("[host.\"http://{mirror}\"]\n  capabilities = [\"pull\"]\n"),
    );
    let config = RegistryConfig {
        insecure_hosts: vec![upstream.host.clone(), mirror.to_string()],
        mirrors: Some(mirrors),
        ..upstream.config()
    };
    let resolved = upstream.resolve(config, "demo/hello:v1", BUDGET).unwrap();
    assert_eq!(resolved.digest.to_string(), digest);
    assert_eq!(resolved.images[0].labels[REVISION_KEY], MKLAYOUT_REVISION);
    // The tag went to the registry, the content came from the mirror.
    assert_eq!(upstream.count("HEAD /v2/demo/hello/manifests/v1"), 1);
    assert_eq!(
        upstream.count(&format!("GET /v2/demo/hello/manifests/{digest}")),
        0
    );
    let log = std::fs::read_to_string(upstream.dir.path().join("requests.log")).unwrap();
    assert!(!log.contains("/blobs/"), "{log}");
}

#[test]
fn a_digest_mismatch_at_a_mirror_stops_instead_of_falling_through() {
    let Some(plain) = plain("a_digest_mismatch_at_a_mirror_stops_instead_of_falling_through")
    else {
        return;
    };
    let upstream = plain.registry.host();
    let digest = plain.pushed.mk["v1"].clone();
    // The mirror serves other bytes under the digest the registry names.
    let (_layout_dir, layout) = stand_in_layout();
    let other = layout.image("amd64", labels(C2), json!({}));
    let mut routes = serde_json::Map::new();
    routes.insert(
        format!("GET /v2/demo/hello/manifests/{digest}?ns={upstream}"),
        json!([{"status": 200, "file": blob_file(&other),
                "headers": {"Content-Type": OCI_MANIFEST}}]),
    );
    let Some(mirror) = StandIn::start(&layout, routes) else {
        return;
    };
    let (_dir, mirrors) = mirrors_for(
        upstream,
        &format!(
            "server = \"http://{upstream}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\"]\n",
            mirror.host
        ),
    );
    let config = RegistryConfig {
        insecure_hosts: vec![upstream.to_string(), mirror.host.clone()],
        mirrors: Some(mirrors),
        ..RegistryConfig::default()
    };
    let err = plain.resolve_with(config, "demo/hello:v1").unwrap_err();
    assert!(
        matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == digest),
        "{err:?}"
    );
    assert_eq!(
        mirror.count(&format!(
            "GET /v2/demo/hello/manifests/{digest}?ns={upstream}"
        )),
        1
    );
}

#[test]
fn an_endpoint_with_skip_verify_is_refused_with_a_clear_error() {
    let upstream = down_host();
    let (_dir, mirrors) = mirrors_for(
        &upstream,
        "[host.\"https://127.0.0.1:1\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n",
    );
    let config = RegistryConfig {
        mirrors: Some(mirrors),
        ..RegistryConfig::default()
    };
    let started = std::time::Instant::now();
    let err = resolve_with(
        config,
        &format!("{upstream}/demo/hello:v1"),
        &RegistryCredentials::Anonymous,
        BUDGET,
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::Endpoint { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("https://127.0.0.1:1/v2")
            && text.contains(&upstream)
            && text.contains("skip_verify = true")
            && text.contains("is refused"),
        "{text}"
    );
    // Refused before any request.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_tls_mirror_is_trusted_with_its_own_ca_file_only() {
    if !peers_present("a_tls_mirror_is_trusted_with_its_own_ca_file_only") {
        return;
    }
    let mirror = TestRegistry::start(&["--tls"]);
    let layouts = tempfile::tempdir().unwrap();
    let mk: HashMap<String, String> = serde_json::from_str(&run(Command::new("python3")
        .arg(root().join("tests/peers/mklayout.py"))
        .arg(layouts.path())))
    .unwrap();
    mirror.push(layouts.path(), "v1", "demo/hello:v1", &[]);
    let upstream = down_host();
    let reference = format!("{upstream}/demo/hello:v1");
    let anonymous = RegistryCredentials::Anonymous;
    let config = |ca: &str| {
        let (dir, mirrors) = mirrors_for(
            &upstream,
            &format!(
                "[host.\"https://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{ca}",
                mirror.host()
            ),
        );
        let config = RegistryConfig {
            insecure_hosts: vec![upstream.clone()],
            mirrors: Some(mirrors),
            ..RegistryConfig::default()
        };
        (dir, config)
    };

    let ca = format!("  ca = {:?}\n", mirror.facts["REGISTRY_CA"]);
    let (_with, with_ca) = config(&ca);
    let resolved = resolve_with(with_ca, &reference, &anonymous, BUDGET).unwrap();
    assert_eq!(resolved.digest.to_string(), mk["v1"]);

    // Without the CA the handshake fails, and a TLS failure does not fall through.
    let (_without, without_ca) = config("");
    let err = resolve_with(without_ca, &reference, &anonymous, BUDGET).unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");

    // A CA file that is not a certificate is a clear error.
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), b"not a certificate\n").unwrap();
    let (_bad, bad_ca) = config(&format!("  ca = \"{}\"\n", not_pem.path().display()));
    let err = resolve_with(bad_ca, &reference, &anonymous, BUDGET).unwrap_err();
    assert!(matches!(err, RegistryError::Endpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("not a PEM certificate"), "{err}");

    // A device is never read (it could be endless): only regular files are CA files.
    let (_dev, dev_ca) = config("  ca = \"/dev/zero\"\n");
    let err = resolve_with(dev_ca, &reference, &anonymous, BUDGET).unwrap_err();
    assert!(matches!(err, RegistryError::Endpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
