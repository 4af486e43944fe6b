//! The world the webhook is measured in: the real Debian `docker-registry` and the real
//! Archivista (with its PostgreSQL) on loopback, started by `tests/peers/start-*.sh` and stopped
//! by `tests/peers/stop.sh`; images pushed through the registry's HTTP API (two-platform OCI
//! indexes with labelled configs, placeholder layers that nothing ever fetches); a signed policy
//! and, per image, a witness collection signed by the build's key and uploaded to Archivista
//! (or written to an evidence directory when Archivista is not installed).

use std::path::{Path, PathBuf};
use std::process::Command;

use attestgate::crypto::PublicKey;
use attestgate::encoding::{encode_base64, sha256_hex};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const WITNESS: &str = "https://witness.dev/attestations";
const COLLECTION: &str = "https://witness.testifysec.com/attestation-collection/v0.1";
const POLICY_TYPE: &str = "https://witness.testifysec.com/policy/v0.1";
const INTOTO_TYPE: &str = "application/vnd.in-toto+json";
const SOURCE: &str = "https://github.com/example/bench-app";

/// The repository root (the harness runs from anywhere).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peers_dir() -> PathBuf {
    std::env::var_os("ATTESTGATE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/attestgate-peers")
        })
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `tests/peers/SCRIPT DIR ARGS…` and returns the `KEY=value` facts it wrote.
fn start_peer(script: &str, dir: &Path, args: &[&str], env_file: &str) -> Vec<(String, String)> {
    let out = Command::new(root().join("tests/peers").join(script))
        .arg(dir)
        .args(args)
        .env("ATTESTGATE_PEERS", peers_dir())
        .output()
        .expect("peer script runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join(env_file))
        .expect("peer env file")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn fact(facts: &[(String, String)], key: &str) -> String {
    facts
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("the peer's env file has no {key}"))
}

/// The upstream servers, stopped when dropped.
pub(crate) struct Peers {
    registry_dir: tempfile::TempDir,
    archivista_dir: Option<tempfile::TempDir>,
    /// `127.0.0.1:PORT` of the registry.
    pub(crate) registry: String,
    /// `127.0.0.1:PORT` of Archivista, when it is installed.
    pub(crate) archivista: Option<String>,
}

impl Peers {
    /// Starts the registry (required) and Archivista (when installed; else `None`, and the
    /// evidence goes to a directory).
    pub(crate) fn start() -> Self {
        for tool in ["docker-registry", "python3", "curl", "openssl"] {
            assert!(
                on_path(tool),
                "{tool} is not installed: run .ci/peers-evidence.sh (Debian docker-registry)"
            );
        }
        let registry_dir = tempfile::tempdir().expect("tempdir");
        let facts = start_peer(
            "start-registry.sh",
            registry_dir.path(),
            &["0"],
            "registry.env",
        );
        let registry = fact(&facts, "REGISTRY");
        let has_archivista = peers_dir().join("bin/archivista").is_file()
            && std::env::var_os("BENCH_NO_ARCHIVISTA").is_none();
        let (archivista_dir, archivista) = if has_archivista {
            let dir = tempfile::tempdir().expect("tempdir");
            let facts = start_peer("start-archivista.sh", dir.path(), &["0"], "archivista.env");
            let url = fact(&facts, "ARCHIVISTA_URL");
            let host = url.trim_start_matches("http://").to_string();
            (Some(dir), Some(host))
        } else {
            (None, None)
        };
        Self {
            registry_dir,
            archivista_dir,
            registry,
            archivista,
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let stop = root().join("tests/peers/stop.sh");
        for dir in std::iter::once(&self.registry_dir).chain(self.archivista_dir.as_ref()) {
            let _ = Command::new(&stop).arg(dir.path()).output();
        }
    }
}

/// An ECDSA P-256 signer, witness style (DER signatures, key id = SHA-256 of the SPKI).
pub(crate) struct Signer {
    key: SigningKey,
    pub(crate) keyid: String,
    pub(crate) pem: String,
}

impl Signer {
    pub(crate) fn new(seed: u8) -> Self {
        let key = SigningKey::from_slice(&[seed; 32]).expect("a constant scalar is a valid key");
        let keyid = PublicKey::P256(*key.verifying_key()).keyid().0;
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            key.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .expect("pem");
        Self { key, keyid, pem }
    }

    /// A DSSE envelope over `payload`.
    pub(crate) fn envelope(&self, payload_type: &str, payload: &[u8]) -> Vec<u8> {
        let mut pae = format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .into_bytes();
        pae.extend_from_slice(payload);
        let signature: DerSignature = self.key.sign(&pae);
        serde_json::to_vec(&json!({
            "payload": encode_base64(payload),
            "payloadType": payload_type,
            "signatures": [{"keyid": self.keyid, "sig": encode_base64(signature.as_bytes())}],
        }))
        .expect("json")
    }
}

/// Pushes content to the registry over its HTTP API.
struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    async fn blob(&self, repository: &str, bytes: Vec<u8>) -> String {
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        let started = self
            .http
            .post(format!("{}/v2/{repository}/blobs/uploads/", self.base))
            .send()
            .await
            .expect("upload starts");
        assert_eq!(started.status().as_u16(), 202, "blob upload start");
        let location = started.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload ends");
        assert_eq!(done.status().as_u16(), 201, "blob upload");
        digest
    }

    async fn manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let put = self
            .http
            .put(format!(
                "{}/v2/{repository}/manifests/{reference}",
                self.base
            ))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("manifest put");
        assert_eq!(
            put.status().as_u16(),
            201,
            "manifest put: {}",
            put.text().await.unwrap_or_default()
        );
    }

    /// A two-platform index at `repository:v1` whose configs carry `commit`; its digest's hex.
    async fn image(&self, repository: &str, commit: &str) -> String {
        let layer = format!("placeholder layer of {repository}").into_bytes();
        let layer_size = layer.len();
        let layer_digest = self.blob(repository, layer).await;
        let mut entries = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = json!({
                "architecture": arch,
                "os": "linux",
                "created": "2026-01-01T00:00:00Z",
                "config": {"Labels": {
                    "org.opencontainers.image.revision": commit,
                    "org.opencontainers.image.source": SOURCE,
                }},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            })
            .to_string()
            .into_bytes();
            let config_size = config.len();
            let config_digest = self.blob(repository, config).await;
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer_size}],
            })
            .to_string()
            .into_bytes();
            let digest = format!("sha256:{}", sha256_hex(&manifest));
            self.manifest(repository, &digest, OCI_MANIFEST, &manifest)
                .await;
            entries.push(json!({
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": manifest.len(),
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
            .to_string()
            .into_bytes();
        self.manifest(repository, "v1", OCI_INDEX, &index).await;
        sha256_hex(&index)
    }
}

/// Where evidence is kept.
enum Store {
    Archivista { http: reqwest::Client, url: String },
    Directory(PathBuf),
}

/// One image pushed, with its evidence stored.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    /// The size of its evidence envelope.
    pub(crate) evidence_bytes: usize,
}

/// The registry, the evidence store, the keys and the policy.
pub(crate) struct World {
    pub(crate) peers: Peers,
    pub(crate) dir: tempfile::TempDir,
    builder: Signer,
    pusher: Pusher,
    store: Store,
}

impl World {
    /// Starts the peers and writes the signed policy and its key.
    pub(crate) fn start() -> Self {
        let peers = Peers::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_key = Signer::new(1);
        let builder = Signer::new(2);
        let policy = json!({
            "expires": "2035-01-01T00:00:00Z",
            "publickeys": {builder.keyid.clone(): {
                "keyid": builder.keyid,
                "key": encode_base64(builder.pem.as_bytes()),
            }},
            "steps": {"build": {"name": "build",
                "functionaries": [{"type": "publickey", "publickeyid": builder.keyid}],
                "attestations": [{"type": format!("{WITNESS}/git/v0.1")},
                                 {"type": format!("{WITNESS}/docker/v0.1")}]}}
        });
        std::fs::write(
            dir.path().join("policy.json"),
            policy_key.envelope(POLICY_TYPE, policy.to_string().as_bytes()),
        )
        .expect("policy");
        std::fs::write(dir.path().join("policy.pub.pem"), &policy_key.pem).expect("policy key");
        std::fs::create_dir(dir.path().join("evidence")).expect("evidence dir");

        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        let store = match &peers.archivista {
            Some(host) => Store::Archivista {
                http: http.clone(),
                url: format!("http://{host}"),
            },
            None => Store::Directory(dir.path().join("evidence")),
        };
        let pusher = Pusher {
            http,
            base: format!("http://{}", peers.registry),
        };
        Self {
            peers,
            dir,
            builder,
            pusher,
            store,
        }
    }

    /// Where the evidence lives, for the report.
    pub(crate) fn evidence_kind(&self) -> &'static str {
        match self.store {
            Store::Archivista { .. } => "Archivista (real, with PostgreSQL)",
            Store::Directory(_) => "an evidence directory (Archivista is not installed)",
        }
    }

    /// Pushes `bench/NAME:v1` (the webhook reaches it as `PROXY/bench/NAME:v1`) and stores its evidence; with `sbom_bytes`, the collection also
    /// carries a CycloneDX SBOM attestation that makes the envelope about that large.
    pub(crate) async fn image(&self, name: &str, sbom_bytes: Option<usize>) -> Image {
        let repository = format!("bench/{name}");
        let commit = sha256_hex(name.as_bytes())[..40].to_string();
        let digest = self.pusher.image(&repository, &commit).await;
        let envelope = self.evidence(&digest, &commit, sbom_bytes);
        let evidence_bytes = envelope.len();
        match &self.store {
            Store::Archivista { http, url } => {
                let answer = http
                    .post(format!("{url}/upload"))
                    .body(envelope)
                    .send()
                    .await
                    .expect("upload");
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                assert!(status.is_success(), "archivista upload: {status} {text}");
            }
            Store::Directory(dir) => {
                std::fs::write(dir.join(format!("{name}.json")), envelope).expect("evidence file");
            }
        }
        Image { evidence_bytes }
    }

    /// The build's collection for the index `digest` built from `commit`, signed.
    fn evidence(&self, digest: &str, commit: &str, sbom_bytes: Option<usize>) -> Vec<u8> {
        let mut attestations = vec![
            json!({"type": format!("{WITNESS}/git/v0.1"),
                   "attestation": {"commithash": commit, "remotes": [SOURCE]}}),
            json!({"type": format!("{WITNESS}/docker/v0.1"), "attestation": {}}),
        ];
        if sbom_bytes.is_some() {
            attestations.push(json!({"type": format!("{WITNESS}/sbom/v0.1"),
                                     "attestation": "@SBOM@"}));
        }
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [
                {"name": format!("{WITNESS}/docker/v0.1/imagedigest:{digest}"),
                 "digest": {"sha256": digest}},
                {"name": format!("{WITNESS}/git/v0.1/commithash:{commit}"),
                 "digest": {"sha1": commit}},
            ],
            "predicateType": COLLECTION,
            "predicate": {"name": "build", "attestations": attestations},
        })
        .to_string();
        let statement = match sbom_bytes {
            // base64 makes the payload 4/3 larger in the envelope.
            Some(size) => statement.replace("\"@SBOM@\"", &cyclonedx(size * 3 / 4)),
            None => statement,
        };
        self.builder.envelope(INTOTO_TYPE, statement.as_bytes())
    }

    /// The server's config: the policy covers `REGISTRY/bench/**` with the registry reached at
    /// `registry` (a proxy) and evidence at `archivista` (a proxy), plus `extra` YAML.
    pub(crate) fn config(
        &self,
        server_dir: &Path,
        registry: &str,
        archivista: Option<&str>,
        extra: &str,
    ) -> String {
        let world = self.dir.path().display();
        let evidence = match archivista {
            Some(host) => format!("      archivista:\n        server: http://{host}\n"),
            None => format!("      directories: [\"{world}/evidence\"]\n"),
        };
        format!(
            "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  \
             certFile: {tls}/tls.crt\n  keyFile: {tls}/tls.key\n\
             webhookTimeoutSeconds: 10\n\
             deadline: 8s\n\
             policies:\n  - name: bench\n    images: [\"{registry}/bench/**\"]\n    \
             policy: {world}/policy.json\n    trust:\n      publicKeys: [\"{world}/policy.pub.pem\"]\n    \
             evidence:\n{evidence}\
             registry:\n  insecure: [\"{registry}\"]\n\
             {extra}",
            tls = server_dir.display(),
        )
    }
}

/// A CycloneDX 1.5 document of about `size` bytes: many small components, as real SBOMs are
/// (which is what makes them expensive to parse, not their byte count alone).
fn cyclonedx(size: usize) -> String {
    let mut components = String::with_capacity(size + 1024);
    let mut n = 0usize;
    while components.len() < size {
        if n > 0 {
            components.push(',');
        }
        let hash = sha256_hex(&n.to_le_bytes());
        components.push_str(&format!(
            "{{\"type\":\"library\",\"bom-ref\":\"pkg:npm/bench-{n}@1.{m}.0\",\"name\":\"bench-{n}\",\
             \"version\":\"1.{m}.0\",\"purl\":\"pkg:npm/bench-{n}@1.{m}.0\",\
             \"hashes\":[{{\"alg\":\"SHA-256\",\"content\":\"{hash}\"}}],\
             \"licenses\":[{{\"license\":{{\"id\":\"MIT\"}}}}]}}",
            m = n % 97
        ));
        n += 1;
    }
    format!(
        "{{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"version\":1,\
         \"metadata\":{{\"component\":{{\"type\":\"container\",\"name\":\"bench-app\"}}}},\
         \"components\":[{components}]}}"
    )
}

/// A CA and a serving certificate for 127.0.0.1, written to `dir/tls.crt` and `dir/tls.key`;
/// returns the CA's PEM.
pub(crate) fn serving_certificate(dir: &Path) -> String {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name
        .push(DnType::CommonName, "attestgate bench ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    leaf.distinguished_name
        .push(DnType::CommonName, "attestgate bench");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("cert");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("key");
    ca_pem
}
