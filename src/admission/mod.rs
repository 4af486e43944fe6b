//! AdmissionReview in and out: which images a request asks to run, and the answer per mode.
//!
//! Pure: no I/O. [`Review::parse`] reads the API server's body, [`images_to_judge`] finds the
//! images to verify (or why none need to be), and [`respond`] turns the per-image verdicts into
//! the answer. The webhook's glue (`crate::webhook`) hands the images to the decision engine
//! and the verdicts back here.

mod mode;
mod object;
#[cfg(test)]
mod oracle;
mod response;
mod review;
mod strict;
mod text;
mod workload;

pub use mode::{Mode, ModeError};
pub use response::{
    answer, answer_skip, decision, respond, respond_denied, respond_error, respond_error_for,
    respond_skip, respond_unjudged, Answer, Decision, DecisionRecord, ImageVerdict, Outcome,
    MAX_IMAGES_ANNOTATION_BYTES, MAX_LINES, MAX_WARNING_CHARS,
};
pub use review::{
    uid_of, ApiVersion, GroupVersionKind, GroupVersionResource, Operation, Review, ReviewError,
    MAX_REVIEW_BYTES,
};
pub use workload::{images_to_judge, ImageUse, Judgement, SkipReason};
