//! The caches inside a [`Registry`](super::Registry), safe by construction:
//!
//! - **content** (manifests, indexes and configs fetched by digest) is kept only after its size
//!   cap and hash check passed, without a TTL (the digest names the bytes for ever), in a
//!   least-recently-used store bounded by total bytes;
//! - **resolved images** (the parsed result of a whole resolution), in the same store and under
//!   the same byte bound, charged an estimate of their size in memory, until the tag answer
//!   they were resolved through expires (for a reference by digest: the tag TTL). A warm review
//!   then reads neither bytes nor JSON; a tag moved meanwhile is seen no later than without it;
//! - **answers**: a tag's digest, kept for a short TTL (a tag moves), and "not found", kept
//!   for a shorter one (CI often asks before its push finishes). Nothing else is ever kept:
//!   not unauthorized (credentials get fixed), and no transient failure (429, 5xx,
//!   unreachable, TLS, timeout);
//! - **flights**: concurrent misses for one key wait for the one request in flight and then
//!   read what it left in the cache, so N resolutions of one new image make one set of
//!   requests. After a failure that was not cached, each waiter asks again itself (still within
//!   its own deadline), so a transient failure is never handed on as if it were an answer.
//!
//! Every key holds the registry, the repository and the credentials' fingerprint (a hash,
//! never the secret): what one tenant's credentials obtained is never served to another.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::errors::OciDistributionError;
use tokio::time::Instant;

use super::{lock, RegistryConfig, RegistryError};
use crate::image::{Digest, NestedIndex, PlatformImage, ResolvedImage};

/// Answers (tag digests and "not found") kept before expired ones are swept out; if all are
/// still live, the whole map is emptied.
const MAX_ANSWERS: usize = 16_384;

/// What a cached item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Kind {
    /// A tag → digest answer.
    Tag,
    /// A manifest or index, by digest.
    Manifest,
    /// A config blob, by digest.
    Config,
    /// A resolved image, by the reference as written.
    Resolved,
}

/// A cache key: everything that decides what a registry answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Key {
    registry: String,
    repository: String,
    /// The credentials' fingerprint (a SHA-256 of them), never the credentials.
    identity: String,
    kind: Kind,
    /// The tag or the digest.
    name: String,
}

impl Key {
    pub(super) fn new(
        registry: &str,
        repository: &str,
        identity: &str,
        kind: Kind,
        name: &str,
    ) -> Self {
        Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            identity: identity.to_string(),
            kind,
            name: name.to_string(),
        }
    }

    /// Bytes charged to the content cache for the key itself.
    fn weight(&self) -> u64 {
        (self.registry.len() + self.repository.len() + self.identity.len() + self.name.len()) as u64
    }
}

/// A short-lived answer.
#[derive(Debug, Clone)]
enum Answer {
    Digest(Digest),
    NotFound { registry: String, what: String },
}

/// What the answer cache says about a key.
pub(super) enum Cached<T> {
    /// Nothing (or nothing live) is kept.
    Miss,
    /// A live answer.
    Hit(Result<T, RegistryError>),
}

/// The caches of one [`Registry`](super::Registry).
pub(super) struct Caches {
    content_limit: u64,
    tag_ttl: Duration,
    negative_ttl: Duration,
    content: Mutex<ContentCache>,
    answers: Mutex<HashMap<Key, (Instant, Answer)>>,
    flights: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl Caches {
    pub(super) fn new(config: &RegistryConfig) -> Self {
        Self {
            content_limit: config.content_cache_bytes,
            tag_ttl: config.tag_cache_ttl,
            negative_ttl: config.negative_cache_ttl,
            content: Mutex::new(ContentCache::new(config.content_cache_bytes)),
            answers: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Verified bytes kept for `key`.
    pub(super) fn content(&self, key: &Key) -> Option<Arc<[u8]>> {
        match lock(&self.content).get(key)? {
            Stored::Bytes(body) => Some(body),
            Stored::Resolved { .. } => None,
        }
    }

    /// Keeps `body`, which passed its size cap and its hash check against the digest in `key`.
    pub(super) fn keep_content(&self, key: Key, body: Arc<[u8]>) {
        lock(&self.content).insert(key, Stored::Bytes(body));
    }

    /// The resolved image kept for `key`, while it is live.
    pub(super) fn resolved(&self, key: &Key) -> Option<ResolvedImage> {
        let mut content = lock(&self.content);
        match content.get(key)? {
            Stored::Resolved { image, expires } if expires > Instant::now() => {
                Some(ResolvedImage::clone(&image))
            }
            Stored::Resolved { .. } => {
                content.remove(key);
                None
            }
            Stored::Bytes(_) => None,
        }
    }

    /// Keeps `image` until `expires` (nothing is kept for a moment already past).
    pub(super) fn keep_resolved(&self, key: Key, image: &ResolvedImage, expires: Instant) {
        if expires <= Instant::now() {
            return;
        }
        let mut content = lock(&self.content);
        // A stale entry for the key would make the insertion a no-op.
        content.remove(&key);
        let image = Arc::new(image.clone());
        content.insert(key, Stored::Resolved { image, expires });
    }

    /// When the live tag answer kept for `key` expires, if it is `digest` (`None`: no live
    /// answer, or one for another digest: the tag moved while this resolution ran).
    pub(super) fn digest_expiry(&self, key: &Key, digest: &Digest) -> Option<Instant> {
        match lock(&self.answers).get(key) {
            Some((expires, Answer::Digest(kept)))
                if *expires > Instant::now() && kept == digest =>
            {
                Some(*expires)
            }
            _ => None,
        }
    }

    /// The live tag digest or "not found" kept for `key`.
    pub(super) fn answer(&self, key: &Key) -> Cached<Digest> {
        let mut answers = lock(&self.answers);
        match answers.get(key) {
            Some((expires, _)) if *expires <= Instant::now() => {
                answers.remove(key);
                Cached::Miss
            }
            Some((_, Answer::Digest(digest))) => Cached::Hit(Ok(digest.clone())),
            Some((_, Answer::NotFound { registry, what })) => {
                Cached::Hit(Err(RegistryError::NotFound {
                    registry: registry.clone(),
                    what: what.clone(),
                    source: OciDistributionError::IoError(std::io::Error::other(
                        "not found (a recent answer of the registry, kept briefly)",
                    )),
                }))
            }
            None => Cached::Miss,
        }
    }

    /// Keeps a tag's digest for the tag TTL.
    pub(super) fn keep_digest(&self, key: &Key, digest: &Digest) {
        self.keep(key, self.tag_ttl, Answer::Digest(digest.clone()));
    }

    /// Keeps a failure for the negative TTL if it is "not found"; any other failure is never
    /// kept.
    pub(super) fn keep_failure(&self, key: &Key, err: &RegistryError) {
        if let RegistryError::NotFound { registry, what, .. } = err {
            let answer = Answer::NotFound {
                registry: registry.clone(),
                what: what.clone(),
            };
            self.keep(key, self.negative_ttl, answer);
        }
    }

    fn keep(&self, key: &Key, ttl: Duration, answer: Answer) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut answers = lock(&self.answers);
        if answers.len() >= MAX_ANSWERS {
            answers.retain(|_, (expires, _)| *expires > now);
            if answers.len() >= MAX_ANSWERS {
                answers.clear();
            }
        }
        answers.insert(key.clone(), (now + ttl, answer));
    }

    /// Runs `miss` for `key` unless a request for the same key is in flight; then waits for it
    /// (until `deadline`) and calls `miss` after it, which finds in the cache what the first
    /// one kept. `timeout` is the error for a wait that reaches the deadline.
    pub(super) async fn coalesce<T, Fut>(
        &self,
        key: &Key,
        deadline: Instant,
        timeout: impl FnOnce() -> RegistryError,
        miss: impl FnOnce() -> Fut,
    ) -> Result<T, RegistryError>
    where
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        // Nothing would be kept for a waiter to find: no point in waiting.
        let caching = match key.kind {
            Kind::Tag => !self.tag_ttl.is_zero(),
            Kind::Manifest | Kind::Config | Kind::Resolved => self.content_limit > 0,
        };
        if !caching {
            return miss().await;
        }
        let gate = lock(&self.flights)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let result = match tokio::time::timeout_at(deadline, gate.lock()).await {
            Ok(_guard) => miss().await,
            Err(_) => Err(timeout()),
        };
        let mut flights = lock(&self.flights);
        // Two strong references left (the map's and this one): nobody else waits.
        if Arc::strong_count(&gate) <= 2 {
            flights.remove(key);
        }
        result
    }

    #[cfg(test)]
    fn flights_len(&self) -> usize {
        lock(&self.flights).len()
    }
}

/// What the content store holds for a key.
#[derive(Clone)]
enum Stored {
    /// Verified bytes of a manifest, index or config.
    Bytes(Arc<[u8]>),
    /// A resolved image, live until `expires`.
    Resolved {
        image: Arc<ResolvedImage>,
        expires: Instant,
    },
}

impl Stored {
    /// Bytes charged to the cache: a body's length, or an estimate of what a resolved image
    /// holds in memory (see [`resolved_weight`]).
    fn weight(&self) -> u64 {
        match self {
            Self::Bytes(body) => body.len() as u64,
            Self::Resolved { image, .. } => resolved_weight(image),
        }
    }
}

/// What one heap allocation (a string, a map node, a vector) is charged besides its bytes.
const ALLOCATION: u64 = 32;

/// An estimate, on the high side, of the memory a resolved image holds: every struct, every
/// string's bytes, and [`ALLOCATION`] for each allocation behind them.
fn resolved_weight(image: &ResolvedImage) -> u64 {
    fn size<T>() -> u64 {
        std::mem::size_of::<T>() as u64
    }
    let text = |s: &str| s.len() as u64 + ALLOCATION;
    let digest = |d: &Digest| text(d.algorithm()) + text(d.hex()) + size::<Digest>();
    let map = |m: &BTreeMap<String, String>| -> u64 {
        m.iter()
            .map(|(k, v)| text(k) + text(v) + 2 * size::<String>())
            .sum::<u64>()
            + ALLOCATION
    };
    let nested = |n: &NestedIndex| {
        digest(&n.digest) + map(&n.annotations) + map(&n.entry_annotations) + size::<NestedIndex>()
    };
    let platform = |p: &PlatformImage| {
        p.platform.as_deref().map_or(0, text)
            + digest(&p.manifest_digest)
            + digest(&p.config_digest)
            + map(&p.labels)
            + map(&p.manifest_annotations)
            + map(&p.index_entry_annotations)
            + p.nested_in.iter().map(nested).sum::<u64>()
            + ALLOCATION
            + size::<PlatformImage>()
    };
    size::<ResolvedImage>()
        + 4 * text(&image.reference.to_string())
        + digest(&image.digest)
        + text(&image.media_type)
        + map(&image.index_annotations)
        + image.images.iter().map(platform).sum::<u64>()
        + image.skipped_attestations.iter().map(digest).sum::<u64>()
        + 2 * ALLOCATION
}

/// Verified bytes and resolved images by key, least recently used first out, bounded by total
/// bytes.
struct ContentCache {
    limit: u64,
    used: u64,
    tick: u64,
    entries: HashMap<Key, (Stored, u64)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Key>,
}

impl ContentCache {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &Key) -> Option<Stored> {
        self.tick += 1;
        let tick = self.tick;
        let (body, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.clone());
        Some(body.clone())
    }

    fn insert(&mut self, key: Key, body: Stored) {
        let weight = body.weight() + key.weight();
        if weight > self.limit || self.entries.contains_key(&key) {
            return;
        }
        while self.used + weight > self.limit {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.used -= old.weight() + oldest.weight();
            }
        }
        self.tick += 1;
        self.used += weight;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (body, self.tick));
    }

    fn remove(&mut self, key: &Key) {
        if let Some((old, used)) = self.entries.remove(key) {
            self.order.remove(&used);
            self.used -= old.weight() + key.weight();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn key(name: &str) -> Key {
        Key::new("r", "repo", "id", Kind::Manifest, name)
    }

    fn body(len: usize) -> Stored {
        Stored::Bytes(vec![0u8; len].into())
    }

    #[test]
    fn content_is_bounded_by_bytes_and_evicts_the_least_recently_used() {
        // Each entry weighs its body plus its key (r + repo + id + name: 8 for a one-letter name).
        let mut cache = ContentCache::new(330);
        cache.insert(key("a"), body(100));
        cache.insert(key("b"), body(100));
        cache.insert(key("c"), body(100));
        assert_eq!(cache.used, 324);
        // Using "a" makes "b" the oldest.
        assert!(cache.get(&key("a")).is_some());
        cache.insert(key("d"), body(100));
        assert!(cache.get(&key("b")).is_none());
        for name in ["a", "c", "d"] {
            assert!(cache.get(&key(name)).is_some(), "{name}");
        }
        assert!(cache.used <= cache.limit);
        // A body larger than the whole cache is not kept and evicts nothing.
        cache.insert(key("huge"), body(1000));
        assert!(cache.get(&key("huge")).is_none());
        assert_eq!(cache.entries.len(), 3);
        // One entry may push out several.
        cache.insert(key("big"), body(250));
        assert!(cache.get(&key("big")).is_some());
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.used, 260);
        // A zero limit keeps nothing.
        let mut off = ContentCache::new(0);
        off.insert(key("a"), body(1));
        assert!(off.get(&key("a")).is_none());
    }

    #[test]
    fn keys_tell_registries_repositories_and_credentials_apart() {
        let mut cache = ContentCache::new(1 << 20);
        cache.insert(Key::new("r", "repo", "alice", Kind::Manifest, "d"), body(1));
        assert!(cache
            .get(&Key::new("r", "repo", "alice", Kind::Manifest, "d"))
            .is_some());
        for other in [
            Key::new("r", "repo", "bob", Kind::Manifest, "d"),
            Key::new("r2", "repo", "alice", Kind::Manifest, "d"),
            Key::new("r", "repo2", "alice", Kind::Manifest, "d"),
            Key::new("r", "repo", "alice", Kind::Config, "d"),
        ] {
            assert!(cache.get(&other).is_none(), "{other:?}");
        }
    }

    fn caches(tag_ttl: Duration, negative_ttl: Duration) -> Caches {
        Caches::new(&RegistryConfig {
            tag_cache_ttl: tag_ttl,
            negative_cache_ttl: negative_ttl,
            ..RegistryConfig::default()
        })
    }

    fn not_found() -> RegistryError {
        RegistryError::NotFound {
            registry: "r".into(),
            what: "tag repo:v1".into(),
            source: OciDistributionError::ServerError {
                code: 404,
                url: "u".into(),
                message: String::new(),
            },
        }
    }

    #[test]
    fn answers_expire_and_only_not_found_failures_are_kept() {
        let caches = caches(Duration::from_millis(300), Duration::from_millis(100));
        let digest = Digest::sha256_of(b"m");
        let tag = Key::new("r", "repo", "id", Kind::Tag, "v1");
        caches.keep_digest(&tag, &digest);
        assert!(matches!(caches.answer(&tag), Cached::Hit(Ok(d)) if d == digest));
        std::thread::sleep(Duration::from_millis(350));
        assert!(matches!(caches.answer(&tag), Cached::Miss));

        let missing = Key::new("r", "repo", "id", Kind::Tag, "v2");
        caches.keep_failure(&missing, &not_found());
        assert!(matches!(
            caches.answer(&missing),
            Cached::Hit(Err(RegistryError::NotFound { .. }))
        ));
        std::thread::sleep(Duration::from_millis(150));
        assert!(matches!(caches.answer(&missing), Cached::Miss));

        let transient = RegistryError::Timeout {
            registry: "r".into(),
            what: "w".into(),
            waited: Duration::from_secs(1),
        };
        let unauthorized = RegistryError::Unauthorized {
            registry: "r".into(),
            what: "w".into(),
            source: OciDistributionError::UnauthorizedError { url: "u".into() },
        };
        for err in [transient, unauthorized] {
            caches.keep_failure(&missing, &err);
            assert!(matches!(caches.answer(&missing), Cached::Miss));
        }

        // A zero TTL keeps nothing.
        let off = caches_off();
        off.keep_digest(&tag, &digest);
        off.keep_failure(&missing, &not_found());
        assert!(matches!(off.answer(&tag), Cached::Miss));
        assert!(matches!(off.answer(&missing), Cached::Miss));
    }

    fn resolved_image() -> ResolvedImage {
        let digest = Digest::sha256_of(b"index");
        let platform = |name: &str| PlatformImage {
            platform: Some(name.into()),
            manifest_digest: Digest::sha256_of(name.as_bytes()),
            config_digest: Digest::sha256_of(b"config"),
            labels: BTreeMap::from([("org.opencontainers.image.revision".into(), "a".repeat(40))]),
            manifest_annotations: BTreeMap::new(),
            index_entry_annotations: BTreeMap::new(),
            nested_in: Vec::new(),
        };
        ResolvedImage {
            reference: crate::image::ImageReference::parse("r:5000/repo:v1").unwrap(),
            digest,
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            index_annotations: BTreeMap::new(),
            images: vec![platform("linux/amd64"), platform("linux/arm64")],
            skipped_attestations: Vec::new(),
        }
    }

    #[test]
    fn resolved_images_are_charged_to_the_byte_bound_and_expire() {
        let caches = caches(Duration::from_secs(30), Duration::from_secs(5));
        let image = resolved_image();
        let key = Key::new("r:5000", "repo", "id", Kind::Resolved, "r:5000/repo:v1");
        caches.keep_resolved(
            key.clone(),
            &image,
            Instant::now() + Duration::from_millis(200),
        );
        assert_eq!(caches.resolved(&key), Some(image.clone()));
        // Not served as bytes.
        assert!(caches.content(&key).is_none());
        // Charged more than the strings it holds (two platforms, digests, labels, reference).
        let charged = lock(&caches.content).used;
        assert_eq!(charged, resolved_weight(&image) + key.weight());
        assert!(charged > 1000, "{charged}");

        // Once expired it is dropped, and its weight with it.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(caches.resolved(&key), None);
        assert_eq!(lock(&caches.content).used, 0);

        // Kept again over an entry for the same key, the old weight is not left behind.
        let later = Instant::now() + Duration::from_secs(10);
        caches.keep_resolved(key.clone(), &image, later);
        caches.keep_resolved(key.clone(), &image, later);
        assert_eq!(lock(&caches.content).used, charged);

        // A moment already past keeps nothing, nor does a bound smaller than the image.
        let other = Key::new("r:5000", "repo", "id", Kind::Resolved, "r:5000/repo:v2");
        caches.keep_resolved(other.clone(), &image, Instant::now());
        assert_eq!(caches.resolved(&other), None);
        let small = Caches::new(&RegistryConfig {
            content_cache_bytes: charged - 1,
            ..RegistryConfig::default()
        });
        small.keep_resolved(key.clone(), &image, later);
        assert_eq!(small.resolved(&key), None);
    }

    #[test]
    fn a_resolution_is_kept_only_under_the_live_answer_for_its_digest() {
        let caches = caches(Duration::from_secs(30), Duration::from_secs(5));
        let tag = Key::new("r", "repo", "id", Kind::Tag, "v1");
        let (old, new) = (Digest::sha256_of(b"old"), Digest::sha256_of(b"new"));
        assert_eq!(caches.digest_expiry(&tag, &old), None);
        caches.keep_digest(&tag, &new);
        assert!(caches.digest_expiry(&tag, &new).is_some());
        // The tag moved while a resolution of the old digest ran.
        assert_eq!(caches.digest_expiry(&tag, &old), None);
    }

    fn caches_off() -> Caches {
        caches(Duration::ZERO, Duration::ZERO)
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_key_run_one_at_a_time_and_leave_no_gate() {
        let caches = caches(Duration::from_secs(30), Duration::from_secs(5));
        let key = key("k");
        let upstream = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let one = || {
            caches.coalesce(&key, deadline, not_found, || async {
                if let Some(hit) = caches.content(&key) {
                    return Ok(hit.len());
                }
                upstream.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                caches.keep_content(key.clone(), vec![0u8; 7].into());
                Ok(7)
            })
        };
        let results = futures_util::future::join_all((0..20).map(|_| one())).await;
        assert!(results.iter().all(|r| matches!(r, Ok(7))));
        assert_eq!(upstream.load(Ordering::SeqCst), 1);
        assert_eq!(caches.flights_len(), 0);
    }
}
