//! How many `GET /v2/` probes a resolution costs, and what happens when a request the client
//! sent directly (the endpoint's `/v2/` sent no challenge) is answered 401.
//!
//! Two servers, both on 127.0.0.1, counting requests at the server:
//! - **the real registry** (Debian's `docker-registry`, plain HTTP, no auth, from
//!   `tests/common`) behind `common::TcpProxy`, which counts every HTTP request it forwards;
//!   images from `tests/peers/mklayout.py` pushed with skopeo. Skipped (with a message) when the
//!   registry peers are not installed, except under `CI=true`;
//! - **a stand-in registry** written here (axum, in the test's own runtime) for what the real
//!   one will not do: an anonymous `/v2/` in front of repositories that need basic auth or a
//!   bearer token, a registry that begins to challenge while the client runs, manifests that
//!   never end, tag `HEAD`s without `Docker-Content-Digest`, a mirror. It logs every request
//!   (method, path, the `Authorization` it carried, the status it got).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestgate::image::{
    ImageReference, Registry, RegistryConfig, RegistryCredentials, RegistryError, ResolvedImage,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use tokio::time::Instant;

const BUDGET: Duration = Duration::from_secs(20);
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const USER: &str = "ci";
const PASSWORD: &str = "s3cret";
const GOOD_TOKEN: &str = "granted-to-ci";
const ANONYMOUS_TOKEN: &str = "granted-to-anyone";
const ROTATED_TOKEN: &str = "granted-to-anyone-later";

// ---------------------------------------------------------------------------------------------
// The stand-in registry
// ---------------------------------------------------------------------------------------------

/// What the stand-in asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No auth anywhere; `/v2/` answers 200.
    Open,
    /// `/v2/` answers 200; repositories want basic auth (401 with a `Basic` challenge).
    RepositoryBasic,
    /// `/v2/` answers 200; repositories want a bearer token that `/token` grants to the user
    /// (401 with a `Bearer` challenge naming `/token`).
    RepositoryToken,
    /// Everything challenges, `/v2/` included; `/token` grants a token to anyone.
    Challenging,
    /// `/v2/` answers 200; repositories want a bearer token that `/token` grants to anyone.
    RepositoryAnonymousToken,
    /// As `Challenging`, with another token: the earlier one is refused from now on.
    ChallengingRotated,
    /// As `Challenging`, but `/token` answers 503.
    TokenServerDown,
    /// As `Challenging`, with a token answer whose `expires_in` is `-1`.
    OddTokenLifetime,
}

/// How the stand-in misbehaves with manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    /// None.
    Nothing,
    /// A manifest `GET` (by tag or digest) streams spaces for ever.
    EndlessManifests,
    /// A tag `HEAD` names no digest (manifests are served as usual).
    WithoutDigest,
    /// As `EndlessManifests`, and a tag `HEAD` names no digest.
    EndlessWithoutDigest,
}

/// One request the stand-in saw.
#[derive(Debug, Clone)]
struct Seen {
    /// `METHOD /path`.
    route: String,
    authorization: Option<String>,
    status: u16,
}

struct Shared {
    addr: SocketAddr,
    /// Content by digest: (media type, bytes).
    content: HashMap<String, (&'static str, Vec<u8>)>,
    /// `repository:tag` → digest.
    tags: HashMap<String, String>,
    mode: Mutex<Mode>,
    misbehaviour: Mutex<Misbehaviour>,
    /// Bytes of endless manifests handed to the HTTP server so far.
    streamed: Arc<AtomicU64>,
    seen: Mutex<Vec<Seen>>,
}

struct StandIn {
    shared: Arc<Shared>,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", attestgate::encoding::sha256_hex(bytes))
}

impl StandIn {
    /// Serves `images` repositories (`app0`, `app1`, ...), each with one single-platform image
    /// at tag `v1`, in `mode`.
    async fn start(images: usize, mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut content = HashMap::new();
        let mut tags = HashMap::new();
        for i in 0..images {
            let config = serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "config": {"Labels": {"org.opencontainers.image.revision": format!("{i:040x}")}},
                "rootfs": {"type": "layers", "diff_ids": []},
            })
            .to_string()
            .into_bytes();
            let manifest = serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
                "layers": [],
            })
            .to_string()
            .into_bytes();
            tags.insert(format!("app{i}:v1"), sha256(&manifest));
            content.insert(sha256(&config), (OCI_CONFIG, config));
            content.insert(sha256(&manifest), (OCI_MANIFEST, manifest));
        }
        let shared = Arc::new(Shared {
            addr,
            content,
            tags,
            mode: Mutex::new(mode),
            misbehaviour: Mutex::new(Misbehaviour::Nothing),
            streamed: Arc::new(AtomicU64::new(0)),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { shared }
    }

    fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    fn misbehave(&self, misbehaviour: Misbehaviour) {
        *self.shared.misbehaviour.lock().unwrap() = misbehaviour;
    }

    fn streamed(&self) -> u64 {
        self.shared.streamed.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// How many requests went to `route` (`METHOD /path`).
    fn count(&self, route: &str) -> usize {
        self.seen().iter().filter(|s| s.route == route).count()
    }

    /// The requests whose path starts with `prefix`.
    fn under(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| {
                s.route
                    .split_once(' ')
                    .is_some_and(|(_, p)| p.starts_with(prefix))
            })
            .collect()
    }

    fn config(&self) -> RegistryConfig {
        RegistryConfig {
            insecure_hosts: vec![self.host()],
            ..RegistryConfig::default()
        }
    }

    async fn resolve(
        &self,
        registry: &Registry,
        repository: &str,
        credentials: &RegistryCredentials,
    ) -> Result<ResolvedImage, RegistryError> {
        resolve_at(
            registry,
            &format!("{}/{repository}:v1", self.host()),
            credentials,
        )
        .await
    }
}

async fn resolve_at(
    registry: &Registry,
    reference: &str,
    credentials: &RegistryCredentials,
) -> Result<ResolvedImage, RegistryError> {
    let reference = ImageReference::parse(reference).unwrap();
    registry
        .resolve(&reference, credentials, Instant::now() + BUDGET)
        .await
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        attestgate::encoding::encode_base64(format!("{user}:{password}").as_bytes())
    )
}

fn respond(status: StatusCode, headers: &[(&str, String)], body: Vec<u8>) -> Response {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(body)).unwrap()
}

fn envelope(code: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": code.to_lowercase()}]})
        .to_string()
        .into_bytes()
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mode = *shared.mode.lock().unwrap();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let response = route(&shared, mode, &method, uri.path(), authorization.as_deref());
    shared.seen.lock().unwrap().push(Seen {
        route: format!("{method} {}", uri.path()),
        authorization,
        status: response.status().as_u16(),
    });
    response
}

fn route(
    shared: &Shared,
    mode: Mode,
    method: &Method,
    path: &str,
    authorization: Option<&str>,
) -> Response {
    let realm = format!(
        r#"Bearer realm="http://{}/token",service="stand-in""#,
        shared.addr
    );
    let json = || ("Content-Type", "application/json".to_string());
    if path == "/v2/" {
        return match mode {
            Mode::Challenging
            | Mode::ChallengingRotated
            | Mode::TokenServerDown
            | Mode::OddTokenLifetime => respond(
                StatusCode::UNAUTHORIZED,
                &[("WWW-Authenticate", realm), json()],
                envelope("UNAUTHORIZED"),
            ),
            _ => respond(StatusCode::OK, &[json()], b"{}".to_vec()),
        };
    }
    if path == "/token" {
        if mode == Mode::TokenServerDown {
            return respond(StatusCode::SERVICE_UNAVAILABLE, &[], b"down".to_vec());
        }
        if mode == Mode::OddTokenLifetime {
            let body = serde_json::json!({"token": ANONYMOUS_TOKEN, "expires_in": -1});
            return respond(StatusCode::OK, &[json()], body.to_string().into_bytes());
        }
        let granted = match mode {
            Mode::RepositoryToken if authorization == Some(&basic(USER, PASSWORD)) => GOOD_TOKEN,
            Mode::Challenging | Mode::RepositoryAnonymousToken => ANONYMOUS_TOKEN,
            Mode::ChallengingRotated => ROTATED_TOKEN,
            _ => return respond(StatusCode::UNAUTHORIZED, &[], b"no".to_vec()),
        };
        let body = serde_json::json!({"token": granted}).to_string();
        return respond(StatusCode::OK, &[json()], body.into_bytes());
    }

    let wanted = match mode {
        Mode::Open => None,
        Mode::RepositoryBasic => Some((basic(USER, PASSWORD), r#"Basic realm="stand-in""#.into())),
        Mode::RepositoryToken => Some((format!("Bearer {GOOD_TOKEN}"), realm)),
        Mode::Challenging
        | Mode::RepositoryAnonymousToken
        | Mode::TokenServerDown
        | Mode::OddTokenLifetime => Some((format!("Bearer {ANONYMOUS_TOKEN}"), realm)),
        Mode::ChallengingRotated => Some((format!("Bearer {ROTATED_TOKEN}"), realm)),
    };
    if let Some((wanted, challenge)) = wanted {
        if authorization != Some(wanted.as_str()) {
            return respond(
                StatusCode::UNAUTHORIZED,
                &[("WWW-Authenticate", challenge), json()],
                envelope("UNAUTHORIZED"),
            );
        }
    }

    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(StatusCode::NOT_FOUND, &[], Vec::new());
    };
    let misbehaviour = *shared.misbehaviour.lock().unwrap();
    let endless = matches!(
        misbehaviour,
        Misbehaviour::EndlessManifests | Misbehaviour::EndlessWithoutDigest
    );
    if endless && rest.contains("/manifests/") && method == Method::GET {
        let streamed = shared.streamed.clone();
        let endless = futures_util::stream::repeat_with(move || {
            streamed.fetch_add(64 * 1024, Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])
        });
        return Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", OCI_MANIFEST)
            .body(Body::from_stream(endless))
            .unwrap();
    }
    let found = if let Some((repository, reference)) = rest.split_once("/manifests/") {
        let digest = shared
            .tags
            .get(&format!("{repository}:{reference}"))
            .cloned()
            .unwrap_or_else(|| reference.to_string());
        shared.content.get(&digest).map(|c| (digest, c))
    } else if let Some((_, digest)) = rest.split_once("/blobs/") {
        shared.content.get(digest).map(|c| (digest.to_string(), c))
    } else {
        None
    };
    let digest_header = !matches!(
        misbehaviour,
        Misbehaviour::WithoutDigest | Misbehaviour::EndlessWithoutDigest
    );
    match found {
        Some((digest, (media_type, body))) => {
            let mut headers = vec![("Content-Type", (*media_type).to_string())];
            if digest_header {
                headers.push(("Docker-Content-Digest", digest));
            }
            // hyper answers a HEAD without the body, keeping its length.
            respond(StatusCode::OK, &headers, body.clone())
        }
        None => respond(
            StatusCode::NOT_FOUND,
            &[json()],
            envelope("MANIFEST_UNKNOWN"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Probes on an anonymous registry
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolutions_on_an_anonymous_registry_probe_its_api_root_once() {
    let stand_in = StandIn::start(7, Mode::Open).await;
    let registry = Registry::new(stand_in.config()).unwrap();
    let anonymous = RegistryCredentials::Anonymous;

    // Three one after the other, then three at once: one probe between all of them.
    let mut first = Vec::new();
    for i in 0..3 {
        let resolved = stand_in
            .resolve(&registry, &format!("app{i}"), &anonymous)
            .await
            .unwrap();
        assert_eq!(resolved.images.len(), 1);
        first.push(resolved);
    }
    let names: Vec<String> = (3..6).map(|i| format!("app{i}")).collect();
    let at_once = futures_util::future::join_all(
        names
            .iter()
            .map(|name| stand_in.resolve(&registry, name, &anonymous)),
    )
    .await;
    for result in at_once {
        result.unwrap();
    }
    assert_eq!(stand_in.count("GET /v2/"), 1);
    for i in 0..6 {
        assert_eq!(stand_in.count(&format!("HEAD /v2/app{i}/manifests/v1")), 1);
        let content = stand_in.under(&format!("/v2/app{i}/"));
        // HEAD by tag, GET manifest by digest, GET config: nothing else.
        assert_eq!(content.len(), 3, "{content:?}");
    }
    assert_eq!(stand_in.seen().len(), 1 + 6 * 3);

    // Warm (within the tag TTL): the same image, kept whole, and no request at all.
    for (i, resolved) in first.iter().enumerate() {
        let again = stand_in
            .resolve(&registry, &format!("app{i}"), &anonymous)
            .await
            .unwrap();
        assert_eq!(&again, resolved);
    }
    assert_eq!(stand_in.seen().len(), 1 + 6 * 3);

    // Basic credentials are not sent to a registry that asked for none (as oci-client does
    // not either), and the memo holds for them too (one client per credentials: one probe).
    let resolved = stand_in
        .resolve(
            &registry,
            "app6",
            &RegistryCredentials::Basic {
                username: USER.into(),
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    assert!(stand_in.seen().iter().all(|s| s.authorization.is_none()));
    assert_eq!(stand_in.count("GET /v2/"), 2);
}

#[test]
fn resolutions_at_the_real_registry_cost_one_probe_per_endpoint() {
    let Some(registry_peer) = common::PlainRegistry::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    common::mklayout(&layout, &"a".repeat(40), "https://example.invalid/app");
    const IMAGES: usize = 4;
    for i in 0..IMAGES {
        registry_peer.push(&layout, "multi", &format!("demo/app{i}:multi"));
    }
    let proxy = common::TcpProxy::start(&registry_peer.host);
    let config = RegistryConfig {
        insecure_hosts: vec![proxy.host()],
        ..RegistryConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let references: Vec<String> = (0..IMAGES)
        .map(|i| format!("{}/demo/app{i}:multi", proxy.host()))
        .collect();
    let anonymous = RegistryCredentials::Anonymous;

    // Each image: HEAD by tag, the index, 2 manifests and 2 configs (repositories differ, so
    // no cache helps); plus one probe for the whole run. oci-client alone probed before each
    // of those 6 requests.
    let per_image = 6;
    let sequential = Registry::new(config.clone()).unwrap();
    runtime.block_on(async {
        for reference in &references {
            let resolved = resolve_at(&sequential, reference, &anonymous)
                .await
                .unwrap();
            assert_eq!(resolved.images.len(), 2);
        }
    });
    assert_eq!(proxy.requests(), 1 + IMAGES * per_image);

    let concurrent = Registry::new(config).unwrap();
    runtime.block_on(async {
        let results = futures_util::future::join_all(
            references
                .iter()
                .map(|r| resolve_at(&concurrent, r, &anonymous)),
        )
        .await;
        for result in results {
            assert_eq!(result.unwrap().images.len(), 2);
        }
    });
    assert_eq!(proxy.requests(), 2 * (1 + IMAGES * per_image));
}

// ---------------------------------------------------------------------------------------------
// 401 on a request sent directly
// ---------------------------------------------------------------------------------------------

fn ci(password: &str) -> RegistryCredentials {
    RegistryCredentials::Basic {
        username: USER.into(),
        password: password.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_wants_basic_auth_behind_an_open_api_root_gets_the_credentials() {
    let stand_in = StandIn::start(1, Mode::RepositoryBasic).await;
    let registry = Registry::new(stand_in.config()).unwrap();

    let resolved = stand_in
        .resolve(&registry, "app0", &ci(PASSWORD))
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    // Every content request was refused once without credentials and then served with them.
    let content = stand_in.under("/v2/app0/");
    let served: Vec<_> = content.iter().filter(|s| s.status == 200).collect();
    assert_eq!(served.len(), 3, "{content:?}");
    let wanted = basic(USER, PASSWORD);
    assert!(served
        .iter()
        .all(|s| s.authorization.as_deref() == Some(wanted.as_str())));
    assert!(content
        .iter()
        .filter(|s| s.status == 401)
        .all(|s| s.authorization.is_none()));

    // The wrong password, and none, are refused as unauthorized (never cached as not found).
    let wrong = Registry::new(stand_in.config()).unwrap();
    let err = stand_in
        .resolve(&wrong, "app0", &ci("wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let err = stand_in
        .resolve(&wrong, "app0", &RegistryCredentials::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_realm_named_by_a_repository_is_asked_with_the_credentials() {
    let stand_in = StandIn::start(1, Mode::RepositoryToken).await;
    let registry = Registry::new(stand_in.config()).unwrap();

    let resolved = stand_in
        .resolve(&registry, "app0", &ci(PASSWORD))
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    let wanted = basic(USER, PASSWORD);
    let tokens = stand_in.under("/token");
    assert!(!tokens.is_empty());
    assert!(tokens
        .iter()
        .all(|s| s.authorization.as_deref() == Some(wanted.as_str()) && s.status == 200));
    let bearer = format!("Bearer {GOOD_TOKEN}");
    let served: Vec<_> = stand_in
        .under("/v2/app0/")
        .into_iter()
        .filter(|s| s.status == 200)
        .collect();
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(served
        .iter()
        .all(|s| s.authorization.as_deref() == Some(bearer.as_str())));

    let wrong = Registry::new(stand_in.config()).unwrap();
    let err = stand_in
        .resolve(&wrong, "app0", &ci("wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_begins_to_challenge_is_asked_through_its_challenge() {
    let stand_in = StandIn::start(3, Mode::Open).await;
    let registry = Registry::new(stand_in.config()).unwrap();
    let anonymous = RegistryCredentials::Anonymous;

    stand_in
        .resolve(&registry, "app0", &anonymous)
        .await
        .unwrap();
    assert_eq!(stand_in.count("GET /v2/"), 1);

    // The registry turns auth on: the first anonymous request is refused, the memo is
    // forgotten, and the request is sent once more with a token from the realm the 401 names.
    stand_in.set_mode(Mode::Challenging);
    stand_in
        .resolve(&registry, "app1", &anonymous)
        .await
        .unwrap();
    let refused: Vec<_> = stand_in
        .under("/v2/app1/")
        .into_iter()
        .filter(|s| s.status == 401)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(!stand_in.under("/token").is_empty());

    // From then on the memo says "challenge": no request is sent unauthenticated any more.
    stand_in
        .resolve(&registry, "app2", &anonymous)
        .await
        .unwrap();
    let app2 = stand_in.under("/v2/app2/");
    assert_eq!(app2.len(), 3, "{app2:?}");
    let bearer = format!("Bearer {ANONYMOUS_TOKEN}");
    assert!(app2
        .iter()
        .all(|s| s.status == 200 && s.authorization.as_deref() == Some(bearer.as_str())));
}

// ---------------------------------------------------------------------------------------------
// Tokens: asked of the realm a repository names, kept per repository
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_token_is_asked_of_the_realm_a_repository_names() {
    let stand_in = StandIn::start(1, Mode::RepositoryAnonymousToken).await;
    let registry = Registry::new(stand_in.config()).unwrap();

    let resolved = stand_in
        .resolve(&registry, "app0", &RegistryCredentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    // One token, asked without credentials; one refusal (the first request), then the token
    // is kept for the repository.
    let tokens = stand_in.under("/token");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(tokens[0].authorization.is_none() && tokens[0].status == 200);
    let content = stand_in.under("/v2/app0/");
    let refused: Vec<_> = content.iter().filter(|s| s.status == 401).collect();
    assert_eq!(refused.len(), 1, "{content:?}");
    let bearer = format!("Bearer {ANONYMOUS_TOKEN}");
    let served: Vec<_> = content.iter().filter(|s| s.status == 200).collect();
    assert_eq!(served.len(), 3, "{content:?}");
    assert!(served
        .iter()
        .all(|s| s.authorization.as_deref() == Some(bearer.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_token_never_goes_to_the_registry_as_basic_credentials() {
    // The identity token is a refresh token for a token realm; a registry that asks for basic
    // credentials must not get it, whether it asks at `/v2/` or at a repository.
    let stand_in = StandIn::start(1, Mode::RepositoryBasic).await;
    let registry = Registry::new(stand_in.config()).unwrap();
    let identity = RegistryCredentials::Basic {
        username: attestgate::image::IDENTITY_TOKEN_USERNAME.into(),
        password: "refresh-secret".into(),
    };
    let err = stand_in
        .resolve(&registry, "app0", &identity)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let seen = stand_in.under("/");
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_that_is_down_is_an_outage_not_a_refusal() {
    let stand_in = StandIn::start(1, Mode::TokenServerDown).await;
    let registry = Registry::new(stand_in.config()).unwrap();
    let err = stand_in
        .resolve(&registry, "app0", &RegistryCredentials::Anonymous)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ServerError { status: 503, .. }),
        "{err:?}"
    );
    // Retried as a registry's own 503 would be.
    assert!(stand_in.under("/token").len() > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odd_token_lifetime_falls_back_to_the_default() {
    let stand_in = StandIn::start(1, Mode::OddTokenLifetime).await;
    let registry = Registry::new(stand_in.config()).unwrap();
    let resolved = stand_in
        .resolve(&registry, "app0", &RegistryCredentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    assert_eq!(stand_in.under("/token").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_kept_per_repository() {
    let stand_in = StandIn::start(3, Mode::Challenging).await;
    // Nothing kept but tokens: every resolution makes its three requests.
    let config = RegistryConfig {
        tag_cache_ttl: Duration::ZERO,
        content_cache_bytes: 0,
        ..stand_in.config()
    };
    let registry = Registry::new(config).unwrap();
    let anonymous = RegistryCredentials::Anonymous;

    for _ in 0..4 {
        stand_in
            .resolve(&registry, "app0", &anonymous)
            .await
            .unwrap();
    }
    assert_eq!(stand_in.under("/v2/app0/").len(), 4 * 3);
    assert_eq!(stand_in.under("/token").len(), 1);

    stand_in
        .resolve(&registry, "app1", &anonymous)
        .await
        .unwrap();
    assert_eq!(stand_in.under("/token").len(), 2);

    // Concurrent resolutions of one repository share one token.
    let at_once = futures_util::future::join_all(
        (0..4).map(|_| stand_in.resolve(&registry, "app2", &anonymous)),
    )
    .await;
    for result in at_once {
        result.unwrap();
    }
    assert_eq!(stand_in.under("/token").len(), 3);
    // Nothing was ever sent without its token but the probe.
    assert_eq!(stand_in.count("GET /v2/"), 1);
    assert!(stand_in
        .seen()
        .iter()
        .all(|s| s.route == "GET /v2/" || s.route.starts_with("GET /token") || s.status == 200));

    // The registry stops taking the kept token: the first request it refuses is sent again
    // with a new one, which is kept in turn.
    stand_in.set_mode(Mode::ChallengingRotated);
    let before = stand_in.seen().len();
    for _ in 0..2 {
        stand_in
            .resolve(&registry, "app0", &anonymous)
            .await
            .unwrap();
    }
    let after: Vec<Seen> = stand_in.seen().split_off(before);
    let refused: Vec<_> = after.iter().filter(|s| s.status == 401).collect();
    assert_eq!(refused.len(), 1, "{after:?}");
    assert_eq!(
        refused[0].authorization.as_deref(),
        Some(format!("Bearer {ANONYMOUS_TOKEN}").as_str())
    );
    assert_eq!(stand_in.under("/token").len(), 4);
    let rotated = format!("Bearer {ROTATED_TOKEN}");
    let served: Vec<_> = after
        .iter()
        .filter(|s| s.status == 200 && !s.route.starts_with("GET /token"))
        .collect();
    assert_eq!(served.len(), 2 * 3, "{after:?}");
    assert!(served
        .iter()
        .all(|s| s.authorization.as_deref() == Some(rotated.as_str())));
}

// ---------------------------------------------------------------------------------------------
// Caps: a manifest that never ends is refused at the manifest cap, whatever the auth
// ---------------------------------------------------------------------------------------------

/// Resolves `app0` anonymously with a 10 s request timeout and checks that the endless
/// manifest was refused at the cap, long before the timeout, with little sent.
async fn assert_refused_at_the_cap(stand_in: &StandIn) {
    let config = RegistryConfig {
        request_timeout: Duration::from_secs(10),
        ..stand_in.config()
    };
    let limit = config.max_manifest_bytes;
    let registry = Registry::new(config).unwrap();
    let started = std::time::Instant::now();
    let err = stand_in
        .resolve(&registry, "app0", &RegistryCredentials::Anonymous)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, RegistryError::TooLarge { limit: l, .. } if *l == limit),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("larger than the limit of {limit} bytes")),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    // The connection was dropped at the cap: what the server produced is the cap plus what
    // the sockets' buffers held, not what a 10 s stream would be.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let streamed = stand_in.streamed();
    let before = streamed;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stand_in.streamed(), before, "the server still streams");
    assert!(
        streamed >= limit && streamed < limit + 32 * 1024 * 1024,
        "{streamed} bytes streamed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_manifest_at_a_challenging_registry_is_refused_at_the_cap() {
    let stand_in = StandIn::start(1, Mode::Challenging).await;
    stand_in.misbehave(Misbehaviour::EndlessManifests);
    assert_refused_at_the_cap(&stand_in).await;
    // It was the manifest by digest, asked with a token.
    let bearer = format!("Bearer {ANONYMOUS_TOKEN}");
    assert!(stand_in
        .seen()
        .iter()
        .any(|s| s.route.starts_with("GET /v2/app0/manifests/sha256:")
            && s.authorization.as_deref() == Some(bearer.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_tag_manifest_after_a_head_without_digest_is_refused_at_the_cap() {
    let stand_in = StandIn::start(1, Mode::Open).await;
    stand_in.misbehave(Misbehaviour::EndlessWithoutDigest);
    assert_refused_at_the_cap(&stand_in).await;
    assert_eq!(stand_in.count("HEAD /v2/app0/manifests/v1"), 1);
    assert_eq!(stand_in.count("GET /v2/app0/manifests/v1"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_head_without_digest_is_resolved_by_hashing_the_manifest() {
    let stand_in = StandIn::start(1, Mode::Challenging).await;
    stand_in.misbehave(Misbehaviour::WithoutDigest);
    let registry = Registry::new(stand_in.config()).unwrap();
    let resolved = stand_in
        .resolve(&registry, "app0", &RegistryCredentials::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved.digest.to_string(), stand_in.shared.tags["app0:v1"]);
    assert_eq!(stand_in.count("HEAD /v2/app0/manifests/v1"), 1);
    assert_eq!(stand_in.count("GET /v2/app0/manifests/v1"), 1);
}

// ---------------------------------------------------------------------------------------------
// Mirrors: the registry's credentials stay with the registry
// ---------------------------------------------------------------------------------------------

/// A registry whose only mirror is `mirror`, with the registry's own host last.
fn mirrored(registry: &StandIn, mirror: &StandIn) -> (tempfile::TempDir, RegistryConfig) {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(registry.host());
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.host(),
            mirror.host()
        ),
    )
    .unwrap();
    let config = RegistryConfig {
        insecure_hosts: vec![registry.host(), mirror.host()],
        mirrors: Some(attestgate::image::Mirrors::from_dir(dir.path()).unwrap()),
        ..RegistryConfig::default()
    };
    (dir, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_on_another_host_never_gets_the_registry_credentials() {
    let upstream = StandIn::start(1, Mode::RepositoryBasic).await;
    let mirror = StandIn::start(1, Mode::Challenging).await;
    let (_dir, config) = mirrored(&upstream, &mirror);
    let registry = Registry::new(config).unwrap();

    // The mirror challenges and grants anonymous tokens: it serves, asked anonymously.
    let resolved = upstream
        .resolve(&registry, "app0", &ci(PASSWORD))
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    let mirror_seen = mirror.seen();
    assert!(mirror_seen
        .iter()
        .any(|s| s.route.starts_with("GET /token")));
    let anonymous_token = format!("Bearer {ANONYMOUS_TOKEN}");
    assert!(
        mirror_seen.iter().all(|s| s.authorization.is_none()
            || s.authorization.as_deref() == Some(anonymous_token.as_str())),
        "{mirror_seen:?}"
    );
    assert!(upstream.seen().is_empty());

    // A mirror that wants basic auth refuses, never sees the credentials, and is passed over
    // for the registry itself, which gets them.
    mirror.set_mode(Mode::RepositoryBasic);
    let registry = Registry::new(mirrored(&upstream, &mirror).1).unwrap();
    let resolved = upstream
        .resolve(&registry, "app0", &ci(PASSWORD))
        .await
        .unwrap();
    assert_eq!(resolved.images.len(), 1);
    let mirror_seen = mirror.seen();
    assert!(mirror_seen.iter().any(|s| s.status == 401));
    assert!(
        mirror_seen.iter().all(|s| !s
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic"))),
        "{mirror_seen:?}"
    );
    let wanted = basic(USER, PASSWORD);
    assert!(upstream
        .seen()
        .iter()
        .any(|s| s.status == 200 && s.authorization.as_deref() == Some(wanted.as_str())));

    // The registry itself, reached when the mirror has not got the image, gets them.
    let own = StandIn::start(1, Mode::RepositoryBasic).await;
    let (_dir, config) = mirrored(&own, &StandIn::start(0, Mode::Open).await);
    let registry = Registry::new(config).unwrap();
    own.resolve(&registry, "app0", &ci(PASSWORD)).await.unwrap();
    let wanted = basic(USER, PASSWORD);
    assert!(own
        .seen()
        .iter()
        .any(|s| s.status == 200 && s.authorization.as_deref() == Some(wanted.as_str())));
}
