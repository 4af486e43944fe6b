//! The HTTPS webhook server: axum routes on axum-server with rustls, certificate reload, the
//! health and metrics listener, and graceful shutdown.
//!
//! The server is generic over a [`Reviewer`], which judges the review bodies; everything about
//! HTTP (paths, methods, content type, body limits, panics, TLS, probes) stays here.
//!
//! ```text
//! :listen (HTTPS, h2 + http/1.1)      POST /validate/{enforce,warn,audit} → Reviewer::review
//! :health_listen (plain HTTP)         GET /healthz, /readyz, /metrics
//! ```
//!
//! [`Server::bind`] reads the certificate files and binds both listeners (so the actual ports are
//! known before serving); [`Server::run`] serves until the shutdown future resolves, then drains
//! in-flight requests for up to [`ServeOptions::shutdown_grace`]. [`serve`] does both.

mod error;
mod health;
mod lifecycle;
mod metrics;
mod options;
mod reload;
mod reviewer;
mod signal;
mod tls;
mod webhook;

use std::future::Future;
use std::sync::Arc;

pub use error::ServeError;
pub use lifecycle::{LocalAddrs, Server};
pub use metrics::{InFlight, Metrics, METRICS_CONTENT_TYPE, REVIEW_DECISIONS};
pub use options::{
    ServeOptions, DEFAULT_MAX_BODY_BYTES, DEFAULT_RELOAD_INTERVAL, DEFAULT_SHUTDOWN_GRACE,
};
pub use reviewer::{Reply, Reviewer};
pub use signal::shutdown_signal;
pub use tls::TlsError;

/// Binds the listeners, serves until `shutdown` resolves, then drains and returns.
///
/// # Errors
/// The TLS files do not load, a listener cannot be bound, or the webhook listener fails.
pub async fn serve<R: Reviewer>(
    reviewer: Arc<R>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::bind(reviewer, metrics, options)
        .await?
        .run(shutdown)
        .await
}
