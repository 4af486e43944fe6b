//! One resolution: tag to digest, the pinned manifest or index, and every runnable platform
//! image under it with its config.
//!
//! Manifests, indexes and configs (and a tag's manifest, when its `HEAD` names no digest) are
//! refused by their declared size, then streamed and refused as soon as they pass the cap,
//! whatever auth the registry asks for (every request is made by `endpoint.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::{try_join_all, BoxFuture};
use futures_util::FutureExt as _;
use oci_client::Reference;

use super::cache::{Cached, Caches, Key, Kind};
use super::endpoint::Failure;
use super::error::classify;
use super::manifest::{self, Config, Descriptor, Index, Manifest, Parsed};
use super::request::Rules;
use super::{RegistryError, Route};
use crate::image::mirrors::Capabilities;
use crate::image::{Digest, ImageReference, NestedIndex, PlatformImage, ResolvedImage};

/// The state of one resolution.
pub(super) struct Session<'a> {
    pub(super) rules: Rules<'a>,
    /// The registry's endpoints, in the order to try them (mirrors, then the server).
    pub(super) routes: &'a [Route],
    /// The registry's caches.
    pub(super) caches: &'a Caches,
    /// The credentials' fingerprint, part of every cache key.
    pub(super) identity: String,
    pub(super) reference: &'a ImageReference,
    /// Index entries met so far, over every level.
    pub(super) entries: AtomicUsize,
}

/// Platform images found under an index, and the entries skipped as unrunnable.
#[derive(Default)]
struct Judged {
    images: Vec<PlatformImage>,
    skipped: Vec<Digest>,
}

impl Session<'_> {
    pub(super) async fn resolve(&self) -> Result<ResolvedImage, RegistryError> {
        let digest = match self.reference.digest() {
            Some(digest) => digest.clone(),
            None => self.tag_digest().await?,
        };

        let (media_type, index_annotations, judged) = match self.fetch_manifest(&digest).await? {
            Parsed::Manifest(manifest) => {
                let media_type = manifest.media_type.clone();
                let image = self
                    .platform_image(&digest, manifest, None, Vec::new())
                    .await?;
                let judged = Judged {
                    images: vec![image],
                    skipped: Vec::new(),
                };
                (media_type, BTreeMap::new(), judged)
            }
            Parsed::Index(index) => {
                let (media_type, annotations) =
                    (index.media_type.clone(), index.annotations.clone());
                let judged = self.judge_index(&digest, index, 1, Vec::new()).await?;
                (media_type, annotations, judged)
            }
        };

        // An index with nothing runnable would leave nothing to judge, and "every platform
        // passed" would then hold for an image nobody looked at.
        if judged.images.is_empty() {
            return Err(RegistryError::Malformed {
                what: self.manifest_what(&digest),
                problem: "it lists no platform image a runtime could run".into(),
                source: None,
            });
        }
        tracing::debug!(
            image = %self.reference,
            %digest,
            platforms = judged.images.len(),
            skipped = judged.skipped.len(),
            "image resolved"
        );
        Ok(ResolvedImage {
            reference: self.reference.clone(),
            digest,
            media_type,
            index_annotations,
            images: judged.images,
            skipped_attestations: judged.skipped,
        })
    }

    /// The digest the tag (or `latest`) points at now, or at most the tag TTL ago.
    async fn tag_digest(&self) -> Result<Digest, RegistryError> {
        let tag = self.reference.tag().unwrap_or("latest");
        let what = format!("tag {}:{tag}", self.reference.name());
        let key = self.key(Kind::Tag, tag);
        if let Cached::Hit(hit) = self.caches.answer(&key) {
            return hit;
        }
        let timeout = || self.rules.timeout(&what, None);
        self.caches
            .coalesce(&key, self.rules.deadline, timeout, || async {
                if let Cached::Hit(hit) = self.caches.answer(&key) {
                    return hit;
                }
                let result = self.tag_digest_upstream(tag, &what).await;
                match &result {
                    Ok(digest) => self.caches.keep_digest(&key, digest),
                    Err(err) => self.caches.keep_failure(&key, err),
                }
                result
            })
            .await
    }

    /// Asks the registry for the digest of `tag`.
    async fn tag_digest_upstream(&self, tag: &str, what: &str) -> Result<Digest, RegistryError> {
        let what = what.to_string();
        // Without a digest header the tag's manifest is read (and hashed), capped as any.
        let limit = self.rules.config.max_manifest_bytes;
        let target = Reference::with_tag(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            tag.to_string(),
        );
        let digest = self
            .across(
                &what,
                |c| c.resolve,
                |route| {
                    let target = route.target(target.clone());
                    let what = &what;
                    async move {
                        self.rules
                            .run(what, || async {
                                route
                                    .client
                                    .manifest_digest(&target, &route.auth, limit)
                                    .await
                                    .map_err(|f| self.failed(route, what, limit, f))
                            })
                            .await
                    }
                },
            )
            .await?;
        Digest::parse(&digest).ok_or_else(|| RegistryError::Malformed {
            what,
            problem: format!("the registry named digest {digest:?}, which is not valid"),
            source: None,
        })
    }

    /// A manifest or index by digest: size-capped, hash-checked, parsed.
    async fn fetch_manifest(&self, digest: &Digest) -> Result<Parsed, RegistryError> {
        let what = self.manifest_what(digest);
        let target = self.pinned(digest);
        // A `Docker-Content-Digest` naming other content is refused while reading; the check
        // below does not depend on that.
        let limit = self.rules.config.max_manifest_bytes;
        let body = self
            .content(Kind::Manifest, digest, &what, || async {
                let body = self
                    .across(
                        &what,
                        |c| c.pull,
                        |route| {
                            let target = route.target(target.clone());
                            let what = &what;
                            async move {
                                self.rules
                                    .run(what, || async {
                                        let read = route
                                            .client
                                            .manifest(&target, &route.auth, limit)
                                            .await;
                                        read.map_err(|f| self.failed(route, what, limit, f))
                                    })
                                    .await
                            }
                        },
                    )
                    .await?;
                check_digest(&what, digest, &body)?;
                Ok(body)
            })
            .await?;
        manifest::parse(&what, &body)
    }

    /// A config blob: refused by its declared size, streamed with the cap, hash-checked, parsed.
    async fn fetch_config(&self, descriptor: &Descriptor) -> Result<Config, RegistryError> {
        let digest = &descriptor.digest;
        let what = format!("config blob {digest} of {}", self.reference.name());
        let limit = self.rules.config.max_config_bytes;
        if descriptor.size > limit {
            return Err(RegistryError::TooLarge { what, limit });
        }
        let target = self.pinned(digest);
        // Asked for by digest alone: a descriptor's `urls` would send the request elsewhere.
        let digest_text = digest.to_string();
        let body = self
            .content(Kind::Config, digest, &what, || async {
                let body = self
                    .across(
                        &what,
                        |c| c.pull,
                        |route| {
                            let target = route.target(target.clone());
                            let (what, digest_text) = (&what, &digest_text);
                            async move {
                                self.rules
                                    .run(what, || async {
                                        let read = route
                                            .client
                                            .blob(&target, digest_text, &route.auth, limit)
                                            .await;
                                        read.map_err(|f| self.failed(route, what, limit, f))
                                    })
                                    .await
                            }
                        },
                    )
                    .await?;
                check_digest(&what, digest, &body)?;
                Ok(body)
            })
            .await?;
        manifest::parse_config(&what, &body)
    }

    /// Judges every entry of `index` (found at `depth`, the pinned index being 1).
    fn judge_index<'s>(
        &'s self,
        digest: &'s Digest,
        index: Index,
        depth: usize,
        nested: Vec<NestedIndex>,
    ) -> BoxFuture<'s, Result<Judged, RegistryError>> {
        async move {
            let limit = self.rules.config.max_index_entries;
            let met = self
                .entries
                .fetch_add(index.manifests.len(), Ordering::SeqCst)
                .saturating_add(index.manifests.len());
            if met > limit {
                return Err(RegistryError::TooManyEntries {
                    what: self.manifest_what(digest),
                    limit,
                });
            }

            let mut judged = Judged::default();
            let mut children = Vec::new();
            for entry in index.manifests {
                if entry.platform.as_ref().is_some_and(|p| p.is_unrunnable()) {
                    judged.skipped.push(entry.digest);
                } else {
                    children.push(self.judge_entry(entry, depth, nested.clone()));
                }
            }
            for child in try_join_all(children).await? {
                judged.images.extend(child.images);
                judged.skipped.extend(child.skipped);
            }
            Ok(judged)
        }
        .boxed()
    }

    /// Judges one index entry: a platform image, or an index nested one level deeper.
    async fn judge_entry(
        &self,
        entry: Descriptor,
        depth: usize,
        mut nested: Vec<NestedIndex>,
    ) -> Result<Judged, RegistryError> {
        match self.fetch_manifest(&entry.digest).await? {
            Parsed::Manifest(manifest) => {
                let image = self
                    .platform_image(&entry.digest, manifest, Some(&entry), nested)
                    .await?;
                Ok(Judged {
                    images: vec![image],
                    skipped: Vec::new(),
                })
            }
            Parsed::Index(inner) => {
                let limit = self.rules.config.max_nesting;
                if depth >= limit {
                    return Err(RegistryError::TooDeep {
                        what: self.manifest_what(&entry.digest),
                        limit,
                    });
                }
                nested.push(NestedIndex {
                    digest: entry.digest.clone(),
                    annotations: inner.annotations.clone(),
                    entry_annotations: entry.annotations,
                });
                self.judge_index(&entry.digest, inner, depth + 1, nested)
                    .await
            }
        }
    }

    /// A platform image from its manifest and config; `entry` is its index entry, if any.
    async fn platform_image(
        &self,
        manifest_digest: &Digest,
        manifest: Manifest,
        entry: Option<&Descriptor>,
        nested_in: Vec<NestedIndex>,
    ) -> Result<PlatformImage, RegistryError> {
        let config = self.fetch_config(&manifest.config).await?;
        let entry_platform = entry.and_then(|e| e.platform.as_ref()).map(|p| p.name());
        Ok(PlatformImage {
            platform: entry_platform.or(config.platform),
            manifest_digest: manifest_digest.clone(),
            config_digest: manifest.config.digest,
            labels: config.labels,
            manifest_annotations: manifest.annotations,
            index_entry_annotations: entry.map(|e| e.annotations.clone()).unwrap_or_default(),
            nested_in,
        })
    }

    /// Verified bytes for `digest`: from the cache, or from `fetch` (which must check the size
    /// cap and the hash) and then kept. A "not found" is kept briefly; no other failure is.
    async fn content<F, Fut>(
        &self,
        kind: Kind,
        digest: &Digest,
        what: &str,
        fetch: F,
    ) -> Result<Arc<[u8]>, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, RegistryError>>,
    {
        let key = self.key(kind, &digest.to_string());
        let cached = || match self.caches.content(&key) {
            Some(body) => Some(Ok(body)),
            None => match self.caches.answer(&key) {
                Cached::Hit(Err(err)) => Some(Err(err)),
                Cached::Hit(Ok(_)) | Cached::Miss => None,
            },
        };
        if let Some(hit) = cached() {
            return hit;
        }
        let timeout = || self.rules.timeout(what, None);
        self.caches
            .coalesce(&key, self.rules.deadline, timeout, || async {
                if let Some(hit) = cached() {
                    return hit;
                }
                match fetch().await {
                    Ok(body) => {
                        let body: Arc<[u8]> = body.into();
                        self.caches.keep_content(key.clone(), body.clone());
                        Ok(body)
                    }
                    Err(err) => {
                        self.caches.keep_failure(&key, &err);
                        Err(err)
                    }
                }
            })
            .await
    }

    fn key(&self, kind: Kind, name: &str) -> Key {
        Key::new(
            self.reference.registry(),
            self.reference.repository(),
            &self.identity,
            kind,
            name,
        )
    }

    fn pinned(&self, digest: &Digest) -> Reference {
        Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            digest.to_string(),
        )
    }

    fn manifest_what(&self, digest: &Digest) -> String {
        format!("manifest {digest} of {}", self.reference.name())
    }

    /// Asks the endpoints able to (`usable`) in turn, until one answers, one fails in a way
    /// that must stop the resolution (a mirror refusing access does not), or none is left
    /// (then the last failure is returned).
    async fn across<'s, T, F, Fut>(
        &'s self,
        what: &str,
        usable: fn(&Capabilities) -> bool,
        mut ask: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(&'s Route) -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut last = None;
        for route in self
            .routes
            .iter()
            .filter(|r| usable(&r.endpoint.capabilities()))
        {
            match ask(route).await {
                // A mirror on another host is asked anonymously (see `routes_for`): one that
                // wants credentials is passed over, as containerd passes over a refusing host.
                Err(err)
                    if err.falls_through()
                        || (route.mirror.is_some()
                            && matches!(err, RegistryError::Unauthorized { .. })) =>
                {
                    tracing::debug!(
                        registry = self.rules.registry,
                        endpoint = %route.endpoint.url(),
                        what,
                        error = %err,
                        "endpoint failed, trying the next one"
                    );
                    last = Some(err);
                }
                answer => return answer,
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::NoEndpoint {
            registry: self.rules.registry.to_string(),
            what: what.to_string(),
        }))
    }

    /// A failed read of content capped at `limit`, as a [`RegistryError`].
    fn failed(&self, route: &Route, what: &str, limit: u64, failure: Failure) -> RegistryError {
        match failure {
            Failure::TooLarge => RegistryError::TooLarge {
                what: what.to_string(),
                limit,
            },
            Failure::Registry(err) => self.classify(route, what, err),
        }
    }

    fn classify(
        &self,
        route: &Route,
        what: &str,
        err: oci_client::errors::OciDistributionError,
    ) -> RegistryError {
        classify(
            route.name(self.rules.registry),
            what,
            self.rules.config.request_timeout,
            err,
        )
    }
}

/// Refuses bytes that do not hash to the digest they were asked for by.
fn check_digest(what: &str, expected: &Digest, body: &[u8]) -> Result<(), RegistryError> {
    match expected.same_algorithm_of(body) {
        Some(actual) if actual == *expected => Ok(()),
        actual => Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.map_or_else(|| "(unknown algorithm)".into(), |d| d.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_do_not_hash_to_their_digest_are_refused() {
        let digest = Digest::sha256_of(b"the manifest");
        assert!(check_digest("m", &digest, b"the manifest").is_ok());
        let err = check_digest("manifest x", &digest, b"another manifest").unwrap_err();
        let want_actual = Digest::sha256_of(b"another manifest").to_string();
        assert!(
            matches!(&err, RegistryError::DigestMismatch { expected, actual, .. }
                if *expected == digest.to_string() && *actual == want_actual),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("manifest x does not match its digest"));
    }
}
