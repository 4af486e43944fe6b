//! The admission module on real AdmissionReviews published by other projects
//! (../shared/fixtures/real/admission-review, read in place and never copied into this
//! repository), on requests built from the Kubernetes API reference, and under property tests:
//! parsing, image extraction and answering never panic, and every answer keeps the request's
//! uid and version, stays short and holds no control characters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use attestgate::admission::{
    images_to_judge, respond, respond_denied, respond_error_for, respond_skip, uid_of, ApiVersion,
    DecisionRecord, ImageVerdict, Judgement, Mode, Outcome, Review, ReviewError, SkipReason,
    MAX_IMAGES_ANNOTATION_BYTES, MAX_LINES, MAX_WARNING_CHARS,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const CHARLIE: &str = "securesystemsengineering/charlie-image@sha256:91ac9b26df583762234c1cdb2fc930364754ccc59bc752a2bfe298d2ea68f9ff";

/// The folder of real reviews; `None` (after saying so) where it is absent, unless CI=true.
fn real_reviews() -> Option<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real/admission-review");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing and CI=true", dir.display());
    }
    eprintln!(
        "skipped: {} not present (real fixtures live only beside the repo)",
        dir.display()
    );
    None
}

/// What a real file must give.
enum Expect {
    /// Parsed; these images (image, locations, from a template).
    Judge(&'static [(&'static str, &'static [&'static str], bool)]),
    /// Parsed; skipped for this reason.
    Skip(SkipReason),
    /// Refused with this message.
    Refused(&'static str),
}

/// Every file of the folder, with the version it must be answered in (for parsed files).
fn expectations() -> Vec<(&'static str, Option<ApiVersion>, Expect)> {
    use ApiVersion::{V1Beta1, V1};
    use Expect::{Judge, Refused, Skip};
    vec![
        (
            "02_pod.json",
            Some(V1),
            Judge(&[(CHARLIE, &["containers[test-connaisseur]"], false)]),
        ),
        (
            "04_cronjob.json",
            Some(V1Beta1),
            Judge(&[("busybox", &["containers[yooob]"], true)]),
        ),
        (
            "08_job.json",
            Some(V1),
            Judge(&[("perl:5.34.0", &["containers[pi]"], true)]),
        ),
        (
            "09_dply_multi_image.json",
            Some(V1Beta1),
            Judge(&[
                ("busybox:1.32", &["initContainers[init]"], true),
                ("redis:alpine", &["containers[redis]"], true),
                ("mysql:8", &["containers[mysql]"], true),
            ]),
        ),
        // The update keeps the one image the old ReplicaSet already ran.
        ("10_update.json", Some(V1), Skip(SkipReason::NoNewImages)),
        (
            "11_role.json",
            Some(V1),
            Skip(SkipReason::NotAWorkload {
                group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
            }),
        ),
        (
            "19_pod_initcontainer.json",
            Some(V1),
            Judge(&[
                ("nginx", &["initContainers[my-initcontainer]"], false),
                (CHARLIE, &["containers[test-connaisseur]"], false),
            ]),
        ),
        (
            "20_pod_ephemeralcontainer.json",
            Some(V1),
            Judge(&[
                (CHARLIE, &["containers[test-connaisseur]"], false),
                ("nginx", &["ephemeralContainers[my-initcontainer]"], false),
            ]),
        ),
        (
            "21_broken_admission_request.json",
            None,
            Refused("request.uid is missing"),
        ),
        (
            "22_allow_me_with_index_docker_io.json",
            Some(V1),
            Judge(&[("test-image", &["containers[test-connaisseur]"], false)]),
        ),
        (
            "24_alice_tag_digest_dpl.json",
            Some(V1Beta1),
            Judge(&[(
                "securesystemsengineering/alice-image:test@sha256:1234567890123456123456789012345612345678901234561234567890123456",
                &["containers[test-connaisseur]"],
                true,
            )]),
        ),
        (
            "25_null_request.json",
            None,
            Refused("admission review is not a JSON object"),
        ),
        (
            "28_deleted_deployment_updated.json",
            Some(V1Beta1),
            Skip(SkipReason::BeingDeleted),
        ),
    ]
}

fn judged(judgement: &Judgement) -> Vec<(String, Vec<String>, bool)> {
    match judgement {
        Judgement::Judge(uses) => uses
            .iter()
            .map(|u| (u.image.clone(), u.locations.clone(), u.template))
            .collect(),
        other => panic!("expected images, got {other:?}"),
    }
}

fn expected_uses(uses: &[(&str, &[&str], bool)]) -> Vec<(String, Vec<String>, bool)> {
    uses.iter()
        .map(|(image, locations, template)| {
            let locations = locations.iter().map(|l| l.to_string()).collect();
            (image.to_string(), locations, *template)
        })
        .collect()
}

fn verdict(image: &str, outcome: Outcome, mode: Mode) -> ImageVerdict {
    ImageVerdict {
        image: image.to_string(),
        outcome,
        record: DecisionRecord {
            digest: None,
            policies: vec!["prod@sha256:00".into()],
            evidence: vec![],
            binding: None,
            cached: false,
            mode,
        },
    }
}

#[test]
fn every_real_review_file_has_an_expectation() {
    let Some(dir) = real_reviews() else {
        return;
    };
    let table = expectations();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") {
            continue;
        }
        assert!(
            table.iter().any(|(file, _, _)| *file == name),
            "{name} has no expectation in tests/admission.rs"
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        table.len(),
        "a file of the table is missing from {dir:?}"
    );
}

#[test]
fn real_reviews_yield_the_expected_images_and_answers() {
    let Some(dir) = real_reviews() else {
        return;
    };
    for (file, version, expect) in expectations() {
        let body = std::fs::read(dir.join(file)).unwrap();
        let raw: Value = serde_json::from_slice(&body).unwrap();
        let parsed = Review::parse(&body);

        let Expect::Refused(message) = expect else {
            let review = parsed.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(Some(review.api_version), version, "{file}");
            assert_eq!(
                review.uid,
                raw["request"]["uid"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(
                uid_of(&body),
                Some((review.api_version, review.uid.clone())),
                "{file}"
            );

            let judgement = images_to_judge(&review);
            let answer = match expect {
                Expect::Judge(uses) => {
                    assert_eq!(judged(&judgement), expected_uses(uses), "{file}");
                    let verdicts: Vec<ImageVerdict> = uses
                        .iter()
                        .map(|(image, _, _)| verdict(image, Outcome::Admitted, Mode::Enforce))
                        .collect();
                    respond(&review, &verdicts)
                }
                Expect::Skip(reason) => {
                    assert_eq!(judgement, Judgement::Skip(reason.clone()), "{file}");
                    respond_skip(&review, &reason)
                }
                Expect::Refused(_) => unreachable!(),
            };
            assert_eq!(answer["apiVersion"], raw["apiVersion"], "{file}");
            assert_eq!(answer["kind"], "AdmissionReview", "{file}");
            assert_eq!(answer["response"]["uid"], raw["request"]["uid"], "{file}");
            assert_eq!(answer["response"]["allowed"], true, "{file}");
            continue;
        };
        let err = parsed.map(|_| ()).unwrap_err();
        assert_eq!(err.to_string(), message, "{file}");
        assert_eq!(uid_of(&body), None, "{file}");
    }
}

#[test]
fn a_real_pod_with_an_unverified_init_container_is_denied_for_that_image_only() {
    let Some(dir) = real_reviews() else {
        return;
    };
    let body = std::fs::read(dir.join("19_pod_initcontainer.json")).unwrap();
    let review = Review::parse(&body).unwrap();
    let verdicts = [
        verdict(
            "nginx",
            Outcome::Violation("no passing evidence for step build".into()),
            Mode::Enforce,
        ),
        verdict(CHARLIE, Outcome::Admitted, Mode::Enforce),
    ];
    let answer = respond(&review, &verdicts);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    assert_eq!(
        answer["response"]["status"]["message"],
        "image nginx: denied: no passing evidence for step build"
    );
}

#[test]
fn the_broken_real_review_is_refused_without_an_uid_to_echo() {
    let Some(dir) = real_reviews() else {
        return;
    };
    let body = std::fs::read(dir.join("21_broken_admission_request.json")).unwrap();
    assert!(matches!(
        Review::parse(&body),
        Err(ReviewError::Missing("request.uid"))
    ));
    assert_eq!(uid_of(&body), None);
}

/// `kubectl debug` as the API reference describes it: an UPDATE of the
/// `pods/ephemeralcontainers` subresource whose object is the whole Pod; here also a dry run.
#[test]
fn a_kubectl_debug_request_judges_only_the_debug_image() {
    let pod = |ephemeral: Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {
                "containers": [{"name": "web", "image": "registry.example/shop/web:1.4"}],
                "ephemeralContainers": ephemeral
            }
        })
    };
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3f1c0b2e-8d0a-4c55-9d6e-0e5b9f1d2a77",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": "ephemeralcontainers",
            "requestSubResource": "ephemeralcontainers",
            "name": "web-0",
            "namespace": "shop",
            "operation": "UPDATE",
            "userInfo": {"username": "jane"},
            "object": pod(json!([
                {"name": "debugger-7xk2p", "image": "busybox:1.36", "targetContainerName": "web"}
            ])),
            "oldObject": pod(Value::Null),
            "dryRun": true,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    let review = Review::parse(body.to_string().as_bytes()).unwrap();
    assert!(review.dry_run);
    assert_eq!(review.sub_resource.as_deref(), Some("ephemeralcontainers"));
    assert_eq!(review.user, "jane");
    assert_eq!(
        judged(&images_to_judge(&review)),
        vec![(
            "busybox:1.36".to_string(),
            vec!["ephemeralContainers[debugger-7xk2p]".to_string()],
            false
        )]
    );
}

#[test]
fn a_malformed_pod_is_denied_with_its_location() {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "operation": "CREATE",
            "object": {"spec": {"template": {"spec": {"containers": [{"name": "app"}]}}}}
        }
    });
    let review = Review::parse(body.to_string().as_bytes()).unwrap();
    let Judgement::Malformed(message) = images_to_judge(&review) else {
        panic!("expected malformed");
    };
    let answer = respond_denied(&review, &message);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "object.spec.template.spec.containers[app]: image is missing"
    );
}

// ---- property tests ----

const DEPLOYMENT_UPDATE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"9d1e6a3c-1b2f-4e7a-8c5d-6f0a1b2c3d4e","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"shop","operation":"UPDATE","userInfo":{"username":"ci"},"dryRun":false,"object":{"metadata":{"name":"web"},"spec":{"template":{"spec":{"initContainers":[{"name":"init","image":"busybox:1.36"}],"containers":[{"name":"web","image":"registry.example/shop/web:1.5"},{"name":"proxy","image":"envoyproxy/envoy:v1.30.1"}],"volumes":[{"name":"assets","image":{"reference":"registry.example/shop/assets:7"}}]}}}},"oldObject":{"metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.example/shop/web:1.4"},{"name":"proxy","image":"envoyproxy/envoy:v1.30.1"}]}}}}}}"#;
const POD_CREATE: &str = r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"c0ffee00-0000-4000-8000-000000000001","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE","object":{"metadata":{"generateName":"web-"},"spec":{"containers":[{"name":"web","image":"registry.example/shop/web@sha256:4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689"}],"ephemeralContainers":[{"name":"dbg","image":"busybox"}]}}}}"#;

/// Replaces a byte range of `base` with `insert`, to explore documents that are almost valid.
fn mutate(base: &str, at: usize, len: usize, insert: &[u8]) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    let at = at % bytes.len();
    let end = (at + len).min(bytes.len());
    bytes.splice(at..end, insert.iter().copied());
    bytes
}

/// `value` with the member at `pointer` replaced, or added when its parent is an object.
fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    if let Some(slot) = value.pointer_mut(pointer) {
        *slot = new;
        return value;
    }
    if let Some((parent, key)) = pointer.rsplit_once('/') {
        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
            map.insert(key.to_string(), new);
        }
    }
    value
}

/// Verdicts for every image, cycling through outcomes and modes; reasons echo the image.
fn verdicts_for(images: &[String]) -> Vec<ImageVerdict> {
    images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let outcome = match i % 4 {
                0 => Outcome::Admitted,
                1 => Outcome::Violation(format!("no evidence for {image}")),
                2 => Outcome::Error(format!("registry refused {image}")),
                _ => Outcome::Excepted {
                    exception: image.clone(),
                },
            };
            verdict(image, outcome, Mode::ALL[i % 3])
        })
        .collect()
}

/// What every answer must satisfy, whatever the request and verdicts.
fn check_answer(answer: &Value, api_version: ApiVersion, uid: &str) {
    assert_eq!(answer["apiVersion"], api_version.as_str());
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], uid);
    let allowed = response["allowed"].as_bool().unwrap();

    if let Some(warnings) = response.get("warnings") {
        let warnings = warnings.as_array().unwrap();
        assert!(warnings.len() <= MAX_LINES + 1);
        for warning in warnings {
            let warning = warning.as_str().unwrap();
            assert!(warning.chars().count() <= MAX_WARNING_CHARS, "{warning:?}");
            assert!(!warning.chars().any(char::is_control), "{warning:?}");
        }
    }
    match response.get("status") {
        Some(status) => {
            assert!(!allowed);
            let message = status["message"].as_str().unwrap();
            assert!(!message.is_empty());
            let lines: Vec<&str> = message.split('\n').collect();
            assert!(lines.len() <= MAX_LINES + 1, "{message:?}");
            for line in lines {
                assert!(line.chars().count() <= 1024, "{line:?}");
                assert!(!line.chars().any(char::is_control), "{line:?}");
            }
        }
        None => assert!(allowed),
    }
    let annotations = response["auditAnnotations"].as_object().unwrap();
    assert!(annotations["decision"].is_string());
    if let Some(images) = annotations.get("images") {
        let images = images.as_str().unwrap();
        assert!(images.len() <= MAX_IMAGES_ANNOTATION_BYTES);
        assert!(serde_json::from_str::<Value>(images).unwrap().is_array());
    }
}

/// Runs a body through the whole module and checks what can be checked.
fn exercise(bytes: &[u8]) {
    let echo = uid_of(bytes);
    let review = match Review::parse(bytes) {
        Ok(review) => review,
        Err(err) => {
            let message = err.to_string();
            assert!(message.chars().count() <= 200, "{message:?}");
            if let Some((version, uid)) = echo {
                check_answer(&respond_error_for(version, &uid, &message), version, &uid);
            }
            return;
        }
    };
    assert_eq!(echo, Some((review.api_version, review.uid.clone())));

    let answer = match images_to_judge(&review) {
        Judgement::Skip(reason) => respond_skip(&review, &reason),
        Judgement::Malformed(message) => respond_denied(&review, &message),
        Judgement::Judge(uses) => {
            assert!(uses.iter().all(|u| !u.image.is_empty()));
            assert!(uses.iter().all(|u| !u.locations.is_empty()));
            let images: Vec<String> = uses.into_iter().map(|u| u.image).collect();
            let verdicts = verdicts_for(&images);
            let answer = respond(&review, &verdicts);
            let denied = verdicts
                .iter()
                .any(|v| v.record.mode == Mode::Enforce && v.outcome.is_failure());
            assert_eq!(answer["response"]["allowed"], !denied);
            answer
        }
    };
    check_answer(&answer, review.api_version, &review.uid);
}

/// Any text, control characters included (`any::<String>()` leaves them out).
fn any_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..80).prop_map(String::from_iter)
}

/// JSON values shaped like pod specs: member names a pod spec uses, and leaves of every type.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any_text().prop_map(Value::from),
        "[a-z0-9./:@-]{0,24}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("name".to_string()),
        Just("image".to_string()),
        Just("reference".to_string()),
        Just("containers".to_string()),
        Just("initContainers".to_string()),
        Just("ephemeralContainers".to_string()),
        Just("volumes".to_string()),
        Just("spec".to_string()),
        Just("template".to_string()),
        Just("metadata".to_string()),
        Just("deletionTimestamp".to_string()),
        "[a-zA-Z]{1,6}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const PLACES: &[&str] = &[
    "/request",
    "/request/uid",
    "/request/kind",
    "/request/kind/kind",
    "/request/subResource",
    "/request/operation",
    "/request/dryRun",
    "/request/userInfo",
    "/request/object",
    "/request/object/metadata",
    "/request/object/metadata/deletionTimestamp",
    "/request/object/spec",
    "/request/object/spec/template",
    "/request/object/spec/template/spec",
    "/request/object/spec/template/spec/containers",
    "/request/object/spec/template/spec/containers/0",
    "/request/object/spec/template/spec/containers/1/image",
    "/request/object/spec/template/spec/volumes/0/image",
    "/request/object/spec/containers/0/image",
    "/request/object/spec/ephemeralContainers",
    "/request/oldObject",
    "/request/oldObject/spec/template/spec/containers",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_reviews_never_panic(pod in any::<bool>(), at in 0usize..1200, len in 0usize..8,
                                   insert in proptest::collection::vec(any::<u8>(), 0..8)) {
        let base = if pod { POD_CREATE } else { DEPLOYMENT_UPDATE };
        exercise(&mutate(base, at, len, &insert));
    }

    #[test]
    fn any_json_anywhere_in_a_review_never_panics(pod in any::<bool>(),
                                                  place in 0usize..PLACES.len(),
                                                  value in json_value()) {
        let base = if pod { POD_CREATE } else { DEPLOYMENT_UPDATE };
        let review: Value = serde_json::from_str(base).unwrap();
        let body = set(review, PLACES[place], value).to_string();
        exercise(body.as_bytes());
    }

    #[test]
    fn answers_stay_short_and_printable(
        images in proptest::collection::vec(any_text(), 0..40),
        reasons in proptest::collection::vec(any_text(), 1..4),
    ) {
        let review = Review::parse(POD_CREATE.as_bytes()).unwrap();
        let mut verdicts = verdicts_for(&images);
        for (i, v) in verdicts.iter_mut().enumerate() {
            let reason = reasons[i % reasons.len()].clone();
            v.outcome = match v.outcome {
                Outcome::Violation(_) => Outcome::Violation(reason),
                Outcome::Error(_) => Outcome::Error(reason),
                ref other => other.clone(),
            };
        }
        let answer = respond(&review, &verdicts);
        check_answer(&answer, ApiVersion::V1Beta1, &review.uid);
        let denied = verdicts
            .iter()
            .any(|v| v.record.mode == Mode::Enforce && v.outcome.is_failure());
        prop_assert_eq!(answer["response"]["allowed"].as_bool(), Some(!denied));
        let message = respond_denied(&review, &reasons[0]);
        check_answer(&message, ApiVersion::V1Beta1, &review.uid);
    }
}

#[test]
fn the_property_bases_are_valid_reviews() {
    let review = Review::parse(DEPLOYMENT_UPDATE.as_bytes()).unwrap();
    let images: Vec<String> = match images_to_judge(&review) {
        Judgement::Judge(uses) => uses.into_iter().map(|u| u.image).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        images,
        [
            "busybox:1.36",
            "registry.example/shop/web:1.5",
            "registry.example/shop/assets:7"
        ]
    );
    let review = Review::parse(POD_CREATE.as_bytes()).unwrap();
    assert!(matches!(images_to_judge(&review), Judgement::Judge(uses) if uses.len() == 2));
}
