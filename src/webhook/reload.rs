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
                // The fingerprint of what was read now: the one taken before loading covered
                // the previous config's policy files, and would make the next check reload the
                // same files again (flushing the decision cache and its background results).
                let fingerprint = loaded_fingerprint(&config);
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

/// What [`Webhook::fingerprint`] gives for the files `config` was loaded from while they stay
/// as they were read: it is computed from the digests of the bytes that were loaded, so a change
/// made after the load is still seen by the next check.
fn loaded_fingerprint(config: &Config) -> String {
    let mut material = String::new();
    let config_digest = config
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&config.digest);
    for digest in std::iter::once(config_digest)
        .chain(config.policies.iter().map(|p| p.policy.digest.as_str()))
    {
        material.push_str(digest);
        material.push('\n');
    }
    sha256_hex(material.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Metrics;
    use std::path::Path;

    #[test]
    fn a_loaded_config_is_not_loaded_again_until_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webhook");
        let text = std::fs::read_to_string(example.join("config.yaml"))
            .unwrap()
            .replace(
                "../../tests/",
                &format!("{}/../../tests/", example.display()),
            );
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, &text).unwrap();

        let webhook = Webhook::new(&path, Arc::new(Metrics::new()));
        assert!(webhook.decider().is_some(), "{:?}", webhook.problem());
        assert!(!webhook.reload(), "nothing changed since the first load");

        std::fs::write(&path, format!("{text}\n# changed\n")).unwrap();
        assert!(webhook.reload(), "the config changed");
        assert!(!webhook.reload(), "nothing changed since the reload");
    }
}
