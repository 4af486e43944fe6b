//! The answer to an AdmissionReview: allowed or denied, warnings, and audit annotations.
//!
//! Each image is answered in its own effective mode ([`DecisionRecord::mode`]):
//! - a failing image (violation or verification error) in **enforce** mode denies the request
//!   (403), one line per such image in the status message;
//! - a failing image in **warn** mode becomes a warning (at most [`MAX_WARNING_CHARS`]
//!   characters each, at most [`MAX_LINES`] of them);
//! - a failing image in **audit** mode is only recorded.
//!
//! Every answer carries the audit annotations `decision` (what happened overall) and, for a
//! judged request, `images`: the per-image records as compact JSON, enough to reproduce the
//! decision with `attestgate verify`. The API server prefixes the keys with the webhook's name.
//!
//! Text taken from the request or from evidence is escaped (no control characters) and cut
//! short before it reaches a message or a warning.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::mode::Mode;
use super::review::{ApiVersion, Review};
use super::text;
use super::workload::SkipReason;

/// The longest warning, in characters; kubectl cuts longer ones itself.
pub const MAX_WARNING_CHARS: usize = 120;
/// How many image lines a denial message or the warnings list; the rest are counted.
pub const MAX_LINES: usize = 20;
/// The largest `images` audit annotation, in bytes; records past it are counted, not listed.
pub const MAX_IMAGES_ANNOTATION_BYTES: usize = 64 * 1024;

/// The longest line of a denial message, in characters.
const MAX_DENIAL_LINE_CHARS: usize = 256;
/// The longest request-level message, in characters.
const MAX_MESSAGE_CHARS: usize = 1024;
/// How much of an image reference a warning shows.
const WARNING_IMAGE_CHARS: usize = 56;
/// How much of an image reference a denial line shows.
const DENIAL_IMAGE_CHARS: usize = 128;
/// How long a string in an audit record may be.
const MAX_RECORD_STRING_CHARS: usize = 512;
/// How many entries a list in an audit record keeps.
const MAX_RECORD_LIST: usize = 64;

/// The verdict on one image, from the decision engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageVerdict {
    /// The reference as written in the object.
    pub image: String,
    /// What verification concluded.
    pub outcome: Outcome,
    /// What the conclusion rests on, and the mode it is answered in.
    pub record: DecisionRecord,
}

/// What verification concluded about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The evidence passed the policy.
    Admitted,
    /// Admitted by a configured exception, without passing evidence.
    Excepted {
        /// The exception's name.
        exception: String,
    },
    /// The evidence does not pass the policy; the reason says why.
    Violation(String),
    /// The image could not be verified (registry or evidence source unreachable…).
    Error(String),
}

impl Outcome {
    /// A violation or a verification error.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Violation(_) | Self::Error(_))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Excepted { .. } => "excepted",
            Self::Violation(_) => "violation",
            Self::Error(_) => "error",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Self::Admitted => None,
            Self::Excepted { exception } => Some(exception),
            Self::Violation(reason) | Self::Error(reason) => Some(reason),
        }
    }
}

/// What a verdict rests on, recorded so that the decision can be reproduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    /// The digest the reference resolved to.
    pub digest: Option<String>,
    /// The policies applied, as `name@sha256:…`.
    pub policies: Vec<String>,
    /// The evidence used: gitoids or file paths.
    pub evidence: Vec<String>,
    /// How the passed evidence is bound to the image.
    pub binding: Option<String>,
    /// The verdict came from the cache.
    pub cached: bool,
    /// The effective mode for this image (a template image may be lowered to warn).
    pub mode: Mode,
}

/// What happened to a request overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Every image passed (or was excepted).
    Allowed,
    /// An image failed in enforce mode.
    Denied,
    /// Admitted, with an image failing in warn mode.
    Warned,
    /// Admitted, with an image failing in audit mode only.
    Audited,
}

impl Decision {
    /// The value of the `decision` audit annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Audited => "audited",
        }
    }
}

/// The overall decision for these verdicts (no verdicts: allowed).
pub fn decision(verdicts: &[ImageVerdict]) -> Decision {
    let failing = |mode: Mode| {
        verdicts
            .iter()
            .any(|v| v.record.mode == mode && v.outcome.is_failure())
    };
    if failing(Mode::Enforce) {
        Decision::Denied
    } else if failing(Mode::Warn) {
        Decision::Warned
    } else if failing(Mode::Audit) {
        Decision::Audited
    } else {
        Decision::Allowed
    }
}

/// An AdmissionReview answer, typed so that it is encoded without building a JSON tree first.
///
/// Members are declared in sorted order, so the encoding is byte for byte what encoding the
/// `serde_json::Value` of [`respond`] gives (its objects sort their keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: AnswerResponse,
}

impl Answer {
    /// The answer as a JSON value, for callers that inspect it.
    pub fn to_value(&self) -> Value {
        // Every key is a string and every value plain data: the conversion cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AnswerResponse {
    allowed: bool,
    #[serde(rename = "auditAnnotations")]
    audit_annotations: AuditAnnotations,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Status {
    code: u16,
    message: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AuditAnnotations {
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<String>,
    #[serde(rename = "images-omitted", skip_serializing_if = "Option::is_none")]
    images_omitted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Answers `review` from the verdicts on its images.
pub fn respond(review: &Review, verdicts: &[ImageVerdict]) -> Value {
    answer(review, verdicts).to_value()
}

/// The answer of [`respond`], typed.
pub fn answer(review: &Review, verdicts: &[ImageVerdict]) -> Answer {
    let decision = decision(verdicts);
    let (images, omitted) = images_annotation(verdicts);
    let status = (decision == Decision::Denied).then(|| {
        let lines = failure_lines(verdicts, Mode::Enforce, MAX_DENIAL_LINE_CHARS);
        Status {
            code: 403,
            message: lines.join("\n"),
            reason: "Forbidden",
        }
    });
    Answer {
        api_version: review.api_version.as_str(),
        kind: "AdmissionReview",
        response: AnswerResponse {
            allowed: decision != Decision::Denied,
            audit_annotations: AuditAnnotations {
                decision: decision.as_str(),
                images: Some(images),
                images_omitted: (omitted > 0).then(|| omitted.to_string()),
                reason: None,
            },
            status,
            uid: review.uid.clone(),
            warnings: failure_lines(verdicts, Mode::Warn, MAX_WARNING_CHARS),
        },
    }
}

/// Admits `review` without judging it.
pub fn respond_skip(review: &Review, reason: &SkipReason) -> Value {
    answer_skip(review, reason).to_value()
}

/// The answer of [`respond_skip`], typed.
pub fn answer_skip(review: &Review, reason: &SkipReason) -> Answer {
    Answer {
        api_version: review.api_version.as_str(),
        kind: "AdmissionReview",
        response: AnswerResponse {
            allowed: true,
            audit_annotations: AuditAnnotations {
                decision: "skipped",
                images: None,
                images_omitted: None,
                reason: Some(text::clean(&reason.to_string(), MAX_MESSAGE_CHARS)),
            },
            status: None,
            uid: review.uid.clone(),
            warnings: Vec::new(),
        },
    }
}

/// Denies `review` as a whole (403), for a failure of the request rather than of an image: a
/// malformed pod spec, too many images.
pub fn respond_denied(review: &Review, message: &str) -> Value {
    DENIED.answer(review.api_version, &review.uid, message)
}

/// Refuses `review` with an internal error (500): the webhook could not decide. Per-image
/// errors should rather be [`Outcome::Error`] verdicts, so that each image's mode applies.
pub fn respond_error(review: &Review, message: &str) -> Value {
    respond_error_for(review.api_version, &review.uid, message)
}

/// Refuses a request known only by its version and uid (see [`super::uid_of`]) with an
/// internal error (500): the path for a request that failed after, or while, being read.
pub fn respond_error_for(api_version: ApiVersion, uid: &str, message: &str) -> Value {
    INTERNAL_ERROR.answer(api_version, uid, message)
}

/// The answer for a request that could not be judged at all (the review failed while, or
/// after, being read), as the path's failure policy would have it: **enforce** refuses it with
/// an internal error (500), like `failurePolicy: Fail`; **warn** admits it with the message as
/// its warning and **audit** admits it with the message in its audit annotations, like
/// `failurePolicy: Ignore`. The `decision` annotation is `error` in every mode.
pub fn respond_unjudged(mode: Mode, api_version: ApiVersion, uid: &str, message: &str) -> Value {
    if mode == Mode::Enforce {
        return respond_error_for(api_version, uid, message);
    }
    let message = INTERNAL_ERROR.message(message);
    let mut response = Map::new();
    response.insert("uid".into(), uid.into());
    response.insert("allowed".into(), true.into());
    if mode == Mode::Warn {
        let warning = format!("not judged: {message}");
        response.insert(
            "warnings".into(),
            json!([text::clean(&warning, MAX_WARNING_CHARS)]),
        );
    }
    response.insert(
        "auditAnnotations".into(),
        annotations(INTERNAL_ERROR.decision, &message),
    );
    envelope(api_version, response)
}

/// A refusal of a whole request.
struct Refusal {
    code: u16,
    reason: &'static str,
    decision: &'static str,
    /// The message when the caller's is blank: a refusal always says something.
    fallback: &'static str,
}

const DENIED: Refusal = Refusal {
    code: 403,
    reason: "Forbidden",
    decision: "denied",
    fallback: "request denied",
};

const INTERNAL_ERROR: Refusal = Refusal {
    code: 500,
    reason: "InternalError",
    decision: "error",
    fallback: "internal error",
};

impl Refusal {
    /// `message` escaped and cut short, or the fallback when it is blank.
    fn message(&self, message: &str) -> String {
        if message.trim().is_empty() {
            self.fallback.to_string()
        } else {
            text::clean(message, MAX_MESSAGE_CHARS)
        }
    }

    fn answer(&self, api_version: ApiVersion, uid: &str, message: &str) -> Value {
        let message = self.message(message);
        let mut response = Map::new();
        response.insert("uid".into(), uid.into());
        response.insert("allowed".into(), false.into());
        response.insert("status".into(), status(self.code, self.reason, &message));
        response.insert(
            "auditAnnotations".into(),
            annotations(self.decision, &message),
        );
        envelope(api_version, response)
    }
}

fn envelope(api_version: ApiVersion, response: Map<String, Value>) -> Value {
    json!({
        "apiVersion": api_version.as_str(),
        "kind": "AdmissionReview",
        "response": response,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"code": code, "message": message, "reason": reason})
}

fn annotations(decision: &str, reason: &str) -> Value {
    json!({
        "decision": decision,
        "reason": text::clean(reason, MAX_MESSAGE_CHARS),
    })
}

/// One line per failing image in `mode`, each escaped and at most `max_chars` characters, at
/// most [`MAX_LINES`] of them and a last line counting the rest.
fn failure_lines(verdicts: &[ImageVerdict], mode: Mode, max_chars: usize) -> Vec<String> {
    let failing: Vec<&ImageVerdict> = verdicts
        .iter()
        .filter(|v| v.record.mode == mode && v.outcome.is_failure())
        .collect();
    let image_chars = if mode == Mode::Enforce {
        DENIAL_IMAGE_CHARS
    } else {
        WARNING_IMAGE_CHARS
    };
    let mut lines: Vec<String> = failing
        .iter()
        .take(MAX_LINES)
        .map(|v| text::cut(&failure_line(v, mode, image_chars), max_chars))
        .collect();
    if failing.len() > MAX_LINES {
        lines.push(format!(
            "and {} more failing images",
            failing.len() - MAX_LINES
        ));
    }
    lines
}

fn failure_line(verdict: &ImageVerdict, mode: Mode, image_chars: usize) -> String {
    let image = text::clean(&verdict.image, image_chars);
    let (what, reason) = match (&verdict.outcome, mode) {
        (Outcome::Error(message), _) => ("verification error", message),
        (Outcome::Violation(reason), Mode::Enforce) => ("denied", reason),
        (Outcome::Violation(reason), _) => ("would be denied", reason),
        (Outcome::Admitted | Outcome::Excepted { .. }, _) => return format!("image {image}"),
    };
    format!("image {image}: {what}: {}", text::escape(reason))
}

/// The `images` annotation (a compact JSON array) and how many records did not fit in it.
fn images_annotation(verdicts: &[ImageVerdict]) -> (String, usize) {
    let mut out = String::from("[");
    let mut listed = 0;
    for verdict in verdicts {
        let record = audit_record(verdict);
        let separator = usize::from(listed > 0);
        if out.len() + separator + record.len() + 1 > MAX_IMAGES_ANNOTATION_BYTES {
            break;
        }
        if listed > 0 {
            out.push(',');
        }
        out.push_str(&record);
        listed += 1;
    }
    out.push(']');
    (out, verdicts.len() - listed)
}

/// One image's entry in the `images` annotation (members in sorted order, as a JSON object
/// would print them).
#[derive(Serialize)]
struct AuditRecord {
    binding: Option<String>,
    cached: bool,
    digest: Option<String>,
    evidence: Vec<String>,
    image: String,
    mode: &'static str,
    outcome: &'static str,
    policies: Vec<String>,
    reason: Option<String>,
}

fn audit_record(verdict: &ImageVerdict) -> String {
    let record = &verdict.record;
    let short = |s: &str| text::cut(s, MAX_RECORD_STRING_CHARS);
    let entry = AuditRecord {
        binding: record.binding.as_deref().map(short),
        cached: record.cached,
        digest: record.digest.as_deref().map(short),
        evidence: short_list(&record.evidence),
        image: short(&verdict.image),
        mode: record.mode.as_str(),
        outcome: verdict.outcome.name(),
        policies: short_list(&record.policies),
        reason: verdict.outcome.reason().map(short),
    };
    // Plain strings, booleans and lists: the encoding cannot fail.
    serde_json::to_string(&entry).unwrap_or_default()
}

fn short_list(items: &[String]) -> Vec<String> {
    let mut list: Vec<String> = items
        .iter()
        .take(MAX_RECORD_LIST)
        .map(|s| text::cut(s, MAX_RECORD_STRING_CHARS))
        .collect();
    if items.len() > MAX_RECORD_LIST {
        list.push(format!("and {} more", items.len() - MAX_RECORD_LIST));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::review::Review;

    fn review(api_version: &str) -> Review {
        let body = json!({
            "apiVersion": api_version,
            "kind": "AdmissionReview",
            "request": {
                "uid": "uid-42",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
            }
        });
        Review::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn an_unjudged_request_fails_closed_in_enforce_only() {
        let message = "attestgate: internal error";
        let enforce = respond_unjudged(Mode::Enforce, ApiVersion::V1, "u-1", message);
        assert_eq!(enforce["response"]["allowed"], false);
        assert_eq!(enforce["response"]["status"]["code"], 500);
        assert_eq!(enforce["response"]["auditAnnotations"]["decision"], "error");

        let warn = respond_unjudged(Mode::Warn, ApiVersion::V1Beta1, "u-2", message);
        assert_eq!(warn["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(warn["response"]["uid"], "u-2");
        assert_eq!(warn["response"]["allowed"], true);
        assert_eq!(
            warn["response"]["warnings"],
            json!(["not judged: attestgate: internal error"])
        );
        assert_eq!(warn["response"]["auditAnnotations"]["decision"], "error");
        assert!(warn["response"].get("status").is_none());

        let audit = respond_unjudged(Mode::Audit, ApiVersion::V1, "u-3", "");
        assert_eq!(audit["response"]["allowed"], true);
        assert!(audit["response"].get("warnings").is_none());
        assert_eq!(
            audit["response"]["auditAnnotations"]["reason"],
            "internal error"
        );
    }

    fn verdict(image: &str, outcome: Outcome, mode: Mode) -> ImageVerdict {
        ImageVerdict {
            image: image.into(),
            outcome,
            record: DecisionRecord {
                digest: Some(format!("sha256:{}", "ab".repeat(32))),
                policies: vec![format!("prod@sha256:{}", "cd".repeat(32))],
                evidence: vec!["gitoid:blob:sha256:ef".into()],
                binding: Some("produced-image".into()),
                cached: false,
                mode,
            },
        }
    }

    fn violation(image: &str, mode: Mode) -> ImageVerdict {
        let reason = "no passing evidence for step build".to_string();
        verdict(image, Outcome::Violation(reason), mode)
    }

    fn response(answer: &Value) -> &Value {
        &answer["response"]
    }

    fn annotation<'a>(answer: &'a Value, key: &str) -> &'a str {
        answer["response"]["auditAnnotations"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no annotation {key}: {answer}"))
    }

    #[test]
    fn all_admitted_is_allowed_with_records() {
        let r = review("admission.k8s.io/v1");
        let verdicts = [
            verdict("app:1", Outcome::Admitted, Mode::Enforce),
            verdict(
                "sidecar:2",
                Outcome::Excepted {
                    exception: "mesh".into(),
                },
                Mode::Enforce,
            ),
        ];
        let answer = respond(&r, &verdicts);
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(response(&answer)["uid"], "uid-42");
        assert_eq!(response(&answer)["allowed"], true);
        assert!(response(&answer).get("status").is_none());
        assert!(response(&answer).get("warnings").is_none());
        assert_eq!(annotation(&answer, "decision"), "allowed");
        let records: Value = serde_json::from_str(annotation(&answer, "images")).unwrap();
        assert_eq!(records[0]["image"], "app:1");
        assert_eq!(records[0]["outcome"], "admitted");
        assert_eq!(records[0]["reason"], Value::Null);
        assert_eq!(records[0]["mode"], "enforce");
        assert_eq!(records[0]["cached"], false);
        assert_eq!(records[0]["binding"], "produced-image");
        assert!(records[0]["policies"][0]
            .as_str()
            .unwrap()
            .starts_with("prod@sha256:"));
        assert_eq!(records[1]["outcome"], "excepted");
        assert_eq!(records[1]["reason"], "mesh");
    }

    #[test]
    fn the_answer_keeps_the_request_version() {
        let answer = respond(&review("admission.k8s.io/v1beta1"), &[]);
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(response(&answer)["allowed"], true);
    }

    #[test]
    fn an_enforce_failure_denies_and_says_violation_or_error() {
        let verdicts = [
            violation("bad:1", Mode::Enforce),
            verdict(
                "far:2",
                Outcome::Error("registry unreachable".into()),
                Mode::Enforce,
            ),
            verdict("good:3", Outcome::Admitted, Mode::Enforce),
        ];
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        let response = response(&answer);
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        assert_eq!(
            response["status"]["message"],
            "image bad:1: denied: no passing evidence for step build\n\
             image far:2: verification error: registry unreachable"
        );
        assert_eq!(annotation(&answer, "decision"), "denied");
    }

    #[test]
    fn warn_failures_are_warnings_and_only_warn_failures() {
        let verdicts = [
            violation("enforced:1", Mode::Enforce),
            violation("warned:1", Mode::Warn),
            verdict("warned:2", Outcome::Error("timeout".into()), Mode::Warn),
            violation("audited:1", Mode::Audit),
        ];
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        assert_eq!(response(&answer)["allowed"], false);
        assert_eq!(
            response(&answer)["warnings"],
            json!([
                "image warned:1: would be denied: no passing evidence for step build",
                "image warned:2: verification error: timeout"
            ])
        );
        let message = response(&answer)["status"]["message"].as_str().unwrap();
        assert!(!message.contains("warned:1") && !message.contains("audited"));

        let answer = respond(&review("admission.k8s.io/v1"), &verdicts[1..]);
        assert_eq!(response(&answer)["allowed"], true);
        assert!(response(&answer).get("status").is_none());
        assert_eq!(annotation(&answer, "decision"), "warned");
    }

    #[test]
    fn audit_failures_are_admitted_silently_and_recorded() {
        let verdicts = [
            violation("audited:1", Mode::Audit),
            verdict("ok:1", Outcome::Admitted, Mode::Enforce),
        ];
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        assert_eq!(response(&answer)["allowed"], true);
        assert!(response(&answer).get("warnings").is_none());
        assert_eq!(annotation(&answer, "decision"), "audited");
        let records: Value = serde_json::from_str(annotation(&answer, "images")).unwrap();
        assert_eq!(records[0]["outcome"], "violation");
        assert_eq!(records[0]["reason"], "no passing evidence for step build");
        assert_eq!(records[0]["mode"], "audit");
    }

    #[test]
    fn warnings_are_short_escaped_and_bounded_in_number() {
        let long = format!("registry.example/{}\u{1b}[2J:v1", "x".repeat(300));
        let mut verdicts = vec![verdict(
            &long,
            Outcome::Violation("reason\nwith\tcontrols ".repeat(20)),
            Mode::Warn,
        )];
        verdicts.extend((0..30).map(|i| violation(&format!("img-{i}:1"), Mode::Warn)));
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        let warnings = response(&answer)["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), MAX_LINES + 1);
        assert_eq!(warnings[MAX_LINES], "and 11 more failing images");
        for warning in warnings {
            let warning = warning.as_str().unwrap();
            assert!(warning.chars().count() <= MAX_WARNING_CHARS, "{warning}");
            assert!(!warning.chars().any(char::is_control), "{warning:?}");
        }
        assert!(warnings[0].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn denial_messages_are_bounded_and_escaped() {
        let verdicts: Vec<ImageVerdict> = (0..25)
            .map(|i| {
                let reason = format!("bad\u{7}{}", "r".repeat(400));
                verdict(
                    &format!("img-{i}\n:1"),
                    Outcome::Violation(reason),
                    Mode::Enforce,
                )
            })
            .collect();
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        let message = response(&answer)["status"]["message"].as_str().unwrap();
        let lines: Vec<&str> = message.split('\n').collect();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(lines[MAX_LINES], "and 5 more failing images");
        assert!(lines[0].starts_with("image img-0\\u{a}:1: denied: bad\\u{7}r"));
        for line in lines {
            assert!(line.chars().count() <= MAX_DENIAL_LINE_CHARS, "{line}");
            assert!(!line.chars().any(char::is_control), "{line:?}");
        }
    }

    #[test]
    fn the_images_annotation_is_capped_and_says_how_many_were_left_out() {
        let verdicts: Vec<ImageVerdict> = (0..1000)
            .map(|i| {
                let mut v = violation(&format!("registry.example/team/image-{i}:v1"), Mode::Audit);
                v.record.evidence = (0..100).map(|e| format!("evidence-{e}.json")).collect();
                v
            })
            .collect();
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        let images = annotation(&answer, "images");
        assert!(
            images.len() <= MAX_IMAGES_ANNOTATION_BYTES,
            "{}",
            images.len()
        );
        let records: Vec<Value> = serde_json::from_str(images).unwrap();
        assert!(!records.is_empty());
        assert_eq!(
            records[0]["evidence"].as_array().unwrap().len(),
            MAX_RECORD_LIST + 1
        );
        assert_eq!(records[0]["evidence"][MAX_RECORD_LIST], "and 36 more");
        let omitted: usize = annotation(&answer, "images-omitted").parse().unwrap();
        assert_eq!(records.len() + omitted, 1000);
        assert!(omitted > 0);
    }

    #[test]
    fn the_typed_answer_encodes_to_the_bytes_of_its_json_value() {
        let r = review("admission.k8s.io/v1beta1");
        let mut many: Vec<ImageVerdict> = (0..300)
            .map(|i| violation(&format!("registry.example/image-{i}\u{1b}:v1"), Mode::Warn))
            .collect();
        many[7].record.mode = Mode::Enforce;
        many[8].outcome = Outcome::Error("registry said \"no\"\n".into());
        many[9].record.digest = None;
        many[9].record.binding = None;
        let answers = [
            answer(&r, &[]),
            answer(&r, &[verdict("app:1", Outcome::Admitted, Mode::Enforce)]),
            answer(&r, &[violation("app:1", Mode::Enforce)]),
            answer(&r, &many),
            answer_skip(&r, &SkipReason::SubResource("status\u{1b}".into())),
        ];
        for answer in answers {
            let typed = serde_json::to_string(&answer).unwrap();
            let value = answer.to_value();
            assert_eq!(typed, value.to_string());
            let images = value["response"]["auditAnnotations"]["images"].as_str();
            if let Some(images) = images {
                let records: Value = serde_json::from_str(images).unwrap();
                assert_eq!(images, records.to_string(), "records print sorted");
            }
        }
    }

    #[test]
    fn annotation_keys_are_valid_qualified_name_parts() {
        let verdicts: Vec<ImageVerdict> = (0..2000)
            .map(|i| violation(&format!("i-{i}"), Mode::Audit))
            .collect();
        let answer = respond(&review("admission.k8s.io/v1"), &verdicts);
        let keys = answer["response"]["auditAnnotations"].as_object().unwrap();
        assert!(keys.contains_key("images-omitted"));
        for key in keys.keys() {
            assert!(key.len() <= 63, "{key}");
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
                "{key}"
            );
            assert!(
                key.starts_with(|c: char| c.is_ascii_alphanumeric()),
                "{key}"
            );
        }
    }

    #[test]
    fn skips_are_allowed_and_say_why() {
        let answer = respond_skip(&review("admission.k8s.io/v1"), &SkipReason::NoNewImages);
        assert_eq!(response(&answer)["allowed"], true);
        assert_eq!(response(&answer)["uid"], "uid-42");
        assert_eq!(annotation(&answer, "decision"), "skipped");
        assert_eq!(
            annotation(&answer, "reason"),
            "the update adds no new image"
        );
    }

    #[test]
    fn request_level_denials_and_errors() {
        let r = review("admission.k8s.io/v1beta1");
        let answer = respond_denied(&r, "spec.containers[a]: image is missing\u{1b}");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(response(&answer)["allowed"], false);
        assert_eq!(response(&answer)["status"]["code"], 403);
        assert_eq!(
            response(&answer)["status"]["message"],
            "spec.containers[a]: image is missing\\u{1b}"
        );
        assert_eq!(annotation(&answer, "decision"), "denied");

        let answer = respond_error(&r, &"x".repeat(5000));
        assert_eq!(response(&answer)["status"]["code"], 500);
        assert_eq!(response(&answer)["status"]["reason"], "InternalError");
        let message = response(&answer)["status"]["message"].as_str().unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);

        let answer = respond_denied(&r, " ");
        assert_eq!(response(&answer)["status"]["message"], "request denied");

        let answer = respond_error_for(ApiVersion::V1, "u-7", "decision engine failed");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(response(&answer)["uid"], "u-7");
        assert_eq!(response(&answer)["allowed"], false);
        assert_eq!(annotation(&answer, "decision"), "error");
    }

    #[test]
    fn the_decision_is_the_strongest_failing_mode() {
        assert_eq!(decision(&[]), Decision::Allowed);
        let audit = violation("a", Mode::Audit);
        let warn = violation("w", Mode::Warn);
        let enforce = violation("e", Mode::Enforce);
        let ok = verdict("o", Outcome::Admitted, Mode::Enforce);
        assert_eq!(decision(std::slice::from_ref(&ok)), Decision::Allowed);
        assert_eq!(decision(&[ok.clone(), audit.clone()]), Decision::Audited);
        assert_eq!(decision(&[audit.clone(), warn.clone()]), Decision::Warned);
        assert_eq!(decision(&[warn, enforce, audit]), Decision::Denied);
    }
}
