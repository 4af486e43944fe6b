//! One provider's cache of plugin answers, keyed the way the plugin asked (`cacheKeyType`):
//! per image (repository), per registry, or for every image. A lookup tries the image key,
//! then the registry key, then the global key, as the kubelet does.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::response::CacheKeyType;
use crate::image::credentials::DockerConfig;
use crate::image::ImageReference;

/// Entries kept per provider before expired ones are dropped (and, if that is not enough, all).
const MAX_ENTRIES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CacheKey {
    Image(String),
    Registry(String),
    Global,
}

/// Plugin answers with their expiry.
#[derive(Debug, Default)]
pub(super) struct Cache {
    entries: HashMap<CacheKey, (Instant, DockerConfig)>,
}

impl Cache {
    /// The answer that covers `image` and is unexpired at `now`, if any.
    pub(super) fn get(&mut self, image: &ImageReference, now: Instant) -> Option<DockerConfig> {
        let keys = [
            CacheKey::Image(image.name()),
            CacheKey::Registry(image.registry().to_string()),
            CacheKey::Global,
        ];
        for key in keys {
            match self.entries.get(&key) {
                Some((expires, config)) if *expires > now => return Some(config.clone()),
                Some(_) => {
                    self.entries.remove(&key);
                }
                None => {}
            }
        }
        None
    }

    /// Keeps `config` from `now` for `ttl` under the key `key_type` derives from `image`.
    pub(super) fn insert(
        &mut self,
        key_type: CacheKeyType,
        image: &ImageReference,
        config: DockerConfig,
        now: Instant,
        ttl: Duration,
    ) {
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (expiry, _)| *expiry > now);
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.clear();
            }
        }
        let key = match key_type {
            CacheKeyType::Image => CacheKey::Image(image.name()),
            CacheKeyType::Registry => CacheKey::Registry(image.registry().to_string()),
            CacheKeyType::Global => CacheKey::Global,
        };
        self.entries.insert(key, (expires, config));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text: &str) -> ImageReference {
        ImageReference::parse(text).unwrap()
    }

    fn config(user: &str) -> DockerConfig {
        let json = format!(r#"{{"auths": {{"example.com": {{"username": "{user}"}}}}}}"#);
        DockerConfig::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn keys_cover_image_registry_or_everything_until_expiry() {
        let mut cache = Cache::default();
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        let at = |hours: u64| start + hour * u32::try_from(hours).unwrap() + Duration::from_secs(1);

        cache.insert(
            CacheKeyType::Image,
            &image("example.com/a:1"),
            config("a"),
            start,
            hour,
        );
        assert_eq!(
            cache.get(&image("example.com/a:2"), start),
            Some(config("a"))
        );
        assert_eq!(cache.get(&image("example.com/b"), start), None);

        let registry = image("example.com/b");
        cache.insert(
            CacheKeyType::Registry,
            &registry,
            config("r"),
            start,
            2 * hour,
        );
        assert_eq!(cache.get(&image("example.com/a"), start), Some(config("a")));
        assert_eq!(cache.get(&image("example.com/c"), start), Some(config("r")));
        assert_eq!(cache.get(&image("other.com/c"), start), None);

        cache.insert(
            CacheKeyType::Global,
            &image("x.com/y"),
            config("g"),
            start,
            3 * hour,
        );
        assert_eq!(cache.get(&image("other.com/c"), start), Some(config("g")));

        assert_eq!(cache.get(&image("example.com/a"), at(1)), Some(config("r")));
        assert_eq!(cache.get(&image("example.com/a"), at(2)), Some(config("g")));
        assert_eq!(cache.get(&image("example.com/a"), at(3)), None);
    }

    #[test]
    fn stays_bounded() {
        let mut cache = Cache::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            let reference = image(&format!("example.com/app{i}"));
            let ttl = Duration::from_secs(60);
            cache.insert(CacheKeyType::Image, &reference, config("u"), now, ttl);
        }
        assert!(cache.entries.len() <= MAX_ENTRIES);
    }
}
