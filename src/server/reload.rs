//! Certificate rotation: polls the TLS files and swaps in a new serving config when their
//! contents change.
//!
//! The swap is atomic for new handshakes and leaves established connections alone, so no request
//! is dropped. A change that does not build (a key that does not match, a truncated file, an
//! expired leaf) keeps the previous config, logs at warn once per distinct content, and raises
//! `attestgate_tls_reload_failing`. Writers that replace the certificate and the key one after
//! the other may be caught between the two writes; that read fails as a mismatch and the next
//! poll, seeing the completed pair, loads it (Kubernetes secret volumes swap both at once).

use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use tokio::time::MissedTickBehavior;

use super::metrics::Metrics;
use super::tls::{TlsContents, TlsFiles};
use crate::display_chain;

/// Polls `files` every `interval` and reloads `config` on a change, forever; the caller owns the
/// task and aborts it at shutdown (every await here is safe to cancel).
pub(crate) async fn watch(
    files: TlsFiles,
    config: RustlsConfig,
    metrics: Arc<Metrics>,
    interval: Duration,
    digest: [u8; 32],
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick completes at once; the files were just read by the caller.
    ticker.tick().await;
    // `None` while the files cannot be read; whatever is readable next counts as a change.
    let mut last_digest = Some(digest);

    loop {
        ticker.tick().await;

        let contents = match TlsContents::read(&files).await {
            Ok(contents) => contents,
            Err(err) => {
                if last_digest.take().is_some() {
                    metrics.tls_reload(false);
                    tracing::warn!(
                        error = %display_chain(&err),
                        "cannot read the tls files; keeping the current certificate"
                    );
                }
                continue;
            }
        };

        let digest = contents.digest();
        if last_digest == Some(digest) {
            continue;
        }
        last_digest = Some(digest);

        match contents.build(&files) {
            Ok(loaded) => {
                config.reload_from_config(loaded.config);
                metrics.tls_reload(true);
                metrics.serving_certificate_expiry(loaded.not_after);
                tracing::info!(
                    cert_file = %files.cert.display(),
                    not_after = loaded.not_after,
                    "serving certificate reloaded"
                );
            }
            Err(err) => {
                metrics.tls_reload(false);
                tracing::warn!(
                    error = %display_chain(&err),
                    "new tls files do not load; keeping the current certificate"
                );
            }
        }
    }
}
