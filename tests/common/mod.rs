//! Helpers shared by the integration tests: running the built binary and finding fixtures.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The output of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for reason checks.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `attestgate` with `args` in `dir`.
pub fn attestgate<I, S>(dir: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_attestgate"))
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("attestgate runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures/real`, the published evidence of other projects, which is never
/// committed here. `None` (and a note on stderr) where this checkout has no `../shared`.
pub fn real_fixtures(set: &str) -> Option<PathBuf> {
    let dir = root().join("../shared/fixtures/real").join(set);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} not present (real fixtures live only beside the repo)",
            dir.display()
        );
        None
    }
}

/// Key types the openssl signer can make.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    RsaPss,
    RsaPkcs1,
}

/// A key made by `openssl`, an implementation independent of ours.
pub struct OpensslKey {
    pub kind: KeyKind,
    pub private: PathBuf,
    pub public: PathBuf,
}

/// Runs `openssl` in `dir` and returns its stdout; a failure fails the test with openssl's words.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl OpensslKey {
    /// Generates a key named `name` in `dir`.
    pub fn generate(dir: &Path, name: &str, kind: KeyKind) -> Self {
        let private = dir.join(format!("{name}.key.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let p = private.to_str().unwrap();
        match kind {
            KeyKind::Ed25519 => openssl(dir, &["genpkey", "-algorithm", "ed25519", "-out", p]),
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 => {
                let curve = match kind {
                    KeyKind::EcdsaP256 => "ec_paramgen_curve:P-256",
                    KeyKind::EcdsaP384 => "ec_paramgen_curve:P-384",
                    _ => "ec_paramgen_curve:P-521",
                };
                openssl(
                    dir,
                    &["genpkey", "-algorithm", "EC", "-pkeyopt", curve, "-out", p],
                )
            }
            KeyKind::RsaPss | KeyKind::RsaPkcs1 => openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    p,
                ],
            ),
        };
        openssl(
            dir,
            &[
                "pkey",
                "-in",
                p,
                "-pubout",
                "-out",
                public.to_str().unwrap(),
            ],
        );
        Self {
            kind,
            private,
            public,
        }
    }

    /// A key pair already on disk.
    pub fn from_files(kind: KeyKind, private: PathBuf, public: PathBuf) -> Self {
        Self {
            kind,
            private,
            public,
        }
    }

    /// The witness key id: SHA-256 of the public PEM as openssl writes it (the same text Go
    /// writes: 64-column lines, trailing newline).
    pub fn keyid(&self) -> String {
        use sha2::Digest as _;
        hex(&sha2::Sha256::digest(std::fs::read(&self.public).unwrap()))
    }

    /// Signs `message` with openssl, in the byte format witness uses for this key type.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("message.bin");
        std::fs::write(&input, message).unwrap();
        let (k, i) = (self.private.to_str().unwrap(), input.to_str().unwrap());
        match self.kind {
            KeyKind::Ed25519 => openssl(
                dir.path(),
                &["pkeyutl", "-sign", "-inkey", k, "-rawin", "-in", i],
            ),
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::RsaPkcs1 => {
                openssl(dir.path(), &["dgst", "-sha256", "-sign", k, i])
            }
            KeyKind::RsaPss => openssl(
                dir.path(),
                &[
                    "dgst",
                    "-sha256",
                    "-sign",
                    k,
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    "rsa_pss_saltlen:max",
                    i,
                ],
            ),
        }
    }

    /// A DSSE envelope over `payload`, signed by this key, as witness serializes it.
    pub fn envelope(&self, payload_type: &str, payload: &[u8]) -> Vec<u8> {
        let sig = self.sign(&pae(payload_type, payload));
        let envelope = serde_json::json!({
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"keyid": self.keyid(), "sig": b64(&sig)}],
        });
        serde_json::to_vec(&envelope).unwrap()
    }

    /// The `publickeys` entry of a policy for this key.
    pub fn policy_entry(&self) -> serde_json::Value {
        serde_json::json!({"keyid": self.keyid(), "key": b64(&std::fs::read(&self.public).unwrap())})
    }
}

/// DSSE pre-authentication encoding, written out independently of the crate's.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Standard padded base64.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The witness policy payload type.
pub const POLICY_TYPE: &str = "https://witness.testifysec.com/policy/v0.1";
/// The in-toto payload type.
pub const INTOTO_TYPE: &str = "application/vnd.in-toto+json";

/// The directory where `.ci/peers.sh` and `.ci/peers-evidence.sh` put the Go-built peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("ATTESTGATE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/attestgate-peers")
        })
}

/// Whether `program` is on this machine (a peer binary, or a Debian tool such as
/// `docker-registry`). Under `CI=true` a missing peer fails the test (CI must never skip
/// silently); elsewhere the test prints why it is skipped and returns.
pub fn require_peer(program: &Path, why: &str) -> bool {
    let found = program.is_file()
        || (program.components().count() == 1
            && Command::new("sh")
                .args(["-c", &format!("command -v {}", program.display())])
                .output()
                .is_ok_and(|o| o.status.success()));
    if found {
        return true;
    }
    let message = format!(
        "skipped: {} not present ({why}); run .ci/peers.sh and .ci/peers-evidence.sh",
        program.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("{message}");
    false
}

/// A real Archivista (with its own PostgreSQL) on loopback, stopped when dropped.
pub struct Archivista {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Archivista {
    /// Starts one with `tests/peers/start-archivista.sh`, or `None` when it cannot run here.
    pub fn start() -> Option<Self> {
        let bin = peers_dir().join("bin/archivista");
        if !require_peer(&bin, "archivista") {
            return None;
        }
        let (dir, facts) = start_peer("start-archivista.sh", &["0"], "archivista.env");
        let url = fact(&facts, "ARCHIVISTA_URL");
        Some(Self { dir, url })
    }

    /// Uploads `bytes` as they are and returns the gitoid Archivista answers with.
    pub fn upload(&self, bytes: &[u8]) -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-X",
                "POST",
                "--data-binary",
                "@-",
            ])
            .arg(format!("{}/upload", self.url))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(bytes)?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "upload failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        answer["gitoid"].as_str().unwrap().to_string()
    }
}

impl Drop for Archivista {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/peers/stop.sh"))
            .arg(self.dir.path())
            .output();
    }
}

/// A plain-HTTP Debian `docker-registry` on loopback (`tests/peers/start-registry.sh`), stopped
/// when dropped.
pub struct PlainRegistry {
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl PlainRegistry {
    /// Starts one, or `None` when the registry peers are not installed (a failure under
    /// `CI=true`).
    pub fn start() -> Option<Self> {
        for tool in ["docker-registry", "skopeo", "python3"] {
            if !require_peer(Path::new(tool), "the real registry and its push tool") {
                return None;
            }
        }
        let (dir, facts) = start_peer("start-registry.sh", &["0"], "registry.env");
        let host = fact(&facts, "REGISTRY");
        Some(Self { dir, host })
    }

    /// `skopeo copy --all --preserve-digests` of `layout:tag` to `repository`
    /// (`name:tag`) on this registry.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str) {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}", self.host))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo push of {repository}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PlainRegistry {
    fn drop(&mut self) {
        let _ = Command::new(root().join("tests/peers/stop.sh"))
            .arg(self.dir.path())
            .output();
    }
}

/// Writes `tests/peers/mklayout.py`'s layout (tags `v1` and `multi`) with these labels into
/// `dir` and returns its manifest digests by name (`v1`, `multi`, `amd64`, `arm64`).
pub fn mklayout(
    dir: &Path,
    revision: &str,
    source: &str,
) -> std::collections::HashMap<String, String> {
    let out = Command::new("python3")
        .arg(root().join("tests/peers/mklayout.py"))
        .arg(dir)
        .arg(revision)
        .arg(source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mklayout.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plain-HTTP Debian `docker-registry` on loopback in `--auth htpasswd` mode, with the user
/// and password `tests/peers/start-registry.sh` made for it; stopped when dropped.
pub struct HtpasswdRegistry {
    pub registry: PlainRegistry,
    pub user: String,
    pub password: String,
}

impl HtpasswdRegistry {
    /// Starts one, or `None` when the registry peers are not installed (a failure under
    /// `CI=true`).
    pub fn start() -> Option<Self> {
        for tool in ["docker-registry", "skopeo", "python3"] {
            if !require_peer(Path::new(tool), "the real registry and its push tool") {
                return None;
            }
        }
        let (dir, facts) = start_peer(
            "start-registry.sh",
            &["0", "--auth", "htpasswd"],
            "registry.env",
        );
        let (host, user, password) = (
            fact(&facts, "REGISTRY"),
            fact(&facts, "REGISTRY_USER"),
            fact(&facts, "REGISTRY_PASSWORD"),
        );
        Some(Self {
            registry: PlainRegistry { dir, host },
            user,
            password,
        })
    }

    /// `skopeo copy --all --preserve-digests` of `layout:tag` to `repository` (`name:tag`),
    /// logged in as the registry's user.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str) {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-creds",
            ])
            .arg(format!("{}:{}", self.user, self.password))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}", self.registry.host))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo push of {repository}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A docker config.json holding `password` for this registry's user.
    pub fn docker_config(&self, password: &str) -> String {
        serde_json::json!({"auths": {self.registry.host.clone(): {
            "auth": b64(format!("{}:{password}", self.user).as_bytes())
        }}})
        .to_string()
    }
}

/// Runs a `tests/peers/start-*.sh` script on a fresh directory and returns the directory with
/// the `KEY=value` facts of the env file the script wrote there. A script that fails fails the
/// test with its output.
pub fn start_peer(
    script: &str,
    args: &[&str],
    env_file: &str,
) -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("tests/peers").join(script))
        .arg(dir.path())
        .args(args)
        .env("ATTESTGATE_PEERS", peers_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(dir.path().join(env_file)).unwrap();
    let facts = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches(['"', '\'']).to_string(),
            )
        })
        .collect();
    (dir, facts)
}

/// The value of `key` among the facts `start_peer` read.
pub fn fact(facts: &[(String, String)], key: &str) -> String {
    facts
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("the peer's env file has no {key}"))
}
