//! Real evidence published by other projects (../shared/fixtures/real/witness), read in place
//! and never copied into this repository. Each test says which SOURCES.md case it checks; where
//! ../shared is absent the tests print that they were skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{attestgate, KeyKind, OpensslKey, POLICY_TYPE};

const TGZ: &str = "sha256:10cbf0f3d870934921276f669ab707983113f929784d877f1192f43c581f2070";

#[test]
fn set01_two_steps_pass_before_expiry_and_fail_after() {
    let Some(dir) = common::real_fixtures("witness/01-archivista-keypair-multistep") else {
        return;
    };
    let base = [
        "verify",
        "-p",
        "policy-signed.json",
        "-k",
        "testpub.pem",
        "-a",
        "build.attestation.json",
        "-a",
        "package.attestation.json",
        "-s",
        TGZ,
    ];

    // E2: the clock pinned before the policy's expiry; the RSA-PSS (max salt) signature of
    // `package` and the Ed25519 signature of `build` verify, and `build` is found through the
    // git commit back-reference of `package`.
    let run = attestgate(&dir, base.iter().chain(&["--now", "2025-01-01T00:00:00Z"]));
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(run.stdout.contains("step build: passed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("step package: passed"),
        "{}",
        run.stdout
    );

    // E3: today the policy has expired.
    let run = attestgate(&dir, base);
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains("policy expired at 2025-12-17T23:57:40-05:00"),
        "{}",
        run.stdout
    );
}

#[test]
fn set01_wrong_signer_and_invalid_payload_fail() {
    let Some(dir) = common::real_fixtures("witness/01-archivista-keypair-multistep") else {
        return;
    };
    // E4: fail.attestation.json is signed by a key the policy does not list.
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "testpub.pem",
            "-a",
            "fail.attestation.json",
            "-a",
            "package.attestation.json",
            "-s",
            TGZ,
            "--now",
            "2025-01-01T00:00:00Z",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains("step build: FAILED: fail.attestation.json: no valid signature"),
        "{}",
        run.stdout
    );

    // E5: an envelope whose payload is `{}` is never a candidate for any step.
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "testpub.pem",
            "-a",
            "invalid_payload.attestation.json",
            "-a",
            "package.attestation.json",
            "-s",
            TGZ,
            "--now",
            "2025-01-01T00:00:00Z",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("step build: FAILED: no collection"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "ignored evidence invalid_payload.attestation.json: not an attestation collection"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn set01_policy_signed_by_another_key_is_refused() {
    let Some(dir) = common::real_fixtures("witness/01-archivista-keypair-multistep") else {
        return;
    };
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "testpub2.pem",
            "-s",
            TGZ,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stderr.contains("policy signature does not verify"),
        "{}",
        run.stderr
    );
}

/// Set 02's policies are unsigned upstream; we sign them with an openssl key of our own.
fn sign_set02_policy(tmp: &std::path::Path, policy: &std::path::Path) -> std::path::PathBuf {
    let key = OpensslKey::generate(tmp, "policy", KeyKind::EcdsaP256);
    let signed = tmp.join("policy-signed.json");
    std::fs::write(
        &signed,
        key.envelope(POLICY_TYPE, &std::fs::read(policy).unwrap()),
    )
    .unwrap();
    signed
}

#[test]
fn set02_sbom_collections_pass_their_policies_and_not_each_other() {
    let Some(dir) = common::real_fixtures("witness/02-witness-sbom-ed25519") else {
        return;
    };
    let alpine = "sha256:54c5b3dd459d5ef778bb2fa1e23a5fb0e1b62ae66970bcb436e8f81a1a1a8e41";
    let cases = [
        ("cdx-sbom-policy.json", "cdx-att.json", 0, ""),
        ("spdx-sbom-policy.json", "spdx-att.json", 0, ""),
        (
            "spdx-sbom-policy.json",
            "cdx-att.json",
            1,
            "missing attestation https://spdx.dev/Document",
        ),
    ];
    for (policy, evidence, want, reason) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let signed = sign_set02_policy(tmp.path(), &dir.join(policy));
        let run = attestgate(
            &dir,
            [
                "verify",
                "-p",
                signed.to_str().unwrap(),
                "-k",
                tmp.path().join("policy.pub.pem").to_str().unwrap(),
                "-a",
                evidence,
                "-s",
                alpine,
            ],
        );
        assert_eq!(run.code, want, "{policy} + {evidence}: {}", run.text());
        assert!(
            run.stdout.contains(reason),
            "{policy} + {evidence}: {}",
            run.stdout
        );
    }
}

const KMS: &str =
    "awskms:///arn:aws:kms:us-east-1:756546933635:key/fcc0689a-5b7f-4779-983f-39be43cba0bd";
const HELLO: &str = "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";

#[test]
fn set04_kms_key_ids_match_by_uri() {
    let Some(dir) = common::real_fixtures("witness/04-kms-keyid-ecdsa") else {
        return;
    };
    // E1: the policy names the KMS key by URI only; its public half comes from the operator.
    let kms_key = format!("{KMS}=public-key.pem");
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-test-signed.json",
            "-k",
            "public-key.pem",
            "-a",
            "test.json",
            "-s",
            HELLO,
            "--kms-key",
            &kms_key,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.text());

    // Without the operator's copy of the key the policy cannot be applied: a usage error, not
    // a silent pass or a silent failure.
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-test-signed.json",
            "-k",
            "public-key.pem",
            "-a",
            "test.json",
            "-s",
            HELLO,
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains("KMS reference without an embedded key"),
        "{}",
        run.stderr
    );

    // E2: the other policy embeds the key, but expired on 2025-12-31.
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "public-key.pem",
            "-a",
            "build.json",
            "-s",
            HELLO,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout
            .contains("policy expired at 2025-12-31T23:59:59Z"),
        "{}",
        run.stdout
    );

    // E3: before expiry, `test` evidence does not satisfy the `build` step.
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "policy-signed.json",
            "-k",
            "public-key.pem",
            "-a",
            "test.json",
            "-s",
            HELLO,
            "--now",
            "2025-06-01T00:00:00Z",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(run.stdout.contains("step build: FAILED"), "{}", run.stdout);
}

#[test]
fn set05_expired_real_policies_verify_their_signature_then_fail_on_expiry() {
    let Some(dir) = common::real_fixtures("witness/05-policies-only") else {
        return;
    };
    let subject = "sha256:54c5b3dd459d5ef778bb2fa1e23a5fb0e1b62ae66970bcb436e8f81a1a1a8e41";
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "swf-policy-signed.json",
            "-k",
            "swfpublic.pem",
            "-s",
            subject,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("policy expired at 2025-12-17"),
        "{}",
        run.stdout
    );

    // The cilock policy's signature verifies; with no evidence its steps fail by name.
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            "cilock-trivy-policy-signed.json",
            "-k",
            "cilock-trivy-policy-pub.pem",
            "-s",
            subject,
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.contains("step clean-build: FAILED"),
        "{}",
        run.stdout
    );
}

#[test]
fn set06_cilock_envelopes_parse_and_an_unknown_signer_is_denied() {
    let Some(dir) = common::real_fixtures("witness/06-cilock-aflock-envelopes") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let policy_key = OpensslKey::generate(tmp.path(), "policy", KeyKind::Ed25519);
    let functionary = OpensslKey::generate(tmp.path(), "functionary", KeyKind::Ed25519);
    let policy = serde_json::json!({
        "expires": "2030-01-01T00:00:00Z",
        "publickeys": {functionary.keyid(): functionary.policy_entry()},
        "steps": {"oci-scan": {"name": "oci-scan",
            "functionaries": [{"type": "publickey", "publickeyid": functionary.keyid()}],
            "attestations": [{"type": "https://witness.dev/attestations/oci/v0.1"}]}}
    });
    let signed = tmp.path().join("policy-signed.json");
    std::fs::write(
        &signed,
        policy_key.envelope(POLICY_TYPE, policy.to_string().as_bytes()),
    )
    .unwrap();

    // The oci attestor's image id subject finds the aflock.ai collection; its throwaway signer
    // is not the policy's functionary.
    let image_id = "sha256:e2ac70e7319a02c5a477f5825259bd118b94e8b02c279c67afa63adab6d8685b";
    let run = attestgate(
        &dir,
        [
            "verify",
            "-p",
            signed.to_str().unwrap(),
            "-k",
            policy_key.public.to_str().unwrap(),
            "-a",
            "oci-hello-world.attestation.json",
            "-a",
            "github-gha-oidc.attestation.json",
            "-s",
            image_id,
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    let result: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rejected = &result["steps"][0]["rejected"][0];
    assert_eq!(
        rejected["reference"]["file"],
        "oci-hello-world.attestation.json"
    );
    assert_eq!(rejected["reasons"][0]["reason"], "signature");
    assert!(
        result.get("ignored_evidence").is_none(),
        "both envelopes are collections"
    );
}
