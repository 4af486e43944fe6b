//! The decision for one image under a loaded config: exceptions, the denylist, the policies
//! that cover it (all must pass), and the decision cache in front of the verification.
//!
//! One [`Decider`] belongs to one loaded [`Config`]: a reload builds a new one, which is how a
//! reload flushes the cache. Concurrent misses for one (image, policy) share one verification;
//! a verification runs on the blocking pool (Rego evaluation is synchronous) with its own time
//! budget, so one that misses a request's deadline can finish in the background (a capped
//! number at once) and fill the cache for the controller's retry.
//!
//! A request may bring registry credentials of its own (the pod's image pull secrets, see
//! [`crate::cluster::PullSecrets`]); they are searched before the config's docker configs and
//! credential providers, and the decision cache key holds a hash of the credentials the image
//! was resolved with, so an answer obtained with one tenant's secret never serves another.

mod cache;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cluster::PullSecrets;
use crate::config::{Config, ExceptionTarget, NoMatch, PolicyEntry};
use crate::image::binding::Binding;
use crate::image::{ImageReference, Keyring, RegistryCredentials, RegistryError, ResolvedImage};
use crate::resolve::{describe, judge, ResolveError};
use cache::{DecisionCache, Judged, Key, Lookup};

/// The longest a verification may run, whoever still waits for it.
const VERIFICATION_BUDGET: Duration = Duration::from_secs(60);

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    /// Every covering policy passed and its evidence is bound to the image (or no policy
    /// covers it and `noMatch` is `allow`).
    Admitted,
    /// An admin exception covers it; the text names the exception.
    Excepted(String),
    /// The image does not meet the policy: the text says why.
    Violation(String),
    /// The decision could not be made (registry or evidence store unreachable, deadline).
    Error(String),
}

impl Outcome {
    /// `admitted`, `excepted`, `violation` or `error` (metrics, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Excepted(_) => "excepted",
            Self::Violation(_) => "violation",
            Self::Error(_) => "error",
        }
    }

    /// Whether the image may run.
    pub fn admits(&self) -> bool {
        matches!(self, Self::Admitted | Self::Excepted(_))
    }
}

/// Whether the decision cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheUse {
    /// No verification was needed (exception, no policy, refused before resolution).
    None,
    /// Every policy's answer came from the cache.
    Hit,
    /// At least one policy was verified now.
    Miss,
    /// An answer past its TTL served because re-verifying failed with an error.
    Stale,
}

impl CacheUse {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

/// The decision for one image, with what is needed to reproduce it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageDecision {
    /// The image as written in the object.
    pub image: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The digest it resolved to.
    pub digest: Option<String>,
    /// The policies that judged it, `name@sha256:digest`.
    pub policies: Vec<String>,
    /// The evidence that passed (gitoids or files).
    pub evidence: Vec<String>,
    /// The binding used (`digest`, or `commit:<repository>`).
    pub binding: Option<String>,
    /// Whether the cache answered.
    pub cache: CacheUse,
    /// For logs only: the full cause of an error, which may name internal servers that the
    /// outcome's text (shown to users) leaves out.
    #[serde(skip)]
    pub detail: Option<String>,
    /// For metrics: which upstream failed (`registry`, `credentials`, `evidence`), on errors.
    #[serde(skip)]
    pub upstream: Option<&'static str>,
}

impl ImageDecision {
    fn new(image: &str, outcome: Outcome) -> Self {
        Self {
            image: image.to_string(),
            outcome,
            digest: None,
            policies: Vec::new(),
            evidence: Vec::new(),
            binding: None,
            cache: CacheUse::None,
            detail: None,
            upstream: None,
        }
    }

    fn failed(image: &str, failure: Failure) -> Self {
        let mut decision = Self::new(image, failure.outcome);
        decision.detail = Some(failure.detail);
        decision.upstream = failure.upstream;
        decision
    }
}

/// A failure: what users see, and the whole cause for the logs.
#[derive(Debug, Clone)]
struct Failure {
    outcome: Outcome,
    detail: String,
    upstream: Option<&'static str>,
}

/// A verification that could not finish: the text users see, and the cause for the logs.
#[derive(Debug, Clone)]
struct Unverified {
    public: String,
    detail: String,
}

impl Unverified {
    fn same(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            public: text.clone(),
            detail: text,
        }
    }
}

/// Decides images under one loaded config.
#[derive(Debug, Clone)]
pub struct Decider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    /// Reads pods' image pull secrets, when the config turns that on.
    pull_secrets: Option<Arc<PullSecrets>>,
    cache: DecisionCache,
    flights: Mutex<HashMap<Key, Flight>>,
    background: AtomicUsize,
}

type Verified = Result<Judged, Unverified>;

#[derive(Debug, Clone)]
struct Flight {
    result: Shared<BoxFuture<'static, Verified>>,
    cancel: Arc<Notify>,
    orphaned: Arc<std::sync::atomic::AtomicBool>,
}

impl Decider {
    /// A decider (and an empty cache) for `config`.
    pub fn new(config: Arc<Config>) -> Self {
        let settings = config.cache;
        Self {
            inner: Arc::new(Inner {
                cache: DecisionCache::new(
                    settings.decisions_max_bytes,
                    settings.decisions_ttl,
                    settings.failed_decisions_ttl,
                    settings.stale_if_error,
                ),
                pull_secrets: config
                    .pull_secrets
                    .map(|settings| Arc::new(PullSecrets::new(settings, &config.kubernetes))),
                config,
                flights: Mutex::default(),
                background: AtomicUsize::new(0),
            }),
        }
    }

    /// The config this decider serves.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// The reader of pods' image pull secrets, when `registry.pullSecrets` is on.
    pub fn pull_secrets(&self) -> Option<&Arc<PullSecrets>> {
        self.inner.pull_secrets.as_ref()
    }

    /// Verifications still running after every request waiting for them gave up.
    pub fn background_verifications(&self) -> usize {
        self.inner.background.load(Ordering::Relaxed)
    }

    /// Decides `image` (as written in the object) before `deadline`, with the config's own
    /// registry credentials.
    pub async fn decide(&self, image: &str, deadline: Instant) -> ImageDecision {
        self.decide_with(image, None, deadline).await
    }

    /// Decides `image` (as written in the object) before `deadline` for a pod whose image pull
    /// secrets are `pull_secrets`: their most specific match is used, as the kubelet does,
    /// before the config's docker configs and credential providers.
    pub async fn decide_with(
        &self,
        image: &str,
        pull_secrets: Option<&Keyring>,
        deadline: Instant,
    ) -> ImageDecision {
        let config = &self.inner.config;
        let reference = match ImageReference::parse(image) {
            Ok(r) => r,
            Err(e) => {
                return ImageDecision::new(
                    image,
                    Outcome::Violation(format!(
                        "invalid image reference: {}",
                        crate::display_chain(&e)
                    )),
                )
            }
        };
        if config.reject_short_names && reference.is_short_name() {
            return ImageDecision::new(
                image,
                Outcome::Violation(format!(
                    "short name: write the registry ({}) so nodes cannot resolve it elsewhere",
                    reference.name()
                )),
            );
        }
        if config.require_digest && reference.digest().is_none() {
            return ImageDecision::new(
                image,
                Outcome::Violation(
                    "not pinned by digest (requireDigest): the tag may move before the pull".into(),
                ),
            );
        }
        if let Some(digest) = reference.digest() {
            if config.denylist.digests.contains(digest) {
                return ImageDecision::new(image, Outcome::Violation(denylisted("digest", digest)));
            }
        }
        let now = OffsetDateTime::now_utc();
        let by_name = config.exceptions.iter().find(|e| {
            e.in_force(now)
                && matches!(&e.target, ExceptionTarget::Image(p) if p.matches(&reference))
        });
        let policies = config.policies_for(&reference);
        // The registry is asked whenever the answer could depend on the image's digests: a
        // policy, a digest exception, or a denylist that must override an admit (an exception
        // or `noMatch: allow`).
        let denylist_by_content =
            !(config.denylist.digests.is_empty() && config.denylist.commits.is_empty());
        let would_admit = by_name.is_some() || config.no_match == NoMatch::Allow;
        let needs_registry = !policies.is_empty()
            || (denylist_by_content && would_admit)
            || config
                .exceptions
                .iter()
                .any(|e| e.in_force(now) && matches!(e.target, ExceptionTarget::Digest(_)));
        if !needs_registry {
            if let Some(exception) = by_name {
                return ImageDecision::new(image, Outcome::Excepted(exception.describe()));
            }
            return match config.no_match {
                NoMatch::Allow => ImageDecision::new(image, Outcome::Admitted),
                NoMatch::Deny => ImageDecision::new(
                    image,
                    Outcome::Violation(format!(
                        "{}no policy covers {}",
                        expired_note(config, &reference, now),
                        reference.name(),
                    )),
                ),
            };
        }

        let (resolved, credentials) = match self.resolve(&reference, pull_secrets, deadline).await {
            Ok(r) => r,
            Err(failure) => return ImageDecision::failed(image, failure),
        };
        let mut decision = ImageDecision::new(image, Outcome::Admitted);
        decision.digest = Some(resolved.digest.to_string());
        let identities = resolved.identities();
        let commit = resolved.source_info().ok().and_then(|i| i.commit);
        if let Some(listed) = identities
            .iter()
            .find(|i| config.denylist.digests.contains(&i.digest))
        {
            decision.outcome = Outcome::Violation(denylisted("digest", &listed.digest));
            return decision;
        }
        if let Some(commit) = commit
            .as_ref()
            .filter(|c| config.denylist.commits.contains(&c.to_ascii_lowercase()))
        {
            decision.outcome = Outcome::Violation(denylisted("commit", commit));
            return decision;
        }
        let by_digest = config.exceptions.iter().find(|e| {
            e.in_force(now)
                && matches!(&e.target, ExceptionTarget::Digest(d) if identities.iter().any(|i| &i.digest == d))
        });
        if let Some(exception) = by_name.or(by_digest) {
            decision.outcome = Outcome::Excepted(exception.describe());
            return decision;
        }
        if policies.is_empty() {
            decision.outcome = match config.no_match {
                NoMatch::Allow => Outcome::Admitted,
                NoMatch::Deny => Outcome::Violation(format!(
                    "{}no policy covers {}",
                    expired_note(config, &reference, now),
                    reference.name(),
                )),
            };
            return decision;
        }

        let resolved = Arc::new(resolved);
        let answers = futures_util::future::join_all(
            policies
                .iter()
                .map(|entry| self.judged(&reference, &resolved, &credentials, entry, deadline)),
        )
        .await;
        decision.policies = policies.iter().map(|p| p.label()).collect();
        decision.binding = Some(binding_label(&policies[0].binding));
        if policies.iter().any(|p| p.binding != policies[0].binding) {
            decision.binding = Some(
                policies
                    .iter()
                    .map(|p| binding_label(&p.binding))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let mut evidence = BTreeSet::new();
        let mut uses = Vec::new();
        let mut failure: Option<Outcome> = None;
        for (entry, answer) in policies.iter().zip(answers) {
            match answer {
                // A definite violation of one policy is the answer, whatever another could not
                // decide: as an error, a soft-fail gate would let it through.
                Err(error) if !matches!(failure, Some(Outcome::Violation(_))) => {
                    failure = Some(Outcome::Error(format!(
                        "policy {}: {}",
                        entry.name, error.public
                    )));
                    decision.detail = Some(format!("policy {}: {}", entry.name, error.detail));
                    decision.upstream = Some("evidence");
                }
                Err(_) => {}
                Ok((judged, used)) => {
                    uses.push(used);
                    if let Some(keyid) = judged
                        .signers
                        .iter()
                        .find(|k| config.denylist.keyids.contains(k))
                    {
                        failure = Some(Outcome::Violation(denylisted("signer key", keyid)));
                        break;
                    }
                    if judged.passed {
                        evidence.extend(judged.evidence.iter().cloned());
                    } else if !matches!(failure, Some(Outcome::Violation(_))) {
                        failure = Some(Outcome::Violation(format!(
                            "{}policy {}: {}",
                            expired_note(config, &reference, now),
                            entry.name,
                            judged.reason.as_deref().unwrap_or("failed"),
                        )));
                    }
                }
            }
        }
        decision.cache = if uses.contains(&CacheUse::Stale) {
            CacheUse::Stale
        } else if !uses.is_empty() && uses.iter().all(|u| *u == CacheUse::Hit) {
            CacheUse::Hit
        } else {
            CacheUse::Miss
        };
        decision.evidence = evidence.into_iter().collect();
        if let Some(failure) = failure {
            decision.outcome = failure;
        }
        decision
    }

    /// Resolves the image with the credentials the kubelet would use; returns it with the
    /// fingerprint of those credentials.
    async fn resolve(
        &self,
        reference: &ImageReference,
        pull_secrets: Option<&Keyring>,
        deadline: Instant,
    ) -> Result<(ResolvedImage, String), Failure> {
        let config = &self.inner.config;
        let from_pod = pull_secrets.and_then(|k| k.lookup(reference).into_iter().next());
        let credentials = match from_pod {
            Some(found) => RegistryCredentials::from_found(Some(found)),
            None => self.config_credentials(reference, deadline).await?,
        };
        let fingerprint = credentials.fingerprint();
        let resolved = config
            .registry
            .resolve(reference, &credentials, deadline)
            .await
            .map_err(|e| {
                // Users see a short text that names neither endpoints (a mirror or an internal
                // server may have answered) nor the reference again; the logs get the chain.
                let public = public_registry_text(&e);
                let about_the_image = is_about_the_image(&e);
                Failure {
                    upstream: (!about_the_image).then_some("registry"),
                    outcome: if about_the_image {
                        Outcome::Violation(public)
                    } else {
                        Outcome::Error(public)
                    },
                    detail: crate::display_chain(&e),
                }
            })?;
        Ok((resolved, fingerprint))
    }

    /// The config's own credentials for `reference`: docker configs, then credential providers.
    async fn config_credentials(
        &self,
        reference: &ImageReference,
        deadline: Instant,
    ) -> Result<RegistryCredentials, Failure> {
        let config = &self.inner.config;
        tokio::time::timeout_at(deadline, config.credentials_for(reference))
            .await
            .map_err(|_| Failure {
                outcome: Outcome::Error(
                    "the registry credential providers did not answer in time".into(),
                ),
                detail: "credential provider timeout".into(),
                upstream: Some("credentials"),
            })?
            .map_err(|e| Failure {
                outcome: Outcome::Error(
                    "the registry credential provider failed (details in the webhook's logs)"
                        .into(),
                ),
                detail: crate::display_chain(&e),
                upstream: Some("credentials"),
            })
    }

    /// One policy's answer for the image: from the cache, or from a verification shared with
    /// every concurrent request for the same key.
    async fn judged(
        &self,
        reference: &ImageReference,
        resolved: &Arc<ResolvedImage>,
        credentials: &str,
        entry: &Arc<PolicyEntry>,
        deadline: Instant,
    ) -> Result<(Judged, CacheUse), Unverified> {
        let key = Key {
            digest: resolved.digest.to_string(),
            policy: format!("{}|{}", entry.label(), entry.settings_digest),
            credentials: credentials.to_string(),
        };
        if let Some((judged, Lookup::Fresh)) = self.inner.cache.get(&key, false) {
            return Ok((judged, CacheUse::Hit));
        }
        let flight = self.flight(&key, reference, resolved, entry);
        match tokio::time::timeout_at(deadline, flight.result.clone()).await {
            Ok(Ok(judged)) => Ok((judged, CacheUse::Miss)),
            Ok(Err(error)) => self.stale_or(&key, error),
            Err(_) => {
                self.orphan(&key, &flight);
                self.stale_or(
                    &key,
                    Unverified::same(
                        "the deadline passed while verifying; it goes on in the background, \
                         and a retry may be answered from the cache",
                    ),
                )
            }
        }
    }

    fn stale_or(&self, key: &Key, error: Unverified) -> Result<(Judged, CacheUse), Unverified> {
        match self.inner.cache.get(key, true) {
            Some((judged, _)) if judged.passed => {
                tracing::warn!(
                    error = %error.detail,
                    "serving a stale passing decision (stale-if-error)"
                );
                Ok((judged, CacheUse::Stale))
            }
            _ => Err(error),
        }
    }

    /// Counts a verification nobody waits for any more; past the cap, cancels it.
    fn orphan(&self, key: &Key, flight: &Flight) {
        // Under the lock the task takes when it finishes: one that has already left the map was
        // not counted and is never uncounted, so it must not be counted now.
        let flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let running = flights
            .get(key)
            .is_some_and(|f| Arc::ptr_eq(&f.orphaned, &flight.orphaned));
        if !running || flight.orphaned.swap(true, Ordering::AcqRel) {
            return;
        }
        drop(flights);
        let cap = self.inner.config.cache.background_verifications;
        let running = self.inner.background.fetch_add(1, Ordering::AcqRel);
        if running >= cap {
            flight.cancel.notify_one();
        }
    }

    fn flight(
        &self,
        key: &Key,
        reference: &ImageReference,
        resolved: &Arc<ResolvedImage>,
        entry: &Arc<PolicyEntry>,
    ) -> Flight {
        let mut flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(key) {
            return flight.clone();
        }
        let cancel = Arc::new(Notify::new());
        let orphaned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let inner = self.inner.clone();
            let key = key.clone();
            let reference = reference.clone();
            let resolved = resolved.clone();
            let entry = entry.clone();
            let cancel = cancel.clone();
            let orphaned = orphaned.clone();
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let verified = handle.block_on(async {
                    tokio::select! {
                        verified = verify(&reference, &resolved, &entry) => verified,
                        () = cancel.notified() => Err(Unverified::same(
                            "verification cancelled: too many in the background",
                        )),
                    }
                });
                if let Ok(judged) = &verified {
                    inner.cache.insert(key.clone(), judged.clone());
                }
                let mut flights = inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
                flights.remove(&key);
                if orphaned.load(Ordering::Acquire) {
                    inner.background.fetch_sub(1, Ordering::AcqRel);
                    // Nobody waits for this answer any more: the log is its only reader.
                    match &verified {
                        Ok(judged) => tracing::info!(
                            image = %key.digest,
                            policy = %key.policy,
                            passed = judged.passed,
                            "background verification finished and filled the cache"
                        ),
                        Err(error) => tracing::warn!(
                            image = %key.digest,
                            policy = %key.policy,
                            error = %error.detail,
                            "background verification failed"
                        ),
                    }
                }
                drop(flights);
                verified
            })
        };
        let result = async move {
            task.await
                .unwrap_or_else(|e| Err(Unverified::same(format!("verification failed: {e}"))))
        }
        .boxed()
        .shared();
        let flight = Flight {
            result,
            cancel,
            orphaned,
        };
        flights.insert(key.clone(), flight.clone());
        flight
    }
}

/// Verifies `resolved` against one policy within [`VERIFICATION_BUDGET`].
async fn verify(
    reference: &ImageReference,
    resolved: &ResolvedImage,
    entry: &PolicyEntry,
) -> Result<Judged, Unverified> {
    let deadline = Instant::now() + VERIFICATION_BUDGET;
    let outcome = async {
        let mut resolution = describe(reference, resolved, &entry.binding)?;
        judge(
            &mut resolution,
            resolved,
            &entry.binding,
            &entry.policy,
            &*entry.source,
            deadline,
        )
        .await?;
        Ok::<_, ResolveError>(resolution)
    }
    .await;
    match outcome {
        Ok(resolution) => {
            let verdict = resolution.verdict.unwrap_or(crate::resolve::Verdict {
                passed: false,
                bound: false,
                reason: Some("no verdict".into()),
                signers: Vec::new(),
                valid_until: None,
            });
            let passed = verdict.passed && verdict.bound;
            Ok(Judged {
                passed,
                reason: verdict.reason,
                evidence: resolution
                    .evidence
                    .iter()
                    .filter(|e| e.passed)
                    .map(|e| match (&e.gitoid, &e.path) {
                        (Some(g), _) => format!("gitoid:{g}"),
                        (None, Some(p)) => p.display().to_string(),
                        (None, None) => String::new(),
                    })
                    .collect(),
                signers: verdict.signers,
                valid_until: verdict.valid_until,
            })
        }
        // An image without a usable commit under commit binding is an answer, not an outage.
        Err(ResolveError::Commit(e)) => Ok(Judged {
            passed: false,
            reason: Some(crate::display_chain(&e)),
            evidence: Vec::new(),
            signers: Vec::new(),
            valid_until: None,
        }),
        Err(e) => Err(Unverified {
            public: match &e {
                ResolveError::Source(_) => {
                    "the evidence source failed (details in the webhook's logs)".into()
                }
                other => other.to_string(),
            },
            detail: crate::display_chain(&e),
        }),
    }
}

/// Registry failures that are an answer about the image rather than an outage.
fn is_about_the_image(error: &RegistryError) -> bool {
    matches!(
        error,
        RegistryError::NotFound { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::TooManyEntries { .. }
            | RegistryError::TooDeep { .. }
            | RegistryError::Malformed { .. }
    )
}

/// What a user is told about a registry failure: what happened, never where.
fn public_registry_text(error: &RegistryError) -> String {
    match error {
        RegistryError::NotFound { .. } => "not found at its registry".into(),
        RegistryError::Unauthorized { .. } => {
            "the registry refused access: unauthorized (check the pull credentials)".into()
        }
        RegistryError::RateLimited { .. } => "the registry is rate limiting (HTTP 429)".into(),
        RegistryError::ServerError { status, .. } => {
            format!("the registry failed with HTTP {status}")
        }
        RegistryError::Unreachable { .. } => "the registry is unreachable".into(),
        RegistryError::Tls { .. } => "TLS with the registry failed".into(),
        RegistryError::Timeout { .. } => "the registry did not answer in time".into(),
        RegistryError::DigestMismatch { .. } => {
            "the registry served content that does not match its digest".into()
        }
        RegistryError::TooLarge { .. } => "a manifest or config is over the size cap".into(),
        RegistryError::TooManyEntries { .. } => "an index lists too many entries".into(),
        RegistryError::TooDeep { .. } => "indexes nest too deep".into(),
        RegistryError::Malformed { .. } => "a manifest or config is malformed".into(),
        _ => "the registry could not be used (details in the webhook's logs)".into(),
    }
}

fn denylisted(what: &str, value: &dyn std::fmt::Display) -> String {
    format!("denylisted {what} {value}")
}

fn binding_label(binding: &Binding) -> String {
    match binding {
        Binding::Digest => "digest".into(),
        Binding::Commit { source } => format!("commit:{source}"),
    }
}

/// `exception expired <date> (owner …); ` when an expired exception would have covered the
/// image: first in the reason, so that a cut line still shows it.
fn expired_note(config: &Config, reference: &ImageReference, now: OffsetDateTime) -> String {
    config
        .exceptions
        .iter()
        .find(|e| {
            !e.in_force(now)
                && matches!(&e.target, ExceptionTarget::Image(p) if p.matches(reference))
        })
        .map(|e| {
            // The last day it applied (a date in the config holds through that day).
            let until = (e.expires - time::Duration::SECOND)
                .format(time::macros::format_description!("[year]-[month]-[day]"))
                .unwrap_or_default();
            format!("exception expired {until} (owner {}); ", e.owner)
        })
        .unwrap_or_default()
}
