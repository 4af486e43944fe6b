//! The HTTPS routes: `POST /validate/{enforce,warn,audit}`, each body read under a size cap and
//! a deadline, handed to the [`Reviewer`] with panics caught, and the [`Reply`] sent back.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::{FutureExt as _, StreamExt as _};
use tracing::Instrument as _;

use super::metrics::Metrics;
use super::reviewer::{Reply, Reviewer};
use crate::admission::Mode;

/// How long a client may take to send a review body; the API server's webhook timeout is at
/// most 30 s, so a slower body is never answered in time anyway.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the webhook handlers share.
#[derive(Debug)]
pub(crate) struct WebhookState<R> {
    pub(crate) reviewer: Arc<R>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_body_bytes: usize,
}

/// One POST route per mode; axum answers 404 for other paths and 405 for other methods.
pub(crate) fn router<R: Reviewer>(state: Arc<WebhookState<R>>) -> Router {
    Mode::ALL.into_iter().fold(Router::new(), |router, mode| {
        let state = Arc::clone(&state);
        router.route(
            mode.path(),
            post(move |request: Request| review(Arc::clone(&state), mode, request)),
        )
    })
}

/// A body the server refused before the reviewer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotJson,
    TooLarge,
    TooSlow,
    Unreadable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        // The API server reports these as "failed calling webhook" without our reason, so the
        // log is where an operator finds it (an UPDATE of a large object carries it twice).
        tracing::warn!(refusal = ?self, "refused a request body before review");
        let (status, message) = match self {
            Self::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected content-type application/json",
            ),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            Self::TooSlow => (StatusCode::REQUEST_TIMEOUT, "request body too slow"),
            Self::Unreadable => (StatusCode::BAD_REQUEST, "request body unreadable"),
        };
        (status, message).into_response()
    }
}

async fn review<R: Reviewer>(
    state: Arc<WebhookState<R>>,
    mode: Mode,
    request: Request,
) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.review_started();
    let (parts, body) = request.into_parts();

    let body = match accept_body(&parts.headers, body, state.max_body_bytes).await {
        Ok(body) => body,
        Err(refusal) => {
            tracing::debug!(mode = mode.as_str(), ?refusal, "review body refused");
            state
                .metrics
                .review(mode, "bad_request", started.elapsed().as_secs_f64());
            return refusal.into_response();
        }
    };

    let span = tracing::debug_span!("review", mode = mode.as_str());
    let judged = AssertUnwindSafe(state.reviewer.review(mode, body.clone()))
        .catch_unwind()
        .instrument(span)
        .await;
    match judged {
        Ok(reply) => respond(reply),
        Err(_) => {
            tracing::error!(mode = mode.as_str(), "review panicked; answering as failed");
            state
                .metrics
                .review(mode, "error", started.elapsed().as_secs_f64());
            answer_failed(state.reviewer.as_ref(), mode, &body)
        }
    }
}

/// The reviewer's answer for a body it could not judge; a 500 if even that panics.
fn answer_failed<R: Reviewer>(reviewer: &R, mode: Mode, body: &[u8]) -> Response {
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        reviewer.failed(mode, body, "internal error")
    })) {
        Ok(reply) => respond(reply),
        Err(_) => {
            tracing::error!(mode = mode.as_str(), "the failed answer panicked too");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Review(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Reply::BadRequest(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

/// Checks the content type, then reads the body under `limit` bytes and [`BODY_READ_TIMEOUT`].
async fn accept_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    if !is_json(headers) {
        return Err(Refusal::NotJson);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| usize::try_from(length).map_or(true, |n| n > limit)) {
        return Err(Refusal::TooLarge);
    }
    let capacity = declared
        .and_then(|length| usize::try_from(length).ok())
        .unwrap_or(0);

    tokio::time::timeout(BODY_READ_TIMEOUT, read_capped(body, limit, capacity))
        .await
        .unwrap_or(Err(Refusal::TooSlow))
}

/// Reads frames until the end of the body, refusing as soon as more than `limit` bytes arrive.
async fn read_capped(body: Body, limit: usize, capacity: usize) -> Result<Bytes, Refusal> {
    let mut frames = body.into_data_stream();
    let mut buffer = Vec::with_capacity(capacity.min(limit));
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|_| Refusal::Unreadable)?;
        if frame.len() > limit.saturating_sub(buffer.len()) {
            return Err(Refusal::TooLarge);
        }
        buffer.extend_from_slice(&frame);
    }
    Ok(Bytes::from(buffer))
}

/// `application/json`, with or without parameters, in any case.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: Option<&'static str>, length: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        }
        if let Some(value) = length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers(Some("application/json"), None)));
        assert!(is_json(&headers(
            Some("Application/JSON; charset=utf-8"),
            None
        )));
        assert!(!is_json(&headers(Some("text/plain"), None)));
        assert!(!is_json(&headers(Some("application/jsonx"), None)));
        assert!(!is_json(&headers(None, None)));
    }

    #[tokio::test]
    async fn body_cap_refuses_declared_and_streamed_excess() {
        let json = Some("application/json");
        let declared = accept_body(&headers(json, Some("11")), Body::from("{}"), 10).await;
        assert_eq!(declared, Err(Refusal::TooLarge));

        let streamed = accept_body(&headers(json, None), Body::from(vec![b' '; 11]), 10).await;
        assert_eq!(streamed, Err(Refusal::TooLarge));

        let exact = accept_body(&headers(json, None), Body::from(vec![b' '; 10]), 10).await;
        assert_eq!(exact.map(|body| body.len()), Ok(10));

        let wrong_type = accept_body(&headers(Some("text/plain"), None), Body::empty(), 10).await;
        assert_eq!(wrong_type, Err(Refusal::NotJson));
    }
}
