//! Reloading the config and the policy files it names when they change.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::Webhook;
use crate::config::{Config, MAX_CONFIG_BYTES};
use crate::encoding::sha256_hex;
use crate::file::read_file;

/// Largest policy file hashed for change detection (the loader applies its own cap).
const MAX_WATCHED_BYTES: u64 = 16 * 1024 * 1024;

impl Webhook {
    /// Loads the config files again when they changed since the last attempt (or always, when
    /// none has loaded). Returns whether a new config is now in use.
    pub fn reload(&self) -> bool {
        let fingerprint = self.fingerprint();
        let loaded = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if loaded
            .as_ref()
            .is_some_and(|l| l.fingerprint == fingerprint)
        {
            return false;
        }
        let failed_before = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(f, _)| *f == fingerprint);
        if failed_before {
            // This exact version already failed; it was reported then.
            return false;
        }
        let outcome = Config::load(&self.config_path).and_then(|config| {
            if let Some(previous) = &loaded {
                config.check_successor_of(previous.decider.config())?;
            }
            Ok(config)
        });
        match outcome {
            Ok(config) => {
                tracing::info!(
                    config = %self.config_path.display(),
                    digest = %config.digest,
                    policies = %config.policy_digests(),
                    "config loaded"
                );
                self.install(Arc::new(config), fingerprint);
                true
            }
            Err(e) => {
                let message = crate::display_chain(&e);
                let kept = loaded.is_some();
                tracing::error!(
                    config = %self.config_path.display(),
                    error = %message,
                    kept_last_good = kept,
                    "config did not load"
                );
                self.metrics.config_reload(false, "", "");
                *self.problem.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((fingerprint, message));
                false
            }
        }
    }

    /// Checks the files every `interval` and reloads on change, until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let webhook = self.clone();
            // Loading reads files and compiles Rego: keep it off the request workers.
            if let Err(e) = tokio::task::spawn_blocking(move || webhook.reload()).await {
                tracing::error!(error = %e, "config reload task failed");
            }
        }
    }

    /// A digest of the config file and of the policy files the loaded config names.
    fn fingerprint(&self) -> String {
        let mut material = String::new();
        let mut add = |path: &std::path::Path, limit: u64| {
            let digest = read_file(path, limit)
                .map(|b| sha256_hex(&b))
                .unwrap_or_else(|e| e);
            material.push_str(&digest);
            material.push('\n');
        };
        add(&self.config_path, MAX_CONFIG_BYTES);
        if let Some(loaded) = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            for policy in &loaded.decider.config().policies {
                add(&policy.path, MAX_WATCHED_BYTES);
            }
        }
        sha256_hex(material.as_bytes())
    }
}
