//! The client of one endpoint (per registry and credentials): every request is made here, with
//! reqwest, and every body it reads is capped.
//!
//! `oci-client` served as the registry client before; it read manifests whole before any cap
//! could apply (a registry could stream an endless manifest into memory), never remembered
//! that an endpoint sends no challenge (one `GET /v2/` per request), and asked a token realm
//! only when `/v2/` itself challenged. It is kept for its types only ([`Reference`],
//! [`RegistryAuth`], its error type, [`ClientProtocol`]); its `Client` is no longer used.
//!
//! What `GET /v2/` said is remembered per endpoint client for [`CHALLENGE_MEMO_TTL`], with its
//! challenge: none, a bearer challenge (realm and service), or a basic one. A probe that fails,
//! or answers an error without a usable challenge, is not remembered.
//!
//! How a request is authorized:
//! - bearer credentials ([`RegistryAuth::Bearer`]) are sent as they are, without a probe;
//! - else a grant kept for the repository (below) is sent;
//! - else, by what `/v2/` said: no challenge (or nothing to go by): anonymous; a bearer
//!   challenge: a token from its realm, asked anonymously or with the basic credentials, for
//!   scope `repository:<name>:pull`; a basic challenge: the basic credentials, or anonymous
//!   without them.
//!
//! A 401 forgets the memo and the repository's grant. If it carries a bearer challenge, a
//! token is asked of the realm it names (anonymously or with the basic credentials) and the
//! request is sent once more with it; a basic challenge is answered once with the basic
//! credentials if there are any. Otherwise (or if the answer would carry what was already
//! refused) the refusal stands. This is how a repository that needs a token although `/v2/` is
//! open (or a registry that began to challenge) is served, as containerd serves it.
//!
//! Grants (a token, or the basic credentials a repository's 401 asked for) are kept per
//! repository scope for the token answer's `expires_in` (default [`DEFAULT_TOKEN_TTL`],
//! bounded to [`MIN_TOKEN_TTL`]..=[`MAX_TOKEN_TTL`]), at most [`MAX_GRANTS`] of them. One token
//! request is made at a time per endpoint client, so concurrent requests for one repository
//! share one token; the client is per (registry, endpoint, credentials), so a grant is never
//! used with other credentials.
//!
//! Bodies: manifests and blobs are refused by their declared length, then streamed and refused
//! as soon as they pass their cap; error answers, `/v2/` answers and token answers are read up
//! to [`SMALL_BODY_CAP`]. A tag `HEAD` answered without `Docker-Content-Digest` is followed by
//! a `GET` of the tag, capped as a manifest, whose bytes are hashed (SHA-256).
//!
//! Redirects follow reqwest's default policy (up to 10; `Authorization` is dropped when a
//! redirect leaves the host). The token realm is followed wherever it points: see the
//! registry's module documentation.
//!
//! Limitation: the memo and the grants are kept per client, so 256 distinct (registry,
//! credentials) pairs (`MAX_CACHED_CLIENTS`) empty them with the clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_client::client::ClientProtocol;
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::time::Instant;

use super::manifest::ACCEPTED;
use super::request::{read_capped, CappedRead};
use crate::image::Digest;

/// How long an endpoint's answer to `GET /v2/` is trusted. A registry that starts to challenge
/// meanwhile is noticed at once anyway (its first 401 forgets the memo), so the bound only
/// decides how soon a registry that stops challenging is asked anonymously, and costs one
/// probe per endpoint and per this much time.
pub(super) const CHALLENGE_MEMO_TTL: Duration = Duration::from_secs(300);

/// How long a token is kept when its answer names no `expires_in`.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Shortest time a token is kept, whatever its `expires_in`.
const MIN_TOKEN_TTL: Duration = Duration::from_secs(10);
/// Longest time a token (or a repository's basic grant) is kept.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Grants kept per endpoint client before they are all forgotten.
const MAX_GRANTS: usize = 1024;

/// Cap on what is read of an error answer, a `/v2/` answer or a token answer.
const SMALL_BODY_CAP: u64 = 64 * 1024;

/// What `/v2/` said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    /// A success without an auth challenge.
    NoChallenge,
    /// An auth challenge.
    Challenge(Challenge),
}

/// An auth challenge (`WWW-Authenticate`) the client can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    /// A token realm to ask.
    Bearer(BearerChallenge),
    /// Basic credentials wanted.
    Basic,
}

impl Challenge {
    /// The challenge of an answer: a bearer one with a usable realm first, else a basic one.
    fn of(headers: &HeaderMap) -> Option<Self> {
        let values: Vec<&str> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        if let Some(bearer) = values.iter().find_map(|v| BearerChallenge::parse(v)) {
            return Some(Self::Bearer(bearer));
        }
        let basic = values.iter().any(|v| {
            v.split_whitespace()
                .next()
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic"))
        });
        basic.then_some(Self::Basic)
    }
}

/// Why reading an answer failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// More than the cap was declared or sent.
    TooLarge,
    /// The registry's answer or the transport, as `oci-client`'s error type reports them.
    Registry(OciDistributionError),
}

impl From<OciDistributionError> for Failure {
    fn from(err: OciDistributionError) -> Self {
        Self::Registry(err)
    }
}

impl From<CappedRead> for Failure {
    fn from(failure: CappedRead) -> Self {
        match failure {
            CappedRead::TooLarge => Self::TooLarge,
            CappedRead::Failed(e) => Self::Registry(e.into()),
        }
    }
}

/// The client of one (registry, endpoint, credentials) triple; clones share the memo and the
/// grants.
#[derive(Clone)]
pub(super) struct EndpointClient {
    http: reqwest::Client,
    protocol: ClientProtocol,
    /// What `/v2/` said and until when it is trusted. Held across the probe, so that the
    /// requests waiting for one endpoint make one probe between them.
    memo: Arc<tokio::sync::Mutex<Option<(Said, Instant)>>>,
    /// The `Authorization` to send per repository scope, and until when.
    grants: Arc<Mutex<HashMap<String, (HeaderValue, Instant)>>>,
    /// Held while a token is asked for, so that concurrent requests ask once.
    asking: Arc<tokio::sync::Mutex<()>>,
}

impl EndpointClient {
    /// The client of an endpoint reached with `http` over `protocol`.
    pub(super) fn new(http: reqwest::Client, protocol: ClientProtocol) -> Self {
        Self {
            http,
            protocol,
            memo: Arc::new(tokio::sync::Mutex::new(None)),
            grants: Arc::new(Mutex::new(HashMap::new())),
            asking: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The digest `target` (a tag) names now: a `HEAD` and its `Docker-Content-Digest`, or,
    /// without that header, the SHA-256 of the manifest a `GET` returns, read up to `cap`.
    pub(super) async fn manifest_digest(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
        cap: u64,
    ) -> Result<String, Failure> {
        let url = self.manifest_url(target);
        let head = |http: &reqwest::Client| http.head(&url).header(ACCEPT, ACCEPTED.join(", "));
        let response = self.send(target, auth, head).await?;
        if response.status() != StatusCode::OK {
            return Err(refusal(response).await.into());
        }
        if let Some(digest) = digest_header(response.headers())? {
            return Ok(digest);
        }
        // Distribution always sends the header; without it, the bytes tell.
        tracing::debug!(
            registry = target.resolve_registry(),
            "tag answered without a digest header: hashing the manifest"
        );
        let get = |http: &reqwest::Client| http.get(&url).header(ACCEPT, ACCEPTED.join(", "));
        let body = read_content(self.send(target, auth, get).await?, None, cap).await?;
        Ok(format!("sha256:{}", crate::encoding::sha256_hex(&body)))
    }

    /// A manifest or index by digest, read up to `cap` bytes (refused by its declared length
    /// first, then by what arrives). The caller checks the bytes against the digest.
    pub(super) async fn manifest(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
        cap: u64,
    ) -> Result<Vec<u8>, Failure> {
        let url = self.manifest_url(target);
        let get = |http: &reqwest::Client| http.get(&url).header(ACCEPT, ACCEPTED.join(", "));
        read_content(self.send(target, auth, get).await?, target.digest(), cap).await
    }

    /// A blob by digest (asked for by digest alone, never at a descriptor's `urls`), streamed
    /// up to `cap` bytes. The caller checks the bytes against the digest.
    pub(super) async fn blob(
        &self,
        target: &Reference,
        digest: &str,
        auth: &RegistryAuth,
        cap: u64,
    ) -> Result<Vec<u8>, Failure> {
        let url = self.blob_url(target, digest);
        let get = |http: &reqwest::Client| http.get(&url).header(ACCEPT, ACCEPTED.join(", "));
        read_content(self.send(target, auth, get).await?, Some(digest), cap).await
    }

    /// Sends the request `build` makes, authorized as the module documentation says, and
    /// answers a 401 once if its challenge can be answered with something new.
    async fn send(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, OciDistributionError> {
        let scope = format!("repository:{}:pull", target.repository());
        let sent = self.authorization(target, auth, &scope).await?;
        let response = authorized(build(&self.http), sent.as_ref()).send().await?;
        if response.status() != StatusCode::UNAUTHORIZED || matches!(auth, RegistryAuth::Bearer(_))
        {
            return Ok(response);
        }
        *self.memo.lock().await = None;
        self.forget(&scope, sent.as_ref());
        let Some(challenge) = Challenge::of(response.headers()) else {
            return Ok(response);
        };
        let registry = target.resolve_registry();
        let again = match self.answer(&challenge, &scope, auth).await? {
            Some(again) if sent.as_ref() != Some(&again) => again,
            _ => return Ok(response),
        };
        tracing::debug!(
            registry,
            scope,
            "request refused: sending it again authorized"
        );
        drain(response).await;
        Ok(authorized(build(&self.http), Some(&again)).send().await?)
    }

    /// What to send first: the bearer credentials, a live grant for `scope`, or what `/v2/`
    /// asks for.
    async fn authorization(
        &self,
        target: &Reference,
        auth: &RegistryAuth,
        scope: &str,
    ) -> Result<Option<HeaderValue>, OciDistributionError> {
        if let RegistryAuth::Bearer(token) = auth {
            return bearer(token).map(Some);
        }
        if let Some(granted) = self.granted(scope) {
            return Ok(Some(granted));
        }
        match self.said(target).await {
            None | Some(Said::NoChallenge) => Ok(None),
            Some(Said::Challenge(challenge)) => self.answer(&challenge, scope, auth).await,
        }
    }

    /// What answers `challenge` for `scope` (kept as the scope's grant); `None`: nothing does.
    async fn answer(
        &self,
        challenge: &Challenge,
        scope: &str,
        auth: &RegistryAuth,
    ) -> Result<Option<HeaderValue>, OciDistributionError> {
        match (challenge, auth) {
            (Challenge::Bearer(realm), _) => self.token(realm, scope, auth).await.map(Some),
            // An identity token is a refresh token for the token realm alone: a registry that
            // asks for basic credentials gets none.
            (Challenge::Basic, RegistryAuth::Basic(username, _))
                if username == super::IDENTITY_TOKEN_USERNAME =>
            {
                Ok(None)
            }
            (Challenge::Basic, RegistryAuth::Basic(username, password)) => {
                let value = sensitive(&format!(
                    "Basic {}",
                    crate::encoding::encode_base64(format!("{username}:{password}").as_bytes())
                ))?;
                self.keep(scope, value.clone(), MAX_TOKEN_TTL);
                Ok(Some(value))
            }
            (Challenge::Basic, _) => Ok(None),
        }
    }

    /// A token for `scope` from the realm of `challenge`: the one kept, or a new one, asked
    /// anonymously or with the basic credentials.
    async fn token(
        &self,
        challenge: &BearerChallenge,
        scope: &str,
        auth: &RegistryAuth,
    ) -> Result<HeaderValue, OciDistributionError> {
        let _asking = self.asking.lock().await;
        if let Some(granted) = self.granted(scope) {
            return Ok(granted);
        }
        let mut query = vec![("scope", scope)];
        if let Some(service) = &challenge.service {
            query.push(("service", service));
        }
        // The realm is followed wherever it points (see the registry's module documentation),
        // but one that names credentials of its own in its URL is not: the request would carry
        // two sets.
        let realm = reqwest::Url::parse(&challenge.realm).map_err(|e| {
            OciDistributionError::AuthenticationFailure(format!("unusable token realm: {e}"))
        })?;
        if !realm.username().is_empty() || realm.password().is_some() {
            return Err(OciDistributionError::AuthenticationFailure(
                "the token realm names credentials in its URL".into(),
            ));
        }
        let mut request = self.http.get(realm).query(&query);
        if let RegistryAuth::Basic(username, password) = auth {
            request = request.basic_auth(username, Some(password));
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            // The token server is out, not refusing: reported (and retried) as the registry's
            // own 5xx or 429 would be.
            return Err(refusal(response).await);
        }
        let body = read_small(response).await;
        if !status.is_success() {
            return Err(OciDistributionError::AuthenticationFailure(excerpt(&body)));
        }
        let granted: Granted = serde_json::from_slice(&body)
            .map_err(|e| OciDistributionError::RegistryTokenDecodeError(e.to_string()))?;
        let ttl = token_ttl(
            granted
                .expires_in
                .as_ref()
                .and_then(serde_json::Value::as_u64),
        );
        let token = granted.token.or(granted.access_token).ok_or_else(|| {
            OciDistributionError::RegistryTokenDecodeError("the answer holds no token".into())
        })?;
        let value = bearer(&token)?;
        tracing::debug!(realm = %challenge.realm, scope, ?ttl, "token obtained");
        self.keep(scope, value.clone(), ttl);
        Ok(value)
    }

    /// The live grant for `scope`.
    fn granted(&self, scope: &str) -> Option<HeaderValue> {
        let grants = lock(&self.grants);
        let (value, until) = grants.get(scope)?;
        (*until > Instant::now()).then(|| value.clone())
    }

    fn keep(&self, scope: &str, value: HeaderValue, ttl: Duration) {
        let mut grants = lock(&self.grants);
        if grants.len() >= MAX_GRANTS {
            grants.clear();
        }
        grants.insert(scope.to_string(), (value, Instant::now() + ttl));
    }

    /// Forgets the grant for `scope` if it is the one that was refused (a newer one, kept
    /// meanwhile by a concurrent request, stays).
    fn forget(&self, scope: &str, refused: Option<&HeaderValue>) {
        let mut grants = lock(&self.grants);
        if grants.get(scope).is_some_and(|(v, _)| Some(v) == refused) {
            grants.remove(scope);
        }
    }

    /// What `/v2/` said, asked now unless a live answer is kept; `None` when it gave nothing
    /// to go by.
    async fn said(&self, target: &Reference) -> Option<Said> {
        let mut memo = self.memo.lock().await;
        if let Some((said, until)) = &*memo {
            if *until > Instant::now() {
                return Some(said.clone());
            }
        }
        let registry = target.resolve_registry();
        let url = format!("{}://{registry}/v2/", self.scheme(registry));
        let said = match self.http.get(&url).send().await {
            Ok(response) => {
                let said = if let Some(challenge) = Challenge::of(response.headers()) {
                    Some(Said::Challenge(challenge))
                } else if response.status().is_success()
                    && !response.headers().contains_key(WWW_AUTHENTICATE)
                {
                    Some(Said::NoChallenge)
                } else {
                    None
                };
                drain(response).await;
                said
            }
            Err(_) => None,
        };
        tracing::debug!(registry, ?said, "registry api root probed");
        *memo = said
            .clone()
            .map(|said| (said, Instant::now() + CHALLENGE_MEMO_TTL));
        said
    }

    /// `http` or `https` for `registry`, as `oci-client` decides it from the same protocol.
    fn scheme(&self, registry: &str) -> &'static str {
        match &self.protocol {
            ClientProtocol::Http => "http",
            ClientProtocol::HttpsExcept(plain) if plain.iter().any(|h| h == registry) => "http",
            ClientProtocol::Https | ClientProtocol::HttpsExcept(_) => "https",
        }
    }

    fn manifest_url(&self, target: &Reference) -> String {
        let name = target.digest().or_else(|| target.tag()).unwrap_or("latest");
        self.url(target, "manifests", name)
    }

    fn blob_url(&self, target: &Reference, digest: &str) -> String {
        self.url(target, "blobs", digest)
    }

    /// `<scheme>://<endpoint>/v2/<repository>/<kind>/<name>`, with `?ns=<registry>` at a
    /// mirror.
    fn url(&self, target: &Reference, kind: &str, name: &str) -> String {
        let registry = target.resolve_registry();
        let namespace = target
            .namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        format!(
            "{}://{registry}/v2/{}/{kind}/{name}{namespace}",
            self.scheme(registry),
            target.repository()
        )
    }
}

/// How long a token whose answer said `expires_in` is kept.
fn token_ttl(expires_in: Option<u64>) -> Duration {
    expires_in.map_or(DEFAULT_TOKEN_TTL, |seconds| {
        Duration::from_secs(seconds).clamp(MIN_TOKEN_TTL, MAX_TOKEN_TTL)
    })
}

/// `request` with `value` as its `Authorization`, if any.
fn authorized(request: RequestBuilder, value: Option<&HeaderValue>) -> RequestBuilder {
    match value {
        Some(value) => request.header(AUTHORIZATION, value.clone()),
        None => request,
    }
}

/// `Bearer <token>`, marked sensitive.
fn bearer(token: &str) -> Result<HeaderValue, OciDistributionError> {
    sensitive(&format!("Bearer {token}"))
}

fn sensitive(text: &str) -> Result<HeaderValue, OciDistributionError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        OciDistributionError::RegistryTokenDecodeError(
            "the credentials cannot be sent as a header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Locks a map that is only ever read or written in one step (never across an `.await`), so a
/// poisoned lock still holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A token realm's answer (distribution's token spec: `token`, or OAuth2's `access_token`,
/// with its lifetime in seconds).
#[derive(serde::Deserialize)]
struct Granted {
    token: Option<String>,
    access_token: Option<String>,
    /// Seconds; anything but a non-negative integer (`-1`, `3.5`, `"300"`) counts as absent.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// A `WWW-Authenticate: Bearer realm="...",service="..."` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

impl BearerChallenge {
    /// The bearer challenge in `header`, if it is one with an `http(s)` realm.
    fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service) = (None, None);
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(',').unwrap_or((after, "")),
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                _ => {}
            }
            rest = after.trim_start_matches([',', ' ']);
        }
        let realm = realm?;
        let scheme_ok =
            reqwest::Url::parse(&realm).is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
        scheme_ok.then_some(Self { realm, service })
    }
}

/// The `Docker-Content-Digest` header (absent when empty).
fn digest_header(headers: &HeaderMap) -> Result<Option<String>, OciDistributionError> {
    match headers.get("Docker-Content-Digest") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok("") => Ok(None),
            Ok(text) => Ok(Some(text.to_string())),
            Err(_) => Err(OciDistributionError::SpecViolationError(
                "the Docker-Content-Digest header is not text".into(),
            )),
        },
    }
}

/// Reads a content answer up to `cap`, after refusing an error status and a
/// `Docker-Content-Digest` that names other content than `asked` under the same algorithm.
async fn read_content(
    response: Response,
    asked: Option<&str>,
    cap: u64,
) -> Result<Vec<u8>, Failure> {
    if response.status() != StatusCode::OK {
        return Err(refusal(response).await.into());
    }
    if let (Some(asked), Some(header)) = (asked, digest_header(response.headers())?) {
        let (asked_digest, named) = (Digest::parse(asked), Digest::parse(&header));
        let differs = match (&asked_digest, &named) {
            (Some(a), Some(n)) => a.algorithm() == n.algorithm() && a != n,
            _ => false,
        };
        if differs {
            return Err(Failure::Registry(
                DigestError::VerificationError {
                    expected: asked.to_string(),
                    actual: header,
                }
                .into(),
            ));
        }
    }
    let declared = response.content_length();
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    Ok(read_capped(stream, declared, cap).await?)
}

/// The error `oci-client` would report for an answer that is not a success: 401 as
/// unauthorized, another client error by its OCI error envelope if it has one, anything else by
/// its status.
async fn refusal(response: Response) -> OciDistributionError {
    let status = response.status();
    let url = response.url().to_string();
    let body = read_small(response).await;
    let by_status = |body: &[u8]| OciDistributionError::ServerError {
        code: status.as_u16(),
        url: url.clone(),
        message: excerpt(body),
    };
    if status == StatusCode::UNAUTHORIZED {
        OciDistributionError::UnauthorizedError { url }
    } else if status.is_success() {
        OciDistributionError::SpecViolationError(format!("expected HTTP 200, got {status}"))
    } else if status.is_client_error() {
        match serde_json::from_slice::<OciEnvelope>(&body) {
            Ok(envelope) => OciDistributionError::RegistryError { envelope, url },
            Err(_) => by_status(&body),
        }
    } else {
        by_status(&body)
    }
}

/// How much of an answer's body an error message quotes.
const EXCERPT_CHARS: usize = 256;

/// The start of an answer's body for an error message: lossy UTF-8, control characters
/// replaced, at most [`EXCERPT_CHARS`] characters.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Up to [`SMALL_BODY_CAP`] bytes of an answer; whatever could not be read is left out.
async fn read_small(response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = usize::try_from(SMALL_BODY_CAP)
            .unwrap_or(usize::MAX)
            .saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() >= room {
            break;
        }
    }
    body
}

/// Reads a small answer to its end, so that the connection can serve the next request.
async fn drain(response: Response) {
    read_small(response).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_with_their_realm_and_service() {
        assert_eq!(
            BearerChallenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert_eq!(
            BearerChallenge::parse("bearer realm=http://127.0.0.1:1/token"),
            Some(BearerChallenge {
                realm: "http://127.0.0.1:1/token".into(),
                service: None,
            })
        );
        for not_one in [
            r#"Basic realm="registry""#,
            r#"Bearer service="x""#,
            r#"Bearer realm="file:///etc/passwd""#,
            r#"Bearer realm="unterminated"#,
            "Bearer",
        ] {
            assert_eq!(BearerChallenge::parse(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn challenges_prefer_a_usable_bearer_realm_then_basic() {
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let bearer = r#"Bearer realm="http://127.0.0.1:1/token",service="s""#;
        assert!(matches!(
            Challenge::of(&headers(&[r#"Basic realm="r""#, bearer])),
            Some(Challenge::Bearer(b)) if b.service.as_deref() == Some("s")
        ));
        assert_eq!(
            Challenge::of(&headers(&[r#"basic realm="r""#])),
            Some(Challenge::Basic)
        );
        // A bearer realm that is not http(s) is no challenge the client answers.
        assert_eq!(
            Challenge::of(&headers(&[r#"Bearer realm="file:///x""#])),
            None
        );
        assert_eq!(Challenge::of(&HeaderMap::new()), None);
    }

    #[test]
    fn tokens_are_kept_for_their_lifetime_within_bounds() {
        assert_eq!(token_ttl(None), DEFAULT_TOKEN_TTL);
        assert_eq!(token_ttl(Some(120)), Duration::from_secs(120));
        assert_eq!(token_ttl(Some(0)), MIN_TOKEN_TTL);
        assert_eq!(token_ttl(Some(u64::MAX)), MAX_TOKEN_TTL);
    }

    #[test]
    fn the_scheme_is_chosen_as_oci_client_chooses_it() {
        crate::install_crypto_provider();
        let client = |protocol| EndpointClient::new(reqwest::Client::new(), protocol);
        let except = client(ClientProtocol::HttpsExcept(vec!["127.0.0.1:5000".into()]));
        assert_eq!(except.scheme("127.0.0.1:5000"), "http");
        assert_eq!(except.scheme("localhost:5000"), "https");
        assert_eq!(client(ClientProtocol::Http).scheme("r"), "http");
        assert_eq!(client(ClientProtocol::Https).scheme("r"), "https");

        let mut target: Reference = "registry.example/team/app:v1".parse().unwrap();
        let https = client(ClientProtocol::Https);
        assert_eq!(
            https.manifest_url(&target),
            "https://registry.example/v2/team/app/manifests/v1"
        );
        target.set_mirror_registry("mirror.example".into());
        assert_eq!(
            https.blob_url(&target, "sha256:ab"),
            "https://mirror.example/v2/team/app/blobs/sha256:ab?ns=registry.example"
        );
    }
}
