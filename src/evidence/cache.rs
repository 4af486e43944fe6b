//! The caches of the Archivista source, safe by construction:
//! - envelopes by gitoid, kept until a byte budget evicts the oldest: a gitoid names exact bytes
//!   and only bytes that hashed to their gitoid are stored, so an entry can never go stale;
//! - search answers by everything the query depends on, for a short time (shorter still for an
//!   empty answer, since evidence is often uploaded just after a deployment starts); errors are
//!   never stored; concurrent misses for one key run one search and share its answer.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hash-checked envelopes by gitoid, bounded by their total size (oldest evicted first), with
/// concurrent downloads of one gitoid coalesced.
#[derive(Debug)]
pub(crate) struct EnvelopeCache {
    limit: usize,
    inner: Mutex<Envelopes>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Default)]
struct Envelopes {
    by_gitoid: HashMap<String, Arc<[u8]>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl EnvelopeCache {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::default(),
            flights: Mutex::default(),
        }
    }

    /// The envelope under `gitoid`, or the bytes `fetch` returns (which it must have checked
    /// against `gitoid`). One fetch per gitoid runs at a time; whoever waited for it takes its
    /// bytes from the cache. A failed fetch is not stored.
    pub(crate) async fn get_or_fetch<E, F, Fut>(
        &self,
        gitoid: &str,
        fetch: F,
    ) -> Result<Arc<[u8]>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<[u8]>, E>>,
    {
        if let Some(bytes) = self.get(gitoid) {
            return Ok(bytes);
        }
        let flight = lock(&self.flights)
            .entry(gitoid.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = flight.lock().await;
            match self.get(gitoid) {
                Some(bytes) => Ok(bytes),
                None => {
                    let fetched = fetch().await;
                    if let Ok(bytes) = &fetched {
                        self.insert(gitoid, bytes.clone());
                    }
                    fetched
                }
            }
        };
        // The last one out removes the flight (the map holds one reference, this call one).
        let mut flights = lock(&self.flights);
        if flights
            .get(gitoid)
            .is_some_and(|f| Arc::ptr_eq(f, &flight) && Arc::strong_count(&flight) <= 2)
        {
            flights.remove(gitoid);
        }
        result
    }

    pub(crate) fn get(&self, gitoid: &str) -> Option<Arc<[u8]>> {
        lock(&self.inner).by_gitoid.get(gitoid).cloned()
    }

    /// Stores bytes the caller has checked against `gitoid`. Envelopes larger than the whole
    /// budget are not stored.
    pub(crate) fn insert(&self, gitoid: &str, bytes: Arc<[u8]>) {
        if bytes.len() > self.limit {
            return;
        }
        let mut inner = lock(&self.inner);
        if inner.by_gitoid.contains_key(gitoid) {
            return;
        }
        while inner.bytes + bytes.len() > self.limit {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.by_gitoid.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
        inner.bytes += bytes.len();
        inner.order.push_back(gitoid.to_string());
        inner.by_gitoid.insert(gitoid.to_string(), bytes);
    }
}

/// One key's cached answer; its async lock is held while the answer is being fetched, which is
/// what coalesces concurrent misses.
#[derive(Debug)]
struct Slot<V> {
    value: tokio::sync::Mutex<Option<(Arc<V>, Instant)>>,
}

impl<V> Slot<V> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            value: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether the slot can be dropped from the map: nobody is using it and it holds nothing
    /// fresh.
    fn is_idle_and_stale(self: &Arc<Self>, now: Instant) -> bool {
        if Arc::strong_count(self) > 1 {
            return false;
        }
        match self.value.try_lock() {
            Ok(guard) => guard.as_ref().is_none_or(|(_, expires)| *expires <= now),
            Err(_) => false,
        }
    }
}

/// Answers by key for a time that depends on the answer, with concurrent misses coalesced.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    max_entries: usize,
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K: Hash + Eq + Clone, V> TtlCache<K, V> {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            slots: Mutex::default(),
        }
    }

    fn slot(&self, key: &K) -> Arc<Slot<V>> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        if slots.len() >= self.max_entries {
            let now = Instant::now();
            slots.retain(|_, slot| !slot.is_idle_and_stale(now));
        }
        let slot = Slot::new();
        // When every entry is fresh or in use, this search is served without being stored.
        if slots.len() < self.max_entries {
            slots.insert(key.clone(), slot.clone());
        }
        slot
    }

    /// The fresh answer for `key`, or the one `fetch` produces, stored for `ttl(answer)`.
    /// Errors are returned to every waiter that asked for them and never stored: the next
    /// caller fetches again.
    pub(crate) async fn get_or_try<E, F, Fut>(
        &self,
        key: &K,
        ttl: impl Fn(&V) -> Duration,
        fetch: F,
    ) -> Result<Arc<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.value.lock().await;
        if let Some((value, expires)) = guard.as_ref() {
            if Instant::now() < *expires {
                return Ok(value.clone());
            }
        }
        *guard = None;
        let value = Arc::new(fetch().await?);
        let lifetime = ttl(&value);
        if !lifetime.is_zero() {
            if let Some(expires) = Instant::now().checked_add(lifetime) {
                *guard = Some((value.clone(), expires));
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn envelopes_are_bounded_by_bytes_oldest_first() {
        let cache = EnvelopeCache::new(10);
        cache.insert("a", Arc::from(vec![0u8; 4]));
        cache.insert("b", Arc::from(vec![0u8; 4]));
        assert!(cache.get("a").is_some());
        cache.insert("c", Arc::from(vec![0u8; 4]));
        assert!(cache.get("a").is_none(), "oldest evicted");
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        cache.insert("huge", Arc::from(vec![0u8; 11]));
        assert!(cache.get("huge").is_none() && cache.get("c").is_some());
    }

    #[tokio::test]
    async fn answers_expire_errors_are_not_stored_and_misses_coalesce() {
        let cache: TtlCache<&str, usize> = TtlCache::new(4);
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, ()>(7)
        };
        let ttl = |_: &usize| Duration::from_millis(100);
        let answers =
            futures_util::future::join_all((0..10).map(|_| cache.get_or_try(&"k", ttl, fetch)))
                .await;
        assert!(answers.iter().all(|a| **a.as_ref().unwrap() == 7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache.get_or_try(&"k", ttl, fetch).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "expired");

        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<usize, _>("down")
        };
        assert!(cache.get_or_try(&"e", ttl, failing).await.is_err());
        assert!(cache.get_or_try(&"e", ttl, failing).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4, "errors are not stored");

        for key in ["w", "x", "y", "z"] {
            cache.get_or_try(&key, ttl, fetch).await.unwrap();
        }
        assert!(lock(&cache.slots).len() <= 4);
    }
}
