//! Evidence from an Archivista server: one GraphQL request per search round for every step,
//! paged and bounded, then parallel downloads whose bytes must hash to the gitoid they were
//! asked for.
//!
//! A request answered 429, 502, 503 or 504 is retried twice with backoff (within the caller's
//! deadline); a download the server still cannot serve (429, 5xx) fails the round as an outage
//! (a verification error, never cached), rather than rejecting the candidate, which would fail
//! the policy and be cached as a violation.
//!
//! Downloaded envelopes are cached by gitoid (they were hash-checked, so they never go stale)
//! within a byte budget; search answers for a few seconds, empty ones for less, errors never;
//! concurrent identical searches share one request. The caches live in the source and are
//! shared by its clones.
//!
//! Archivista indexes only witness's collection predicate as a collection; cilock's aflock.ai
//! collections are found by subject alone and assigned to steps by the name inside the
//! downloaded (and hash-checked) envelope. Nothing here decides trust: every candidate is
//! verified by the policy engine.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::cache::{EnvelopeCache, TtlCache};
use super::gitoid::{gitoid_sha256, is_gitoid};
use super::{Candidate, EvidenceRef, EvidenceSource, SourceError, StepQuery};
use crate::intoto::types::AFLOCK_COLLECTION;

/// Default time limit of one HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default page size of a GraphQL search.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Default number of pages read per search before giving up on the rest.
pub const DEFAULT_MAX_PAGES: usize = 5;
/// Default number of candidates downloaded per step and round.
pub const DEFAULT_MAX_CANDIDATES: usize = 50;
/// Default cap on one downloaded envelope (SBOM envelopes can be large).
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on one GraphQL response.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Default number of downloads in flight.
pub const DEFAULT_DOWNLOAD_CONCURRENCY: usize = 8;
/// Retries of a request answered 429, 502, 503 or 504 (a server or proxy asking to come back
/// later), so at most this plus one attempts; the caller's deadline still bounds them.
pub const MAX_RETRIES: u32 = 2;
/// Pause before the first retry; it doubles for each further one.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Default total size of the downloaded envelopes kept in memory.
pub const DEFAULT_ENVELOPE_CACHE_BYTES: usize = 256 * 1024 * 1024;
/// Default time a search answer with hits is reused.
pub const DEFAULT_SEARCH_TTL: Duration = Duration::from_secs(30);
/// Default time an empty search answer is reused: short, because CI often deploys before its
/// evidence upload has finished.
pub const DEFAULT_NEGATIVE_SEARCH_TTL: Duration = Duration::from_secs(5);
/// Most search answers kept at once.
pub const MAX_CACHED_SEARCHES: usize = 4096;

/// How to reach an Archivista server. There is no default server: evidence is only ever fetched
/// from one the operator names.
#[derive(Clone)]
pub struct ArchivistaConfig {
    /// Base URL, e.g. `https://archivista.example.com`.
    pub url: String,
    /// Extra request headers (authentication, tenancy), `name` → `value`.
    pub headers: Vec<(String, String)>,
    /// Extra CA certificates (PEM) to trust for the server's certificate.
    pub ca_pem: Vec<Vec<u8>>,
    /// A client certificate and its key (PEM, concatenated), for mutual TLS.
    pub client_identity_pem: Option<Vec<u8>>,
    /// Time limit of one HTTP request.
    pub request_timeout: Duration,
    /// GraphQL page size.
    pub page_size: usize,
    /// Pages read per search.
    pub max_pages: usize,
    /// Candidates downloaded per step and round.
    pub max_candidates: usize,
    /// Cap on one envelope.
    pub max_envelope_bytes: usize,
    /// Cap on one GraphQL response.
    pub max_response_bytes: usize,
    /// Downloads in flight.
    pub download_concurrency: usize,
    /// Total size of the downloaded (hash-checked) envelopes kept in memory by gitoid; 0 keeps
    /// none.
    pub envelope_cache_bytes: usize,
    /// How long a search answer with hits is reused; zero disables.
    pub search_ttl: Duration,
    /// How long an empty search answer is reused; zero disables.
    pub negative_search_ttl: Duration,
}

impl std::fmt::Debug for ArchivistaConfig {
    /// Header values and the client key are secrets (tokens, tenancy keys): only their names
    /// and presence are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ArchivistaConfig")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("ca_pem", &self.ca_pem.len())
            .field("client_identity_pem", &self.client_identity_pem.is_some())
            .field("request_timeout", &self.request_timeout)
            .field("page_size", &self.page_size)
            .field("max_pages", &self.max_pages)
            .field("max_candidates", &self.max_candidates)
            .field("max_envelope_bytes", &self.max_envelope_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("download_concurrency", &self.download_concurrency)
            .field("envelope_cache_bytes", &self.envelope_cache_bytes)
            .field("search_ttl", &self.search_ttl)
            .field("negative_search_ttl", &self.negative_search_ttl)
            .finish()
    }
}

impl ArchivistaConfig {
    /// The defaults for a server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            ca_pem: Vec::new(),
            client_identity_pem: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
            max_pages: DEFAULT_MAX_PAGES,
            max_candidates: DEFAULT_MAX_CANDIDATES,
            max_envelope_bytes: DEFAULT_MAX_ENVELOPE_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            download_concurrency: DEFAULT_DOWNLOAD_CONCURRENCY,
            envelope_cache_bytes: DEFAULT_ENVELOPE_CACHE_BYTES,
            search_ttl: DEFAULT_SEARCH_TTL,
            negative_search_ttl: DEFAULT_NEGATIVE_SEARCH_TTL,
        }
    }
}

/// Why Archivista could not be asked, or answered something unusable.
#[derive(Debug, thiserror::Error)]
pub enum ArchivistaError {
    /// The configuration cannot be used (bad URL, header, certificate).
    #[error("archivista configuration is invalid: {0}")]
    Config(String),
    /// The server could not be reached, or the request timed out.
    #[error("archivista at {url} is unreachable")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("archivista answered {status} to {url}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The GraphQL answer carries errors.
    #[error("archivista query failed: {}", .0.join("; "))]
    GraphQl(Vec<String>),
    /// The answer is not of the documented shape.
    #[error("archivista answered something that is not a search result: {0}")]
    Malformed(String),
    /// A response was larger than its cap.
    #[error("archivista response from {url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The cap.
        limit: usize,
    },
}

/// A search client for one Archivista server. Clones share its caches.
#[derive(Debug, Clone)]
pub struct ArchivistaSource {
    client: reqwest::Client,
    base: String,
    config: ArchivistaConfig,
    envelopes: Arc<EnvelopeCache>,
    searches: Arc<TtlCache<SearchKey, Hits>>,
}

/// Everything a round's search answer depends on: the server, each step's name, digests and
/// types (in order, since answers are by position), and the gitoids left out as seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SearchKey {
    server: String,
    steps: Vec<(String, BTreeSet<String>, Vec<String>)>,
    seen: Vec<String>,
}

/// Hits per search: by step query index, `None` for the shared subject-only search.
type Hits = BTreeMap<Option<usize>, Vec<Hit>>;

/// One aliased search of a round's GraphQL request.
struct Search {
    alias: String,
    /// Index of the step query, or `None` for the shared subject-only search (cilock).
    query: Option<usize>,
    after: Option<String>,
}

/// A search hit: a gitoid and the key ids its signatures claim.
#[derive(Debug, Clone)]
struct Hit {
    gitoid: String,
    keyids: Vec<String>,
}

impl ArchivistaSource {
    /// Builds the HTTP client.
    ///
    /// # Errors
    /// A URL that is not http(s), a malformed header, or an unusable certificate.
    pub fn new(config: ArchivistaConfig) -> Result<Self, ArchivistaError> {
        crate::install_crypto_provider();
        let base = config.url.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ArchivistaError::Config(format!(
                "server URL {base:?} is not http(s)"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| ArchivistaError::Config(format!("bad header name {name:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(value.trim())
                .map_err(|_| ArchivistaError::Config(format!("bad value for header {name}")))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .default_headers(headers);
        for pem in &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ArchivistaError::Config(format!("CA certificate: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &config.client_identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| ArchivistaError::Config(format!("client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| ArchivistaError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            base,
            envelopes: Arc::new(EnvelopeCache::new(config.envelope_cache_bytes)),
            searches: Arc::new(TtlCache::new(MAX_CACHED_SEARCHES)),
            config,
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn search_round(
        &self,
        queries: &[StepQuery],
        seen: &BTreeSet<EvidenceRef>,
    ) -> Result<Vec<Vec<Candidate>>, ArchivistaError> {
        let seen: Vec<&str> = seen
            .iter()
            .filter_map(|r| match r {
                EvidenceRef::Gitoid(g) => Some(g.as_str()),
                EvidenceRef::File(_) => None,
            })
            .collect();
        let hits = self.find_cached(queries, &seen).await?;

        // Per step: witness collections found by name, plus every subject-only (cilock) hit,
        // to be assigned by the name inside the envelope once downloaded.
        let shared = hits.get(&None).cloned().unwrap_or_default();
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let mut per_step: Vec<Vec<Hit>> = Vec::with_capacity(queries.len());
        for (i, query) in queries.iter().enumerate() {
            let mut step_hits = hits.get(&Some(i)).cloned().unwrap_or_default();
            prefer_functionaries(&mut step_hits, &query.preferred_keyids);
            step_hits.truncate(self.config.max_candidates);
            wanted.extend(step_hits.iter().map(|h| h.gitoid.clone()));
            per_step.push(step_hits);
        }
        let mut shared = shared;
        prefer_functionaries(
            &mut shared,
            &queries
                .iter()
                .flat_map(|q| q.preferred_keyids.clone())
                .collect::<Vec<_>>(),
        );
        shared.truncate(self.config.max_candidates);
        wanted.extend(shared.iter().map(|h| h.gitoid.clone()));

        let downloads = self.download_all(wanted).await?;
        // Each subject-only hit is read once for its collection name, not once per step.
        let names: BTreeMap<&str, Option<String>> = shared
            .iter()
            .filter_map(|hit| {
                let candidate = downloads.get(&hit.gitoid)?;
                Some((hit.gitoid.as_str(), collection_name(candidate)))
            })
            .collect();

        let mut answers = Vec::with_capacity(queries.len());
        for (query, step_hits) in queries.iter().zip(per_step) {
            let mut candidates: Vec<Candidate> = Vec::new();
            for hit in &step_hits {
                if let Some(c) = downloads.get(&hit.gitoid) {
                    candidates.push(c.clone());
                }
            }
            for hit in &shared {
                let Some(c) = downloads.get(&hit.gitoid) else {
                    continue;
                };
                let already = step_hits.iter().any(|h| h.gitoid == hit.gitoid);
                let name = names.get(hit.gitoid.as_str()).and_then(Option::as_deref);
                if !already && name == Some(query.step.as_str()) {
                    candidates.push(c.clone());
                }
            }
            answers.push(candidates);
        }
        Ok(answers)
    }

    /// [`Self::find`] through the search cache.
    async fn find_cached(
        &self,
        queries: &[StepQuery],
        seen: &[&str],
    ) -> Result<Arc<Hits>, ArchivistaError> {
        let key = SearchKey {
            server: self.base.clone(),
            steps: queries
                .iter()
                .map(|q| (q.step.clone(), q.digests.clone(), q.types.clone()))
                .collect(),
            seen: seen.iter().map(|g| (*g).to_string()).collect(),
        };
        let ttl = |hits: &Hits| {
            if hits.values().all(Vec::is_empty) {
                self.config.negative_search_ttl
            } else {
                self.config.search_ttl
            }
        };
        self.searches
            .get_or_try(&key, ttl, || self.find(queries, seen))
            .await
    }

    /// Runs the round's searches, following pages, and returns hits per search.
    async fn find(&self, queries: &[StepQuery], seen: &[&str]) -> Result<Hits, ArchivistaError> {
        let mut pending: Vec<Search> = queries
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.digests.is_empty())
            .map(|(i, _)| Search {
                alias: format!("s{i}"),
                query: Some(i),
                after: None,
            })
            .collect();
        // Every step of a round searches the same digests, so one subject-only search serves
        // them all; an empty digest list would mean "no filter" to Archivista, so never send it.
        let digests: BTreeSet<&String> = queries.iter().flat_map(|q| &q.digests).collect();
        if !digests.is_empty() {
            pending.push(Search {
                alias: "aflock".into(),
                query: None,
                after: None,
            });
        }

        let mut hits: Hits = BTreeMap::new();
        for _page in 0..self.config.max_pages {
            if pending.is_empty() {
                break;
            }
            let (document, variables) = self.document(queries, &pending, seen, &digests);
            let data = self.graphql(&document, variables).await?;
            let mut next = Vec::new();
            for search in pending {
                let field = data.get(&search.alias).ok_or_else(|| {
                    ArchivistaError::Malformed(format!("no {} in the answer", search.alias))
                })?;
                let (page_hits, cursor) = parse_connection(field)?;
                hits.entry(search.query).or_default().extend(page_hits);
                if let Some(after) = cursor {
                    next.push(Search {
                        after: Some(after),
                        ..search
                    });
                }
            }
            pending = next;
        }
        if !pending.is_empty() {
            tracing::warn!(
                searches = pending.len(),
                pages = self.config.max_pages,
                "archivista search has more results than are read; the rest is ignored"
            );
        }
        Ok(hits)
    }

    /// The GraphQL document and variables for `searches`.
    fn document(
        &self,
        queries: &[StepQuery],
        searches: &[Search],
        seen: &[&str],
        digests: &BTreeSet<&String>,
    ) -> (String, Value) {
        let mut params = vec!["$seen: [String!]".to_string(), "$digests: [String!]".into()];
        let mut fields = Vec::new();
        let mut variables = serde_json::Map::new();
        variables.insert("seen".into(), json!(seen));
        variables.insert("digests".into(), json!(digests));
        let first = self.config.page_size;
        let selection = "edges { node { gitoidSha256 signatures { keyID } } } pageInfo { hasNextPage endCursor }";

        for search in searches {
            let alias = &search.alias;
            params.push(format!("$after_{alias}: Cursor"));
            variables.insert(format!("after_{alias}"), json!(search.after));
            let filter = match search.query.and_then(|i| queries.get(i).map(|q| (i, q))) {
                Some((i, query)) => {
                    params.push(format!("$step{i}: String!"));
                    params.push(format!("$digests{i}: [String!]"));
                    params.push(format!("$types{i}: [String!]"));
                    variables.insert(format!("step{i}"), json!(query.step));
                    variables.insert(format!("digests{i}"), json!(query.digests));
                    variables.insert(format!("types{i}"), json!(query.types));
                    format!(
                        "{{gitoidSha256NotIn: $seen, hasStatementWith: {{hasSubjectsWith: {{hasSubjectDigestsWith: {{valueIn: $digests{i}}}}}, hasAttestationCollectionsWith: {{name: $step{i}, hasAttestationsWith: {{typeIn: $types{i}}}}}}}}}"
                    )
                }
                None => format!(
                    "{{gitoidSha256NotIn: $seen, hasStatementWith: {{predicate: \"{AFLOCK_COLLECTION}\", hasSubjectsWith: {{hasSubjectDigestsWith: {{valueIn: $digests}}}}}}}}"
                ),
            };
            fields.push(format!(
                "{alias}: dsses(first: {first}, after: $after_{alias}, where: {filter}) {{ {selection} }}"
            ));
        }
        let document = format!(
            "query Round({}) {{\n{}\n}}",
            params.join(", "),
            fields.join("\n")
        );
        (document, Value::Object(variables))
    }

    /// Posts a GraphQL request and returns its `data`.
    async fn graphql(&self, document: &str, variables: Value) -> Result<Value, ArchivistaError> {
        let url = format!("{}/query", self.base);
        let body = json!({"query": document, "variables": variables}).to_string();
        let response = with_retries(|| {
            self.client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
        })
        .await
        .map_err(|source| ArchivistaError::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let bytes = read_capped(response, &url, self.config.max_response_bytes).await?;
        if !status.is_success() {
            return Err(ArchivistaError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let mut answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ArchivistaError::Malformed(format!("not JSON: {e}")))?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
            if !errors.is_empty() {
                let messages = errors
                    .iter()
                    .map(|e| {
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string()
                    })
                    .collect();
                return Err(ArchivistaError::GraphQl(messages));
            }
        }
        match answer.get_mut("data").map(Value::take) {
            Some(data @ Value::Object(_)) => Ok(data),
            _ => Err(ArchivistaError::Malformed("no data".into())),
        }
    }

    /// Downloads every gitoid, at most `download_concurrency` at a time. A download that fails
    /// for its own reasons (status, size, hash) becomes a candidate carrying that problem; a
    /// server that cannot be reached fails the whole round.
    async fn download_all(
        &self,
        gitoids: BTreeSet<String>,
    ) -> Result<BTreeMap<String, Candidate>, ArchivistaError> {
        let limit = Arc::new(Semaphore::new(self.config.download_concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut out = BTreeMap::new();
        for gitoid in gitoids {
            if let Some(bytes) = self.envelopes.get(&gitoid) {
                let candidate = Candidate {
                    reference: EvidenceRef::Gitoid(gitoid.clone()),
                    bytes,
                    fetch_error: None,
                };
                out.insert(gitoid, candidate);
                continue;
            }
            let this = self.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = this
                    .envelopes
                    .get_or_fetch(&gitoid, || async {
                        this.download(&gitoid).await.map(Arc::<[u8]>::from)
                    })
                    .await;
                (gitoid, result)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((gitoid, result)) = joined else {
                return Err(ArchivistaError::Malformed("a download task failed".into()));
            };
            let candidate = match result {
                // Only bytes that hashed to their gitoid get here (and into the cache).
                Ok(bytes) => Candidate {
                    reference: EvidenceRef::Gitoid(gitoid.clone()),
                    bytes,
                    fetch_error: None,
                },
                Err(e @ ArchivistaError::Unreachable { .. }) => return Err(e),
                // A server that is overloaded or failing is an outage, never a bad envelope:
                // as a candidate's problem it would fail the policy (a violation, and cached).
                Err(e @ ArchivistaError::Status { status, .. }) if is_outage(status) => {
                    return Err(e)
                }
                Err(e) => Candidate {
                    reference: EvidenceRef::Gitoid(gitoid.clone()),
                    bytes: Arc::from(Vec::new()),
                    fetch_error: Some(crate::display_chain(&e)),
                },
            };
            out.insert(gitoid, candidate);
        }
        Ok(out)
    }

    async fn download(&self, gitoid: &str) -> Result<Vec<u8>, ArchivistaError> {
        let url = format!("{}/download/{gitoid}", self.base);
        let response = with_retries(|| self.client.get(&url).send())
            .await
            .map_err(|source| ArchivistaError::Unreachable {
                url: url.clone(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(ArchivistaError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        // Known shortcoming: the body is read into a vector and then copied into the shared
        // buffer candidates and the cache hold (`Arc<[u8]>` cannot adopt a vector), so a
        // download briefly costs twice its size. Archivista sends no length to allocate by.
        let bytes = read_capped(response, &url, self.config.max_envelope_bytes).await?;
        let actual = gitoid_sha256(&bytes);
        if actual != gitoid {
            return Err(ArchivistaError::Malformed(format!(
                "downloaded bytes have gitoid {actual}, not {gitoid}"
            )));
        }
        Ok(bytes)
    }
}

impl EvidenceSource for ArchivistaSource {
    async fn search(
        &self,
        queries: &[StepQuery],
        seen: &BTreeSet<EvidenceRef>,
    ) -> Result<Vec<Vec<Candidate>>, SourceError> {
        self.search_round(queries, seen)
            .await
            .map_err(|e| SourceError {
                source_name: format!("archivista {}", self.base),
                cause: Box::new(e),
            })
    }
}

/// Whether a status says the server could not answer now, rather than anything about what
/// was asked for.
fn is_outage(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Sends with `send` until the answer is not 429, 502, 503 or 504, at most [`MAX_RETRIES`]
/// more times, pausing [`RETRY_BACKOFF`] (doubled each time, less up to half at random so
/// that clients refused together do not come back together).
async fn with_retries<F, Fut>(mut send: F) -> Result<reqwest::Response, reqwest::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
{
    let mut retries = 0;
    loop {
        let response = send().await?;
        let later = matches!(response.status().as_u16(), 429 | 502 | 503 | 504);
        if !later || retries >= MAX_RETRIES {
            return Ok(response);
        }
        let full = RETRY_BACKOFF.saturating_mul(2u32.saturating_pow(retries));
        let random =
            std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
        let permille = u32::try_from(random % 501).unwrap_or(0);
        tracing::debug!(status = %response.status(), retry = retries + 1, "archivista asked to retry");
        tokio::time::sleep(full - full * permille / 1000).await;
        retries += 1;
    }
}

/// Reads a body, refusing it as soon as it passes `limit` bytes (before reading it whole when
/// the length is announced).
async fn read_capped(
    mut response: reqwest::Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, ArchivistaError> {
    let too_large = || ArchivistaError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(source) => {
                return Err(ArchivistaError::Unreachable {
                    url: url.to_string(),
                    source,
                })
            }
        }
    }
}

/// The hits and the next-page cursor of one `dsses` connection.
fn parse_connection(field: &Value) -> Result<(Vec<Hit>, Option<String>), ArchivistaError> {
    let malformed = |what: &str| ArchivistaError::Malformed(what.to_string());
    let edges = field
        .get("edges")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("a connection without edges"))?;
    let mut hits = Vec::with_capacity(edges.len());
    for edge in edges {
        let node = edge
            .get("node")
            .ok_or_else(|| malformed("an edge without node"))?;
        let gitoid = node
            .get("gitoidSha256")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a node without gitoidSha256"))?;
        if !is_gitoid(gitoid) {
            return Err(malformed("a gitoid that is not 64 lowercase hex digits"));
        }
        let keyids = node
            .get("signatures")
            .and_then(Value::as_array)
            .map(|sigs| {
                sigs.iter()
                    .filter_map(|s| s.get("keyID").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        hits.push(Hit {
            gitoid: gitoid.to_string(),
            keyids,
        });
    }
    let info = field.get("pageInfo");
    let has_next = info
        .and_then(|i| i.get("hasNextPage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cursor = info
        .and_then(|i| i.get("endCursor"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((hits, if has_next { cursor } else { None }))
}

/// Orders hits whose signatures claim a functionary's key id first (stable otherwise).
fn prefer_functionaries(hits: &mut [Hit], keyids: &[String]) {
    hits.sort_by_key(|h| !h.keyids.iter().any(|k| keyids.contains(k)));
}

/// The collection name inside a downloaded envelope, if it reads as one.
fn collection_name(candidate: &Candidate) -> Option<String> {
    let envelope = crate::dsse::DecodedEnvelope::from_json(&candidate.bytes).ok()?;
    let statement = crate::intoto::Statement::from_payload(envelope.payload.into_vec()).ok()?;
    crate::intoto::Collection::from_predicate_owned(statement.predicate)
        .ok()
        .map(|c| c.name)
}

#[cfg(test)]
mod tests {

    #[test]
    fn debug_never_prints_header_values() {
        let mut config = ArchivistaConfig::new("https://archivista.test");
        config
            .headers
            .push(("Authorization".into(), "Bearer top-secret".into()));
        let text = format!("{config:?}");
        assert!(text.contains("Authorization"), "{text}");
        assert!(!text.contains("top-secret"), "{text}");
    }

    use super::*;

    #[test]
    fn functionary_signed_hits_come_first() {
        let hit = |g: &str, k: &str| Hit {
            gitoid: g.into(),
            keyids: vec![k.into()],
        };
        let mut hits = vec![
            hit("a", "junk"),
            hit("b", "junk"),
            hit("c", "real"),
            hit("d", "junk"),
        ];
        prefer_functionaries(&mut hits, &["real".to_string()]);
        assert_eq!(hits[0].gitoid, "c");
        assert_eq!(hits[1].gitoid, "a");
    }

    #[test]
    fn connections_are_parsed_and_bad_gitoids_refused() {
        let g = "4462a729251af54c7699dbca2f7d5bf5759a5fc6273b3cd606da29d531387c86";
        let page = json!({"edges": [{"node": {"gitoidSha256": g, "signatures": [{"keyID": "k"}]}}],
                          "pageInfo": {"hasNextPage": true, "endCursor": "c1"}});
        let (hits, cursor) = parse_connection(&page).unwrap();
        assert_eq!(
            (hits[0].gitoid.as_str(), hits[0].keyids[0].as_str()),
            (g, "k")
        );
        assert_eq!(cursor.as_deref(), Some("c1"));
        let bad = json!({"edges": [{"node": {"gitoidSha256": "../../x"}}]});
        assert!(parse_connection(&bad).is_err());
        assert!(parse_connection(&json!({"nodes": []})).is_err());
    }

    #[test]
    fn the_round_document_never_sends_an_empty_digest_list() {
        let source = ArchivistaSource::new(ArchivistaConfig::new("http://127.0.0.1:1")).unwrap();
        let queries = vec![StepQuery {
            step: "build".into(),
            digests: BTreeSet::new(),
            types: vec![],
            preferred_keyids: vec![],
        }];
        let pending: Vec<Search> = Vec::new();
        let (doc, vars) = source.document(&queries, &pending, &[], &BTreeSet::new());
        assert!(!doc.contains("dsses"), "{doc}");
        assert_eq!(vars["digests"], json!([]));
    }

    /// A loopback server whose searches are answered 429 `refusals` times before a hit for
    /// `gitoid`, and whose downloads answer `download_status`; it counts both.
    async fn refusing_server(
        refusals: usize,
        gitoid: &'static str,
        download_status: u16,
    ) -> (
        String,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use axum::http::StatusCode;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (searches, downloads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let app = axum::Router::new()
            .route(
                "/query",
                axum::routing::post({
                    let searches = searches.clone();
                    move || async move {
                        if searches.fetch_add(1, Ordering::SeqCst) < refusals {
                            return (StatusCode::TOO_MANY_REQUESTS, String::new());
                        }
                        let hit = json!({"edges": [{"node": {"gitoidSha256": gitoid, "signatures": []}}],
                                         "pageInfo": {"hasNextPage": false, "endCursor": null}});
                        let empty = json!({"edges": [], "pageInfo": {"hasNextPage": false, "endCursor": null}});
                        (StatusCode::OK, json!({"data": {"s0": hit, "aflock": empty}}).to_string())
                    }
                }),
            )
            .route(
                "/download/{gitoid}",
                axum::routing::get({
                    let downloads = downloads.clone();
                    move || async move {
                        downloads.fetch_add(1, Ordering::SeqCst);
                        StatusCode::from_u16(download_status).unwrap_or(StatusCode::IM_A_TEAPOT)
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, searches, downloads)
    }

    #[tokio::test]
    async fn a_429_is_retried_and_an_overloaded_download_is_an_outage_not_a_bad_envelope() {
        use std::sync::atomic::Ordering;
        let gitoid = "4462a729251af54c7699dbca2f7d5bf5759a5fc6273b3cd606da29d531387c86";
        let queries = vec![StepQuery {
            step: "build".into(),
            digests: ["ab".repeat(32)].into_iter().collect(),
            types: vec![],
            preferred_keyids: vec![],
        }];

        // Two 429s, then the answer: the search succeeds; a download answered 503 three
        // times fails the round (an error), instead of becoming a rejected candidate.
        let (url, searches, downloads) = refusing_server(2, gitoid, 503).await;
        let source = ArchivistaSource::new(ArchivistaConfig::new(url)).unwrap();
        let err = source
            .search_round(&queries, &BTreeSet::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ArchivistaError::Status { status: 503, .. }),
            "{err:?}"
        );
        assert_eq!(
            searches.load(Ordering::SeqCst),
            3,
            "two retries, then the answer"
        );
        assert_eq!(downloads.load(Ordering::SeqCst), 1 + MAX_RETRIES as usize);

        // More 429s than retries: the search fails with the 429.
        let (url, searches, _) = refusing_server(10, gitoid, 404).await;
        let source = ArchivistaSource::new(ArchivistaConfig::new(url)).unwrap();
        let err = source
            .search_round(&queries, &BTreeSet::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ArchivistaError::Status { status: 429, .. }),
            "{err:?}"
        );
        assert_eq!(searches.load(Ordering::SeqCst), 1 + MAX_RETRIES as usize);

        // A download the server says it does not have stays a candidate's own problem.
        let (url, _, downloads) = refusing_server(0, gitoid, 404).await;
        let source = ArchivistaSource::new(ArchivistaConfig::new(url)).unwrap();
        let answers = source
            .search_round(&queries, &BTreeSet::new())
            .await
            .unwrap();
        let problem = answers[0][0].fetch_error.as_deref().unwrap_or_default();
        assert!(problem.contains("404"), "{problem}");
        assert_eq!(downloads.load(Ordering::SeqCst), 1, "a 404 is not retried");
    }
}
