//! The decision cache: what a policy said about an image, by everything that decides it.
//!
//! Keyed by the image's pinned digest, the policy (its digest and the settings around it:
//! trust, binding, evidence source) and the fingerprint of the registry credentials the image
//! was resolved with (so an answer reached with one tenant's pull secret is never served to
//! another) — a new config builds a new cache, so a reload flushes it.
//! Bounded in bytes (oldest evicted first). A passing entry lives for the configured TTL but
//! never past the policy's expiry or the `notAfter` of a certificate checked at the
//! verification time; a failing one for a short TTL; errors are never stored. A passing entry
//! past its TTL may be kept a while longer for stale-if-error, when that is turned on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// What one policy said about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judged {
    /// Passed and bound.
    pub(crate) passed: bool,
    /// Why not, when it failed.
    pub(crate) reason: Option<String>,
    /// The evidence that passed (gitoids or files).
    pub(crate) evidence: Vec<String>,
    /// Key ids of the signers of passing evidence.
    pub(crate) signers: Vec<String>,
    /// Until when it holds (wall clock), if bounded.
    pub(crate) valid_until: Option<OffsetDateTime>,
}

impl Judged {
    fn weight(&self, key: &Key) -> usize {
        const OVERHEAD: usize = 160;
        OVERHEAD
            + key.digest.len()
            + key.policy.len()
            + key.credentials.len()
            + self.reason.as_ref().map_or(0, String::len)
            + self.evidence.iter().map(|e| e.len() + 24).sum::<usize>()
            + self.signers.iter().map(|s| s.len() + 24).sum::<usize>()
    }
}

/// What a decision depends on besides the config generation (which owns the cache).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The image's pinned digest.
    pub(crate) digest: String,
    /// `name@sha256:policy` plus the digest of its settings.
    pub(crate) policy: String,
    /// The fingerprint (a hash) of the registry credentials the image was resolved with.
    pub(crate) credentials: String,
}

#[derive(Debug)]
struct Entry {
    judged: Judged,
    fresh_until: Instant,
    keep_until: Instant,
    weight: usize,
    serial: u64,
}

/// How an answer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Fresh.
    Fresh,
    /// Past its TTL but kept for stale-if-error (passing entries only).
    Stale,
}

/// Bounded cache of [`Judged`] by [`Key`].
#[derive(Debug)]
pub(crate) struct DecisionCache {
    limit: usize,
    ttl: Duration,
    failed_ttl: Duration,
    stale_for: Option<Duration>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    serial: u64,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DecisionCache {
    pub(crate) fn new(
        limit_bytes: u64,
        ttl: Duration,
        failed_ttl: Duration,
        stale_for: Option<Duration>,
    ) -> Self {
        Self {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            ttl,
            failed_ttl,
            stale_for,
            inner: Mutex::default(),
        }
    }

    /// The entry for `key`, fresh, or stale when `allow_stale` and stale-if-error keeps it.
    pub(crate) fn get(&self, key: &Key, allow_stale: bool) -> Option<(Judged, Lookup)> {
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let inner = lock(&self.inner);
        let entry = inner.entries.get(key)?;
        if entry.judged.valid_until.is_some_and(|t| wall > t) {
            return None;
        }
        if now < entry.fresh_until {
            Some((entry.judged.clone(), Lookup::Fresh))
        } else if allow_stale && now < entry.keep_until {
            Some((entry.judged.clone(), Lookup::Stale))
        } else {
            None
        }
    }

    /// Stores `judged` (never an error: callers store answers only).
    pub(crate) fn insert(&self, key: Key, judged: Judged) {
        let now = Instant::now();
        let ttl = if judged.passed {
            self.ttl
        } else {
            self.failed_ttl
        };
        // Never past the verdict's own bound.
        let bound = judged.valid_until.map(|t| {
            let left = t - OffsetDateTime::now_utc();
            Duration::try_from(left).unwrap_or(Duration::ZERO)
        });
        let ttl = bound.map_or(ttl, |b| ttl.min(b));
        if ttl.is_zero() {
            return;
        }
        let keep = match (judged.passed, self.stale_for) {
            (true, Some(stale)) => ttl + stale,
            _ => ttl,
        };
        let weight = judged.weight(&key);
        if weight > self.limit {
            return;
        }
        let mut inner = lock(&self.inner);
        inner.serial += 1;
        let serial = inner.serial;
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.weight;
        }
        inner.bytes += weight;
        inner.order.push_back((key.clone(), serial));
        inner.entries.insert(
            key,
            Entry {
                judged,
                fresh_until: now + ttl,
                keep_until: now + keep,
                weight,
                serial,
            },
        );
        while inner.bytes > self.limit {
            let Some((oldest, serial)) = inner.order.pop_front() else {
                break;
            };
            // Skip queue slots of entries replaced since.
            if inner
                .entries
                .get(&oldest)
                .is_some_and(|e| e.serial == serial)
            {
                if let Some(e) = inner.entries.remove(&oldest) {
                    inner.bytes -= e.weight;
                }
            }
        }
        // Keep the queue from growing without bound on repeated replacement.
        if inner.order.len() > 4 * inner.entries.len() + 64 {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(k, s)| entries.get(k).is_some_and(|e| e.serial == *s));
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        Key {
            digest: format!("sha256:{n:064}"),
            policy: "p@sha256:00".into(),
            credentials: "anonymous".into(),
        }
    }

    fn judged(passed: bool) -> Judged {
        Judged {
            passed,
            reason: (!passed).then(|| "no evidence".to_string()),
            evidence: vec!["gitoid:abc".into()],
            signers: vec!["k".into()],
            valid_until: None,
        }
    }

    #[test]
    fn bounded_in_bytes_oldest_first() {
        let cache =
            DecisionCache::new(2_000, Duration::from_secs(60), Duration::from_secs(5), None);
        for n in 0..100 {
            cache.insert(key(n), judged(true));
        }
        assert!(cache.bytes() <= 2_000, "{}", cache.bytes());
        assert!(cache.get(&key(99), false).is_some());
        assert!(cache.get(&key(0), false).is_none());
    }

    #[test]
    fn an_answer_serves_only_the_credentials_it_was_reached_with() {
        let cache = DecisionCache::new(
            1 << 20,
            Duration::from_secs(60),
            Duration::from_secs(5),
            None,
        );
        cache.insert(key(1), judged(true));
        let mut other_tenant = key(1);
        other_tenant.credentials = "tenant-b".into();
        assert!(cache.get(&other_tenant, true).is_none());
        assert_eq!(cache.get(&key(1), false).map(|x| x.1), Some(Lookup::Fresh));
    }

    #[test]
    fn never_past_the_verdicts_bound() {
        let cache = DecisionCache::new(
            1 << 20,
            Duration::from_secs(600),
            Duration::from_secs(5),
            None,
        );
        let mut expired = judged(true);
        expired.valid_until = Some(OffsetDateTime::now_utc() - time::Duration::seconds(1));
        cache.insert(key(1), expired);
        assert!(cache.get(&key(1), false).is_none());
        let mut soon = judged(true);
        soon.valid_until = Some(OffsetDateTime::now_utc() + time::Duration::milliseconds(50));
        cache.insert(key(2), soon);
        assert!(cache.get(&key(2), false).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get(&key(2), true).is_none());
    }

    #[test]
    fn stale_if_error_keeps_passes_only() {
        let cache = DecisionCache::new(
            1 << 20,
            Duration::from_millis(20),
            Duration::from_millis(20),
            Some(Duration::from_secs(60)),
        );
        cache.insert(key(1), judged(true));
        cache.insert(key(2), judged(false));
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(&key(1), false).is_none());
        assert_eq!(cache.get(&key(1), true).map(|x| x.1), Some(Lookup::Stale));
        assert!(cache.get(&key(2), true).is_none());
    }
}
