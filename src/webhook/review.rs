//! One AdmissionReview, from body to answer: the path shared by the server and
//! `attestgate review`.

use tokio::time::Instant;

use crate::admission::{
    answer, answer_skip, decision, images_to_judge, Answer, DecisionRecord, ImageUse, ImageVerdict,
    Judgement, Mode, Outcome, Review,
};
use crate::cluster::PodPullSecrets;
use crate::decision::{CacheUse, Decider, ImageDecision, Outcome as Decided};
use crate::image::Keyring;
use crate::server::{Metrics, Reply};

/// Judges one AdmissionReview `body` arriving on `mode`'s path with `decider` (none: no config
/// has loaded, and every image is a verification error naming `problem`).
pub async fn judge_review(
    decider: Option<&Decider>,
    problem: Option<&str>,
    mode: Mode,
    body: &[u8],
    metrics: &Metrics,
) -> Reply {
    let started = Instant::now();
    let review = match Review::parse(body) {
        Ok(review) => review,
        Err(e) => {
            metrics.review(mode, "bad_request", started.elapsed().as_secs_f64());
            tracing::info!(mode = %mode, error = %e, "refused a body that is not an admission review");
            return Reply::BadRequest(e.to_string());
        }
    };
    let uses = match images_to_judge(&review) {
        Judgement::Skip(reason) => {
            metrics.review(mode, "skipped", started.elapsed().as_secs_f64());
            tracing::debug!(uid = %review.uid, reason = %reason, "skipped");
            return encode(&answer_skip(&review, &reason));
        }
        Judgement::Malformed(message) => vec![(
            ImageUse {
                image: "(pod spec)".into(),
                locations: Vec::new(),
                template: false,
            },
            Err(message),
        )],
        Judgement::Judge(uses) => uses.into_iter().map(|u| (u, Ok(()))).collect(),
    };

    let verdicts = match decider {
        None => {
            let why = format!(
                "attestgate has no loaded config: {}",
                problem.unwrap_or("not loaded yet")
            );
            uses.into_iter()
                .map(|(u, _)| error_verdict(&u, mode, &why))
                .collect()
        }
        Some(decider) => {
            let keyring = pull_secrets(decider, &review, metrics, started).await;
            judge_images(decider, keyring.as_ref(), metrics, mode, uses, started).await
        }
    };
    for v in &verdicts {
        metrics.image_decision(
            v.record.mode,
            outcome_label(&v.outcome),
            if v.record.cached { "hit" } else { "miss" },
        );
    }
    if let Some(decider) = decider {
        metrics.background_verifications(
            i64::try_from(decider.background_verifications()).unwrap_or(i64::MAX),
        );
    }
    let overall = decision(&verdicts);
    let elapsed = started.elapsed();
    metrics.review(mode, overall.as_str(), elapsed.as_secs_f64());
    tracing::info!(
        uid = %review.uid,
        namespace = review.namespace.as_deref().unwrap_or(""),
        kind = %review.kind.kind,
        name = review.name.as_deref().unwrap_or(""),
        operation = review.operation.as_str(),
        dry_run = review.dry_run,
        mode = %mode,
        decision = overall.as_str(),
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        images = %Summary(&verdicts),
        "admission decision"
    );
    for v in &verdicts {
        if let Outcome::Violation(reason) | Outcome::Error(reason) = &v.outcome {
            tracing::info!(
                uid = %review.uid,
                image = %v.image,
                outcome = outcome_label(&v.outcome),
                mode = %v.record.mode,
                reason = %reason,
                policies = %v.record.policies.join(","),
                "image failed"
            );
        }
    }
    encode(&answer(&review, &verdicts))
}

/// The keyring of the pod's image pull secrets, when the config reads them and the request is
/// for a Pod or a workload. When the API cannot be read the images are judged without them: an
/// image that needs them is then refused by its registry (fail closed), one that does not is
/// judged as the kubelet would pull it.
async fn pull_secrets(
    decider: &Decider,
    review: &Review,
    metrics: &Metrics,
    started: Instant,
) -> Option<Keyring> {
    let reader = decider.pull_secrets()?;
    let (namespace, pod) = PodPullSecrets::from_review(review)?;
    let deadline = started + decider.config().deadline;
    match reader.keyring(&namespace, &pod, deadline).await {
        Ok(keyring) => Some(keyring),
        Err(e) => {
            metrics.upstream_error("pull_secrets");
            tracing::warn!(
                uid = %review.uid,
                namespace = %namespace,
                error = %e.text(),
                "image pull secrets could not be read; judging with the config's credentials"
            );
            None
        }
    }
}

/// Decides each unique image once, concurrently, under one deadline.
async fn judge_images(
    decider: &Decider,
    pull_secrets: Option<&Keyring>,
    metrics: &Metrics,
    mode: Mode,
    uses: Vec<(ImageUse, Result<(), String>)>,
    started: Instant,
) -> Vec<ImageVerdict> {
    let config = decider.config();
    // `podsOnly` lowers template images to warn; the config's minimum mode is a floor that
    // nothing lowers.
    let path_mode = mode.max(config.minimum_mode);
    let effective = |u: &ImageUse| {
        let lowered = if config.pods_only && u.template {
            mode.min(Mode::Warn)
        } else {
            mode
        };
        lowered.max(config.minimum_mode)
    };
    let images = uses.iter().filter(|(_, ok)| ok.is_ok()).count();
    if images > config.max_images_per_request {
        let why = format!(
            "{images} images exceed maxImagesPerRequest ({})",
            config.max_images_per_request
        );
        return vec![violation_verdict(
            &ImageUse {
                image: "(request)".into(),
                locations: Vec::new(),
                template: false,
            },
            path_mode,
            &why,
        )];
    }
    let deadline = started + config.deadline;
    // `images_to_judge` lists each image string once, so each is decided once; the decider
    // also shares one verification among concurrent requests for the same image.
    let decided = futures_util::future::join_all(uses.iter().map(|(u, malformed)| async move {
        match malformed {
            Err(message) => violation_verdict(u, effective(u), message),
            Ok(()) => verdict(
                u,
                effective(u),
                decider.decide_with(&u.image, pull_secrets, deadline).await,
                metrics,
            ),
        }
    }))
    .await;
    decided
}

fn verdict(u: &ImageUse, mode: Mode, d: ImageDecision, metrics: &Metrics) -> ImageVerdict {
    if let Some(detail) = &d.detail {
        tracing::info!(image = %u.image, detail = %detail, "verification failed");
    }
    if let Some(upstream) = d.upstream {
        metrics.upstream_error(upstream);
    }
    ImageVerdict {
        image: u.image.clone(),
        outcome: match d.outcome {
            Decided::Admitted => Outcome::Admitted,
            Decided::Excepted(exception) => Outcome::Excepted { exception },
            Decided::Violation(reason) => Outcome::Violation(reason),
            Decided::Error(reason) => Outcome::Error(reason),
        },
        record: DecisionRecord {
            digest: d.digest,
            policies: d.policies,
            evidence: d.evidence,
            binding: d.binding,
            cached: matches!(d.cache, CacheUse::Hit | CacheUse::Stale),
            mode,
        },
    }
}

fn empty_record(mode: Mode) -> DecisionRecord {
    DecisionRecord {
        digest: None,
        policies: Vec::new(),
        evidence: Vec::new(),
        binding: None,
        cached: false,
        mode,
    }
}

fn error_verdict(u: &ImageUse, mode: Mode, why: &str) -> ImageVerdict {
    ImageVerdict {
        image: u.image.clone(),
        outcome: Outcome::Error(why.to_string()),
        record: empty_record(mode),
    }
}

fn violation_verdict(u: &ImageUse, mode: Mode, why: &str) -> ImageVerdict {
    ImageVerdict {
        image: u.image.clone(),
        outcome: Outcome::Violation(why.to_string()),
        record: empty_record(mode),
    }
}

/// The verdicts in the decision log line: `image=outcome[@digest]`, separated by spaces;
/// written straight into the line rather than built as strings first.
struct Summary<'a>(&'a [ImageVerdict]);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", v.image, outcome_label(&v.outcome))?;
            if let Some(digest) = &v.record.digest {
                write!(f, "@{digest}")?;
            }
        }
        Ok(())
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Admitted => "admitted",
        Outcome::Excepted { .. } => "excepted",
        Outcome::Violation(_) => "violation",
        Outcome::Error(_) => "error",
    }
}

fn encode(answer: &Answer) -> Reply {
    match serde_json::to_vec(answer) {
        Ok(bytes) => Reply::Review(bytes),
        Err(e) => Reply::BadRequest(format!("cannot encode the answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::config::Config;

    fn decider(yaml: &str) -> Decider {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        Decider::new(Arc::new(
            Config::from_bytes(&path, yaml.as_bytes()).unwrap(),
        ))
    }

    fn review(kind: &str, spec: Value) -> Vec<u8> {
        let (group, object) = match kind {
            "Pod" => ("", json!({"metadata": {"name": "p"}, "spec": spec})),
            _ => (
                "apps",
                json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": spec}}}),
            ),
        };
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": "x"},
                "namespace": "team",
                "operation": "CREATE",
                "object": object,
            }
        }))
        .unwrap()
    }

    async fn answer(decider: &Decider, mode: Mode, body: &[u8]) -> Value {
        match judge_review(Some(decider), None, mode, body, &Metrics::new()).await {
            Reply::Review(bytes) => {
                serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
            }
            Reply::BadRequest(message) => panic!("bad request: {message}"),
        }
    }

    fn one_image() -> Value {
        json!({"containers": [{"name": "app", "image": "127.0.0.1:9/x/app:v1"}]})
    }

    #[tokio::test]
    async fn pods_only_lowers_templates_to_warn_and_judges_pods_for_real() {
        let decider = decider("noMatch: deny\npodsOnly: true\n");
        let deployment = answer(&decider, Mode::Enforce, &review("Deployment", one_image())).await;
        assert_eq!(deployment["allowed"], true, "{deployment}");
        assert!(deployment["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no policy covers"));
        let pod = answer(&decider, Mode::Enforce, &review("Pod", one_image())).await;
        assert_eq!(pod["allowed"], false, "{pod}");
    }

    #[tokio::test]
    async fn the_minimum_mode_is_a_floor_that_pods_only_cannot_lower() {
        let decider = decider("noMatch: deny\npodsOnly: true\nminimumMode: enforce\n");
        for (kind, mode) in [("Deployment", Mode::Enforce), ("Pod", Mode::Audit)] {
            let answer = answer(&decider, mode, &review(kind, one_image())).await;
            assert_eq!(answer["allowed"], false, "{kind} on {mode}: {answer}");
        }
        let warn_floor = decider_with_floor_warn();
        let audited = answer(&warn_floor, Mode::Audit, &review("Pod", one_image())).await;
        assert_eq!(audited["allowed"], true, "{audited}");
        assert!(
            audited["warnings"].is_array(),
            "warn is the floor: {audited}"
        );
    }

    fn decider_with_floor_warn() -> Decider {
        decider("noMatch: deny\nminimumMode: warn\n")
    }

    #[tokio::test]
    async fn more_unique_images_than_the_cap_are_denied_unjudged() {
        let decider = decider("noMatch: allow\nmaxImagesPerRequest: 2\n");
        let spec = json!({"containers": [
            {"name": "a", "image": "127.0.0.1:9/x/a:v1"},
            {"name": "b", "image": "127.0.0.1:9/x/b:v1"},
            {"name": "c", "image": "127.0.0.1:9/x/a:v1"},
        ]});
        let two = answer(&decider, Mode::Enforce, &review("Pod", spec)).await;
        assert_eq!(two["allowed"], true, "a repeated image counts once: {two}");
        let spec = json!({"containers": [
            {"name": "a", "image": "127.0.0.1:9/x/a:v1"},
            {"name": "b", "image": "127.0.0.1:9/x/b:v1"},
            {"name": "c", "image": "127.0.0.1:9/x/c:v1"},
        ]});
        let three = answer(&decider, Mode::Enforce, &review("Pod", spec)).await;
        assert_eq!(three["allowed"], false, "{three}");
        assert!(
            three["status"]["message"]
                .as_str()
                .unwrap()
                .contains("3 images exceed maxImagesPerRequest (2)"),
            "{three}"
        );
    }

    #[test]
    fn the_log_summary_lists_each_image_with_its_outcome_and_digest() {
        let mut admitted = error_verdict(
            &ImageUse {
                image: "app:1".into(),
                locations: Vec::new(),
                template: false,
            },
            Mode::Enforce,
            "x",
        );
        admitted.outcome = Outcome::Admitted;
        admitted.record.digest = Some("sha256:ab".into());
        let failed = violation_verdict(
            &ImageUse {
                image: "side:2".into(),
                locations: Vec::new(),
                template: false,
            },
            Mode::Warn,
            "no evidence",
        );
        let verdicts = [admitted, failed];
        assert_eq!(
            Summary(&verdicts).to_string(),
            "app:1=admitted@sha256:ab side:2=violation"
        );
        assert_eq!(Summary(&[]).to_string(), "");
    }

    #[tokio::test]
    async fn without_a_config_every_image_is_a_verification_error() {
        let body = review("Pod", one_image());
        let reply = judge_review(
            None,
            Some("bad yaml"),
            Mode::Enforce,
            &body,
            &Metrics::new(),
        )
        .await;
        let Reply::Review(bytes) = reply else {
            panic!("a review answer")
        };
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let message = value["response"]["status"]["message"].as_str().unwrap();
        assert_eq!(value["response"]["allowed"], false);
        assert!(message.contains("verification error"), "{message}");
        assert!(message.contains("no loaded config: bad yaml"), "{message}");
    }
}
