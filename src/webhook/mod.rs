//! The webhook's glue: the loaded config and its decider, the review path shared by
//! `attestgate serve` and `attestgate review`, and the reload of config and policy files.
//!
//! A new replica is ready after its first successful load. After that, a config or policy that
//! fails to load keeps the last good one (logged, and `attestgate_config_reload_failing` set);
//! replicas stay ready, since leaving the Service would fail open under `Ignore` and fail every
//! namespace under `Fail`.

mod reload;
mod review;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::body::Bytes;

pub use review::judge_review;

use crate::admission::{respond_unjudged, uid_of, Mode};
use crate::config::Config;
use crate::decision::Decider;
use crate::server::{Metrics, Reply, Reviewer};

/// The webhook: what the server calls.
#[derive(Debug)]
pub struct Webhook {
    config_path: PathBuf,
    current: RwLock<Option<Loaded>>,
    /// The fingerprint of the newest files that failed to load, and why.
    problem: Mutex<Option<(String, String)>>,
    metrics: Arc<Metrics>,
}

/// A loaded config, its decider, and the fingerprint of the files it was loaded from.
#[derive(Debug, Clone)]
struct Loaded {
    decider: Decider,
    fingerprint: String,
}

impl Webhook {
    /// A webhook for the config at `path`, loaded once now. A failed first load leaves it
    /// unready (requests are answered as verification errors) until a reload succeeds.
    pub fn new(path: &Path, metrics: Arc<Metrics>) -> Self {
        let webhook = Self {
            config_path: path.to_path_buf(),
            current: RwLock::new(None),
            problem: Mutex::new(None),
            metrics,
        };
        webhook.reload();
        webhook
    }

    /// The current decider, if a config has loaded.
    pub fn decider(&self) -> Option<Decider> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| l.decider.clone())
    }

    /// The problem with the newest config files, if they failed to load.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, message)| message.clone())
    }

    /// The config path.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The metrics it records to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn install(&self, config: Arc<Config>, fingerprint: String) {
        self.metrics.clear_policy_expiries();
        for policy in &config.policies {
            if let Some(expires) = policy.policy.policy.expires {
                self.metrics
                    .policy_expiry(&policy.name, expires.unix_timestamp());
            }
        }
        self.metrics
            .config_reload(true, &config.digest, &config.policy_digests());
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Loaded {
            decider: Decider::new(config),
            fingerprint,
        });
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Reviewer for Webhook {
    async fn review(&self, mode: Mode, body: Bytes) -> Reply {
        let decider = self.decider();
        let problem = self.problem();
        judge_review(
            decider.as_ref(),
            problem.as_deref(),
            mode,
            &body,
            &self.metrics,
        )
        .await
    }

    fn failed(&self, mode: Mode, body: &[u8], message: &str) -> Reply {
        // The config's floor applies here too: a warn path under `minimumMode: enforce` fails
        // closed. Without a config there is no floor to apply.
        let mode = match self.decider() {
            Some(decider) => mode.max(decider.config().minimum_mode),
            None => mode,
        };
        match uid_of(body) {
            Some((version, uid)) => match serde_json::to_vec(&respond_unjudged(
                mode,
                version,
                &uid,
                &format!("attestgate: {message}"),
            )) {
                Ok(bytes) => Reply::Review(bytes),
                Err(e) => Reply::BadRequest(format!("cannot encode the answer: {e}")),
            },
            None => Reply::BadRequest(format!("{message}; the body names no request uid")),
        }
    }

    fn ready(&self) -> Result<(), String> {
        if self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            Ok(())
        } else {
            Err(self
                .problem()
                .unwrap_or_else(|| "no config has loaded yet".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(config: &str) -> (tempfile::TempDir, Webhook) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let webhook = Webhook::new(&path, Arc::new(Metrics::new()));
        (dir, webhook)
    }

    fn allowed(reply: Reply) -> bool {
        let Reply::Review(bytes) = reply else {
            panic!("not a review answer");
        };
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["response"]["uid"], "u-1");
        answer["response"]["allowed"].as_bool().unwrap()
    }

    const BODY: &[u8] =
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1"}}"#;

    #[test]
    fn a_failed_review_is_answered_as_its_path_and_the_floor_say() {
        let (_dir, plain) = webhook("noMatch: deny\n");
        assert!(plain.decider().is_some());
        assert!(!allowed(plain.failed(Mode::Enforce, BODY, "boom")));
        assert!(allowed(plain.failed(Mode::Warn, BODY, "boom")));
        assert!(allowed(plain.failed(Mode::Audit, BODY, "boom")));

        let (_dir, floored) = webhook("noMatch: deny\nminimumMode: enforce\n");
        assert!(!allowed(floored.failed(Mode::Audit, BODY, "boom")));

        assert!(matches!(
            plain.failed(Mode::Warn, b"{}", "boom"),
            Reply::BadRequest(_)
        ));
    }
}
