//! The latency injector: an HTTP/1.1 proxy on loopback in front of one upstream (the registry,
//! Archivista), forwarding every request as it came. It holds each request back a fixed delay
//! before forwarding it (so every response arrives that much later), answers a chosen fraction
//! of requests with 429 instead (after the same delay, without asking the upstream), counts the
//! requests by kind, and can record when each one arrived. The counts are the upstream's view:
//! every request the webhook sent, whoever in the webhook sent it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use axum::Router;

/// What the upstream behind a proxy is, which decides how requests are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    Registry,
    Archivista,
}

/// One request as the proxy saw it arrive.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Since the timeline's epoch.
    pub(crate) at: Duration,
    pub(crate) upstream: Upstream,
    pub(crate) kind: &'static str,
}

/// Arrivals at every proxy that shares it, on one clock.
#[derive(Debug)]
pub(crate) struct Timeline {
    epoch: Mutex<Instant>,
    recording: AtomicBool,
    events: Mutex<Vec<Event>>,
}

impl Timeline {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Mutex::new(Instant::now()),
            recording: AtomicBool::new(false),
            events: Mutex::new(Vec::new()),
        })
    }

    /// Forgets what was recorded and records from now on, timed from now.
    pub(crate) fn start(&self) {
        *self.epoch.lock().unwrap() = Instant::now();
        self.events.lock().unwrap().clear();
        self.recording.store(true, Ordering::SeqCst);
    }

    /// Stops recording and returns the arrivals, in order.
    pub(crate) fn stop(&self) -> Vec<Event> {
        self.recording.store(false, Ordering::SeqCst);
        let mut events = std::mem::take(&mut *self.events.lock().unwrap());
        events.sort_by_key(|e| e.at);
        events
    }

    fn record(&self, upstream: Upstream, kind: &'static str) {
        if self.recording.load(Ordering::SeqCst) {
            let at = self.epoch.lock().unwrap().elapsed();
            self.events
                .lock()
                .unwrap()
                .push(Event { at, upstream, kind });
        }
    }
}

struct Shared {
    upstream: Upstream,
    target: String,
    client: reqwest::Client,
    delay_ms: AtomicU64,
    /// 429s per million requests.
    refuse_ppm: AtomicU32,
    serial: AtomicU64,
    refused: AtomicU64,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    timeline: Arc<Timeline>,
}

/// A running proxy; it serves as long as the harness runs.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
}

/// What one proxy counted since its last reset.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    pub(crate) by_kind: BTreeMap<&'static str, u64>,
    pub(crate) refused: u64,
}

impl Counts {
    pub(crate) fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    pub(crate) fn of(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0)
    }

    /// `kind n, kind n` (every kind seen), or `none`.
    pub(crate) fn describe(&self) -> String {
        if self.by_kind.is_empty() {
            return "none".into();
        }
        let mut parts: Vec<String> = self
            .by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        if self.refused > 0 {
            parts.push(format!("(429 injected: {})", self.refused));
        }
        parts.join(", ")
    }
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream_addr` (loopback only).
    pub(crate) async fn start(
        upstream: Upstream,
        upstream_addr: &str,
        timeline: Arc<Timeline>,
    ) -> Self {
        let parsed: SocketAddr = upstream_addr.parse().expect("upstream host:port");
        assert!(
            parsed.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .expect("proxy client");
        let shared = Arc::new(Shared {
            upstream,
            target: format!("http://{upstream_addr}"),
            client,
            delay_ms: AtomicU64::new(0),
            refuse_ppm: AtomicU32::new(0),
            serial: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            timeline,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy bind");
        let addr = listener.local_addr().expect("proxy address");
        let app = Router::new().fallback(forward).with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { addr, shared }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Holds every request back `delay` before forwarding it.
    pub(crate) fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answers this fraction of requests (0.0 to 1.0) with 429, chosen by a fixed
    /// pseudo-random sequence so that runs repeat.
    pub(crate) fn set_refusals(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
        self.shared.refuse_ppm.store(ppm, Ordering::SeqCst);
    }

    /// The counts since the last reset, and a reset.
    pub(crate) fn take_counts(&self) -> Counts {
        let by_kind = std::mem::take(&mut *self.shared.counts.lock().unwrap());
        let refused = self.shared.refused.swap(0, Ordering::SeqCst);
        Counts { by_kind, refused }
    }
}

/// splitmix64: a fixed, well-spread sequence from a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The name a request is counted under.
fn kind_of(upstream: Upstream, method: &Method, path: &str) -> &'static str {
    match upstream {
        Upstream::Registry => {
            let digest = path.rsplit('/').next().is_some_and(|r| r.contains(':'));
            if path == "/v2/" || path == "/v2" {
                "GET /v2/ (auth probe)"
            } else if path.contains("/manifests/") {
                match (method == Method::HEAD, digest) {
                    (true, false) => "HEAD manifest by tag",
                    (true, true) => "HEAD manifest by digest",
                    (false, false) => "GET manifest by tag",
                    (false, true) => "GET manifest/index by digest",
                }
            } else if path.contains("/blobs/") {
                "GET blob (config)"
            } else {
                "other"
            }
        }
        Upstream::Archivista => {
            if path == "/query" {
                "POST /query (search)"
            } else if path.starts_with("/download/") {
                "GET /download (envelope)"
            } else {
                "other"
            }
        }
    }
}

/// Hop-by-hop headers, which a proxy must not pass on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn passed_on(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !hop_by_hop(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let kind = kind_of(shared.upstream, &parts.method, &path);
    *shared.counts.lock().unwrap().entry(kind).or_default() += 1;
    shared.timeline.record(shared.upstream, kind);

    let serial = shared.serial.fetch_add(1, Ordering::SeqCst);
    let refuse = (mix(serial) % 1_000_000) < u64::from(shared.refuse_ppm.load(Ordering::SeqCst));
    let delay = Duration::from_millis(shared.delay_ms.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if refuse {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        let body = match shared.upstream {
            Upstream::Registry => {
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by the bench proxy"}]}"#
            }
            Upstream::Archivista => "too many requests (injected by the bench proxy)",
        };
        return Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("response");
    }

    let bytes = match axum::body::to_bytes(body, 512 * 1024 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let upstream = shared
        .client
        .request(
            parts.method.clone(),
            format!("{}{path}{query}", shared.target),
        )
        .headers(passed_on(&parts.headers))
        .body(bytes)
        .send()
        .await;
    let Ok(upstream) = upstream else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = upstream.status();
    let headers = passed_on(upstream.headers());
    let length = upstream.headers().get(header::CONTENT_LENGTH).cloned();
    let Ok(body): Result<Bytes, _> = upstream.bytes().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let mut response = Response::builder().status(code);
    for (name, value) in &headers {
        response = response.header(name, value);
    }
    // A HEAD answer keeps the length of the body it stands for.
    if parts.method == Method::HEAD {
        if let Some(length) = length {
            response = response.header(header::CONTENT_LENGTH, length);
        }
    }
    response.body(Body::from(body)).expect("response")
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .expect("response")
}
