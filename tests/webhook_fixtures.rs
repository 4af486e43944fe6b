#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Real AdmissionReviews published by another project (Connaisseur's unit-test requests, in
//! ../shared/fixtures/real/admission-review, read in place and never copied into this
//! repository) sent as they are to `attestgate serve` over TLS: each gets a well-formed answer
//! with its own uid and version (or a 400 for the two that are no review at all), and the
//! images they name are judged for real, without any request leaving the machine.
//!
//! Their images are public names (`busybox`, `docker.io/library/redis:…`,
//! `securesystemsengineering/charlie-image@sha256:…`): every one of them is on `docker.io`. The
//! config's `registry.mirrorsDir` holds `docker.io/hosts.toml` (and `_default/hosts.toml` for
//! any other registry) in containerd's format, naming a loopback proxy in front of the REAL
//! Debian `docker-registry` both as the mirror (`capabilities = ["pull", "resolve"]`) and as the
//! `server`, so that even the fall-through after a not-found at the mirror stays on loopback:
//! no endpoint in the config is anywhere else. Tiny images are pushed under some of those names
//! (busybox with evidence signed by openssl, the others without), so that resolution succeeds
//! for them and fails as not found for the two pinned digests nobody can push. The proxy counts
//! the requests it forwards, and with `requestTimeout: 2s` every answer comes well within it:
//! nothing waited for an endpoint that does not answer.
//!
//! Without the registry peers, or without the fixture folder, the test prints "skipped: ..."
//! and passes, except under `CI=true`, where it fails.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{write_serving_certificate, KeyKind, OpensslKey, PlainRegistry, Served, TcpProxy};
use serde_json::Value;

const COMMIT: &str = "5b0c1d8a6f4e3b2a19087766554433221100ffee";
const OTHER_COMMIT: &str = "0000111122223333444455556666777788889999";
const SRC: &str = "https://github.com/example/webhook-demo";
const CHARLIE: &str = "securesystemsengineering/charlie-image@sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff";
const ALICE: &str = "securesystemsengineering/alice-image:test@sha256:1234567890123456123456789012345612345678901234561234567890123456";

/// What a file must get on `/validate/enforce`.
enum Expect {
    /// A 400: the body is no AdmissionReview.
    BadRequest,
    /// Admitted without judging, for this reason.
    Skipped(&'static str),
    /// Admitted; these images passed their policy.
    Admitted(&'static [&'static str]),
    /// Denied: these images lack evidence (a `policy …` violation), these were not found.
    Denied {
        no_evidence: &'static [&'static str],
        not_found: &'static [&'static str],
    },
}

fn expectations(name: &str) -> Option<Expect> {
    use Expect::{Admitted, BadRequest, Denied, Skipped};
    Some(match name {
        "02_pod.json" => Denied {
            no_evidence: &[],
            not_found: &[CHARLIE],
        },
        "04_cronjob.json" => Admitted(&["busybox"]),
        "08_job.json" => Denied {
            no_evidence: &["perl:5.34.0"],
            not_found: &[],
        },
        // busybox:1.32 is the same image as busybox, with evidence; the other two have none.
        "09_dply_multi_image.json" => Denied {
            no_evidence: &["redis:alpine", "mysql:8"],
            not_found: &[],
        },
        "10_update.json" => Skipped("the update adds no new image"),
        "11_role.json" => Skipped("kind Role.rbac.authorization.k8s.io holds no pod spec"),
        "19_pod_initcontainer.json" | "20_pod_ephemeralcontainer.json" => Denied {
            no_evidence: &["nginx"],
            not_found: &[CHARLIE],
        },
        "21_broken_admission_request.json" | "25_null_request.json" => BadRequest,
        "22_allow_me_with_index_docker_io.json" => Denied {
            no_evidence: &["test-image"],
            not_found: &[],
        },
        "24_alice_tag_digest_dpl.json" => Denied {
            no_evidence: &[],
            not_found: &[ALICE],
        },
        "28_deleted_deployment_updated.json" => Skipped("the object is being deleted"),
        _ => return None,
    })
}

/// The folder of real reviews; `None` (after saying so) where it is absent, a failure under
/// `CI=true`.
fn real_reviews() -> Option<std::path::PathBuf> {
    let dir = common::real_fixtures("admission-review");
    assert!(
        dir.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "../shared/fixtures/real/admission-review is missing and CI=true"
    );
    dir
}

/// Pushes the images, writes the policy, the evidence, the mirrors and the config into `dir`,
/// and returns the config path with the good image's digest.
fn set_up(dir: &Path, registry: &PlainRegistry, mirror: &str) -> (std::path::PathBuf, String) {
    let good = common::mklayout(&dir.join("good"), COMMIT, SRC);
    common::mklayout(&dir.join("bad"), OTHER_COMMIT, SRC);
    for name in ["library/busybox:latest", "library/busybox:1.32"] {
        registry.push(&dir.join("good"), "v1", name);
    }
    for name in [
        "library/perl:5.34.0",
        "library/redis:alpine",
        "library/mysql:8",
        "library/nginx:latest",
        "library/test-image:latest",
    ] {
        registry.push(&dir.join("bad"), "v1", name);
    }
    let good = good["v1"].trim_start_matches("sha256:").to_string();

    let policy_key = OpensslKey::generate(dir, "policy", KeyKind::Ed25519);
    let builder = OpensslKey::generate(dir, "builder", KeyKind::EcdsaP256);
    let policy = common::build_policy(&builder);
    std::fs::write(
        dir.join("policy.json"),
        policy_key.envelope(common::POLICY_TYPE, policy.to_string().as_bytes()),
    )
    .unwrap();
    std::fs::create_dir(dir.join("evidence")).unwrap();
    std::fs::write(
        dir.join("evidence/busybox.json"),
        common::image_evidence(&builder, &good, COMMIT, SRC),
    )
    .unwrap();

    // containerd's hosts.toml: the loopback mirror first, and the loopback proxy as the server.
    let hosts = format!(
        "server = \"http://{mirror}\"\n\n[host.\"http://{mirror}\"]\n  \
         capabilities = [\"pull\", \"resolve\"]\n"
    );
    for folder in ["docker.io", "_default"] {
        std::fs::create_dir_all(dir.join("mirrors").join(folder)).unwrap();
        std::fs::write(dir.join("mirrors").join(folder).join("hosts.toml"), &hosts).unwrap();
    }

    let config = dir.join("config.yaml");
    let d = dir.display();
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:0\n  healthListen: 127.0.0.1:0\n  \
             certFile: {d}/tls.crt\n  keyFile: {d}/tls.key\n\
             deadline: 8s\n\
             policies:\n  - name: docker-hub\n    images: [\"docker.io/**\"]\n    \
             policy: {d}/policy.json\n    trust:\n      publicKeys: [\"{d}/policy.pub.pem\"]\n    \
             evidence:\n      directories: [\"{d}/evidence\"]\n\
             registry:\n  insecure: [\"{mirror}\"]\n  mirrorsDir: {d}/mirrors\n  \
             requestTimeout: 2s\n  maxRetries: 0\n"
        ),
    )
    .unwrap();
    (config, good)
}

/// The images named by the denial lines of `message`, each with the reason after `denied: `.
fn denied_images(message: &str) -> Vec<(String, String)> {
    message
        .lines()
        .map(|line| {
            let rest = line
                .strip_prefix("image ")
                .unwrap_or_else(|| panic!("{line}"));
            let (image, reason) = rest
                .split_once(": denied: ")
                .unwrap_or_else(|| panic!("not a denial line: {line}"));
            (image.to_string(), reason.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_review_is_answered_through_serve_with_nothing_leaving_the_machine() {
    let Some(reviews) = real_reviews() else {
        return;
    };
    let Some(registry) = tokio::task::spawn_blocking(PlainRegistry::start)
        .await
        .unwrap()
    else {
        return;
    };
    let proxy = TcpProxy::start(&registry.host);
    let dir = tempfile::tempdir().unwrap();
    let ca = write_serving_certificate(dir.path());
    let registry = std::sync::Arc::new(registry);
    let (config, good) = {
        let (path, host, registry) = (dir.path().to_path_buf(), proxy.host(), registry.clone());
        tokio::task::spawn_blocking(move || set_up(&path, &registry, &host))
            .await
            .unwrap()
    };
    let served = Served::start(&config, &ca);

    let mut files: Vec<_> = std::fs::read_dir(&reviews)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "{files:?}");
    let mut checked = BTreeSet::new();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let body = std::fs::read(file).unwrap();
        let request: Option<Value> = serde_json::from_slice(&body).ok();
        let started = Instant::now();
        let answer = served
            .send("/validate/enforce", "application/json", body)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "{name} took {took:?}: something waited for an endpoint"
        );

        let expect = expectations(&name);
        if matches!(expect, Some(Expect::BadRequest)) {
            assert_eq!(answer.status, 400, "{name}: {answer:?}");
            checked.insert(name);
            continue;
        }
        // Well formed: the request's version, kind, and uid.
        let request = request.unwrap_or_else(|| panic!("{name} is not JSON"));
        let Some(uid) = request["request"]["uid"].as_str() else {
            assert_eq!(answer.status, 400, "{name}: {answer:?}");
            continue;
        };
        assert_eq!(answer.status, 200, "{name}: {answer:?}");
        let answer = answer.json();
        assert_eq!(answer["apiVersion"], request["apiVersion"], "{name}");
        assert_eq!(answer["kind"], "AdmissionReview", "{name}");
        assert_eq!(answer["response"]["uid"], uid, "{name}");
        let allowed = answer["response"]["allowed"].as_bool().unwrap();
        let annotations = &answer["response"]["auditAnnotations"];
        let records = || -> Vec<Value> {
            serde_json::from_str(annotations["images"].as_str().unwrap()).unwrap()
        };

        match expect {
            None => eprintln!("{name}: no expectation here beyond a well-formed answer"),
            Some(Expect::BadRequest) => unreachable!(),
            Some(Expect::Skipped(reason)) => {
                assert!(allowed, "{name}: {answer}");
                assert_eq!(annotations["decision"], "skipped", "{name}: {answer}");
                assert_eq!(annotations["reason"], reason, "{name}: {answer}");
            }
            Some(Expect::Admitted(images)) => {
                assert!(allowed, "{name}: {answer}");
                assert_eq!(annotations["decision"], "allowed", "{name}");
                let records = records();
                assert_eq!(records.len(), images.len(), "{name}: {records:?}");
                for (record, image) in records.iter().zip(images) {
                    assert_eq!(record["image"], *image);
                    assert_eq!(record["outcome"], "admitted");
                    assert_eq!(record["digest"], format!("sha256:{good}"));
                    assert_eq!(record["binding"], "digest");
                    let evidence = record["evidence"][0].as_str().unwrap();
                    assert!(evidence.ends_with("evidence/busybox.json"), "{record}");
                }
            }
            Some(Expect::Denied {
                no_evidence,
                not_found,
            }) => {
                assert!(!allowed, "{name}: {answer}");
                assert_eq!(answer["response"]["status"]["code"], 403, "{name}");
                let lines =
                    denied_images(answer["response"]["status"]["message"].as_str().unwrap());
                let mut denied: Vec<&str> = lines.iter().map(|(i, _)| i.as_str()).collect();
                denied.sort_unstable();
                let mut want: Vec<&str> = no_evidence.iter().chain(not_found).copied().collect();
                want.sort_unstable();
                assert_eq!(denied, want, "{name}: {answer}");
                for (image, reason) in &lines {
                    if no_evidence.contains(&image.as_str()) {
                        assert!(
                            reason.starts_with("policy docker-hub: "),
                            "{name}: {reason}"
                        );
                    } else {
                        // The whole reason fits in the line: it does not repeat the reference.
                        assert_eq!(reason, "not found at its registry", "{name}");
                    }
                }
                for record in records() {
                    let image = record["image"].as_str().unwrap();
                    let reason = record["reason"].as_str().unwrap_or_default();
                    if not_found.contains(&image) {
                        assert_eq!(record["outcome"], "violation", "{record}");
                        // Users are told what happened, never which endpoint answered (a
                        // mirror may be an internal host); the log has the endpoint.
                        assert_eq!(reason, "not found at its registry", "{record}");
                    } else if no_evidence.contains(&image) {
                        assert_eq!(record["outcome"], "violation", "{record}");
                        assert_ne!(record["digest"], format!("sha256:{good}"), "{record}");
                    } else {
                        // Images with evidence in the same request passed.
                        assert_eq!(record["outcome"], "admitted", "{record}");
                        assert_eq!(record["digest"], format!("sha256:{good}"), "{record}");
                    }
                }
            }
        }
        checked.insert(name);
    }
    // Every file the folder is documented to hold was answered as expected.
    for name in [
        "02_pod.json",
        "04_cronjob.json",
        "08_job.json",
        "09_dply_multi_image.json",
        "10_update.json",
        "11_role.json",
        "19_pod_initcontainer.json",
        "20_pod_ephemeralcontainer.json",
        "21_broken_admission_request.json",
        "22_allow_me_with_index_docker_io.json",
        "24_alice_tag_digest_dpl.json",
        "25_null_request.json",
        "28_deleted_deployment_updated.json",
    ] {
        assert!(checked.contains(name), "{name} was not checked");
    }

    // Every image lookup went to the loopback mirror.
    assert!(proxy.requests() >= 8, "{} requests", proxy.requests());
    assert_eq!(
        served
            .metric(r#"attestgate_reviews_total{mode="enforce",decision="bad_request"}"#)
            .await,
        Some(2.0)
    );
}
