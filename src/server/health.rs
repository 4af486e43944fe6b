//! The plain-HTTP probe and scrape routes: `/healthz`, `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::metrics::{Metrics, METRICS_CONTENT_TYPE};
use super::reviewer::Reviewer;

/// What the probe handlers read.
#[derive(Debug)]
pub(crate) struct HealthState<R> {
    pub(crate) reviewer: Arc<R>,
    pub(crate) metrics: Arc<Metrics>,
    /// Set once the shutdown signal arrived, so the pod leaves the endpoints while it drains.
    pub(crate) shutting_down: Arc<AtomicBool>,
}

pub(crate) fn router<R: Reviewer>(state: Arc<HealthState<R>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<R>))
        .route("/metrics", get(metrics::<R>))
        .with_state(state)
}

/// 200 while the process can answer at all.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 once the reviewer is ready and until shutdown starts; 503 with the reason otherwise.
async fn readyz<R: Reviewer>(State(state): State<Arc<HealthState<R>>>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match state.reviewer.ready() {
        Ok(()) => "ok\n".into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn metrics<R: Reviewer>(State(state): State<Arc<HealthState<R>>>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}
