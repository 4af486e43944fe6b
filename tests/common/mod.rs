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

/// A stand-in process (`tests/peers/archivista-standin.py`), killed when dropped (also when a
/// test fails).
pub struct Standin(std::process::Child);

impl Drop for Standin {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts the Archivista stand-in in `mode` (with its third argument `arg`: a gitoid, or the
/// envelope file in `counting` mode) and returns it with its URL.
pub fn standin(dir: &Path, mode: &str, arg: &str) -> (Standin, String) {
    let portfile = dir.join(format!("{mode}.port"));
    let child = Standin(
        Command::new("python3")
            .arg(root().join("tests/peers/archivista-standin.py"))
            .args([portfile.to_str().unwrap(), mode, arg])
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if let Ok(port) = std::fs::read_to_string(&portfile) {
            if !port.is_empty() {
                return (child, format!("http://127.0.0.1:{port}"));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("stand-in did not start");
}

/// The stand-in in `counting` mode, serving one envelope, with a client to drive it.
pub struct Counting {
    _child: Standin,
    pub url: String,
    http: reqwest::Client,
}

impl Counting {
    /// Starts one serving `envelope` (a file) under its own gitoid, in a port file under `dir`.
    pub fn start(dir: &Path, envelope: &Path) -> Self {
        let (child, url) = standin(dir, "counting", envelope.to_str().unwrap());
        attestgate::install_crypto_provider();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self {
            _child: child,
            url,
            http,
        }
    }

    /// (searches, downloads) the stand-in has answered.
    pub async fn counts(&self) -> (u64, u64) {
        let body = self
            .http
            .get(format!("{}/counts", self.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let counts: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            counts["query"].as_u64().unwrap(),
            counts["download"].as_u64().unwrap(),
        )
    }

    /// How searches are answered from now on: `hit`, `empty` or `error`, after `delay` seconds.
    pub async fn control(&self, answer: &str, delay: f64) {
        let status = self
            .http
            .post(format!("{}/control", self.url))
            .body(serde_json::json!({"answer": answer, "delay": delay}).to_string())
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
    }

    /// An Archivista source for the stand-in, configured by `configure`.
    pub fn source(
        &self,
        configure: impl FnOnce(&mut attestgate::evidence::ArchivistaConfig),
    ) -> attestgate::evidence::ArchivistaSource {
        let mut config = attestgate::evidence::ArchivistaConfig::new(self.url.clone());
        configure(&mut config);
        attestgate::evidence::ArchivistaSource::new(config).unwrap()
    }
}

/// The witness attestation types and collection predicate the image evidence uses.
pub const DOCKER_TYPE: &str = "https://witness.dev/attestations/docker/v0.1";
pub const GIT_TYPE: &str = "https://witness.dev/attestations/git/v0.1";
pub const COLLECTION_TYPE: &str = "https://witness.testifysec.com/attestation-collection/v0.1";

/// An in-toto statement of a witness collection for step `build` with git (`commit`, remote
/// `remote`) and docker attestations, naming `subjects` (name, algorithm, hex value).
pub fn collection(subjects: &[(String, &str, &str)], commit: &str, remote: &str) -> Vec<u8> {
    let subject: Vec<serde_json::Value> = subjects
        .iter()
        .map(|(name, alg, value)| serde_json::json!({"name": name, "digest": {*alg: value}}))
        .collect();
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "subject": subject,
        "predicateType": COLLECTION_TYPE,
        "predicate": {"name": "build", "attestations": [
            {"type": GIT_TYPE, "attestation": {"commithash": commit, "remotes": [remote]}},
            {"type": DOCKER_TYPE, "attestation": {}}
        ]}
    })
    .to_string()
    .into_bytes()
}

/// A policy with one step, `build`, that `functionary` must sign and whose collection must
/// hold git and docker attestations (unsigned: sign it with [`OpensslKey::envelope`]).
pub fn build_policy(functionary: &OpensslKey) -> serde_json::Value {
    serde_json::json!({
        "expires": "2035-01-01T00:00:00Z",
        "publickeys": {functionary.keyid(): functionary.policy_entry()},
        "steps": {"build": {"name": "build",
            "functionaries": [{"type": "publickey", "publickeyid": functionary.keyid()}],
            "attestations": [{"type": GIT_TYPE}, {"type": DOCKER_TYPE}]}}
    })
}

/// The evidence a build of the image `image_hex` (sha256 hex of its manifest) from `commit` of
/// `remote` leaves: the image as produced, the commit, signed by `builder`.
pub fn image_evidence(
    builder: &OpensslKey,
    image_hex: &str,
    commit: &str,
    remote: &str,
) -> Vec<u8> {
    let statement = collection(
        &[
            (
                format!("{DOCKER_TYPE}/imagedigest:{image_hex}"),
                "sha256",
                image_hex,
            ),
            (format!("{GIT_TYPE}/commithash:{commit}"), "sha1", commit),
        ],
        commit,
        remote,
    );
    builder.envelope(INTOTO_TYPE, &statement)
}

/// openssl configuration: certificate profiles, a CA database for back-dated leaves, a TSA.
pub const PKI_CNF: &str = r#"
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
[ ca_ext ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ leaf_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:ci@example.test,URI:https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main
1.3.6.1.4.1.57264.1.8 = ASN1:UTF8String:https://token.actions.githubusercontent.com
1.3.6.1.4.1.57264.1.14 = ASN1:UTF8String:refs/heads/main
[ tsa_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ tsa_soft_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ ca ]
default_ca = ca_default
[ ca_default ]
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./ca.serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[ policy_any ]
commonName = supplied
organizationName = optional
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = .
serial = ./tsa.serial
crypto_device = builtin
signer_cert = ./tsa.pem
signer_key = ./tsa.key
certs = ./tsa-root.pem
signer_digest = sha384
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"#;

// =============================================================================================
// The webhook as a process (tests/webhook.rs, tests/webhook_fixtures.rs): a serving
// certificate, `attestgate serve` as a child process whose addresses are read from its log, an
// HTTPS client that trusts only the test CA, polling, and a loopback TCP proxy that counts (and
// can slow down) the HTTP requests passing through it.
// =============================================================================================

/// Makes a CA and a serving certificate for `127.0.0.1` with rcgen, writes the certificate and
/// its key to `dir/tls.crt` and `dir/tls.key`, and returns the CA's PEM (for clients).
pub fn write_serving_certificate(dir: &Path) -> String {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "attestgate webhook test ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "attestgate webhook test");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    ca_pem
}

/// Replaces `path`'s contents in one rename, as a ConfigMap or Secret volume update does, so a
/// reader never sees half a file.
pub fn write_atomically(path: &Path, contents: &[u8]) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// How long a test waits for the server to start, or for anything it polls.
pub const SERVED_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// `attestgate serve --config FILE` as a child process, killed (SIGKILL) when dropped, also when
/// the test panics. Its stderr (the JSON log) is read all along, so the pipe never fills.
pub struct Served {
    child: std::process::Child,
    /// The HTTPS webhook address, from the `serving` log line.
    pub webhook: std::net::SocketAddr,
    /// The plain-HTTP health and metrics address, from the same line.
    pub health: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    https: reqwest::Client,
    plain: reqwest::Client,
}

/// One answer of the webhook over the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The body as JSON; fails the test with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.body))
    }
}

impl Served {
    /// Starts the server on `config` (which must listen on loopback) and waits for its
    /// `serving` log line; `ca_pem` is the CA the client trusts for the webhook's certificate.
    pub fn start(config: &Path, ca_pem: &str) -> Self {
        use std::io::BufRead as _;
        let mut command = Command::new(env!("CARGO_BIN_EXE_attestgate"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // Nothing may be sent through a proxy the environment happens to name.
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env_remove(var);
        }
        let mut child = command.spawn().expect("attestgate serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addrs) = serving_addresses(&line) {
                        let _ = tx.send(addrs);
                    }
                    log.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        let served = |webhook, health| {
            attestgate::install_crypto_provider();
            let https = reqwest::Client::builder()
                .no_proxy()
                .tls_certs_only([reqwest::tls::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
                .timeout(SERVED_WAIT)
                .build()
                .unwrap();
            let plain = reqwest::Client::builder()
                .no_proxy()
                .timeout(SERVED_WAIT)
                .build()
                .unwrap();
            (webhook, health, https, plain)
        };
        match rx.recv_timeout(SERVED_WAIT) {
            Ok((webhook, health)) => {
                let (webhook, health, https, plain) = served(webhook, health);
                Self {
                    child,
                    webhook,
                    health,
                    log,
                    https,
                    plain,
                }
            }
            Err(e) => {
                child.kill().ok();
                child.wait().ok();
                let log = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .join("\n");
                panic!("attestgate serve did not start ({e}):\n{log}");
            }
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// POSTs `body` to `path` with `content_type`; a transport error is returned, not a panic.
    pub async fn send(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, reqwest::Error> {
        let response = self
            .https
            .post(format!("https://{}{path}", self.webhook))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok(Answer { status, body })
    }

    /// POSTs the review `body` to `/validate/<mode>` and returns the JSON answer; anything but a
    /// 200 with JSON fails the test.
    pub async fn review(&self, mode: &str, body: &serde_json::Value) -> serde_json::Value {
        let answer = self
            .send(
                &format!("/validate/{mode}"),
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("POST /validate/{mode}: {e}\n{}", self.log()));
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, self.log());
        answer.json()
    }

    /// GETs `path` on the health port: (status, body).
    pub async fn health_get(&self, path: &str) -> (u16, String) {
        let response = self
            .plain
            .get(format!("http://{}{path}", self.health))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The value of one series of `/metrics`, written as it appears
    /// (`attestgate_config_reloads_total{result="success"}`); `None` when absent.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (status, text) = self.health_get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.split_whitespace().next())
                .and_then(|value| value.parse().ok())
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The `webhook` and `health` addresses of a `serving` log line.
fn serving_addresses(line: &str) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &value["fields"];
    if fields["message"] != "serving" {
        return None;
    }
    Some((
        fields["webhook"].as_str()?.parse().ok()?,
        fields["health"].as_str()?.parse().ok()?,
    ))
}

/// Polls `check` every 50 ms until it holds; fails the test after `timeout` naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A TCP proxy on loopback in front of `upstream` (also on loopback): it counts the HTTP/1.1
/// requests that pass through it and can hold each one back for a while before forwarding
/// it. Stops accepting when dropped; open connections end with their peers.
pub struct TcpProxy {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TcpProxy {
    /// Starts one forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        use std::sync::atomic::Ordering;
        let upstream: std::net::SocketAddr = upstream.parse().unwrap();
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Self {
            addr,
            requests: Default::default(),
            delay_ms: Default::default(),
            stop: Default::default(),
        };
        let (requests, delay_ms, stop) = (
            proxy.requests.clone(),
            proxy.delay_ms.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                let (requests, delay_ms) = (requests.clone(), delay_ms.clone());
                let (client_read, server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    forward_requests(client_read, server_write, &requests, &delay_ms);
                });
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    std::io::copy(&mut from, &mut to).ok();
                    to.shutdown(std::net::Shutdown::Both).ok();
                });
            }
        });
        proxy
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// HTTP requests forwarded so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Holds every request back this long before forwarding it (zero: none).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        std::net::TcpStream::connect(self.addr).ok();
    }
}

/// Copies a client's bytes to the server, counting request lines (` HTTP/1.1\r\n`, also when
/// split across reads) and sleeping the current delay before a chunk that starts a request.
fn forward_requests(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    requests: &std::sync::atomic::AtomicUsize,
    delay_ms: &std::sync::atomic::AtomicU64,
) {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::Ordering;
    const MARK: &[u8] = b" HTTP/1.1\r\n";
    let mut buffer = [0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(chunk);
        let starts = window.windows(MARK.len()).filter(|w| *w == MARK).count();
        tail = window[window.len().saturating_sub(MARK.len() - 1)..].to_vec();
        if starts > 0 {
            let delay = delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            requests.fetch_add(starts, Ordering::SeqCst);
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    to.shutdown(std::net::Shutdown::Write).ok();
}

// ---------------------------------------------------------------------------------------------
// A real kube-apiserver from `tests/peers/start-cluster.sh`, and kubectl against it

/// The control-plane peers `start-cluster.sh` needs in `$ATTESTGATE_PEERS/bin`.
pub const CLUSTER_PEERS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "etcd",
];

/// Whether every one of `names` is in `$ATTESTGATE_PEERS/bin` (see [`require_peer`]).
pub fn require_peers(names: &[&str], why: &str) -> bool {
    let bin = peers_dir().join("bin");
    names.iter().all(|name| require_peer(&bin.join(name), why))
}

/// What one command said.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn text(&self) -> String {
        format!("stdout: {}\nstderr: {}", self.stdout, self.stderr)
    }
}

/// Runs `program` with `args`, `envs` (and `stdin`), without any proxy or kubeconfig from the
/// environment (a kubeconfig is always given explicitly, in `envs`).
pub fn run_tool(program: &Path, args: &[&str], envs: &[(&str, &Path)], stdin: Option<&str>) -> Out {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "KUBECONFIG"] {
        command.env_remove(var).env_remove(var.to_lowercase());
    }
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// etcd, kube-apiserver and (unless told otherwise) kube-controller-manager from
/// `start-cluster.sh`, all on 127.0.0.1, stopped (by `stop.sh`, which signals only the processes
/// it recorded) when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// `DIR/cluster.env`: KUBECTL, KUBECONFIG, KUBECONFIG_TENANT, TENANT_GROUP, KUBE_CA, ...
    pub env: std::collections::BTreeMap<String, String>,
}

impl Cluster {
    /// The whole control plane.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// `start-cluster.sh DIR FLAGS` (such as `--no-controller-manager`).
    pub fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = root().join("tests/peers/start-cluster.sh");
        let mut args = vec![script.to_str().unwrap(), dir.path().to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = run_tool(
            Path::new("bash"),
            &args,
            &[("ATTESTGATE_PEERS", &peers_dir())],
            None,
        );
        // Made before the check, so that a half-started cluster is stopped too.
        let mut cluster = Self {
            dir,
            env: std::collections::BTreeMap::new(),
        };
        assert!(out.ok, "start-cluster.sh failed:\n{}", out.text());
        cluster.env = std::fs::read_to_string(cluster.dir.path().join("cluster.env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        cluster
    }

    /// The path in `cluster.env` under `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(&self.env[key])
    }

    /// The admin kubeconfig (group system:masters).
    pub fn kubeconfig(&self) -> PathBuf {
        self.path("KUBECONFIG")
    }

    /// The tenant kubeconfig (group `TENANT_GROUP`).
    pub fn tenant_kubeconfig(&self) -> PathBuf {
        self.path("KUBECONFIG_TENANT")
    }

    /// kubectl with the kubeconfig `config`.
    pub fn kubectl_with(&self, config: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        let mut all = vec!["--request-timeout=30s"];
        all.extend_from_slice(args);
        run_tool(
            &self.path("KUBECTL"),
            &all,
            &[("KUBECONFIG", config), ("ATTESTGATE_PEERS", &peers_dir())],
            stdin,
        )
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Out {
        self.kubectl_with(&self.kubeconfig(), args, stdin)
    }

    /// kubectl as the admin; a failure fails the step. Returns stdout.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(out.ok, "kubectl {args:?} failed:\n{}", out.text());
        out.stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let started = std::time::Instant::now();
        let script = root().join("tests/peers/stop.sh");
        let out = run_tool(
            Path::new("bash"),
            &[script.to_str().unwrap(), self.dir.path().to_str().unwrap()],
            &[("ATTESTGATE_PEERS", &peers_dir())],
            None,
        );
        eprintln!(
            "cluster stopped in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if !out.ok {
            eprintln!("stop.sh failed:\n{}", out.text());
        }
    }
}

/// The text of a caught panic.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}
