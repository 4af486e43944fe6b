//! Property tests: arbitrary bytes through every parser of untrusted input give an error or a
//! value, never a panic. Inputs are both random bytes and mutations of real-shaped documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use attestgate::dsse::DecodedEnvelope;
use attestgate::intoto::{Collection, Statement};
use attestgate::policy::document::PolicyDocument;
use attestgate::policy::{Policy, PolicyOptions};
use proptest::prelude::*;

const ENVELOPE: &str = r#"{"payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSJ9","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"ab","sig":"AAAA","certificate":"LS0t","intermediates":["LS0t"],"timestamps":[{"type":"tsp","data":"AA=="}]}]}"#;
const POLICY: &str = r#"{"expires":"2030-01-01T00:00:00Z","publickeys":{"k":{"keyid":"k","key":"LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUNvd0JRWURLMlZ3QXlFQWYyOW9QUDhVZ2hCeUc4NTJ1QmRPeHJKS0tuN01NNWhUYlA5ZXNnT1ovazA9Ci0tLS0tRU5EIFBVQkxJQyBLRVktLS0tLQo="}},"steps":{"b":{"name":"b","functionaries":[{"type":"publickey","publickeyid":"k"}],"attestations":[{"type":"t","regopolicies":[{"name":"r","module":"cGFja2FnZSBwCmRlbnlbeF0geyB4IDo9IGlucHV0LmEgfQo="}]}],"artifactsFrom":[]}}}"#;
const STATEMENT: &str = r#"{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"n","digest":{"sha256":"ab"}}],"predicateType":"https://witness.testifysec.com/attestation-collection/v0.1","predicate":{"name":"b","attestations":[{"type":"https://witness.dev/attestations/material/v0.1","attestation":{"f":{"sha256":"ab"}},"starttime":"2023-09-26T17:23:47.32625-05:00"}]}}"#;

/// Replaces a byte range of `base` with `insert`, to explore documents that are almost valid.
fn mutate(base: &str, at: usize, len: usize, insert: &[u8]) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    let at = at % bytes.len();
    let end = (at + len).min(bytes.len());
    bytes.splice(at..end, insert.iter().copied());
    bytes
}

fn exercise_statement(bytes: &[u8]) {
    if let Ok(statement) = Statement::from_json(bytes) {
        if let Ok(collection) = Collection::from_predicate(&statement.predicate) {
            let _ = collection.artifacts();
            let _ = collection.back_reference_values(&statement);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelope_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = DecodedEnvelope::from_json(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic(at in 0usize..400, len in 0usize..8,
                                     insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        if let Ok(envelope) = DecodedEnvelope::from_json(&mutate(ENVELOPE, at, len, &insert)) {
            let _ = envelope.pae();
            exercise_statement(&envelope.payload);
        }
    }

    #[test]
    fn mutated_policies_never_panic(at in 0usize..800, len in 0usize..8,
                                    insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        if let Ok(document) = PolicyDocument::from_json(&mutate(POLICY, at, len, &insert)) {
            let _ = document.cilock_only_keys();
            let _ = Policy::compile(document, PolicyOptions::default());
        }
    }

    #[test]
    fn mutated_statements_never_panic(at in 0usize..500, len in 0usize..8,
                                      insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        exercise_statement(&mutate(STATEMENT, at, len, &insert));
    }

    #[test]
    fn image_references_never_panic(text in "\\PC{0,80}", tail in "[a-z0-9:/@._-]{0,80}") {
        let _ = attestgate::image::ImageReference::parse(&text);
        if let Ok(r) = attestgate::image::ImageReference::parse(&format!("127.0.0.1:5000/{tail}")) {
            let _ = r.to_string();
        }
        let _ = attestgate::image::Digest::parse(&format!("sha256:{tail}"));
    }

    #[test]
    fn registry_credential_files_never_panic(at in 0usize..200, len in 0usize..8,
                                             insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        let docker = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},"*.example.com/team":{"username":"u","password":"p"},"https://index.docker.io/v1/":{"identitytoken":"t"}}}"#;
        if let Ok(config) = attestgate::image::DockerConfig::from_json(&mutate(docker, at, len, &insert)) {
            if let Ok(image) = attestgate::image::ImageReference::parse("127.0.0.1:5000/team/app:v1") {
                let _ = config.lookup(&image);
            }
        }
        let providers = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: plugin\n    matchImages: [\"*.example.com\", \"127.0.0.1:5000\"]\n    defaultCacheDuration: 10m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n";
        let text = String::from_utf8_lossy(&mutate(providers, at, len, &insert)).into_owned();
        let _ = attestgate::image::CredentialProviders::from_config(&text, "/nonexistent-bin-dir");
    }

    #[test]
    fn containerd_hosts_files_never_panic(at in 0usize..300, len in 0usize..8,
                                         insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        let hosts = "server = \"https://registry-1.docker.io\"\n\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = [\"ca.pem\"]\n  override_path = false\n  [host.\"http://127.0.0.1:5000\".header]\n    x-tenant = [\"a\"]\n";
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("docker.io");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("hosts.toml"), mutate(hosts, at, len, &insert)).unwrap();
        if let Ok(mirrors) = attestgate::image::Mirrors::from_dir(dir.path()) {
            prop_assert!(!mirrors.endpoints("docker.io").is_empty());
        }
    }

    #[test]
    fn webhook_configs_never_panic(at in 0usize..600, len in 0usize..8,
                                   insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        let config = "deadline: 8s\nwebhookTimeoutSeconds: 10\nnoMatch: deny\nminimumMode: warn\nexceptions:\n  - image: ghcr.io/acme/**\n    reason: r\n    owner: o\n    expires: 2030-01-01\n  - digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\n    reason: r\n    owner: o\n    expires: 2030-01-01T00:00:00Z\ndenylist:\n  digests: [sha256:1111111111111111111111111111111111111111111111111111111111111111]\n  commits: [0123456789012345678901234567890123456789]\n  keyids: [k]\nregistry:\n  insecure: [\"127.0.0.1:5000\"]\n  requestTimeout: 500ms\n  maxRetries: 2\ncache:\n  decisionsMaxBytes: 16Mi\n  decisionsTtl: 5m\n  staleIfError: 1h\nserver:\n  listen: 127.0.0.1:8443\n  healthListen: 127.0.0.1:8080\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let _ = attestgate::config::Config::from_bytes(&path, &mutate(config, at, len, &insert));
    }

    #[test]
    fn workflows_never_panic(at in 0usize..300, len in 0usize..8,
                             insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        let workflow = "jobs:\n  build:\n    steps:\n      - uses: aflock-ai/cilock-action@v1\n        with:\n          step: build\n          attestations: git github\n";
        let text = String::from_utf8_lossy(&mutate(workflow, at, len, &insert)).into_owned();
        let _ = attestgate::policy::lint::Workflow::from_yaml(&text);
    }

    #[test]
    fn public_key_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = attestgate::crypto::PublicKey::from_der(&bytes);
        let mut pem = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
        pem.extend_from_slice(&bytes);
        pem.extend_from_slice(b"\n-----END PUBLIC KEY-----\n");
        let _ = attestgate::crypto::PublicKey::from_pem(&pem);
    }
}
