//! Reloading the config and the policy files it names when they change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::Webhook;
use crate::config::Config;
use crate::encoding::sha256_hex;
use crate::file::read_file;

/// Largest file hashed for change detection (the loader applies its own caps).
const MAX_WATCHED_BYTES: u64 = 16 * 1024 * 1024;
/// Entries and depth of a watched folder looked at.
const MAX_WATCHED_ENTRIES: usize = 20_000;
const MAX_WATCHED_DEPTH: usize = 16;

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
        if let Some(current) = loaded.as_ref().filter(|l| l.fingerprint == fingerprint) {
            // The files are (back to) what is loaded: a bad version that was reverted is no
            // longer a problem.
            let reverted = self
                .problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .is_some();
            if reverted {
                let config = current.decider.config();
                tracing::info!(
                    config = %self.config_path.display(),
                    "config files are back to the loaded version"
                );
                self.metrics
                    .config_reload(true, &config.digest, &config.policy_digests());
            }
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

    /// A digest of the config file and of every file and folder the loaded config was read
    /// from (policies, keys, certificates, evidence, docker configs, mirrors).
    fn fingerprint(&self) -> String {
        let loaded = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| l.decider.config().clone());
        let watched = loaded.as_ref().map_or(&[][..], |c| c.watched.as_slice());
        fingerprint_of(&self.config_path, watched, &BTreeMap::new())
    }
}

/// What [`Webhook::fingerprint`] gives for the files `config` was loaded from while they stay
/// as they were read. The config and policy files count by the digests of the bytes that were
/// loaded, so a change made while loading is still seen by the next check.
fn loaded_fingerprint(config: &Config) -> String {
    let mut known = BTreeMap::new();
    known.insert(
        config.path.clone(),
        config
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&config.digest)
            .to_string(),
    );
    for policy in &config.policies {
        known.insert(policy.path.clone(), policy.policy.digest.clone());
    }
    fingerprint_of(&config.path, &config.watched, &known)
}

/// The digest of what `config` and `watched` hold now (`known` digests stand in for files whose
/// loaded bytes are known).
fn fingerprint_of(config: &Path, watched: &[PathBuf], known: &BTreeMap<PathBuf, String>) -> String {
    let mut material = String::new();
    for path in std::iter::once(config).chain(watched.iter().map(PathBuf::as_path)) {
        material.push_str(&path.display().to_string());
        material.push('=');
        match known.get(path) {
            Some(digest) => material.push_str(digest),
            None => observe(path, &mut material),
        }
        material.push('\n');
    }
    sha256_hex(material.as_bytes())
}

/// A file by the digest of its content; a folder by the names, sizes and modification times of
/// what it holds (bounded, like the evidence folder reader).
fn observe(path: &Path, out: &mut String) {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = Vec::new();
            list(path, path, 0, &mut entries);
            entries.sort();
            for entry in entries {
                out.push_str(&entry);
                out.push(';');
            }
        }
        Ok(_) => match read_file(path, MAX_WATCHED_BYTES) {
            Ok(bytes) => out.push_str(&sha256_hex(&bytes)),
            Err(e) => out.push_str(&e),
        },
        Err(e) => out.push_str(&e.to_string()),
    }
}

fn list(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_WATCHED_DEPTH || out.len() >= MAX_WATCHED_ENTRIES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        out.push(format!("{}: unreadable", dir.display()));
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_WATCHED_ENTRIES {
            return;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if meta.is_dir() {
            out.push(format!("{name}/"));
            list(root, &path, depth + 1, out);
        } else {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            out.push(format!("{name}:{}:{modified}", meta.len()));
        }
    }
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

    /// A config whose evidence folder is `evidence` (empty) and whose key is a copy in `dir`.
    fn watched_config(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vectors/d03-pass-two-steps-artifactsfrom");
        let evidence = dir.join("evidence");
        std::fs::create_dir(&evidence).unwrap();
        let key = dir.join("policy.pub");
        std::fs::copy(vectors.join("policy-pubkey.pem"), &key).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            format!(
                "policies:\n  - name: p\n    images: [127.0.0.1:5000/x/**]\n    policy: {}\n    \
                 trust: {{publicKeys: [policy.pub]}}\n    evidence: {{directories: [evidence]}}\n",
                vectors.join("policy-signed.json").display()
            ),
        )
        .unwrap();
        (path, evidence, key)
    }

    #[test]
    fn new_evidence_and_a_changed_key_file_are_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (path, evidence, key) = watched_config(dir.path());
        let webhook = Webhook::new(&path, Arc::new(Metrics::new()));
        assert!(webhook.decider().is_some(), "{:?}", webhook.problem());
        assert!(!webhook.reload());

        std::fs::write(evidence.join("new.json"), b"{}").unwrap();
        assert!(webhook.reload(), "a new evidence file is picked up");
        assert!(!webhook.reload());

        let pem = std::fs::read(&key).unwrap();
        std::fs::write(&key, [pem.as_slice(), b"\n"].concat()).unwrap();
        assert!(webhook.reload(), "a changed trust key file is a reload");
    }

    #[test]
    fn reverting_a_bad_version_clears_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = watched_config(dir.path());
        let metrics = Arc::new(Metrics::new());
        let webhook = Webhook::new(&path, metrics.clone());
        assert!(webhook.problem().is_none());
        let good = std::fs::read(&path).unwrap();

        std::fs::write(&path, [good.as_slice(), b"bogus: 1\n"].concat()).unwrap();
        assert!(!webhook.reload());
        assert!(webhook.problem().is_some());
        assert!(metrics
            .encode()
            .contains("attestgate_config_reload_failing 1"));

        std::fs::write(&path, &good).unwrap();
        assert!(!webhook.reload(), "the loaded version is not loaded again");
        assert!(webhook.problem().is_none());
        assert!(metrics
            .encode()
            .contains("attestgate_config_reload_failing 0"));
    }
}
