//! What the server asks of the webhook's glue: judge a review body, answer for a failed one,
//! and say whether it is ready.

use std::future::Future;

use axum::body::Bytes;

use crate::admission::Mode;

/// The answer to one admission request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A JSON `AdmissionReview` carrying the response; sent as 200 `application/json`.
    Review(Vec<u8>),
    /// The body is not an `AdmissionReview` the webhook can answer; sent as 400 with this short
    /// plain-text message.
    BadRequest(String),
}

/// The judge behind the webhook paths. The server owns HTTP, TLS, limits and panics; the
/// reviewer owns the meaning of the body.
///
/// Metrics: the reviewer records `Metrics::review` for every [`Reply`] it returns. The server
/// records only what the reviewer never answered: `bad_request` for bodies it refused before
/// calling [`review`](Reviewer::review) (too large, wrong content type, unreadable) and `error`
/// for a review that panicked (whose answer comes from [`failed`](Reviewer::failed)).
pub trait Reviewer: Send + Sync + 'static {
    /// Judges one `AdmissionReview` body arriving on `mode`'s path.
    fn review(&self, mode: Mode, body: Bytes) -> impl Future<Output = Reply> + Send;

    /// The answer when [`review`](Reviewer::review) panicked or the server failed after reading
    /// the body on `mode`'s path: for the request's uid when the body names one (enforce fails
    /// closed, warn and audit admit as their `failurePolicy: Ignore` would), else a 400. Should
    /// not panic; if it does, the server answers 500.
    fn failed(&self, mode: Mode, body: &[u8], message: &str) -> Reply;

    /// For `/readyz`: `Ok` once the webhook can answer (its first config loaded), else why not.
    fn ready(&self) -> Result<(), String>;
}
