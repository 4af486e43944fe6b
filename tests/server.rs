#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The HTTPS webhook server end to end on loopback: TLS versions and ALPN, routing, limits,
//! panics, probes and metrics, certificate and client-CA rotation, client authentication and
//! graceful shutdown. The reviewer is a toy driven by the request body.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attestgate::admission::Mode;
use attestgate::server::{LocalAddrs, Metrics, Reply, Reviewer, ServeError, ServeOptions, Server};
use axum::body::Bytes;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use reqwest::tls::{Certificate, Identity, TlsInfo, Version as TlsVersion};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The toy reviewer

/// Reads `{"uid": …, "action": "echo"|"panic"|"hold"|"bad"}` and answers accordingly.
#[derive(Default)]
struct Toy {
    ready: AtomicBool,
    calls: Mutex<Vec<Mode>>,
    /// Signalled when a `hold` review starts.
    held: Notify,
    /// Releases one `hold` review.
    release: Notify,
}

impl Reviewer for Toy {
    async fn review(&self, mode: Mode, body: Bytes) -> Reply {
        self.calls.lock().unwrap().push(mode);
        let request: Value = match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(_) => return Reply::BadRequest("not json".into()),
        };
        let uid = request["uid"].as_str().unwrap_or("").to_owned();
        match request["action"].as_str().unwrap_or("echo") {
            "panic" => panic!("toy reviewer asked to panic"),
            "bad" => return Reply::BadRequest("toy says bad request".into()),
            "hold" => {
                self.held.notify_one();
                self.release.notified().await;
            }
            _ => {}
        }
        Reply::Review(
            serde_json::to_vec(&json!({"uid": uid, "mode": mode.as_str(), "allowed": true}))
                .unwrap(),
        )
    }

    fn failed(&self, _mode: Mode, body: &[u8], message: &str) -> Reply {
        let uid = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|value| value["uid"].as_str().map(str::to_owned));
        match uid {
            Some(uid) => Reply::Review(
                serde_json::to_vec(&json!({"uid": uid, "allowed": false, "message": message}))
                    .unwrap(),
            ),
            None => Reply::BadRequest(message.to_owned()),
        }
    }

    fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("no config loaded yet".into())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf for `127.0.0.1` signed by this CA: PEM and DER.
    fn server_cert(&self, key: &KeyPair, serial: u64, expires_year: i32) -> (String, Vec<u8>) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "attestgate test");
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(expires_year, 1, 1);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(key, &self.issuer).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    /// A client identity (certificate then key, PEM) signed by this CA.
    fn client_identity(&self) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
    }
}

/// Replaces `path`'s contents in one rename, as a Secret volume update does.
fn write_atomically(path: &Path, contents: &[u8]) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A running server

struct Running {
    addrs: LocalAddrs,
    metrics: Arc<Metrics>,
    toy: Arc<Toy>,
    ca: Ca,
    server_key: KeyPair,
    first_cert_der: Vec<u8>,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addrs.webhook)
    }

    fn health_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs.health)
    }

    /// A client trusting only the test CA, one connection per request so each sees the
    /// certificate served at that moment.
    fn client(&self) -> reqwest::ClientBuilder {
        client_for(&self.ca.pem)
    }

    async fn metrics(&self) -> String {
        plain_client()
            .get(self.health_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends the shutdown signal and waits for `run` to return.
    async fn shut_down(mut self) -> Result<(), ServeError> {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
    }
}

fn client_for(ca_pem: &str) -> reqwest::ClientBuilder {
    attestgate::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(WAIT)
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn start(configure: impl FnOnce(&mut ServeOptions, &Path, &Ca)) -> Running {
    attestgate::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("attestgate test ca");
    let server_key = KeyPair::generate().unwrap();
    let (cert_pem, first_cert_der) = ca.server_cert(&server_key, 1, 2100);
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert_pem).unwrap();
    std::fs::write(&key_file, server_key.serialize_pem()).unwrap();

    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut options = ServeOptions::new(loopback, loopback, cert_file, key_file);
    options.reload_interval = Duration::from_millis(100);
    options.shutdown_grace = Duration::from_secs(5);
    configure(&mut options, dir.path(), &ca);

    let toy = Arc::new(Toy::default());
    let metrics = Arc::new(Metrics::new());
    let server = Server::bind(Arc::clone(&toy), Arc::clone(&metrics), options)
        .await
        .unwrap();
    let addrs = server.local_addrs();
    assert_ne!(addrs.webhook.port(), 0);
    assert_ne!(addrs.health.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    Running {
        addrs,
        metrics,
        toy,
        ca,
        server_key,
        first_cert_der,
        dir,
        stop: Some(stop),
        task,
    }
}

async fn start_default() -> Running {
    start(|_, _, _| {}).await
}

/// Whether the metrics page holds exactly this sample line.
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|candidate| candidate == line)
}

/// Polls `check` every 20 ms until it holds, failing after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
}

fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<TlsInfo>()
        .and_then(TlsInfo::peer_certificate)
        .expect("tls info on the response")
        .to_vec()
}

// ---------------------------------------------------------------------------------------------
// Routing, protocols and limits

#[tokio::test]
async fn each_mode_path_reaches_the_reviewer_with_its_mode_over_h2_and_http1() {
    let running = start_default().await;
    let h2 = running.client().build().unwrap();
    let h1 = running.client().http1_only().build().unwrap();

    for (client, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        for mode in Mode::ALL {
            let response = post(client, &running.url(mode.path()), &json!({"uid": "u1"}))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.version(), version);
            assert_eq!(
                response.headers()["content-type"].to_str().unwrap(),
                "application/json"
            );
            let reply: Value = response.json().await.unwrap();
            assert_eq!(reply["mode"], mode.as_str());
            assert_eq!(reply["uid"], "u1");
        }
    }
    let calls = running.toy.calls.lock().unwrap().clone();
    assert_eq!(calls, [Mode::ALL, Mode::ALL].concat());

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn tls_1_2_only_and_1_3_only_clients_both_work() {
    let running = start_default().await;
    for (min, max) in [
        (TlsVersion::TLS_1_2, TlsVersion::TLS_1_2),
        (TlsVersion::TLS_1_3, TlsVersion::TLS_1_3),
    ] {
        let client = running
            .client()
            .tls_version_min(min)
            .tls_version_max(max)
            .build()
            .unwrap();
        let response = post(&client, &running.url("/validate/enforce"), &json!({}))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let info = response.extensions().get::<TlsInfo>().unwrap();
        assert_eq!(info.version(), Some(max));
    }
    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn other_paths_are_404_other_methods_405_other_content_types_415() {
    let running = start_default().await;
    let client = running.client().build().unwrap();

    let get = client
        .get(running.url("/validate/enforce"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let put = client
        .put(running.url("/validate/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    for path in [
        "/validate/other",
        "/validate",
        "/",
        "/healthz",
        "/validate/enforce/x",
    ] {
        let response = post(&client, &running.url(path), &json!({})).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let text = client
        .post(running.url("/validate/warn"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(running.toy.calls.lock().unwrap().is_empty());

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_unread() {
    let running = start(|options, _, _| options.max_body_bytes = 1024).await;
    for client in [
        running.client().build().unwrap(),
        running.client().http1_only().build().unwrap(),
    ] {
        let padding = "x".repeat(8 * 1024);
        let response = post(
            &client,
            &running.url("/validate/enforce"),
            &json!({"pad": padding}),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let small = post(&client, &running.url("/validate/enforce"), &json!({}))
            .await
            .unwrap();
        assert_eq!(small.status(), StatusCode::OK);
    }
    assert_eq!(running.toy.calls.lock().unwrap().len(), 2);
    let metrics = running.metrics().await;
    assert!(has_line(
        &metrics,
        r#"attestgate_reviews_total{mode="enforce",decision="bad_request"} 2"#
    ));

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn a_reviewer_bad_request_is_a_plain_400() {
    let running = start_default().await;
    let client = running.client().build().unwrap();
    let response = post(
        &client,
        &running.url("/validate/warn"),
        &json!({"action": "bad"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "toy says bad request");
    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn a_panicking_review_becomes_the_failed_reply_and_serving_goes_on() {
    let running = start_default().await;
    let client = running.client().build().unwrap();

    let response = post(
        &client,
        &running.url("/validate/enforce"),
        &json!({"uid": "boom", "action": "panic"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply,
        json!({"uid": "boom", "allowed": false, "message": "internal error"})
    );

    // Without a uid the toy's `failed` answers 400.
    let anonymous = post(
        &client,
        &running.url("/validate/enforce"),
        &json!({"action": "panic"}),
    )
    .await
    .unwrap();
    assert_eq!(anonymous.status(), StatusCode::BAD_REQUEST);

    let after = post(
        &client,
        &running.url("/validate/enforce"),
        &json!({"uid": "next"}),
    )
    .await
    .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(after.json::<Value>().await.unwrap()["allowed"], true);

    let metrics = running.metrics().await;
    assert!(has_line(
        &metrics,
        r#"attestgate_reviews_total{mode="enforce",decision="error"} 2"#
    ));
    assert!(has_line(&metrics, "attestgate_reviews_in_flight 0"));

    running.shut_down().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Health, readiness and metrics

#[tokio::test]
async fn healthz_readyz_and_metrics_on_the_plain_listener() {
    let running = start_default().await;
    let client = plain_client();

    let health = client
        .get(running.health_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let not_ready = client
        .get(running.health_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(not_ready
        .text()
        .await
        .unwrap()
        .contains("no config loaded yet"));

    running.toy.ready.store(true, Ordering::SeqCst);
    eventually("readyz to turn 200", || async {
        let response = client
            .get(running.health_url("/readyz"))
            .send()
            .await
            .unwrap();
        response.status() == StatusCode::OK
    })
    .await;

    // The families whose labels come from the rest of the crate appear once recorded.
    running.metrics.image_decision(Mode::Warn, "failed", "miss");
    running.metrics.upstream_error("archivista");
    running
        .metrics
        .config_reload(true, "sha256:c0ffee", "team-a=sha256:01");
    running.metrics.policy_expiry("team-a", 4_102_444_800);

    let metrics = client
        .get(running.health_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert_eq!(
        metrics.headers()["content-type"].to_str().unwrap(),
        attestgate::server::METRICS_CONTENT_TYPE
    );
    let text = metrics.text().await.unwrap();
    for family in [
        "attestgate_reviews",
        "attestgate_review_duration_seconds",
        "attestgate_reviews_in_flight",
        "attestgate_image_decisions",
        "attestgate_upstream_errors",
        "attestgate_config_reloads",
        "attestgate_config_reload_failing",
        "attestgate_config_last_success_timestamp_seconds",
        "attestgate_config_info",
        "attestgate_policy_expiry_timestamp_seconds",
        "attestgate_serving_certificate_expiry_timestamp_seconds",
        "attestgate_tls_reloads",
        "attestgate_tls_reload_failing",
        "attestgate_background_verifications",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert!(has_line(
        &text,
        r#"attestgate_reviews_total{mode="audit",decision="skipped"} 0"#
    ));
    assert!(has_line(
        &text,
        r#"attestgate_config_info{config_digest="sha256:c0ffee",policy_digests="team-a=sha256:01"} 1"#
    ));
    // The first certificate expires on 2100-01-01.
    assert!(has_line(
        &text,
        "attestgate_serving_certificate_expiry_timestamp_seconds 4102444800"
    ));

    // The webhook paths are not on the plain listener (nor the probes on HTTPS, see the 404 test).
    let webhook = client
        .post(running.health_url("/validate/enforce"))
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), StatusCode::NOT_FOUND);

    running.shut_down().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Certificate rotation

/// Sends requests back to back on fresh connections until told to stop, counting successes in
/// `ok`; returns every failure.
fn request_loop(
    running: &Running,
    ok: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<String>> {
    let client = running.client().build().unwrap();
    let url = running.url("/validate/audit");
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match post(&client, &url, &json!({"uid": "loop"})).await {
                Ok(response) if response.status() == StatusCode::OK => {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                Ok(response) => failures.push(format!("status {}", response.status())),
                Err(err) => failures.push(format!("{err:?}")),
            }
        }
        failures
    })
}

async fn served_certificate(client: &reqwest::Client, running: &Running) -> Vec<u8> {
    let response = post(client, &running.url("/validate/enforce"), &json!({}))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    peer_certificate(&response)
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_failing_a_request() {
    let running = start_default().await;
    let probe = running.client().build().unwrap();
    assert_eq!(
        served_certificate(&probe, &running).await,
        running.first_cert_der
    );

    // A long-lived HTTP/2 connection opened before the rotation keeps working across it.
    let kept = client_for(&running.ca.pem)
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    assert_eq!(
        served_certificate(&kept, &running).await,
        running.first_cert_der
    );

    let ok = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(&running, Arc::clone(&ok), Arc::clone(&stop));
    eventually("the request loop to get going", || async {
        ok.load(Ordering::SeqCst) >= 3
    })
    .await;

    let (new_pem, new_der) = running.ca.server_cert(&running.server_key, 2, 2101);
    write_atomically(&running.cert_file(), new_pem.as_bytes());
    eventually("the new certificate to be served", || async {
        served_certificate(&probe, &running).await == new_der
    })
    .await;
    let before = ok.load(Ordering::SeqCst);
    eventually("requests on the new certificate", || async {
        ok.load(Ordering::SeqCst) >= before + 3
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let failures = load.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");

    assert_eq!(
        served_certificate(&kept, &running).await,
        running.first_cert_der
    );

    let metrics = running.metrics().await;
    assert!(has_line(
        &metrics,
        r#"attestgate_tls_reloads_total{result="success"} 1"#
    ));
    assert!(has_line(&metrics, "attestgate_tls_reload_failing 0"));
    // 2101-01-01.
    assert!(has_line(
        &metrics,
        "attestgate_serving_certificate_expiry_timestamp_seconds 4133980800"
    ));

    running.shut_down().await.unwrap();
}

#[tokio::test]
async fn a_bad_new_certificate_keeps_the_old_one() {
    let running = start_default().await;
    let probe = running.client().build().unwrap();

    // A valid certificate for another key: the pair does not match.
    let other_key = KeyPair::generate().unwrap();
    let (mismatched, _) = running.ca.server_cert(&other_key, 3, 2101);
    write_atomically(&running.cert_file(), mismatched.as_bytes());
    eventually("the failed reload to show", || async {
        has_line(&running.metrics().await, "attestgate_tls_reload_failing 1")
    })
    .await;
    assert_eq!(
        served_certificate(&probe, &running).await,
        running.first_cert_der
    );

    // Garbage: still the old one, and a second failure is counted.
    write_atomically(
        &running.cert_file(),
        b"-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    eventually("the second failed reload", || async {
        has_line(
            &running.metrics().await,
            r#"attestgate_tls_reloads_total{result="failure"} 2"#,
        )
    })
    .await;
    assert_eq!(
        served_certificate(&probe, &running).await,
        running.first_cert_der
    );

    // An expired certificate for the right key: refused too.
    let (expired, _) = running.ca.server_cert(&running.server_key, 4, 2025);
    write_atomically(&running.cert_file(), expired.as_bytes());
    eventually("the third failed reload", || async {
        has_line(
            &running.metrics().await,
            r#"attestgate_tls_reloads_total{result="failure"} 3"#,
        )
    })
    .await;
    assert_eq!(
        served_certificate(&probe, &running).await,
        running.first_cert_der
    );

    // A good pair recovers.
    let (good, good_der) = running.ca.server_cert(&running.server_key, 5, 2101);
    write_atomically(&running.cert_file(), good.as_bytes());
    eventually("the good certificate to be served", || async {
        served_certificate(&probe, &running).await == good_der
    })
    .await;
    assert!(has_line(
        &running.metrics().await,
        "attestgate_tls_reload_failing 0"
    ));

    running.shut_down().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Client certificates

fn with_client_ca(options: &mut ServeOptions, dir: &Path, ca_pem: &str) {
    let path = dir.join("client-ca.pem");
    std::fs::write(&path, ca_pem).unwrap();
    options.client_ca_file = Some(path);
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set_and_it_reloads() {
    let client_ca = Ca::new("client ca");
    let client_ca_pem = client_ca.pem.clone();
    let running = start(move |options, dir, _| with_client_ca(options, dir, &client_ca_pem)).await;
    let url = running.url("/validate/enforce");

    let anonymous = running.client().build().unwrap();
    assert!(post(&anonymous, &url, &json!({})).await.is_err());

    let stranger = running
        .client()
        .identity(Ca::new("another ca").client_identity())
        .build()
        .unwrap();
    assert!(post(&stranger, &url, &json!({})).await.is_err());

    let member = running
        .client()
        .identity(client_ca.client_identity())
        .build()
        .unwrap();
    for http1 in [false, true] {
        let client = if http1 {
            running
                .client()
                .http1_only()
                .identity(client_ca.client_identity())
                .build()
                .unwrap()
        } else {
            member.clone()
        };
        let response = post(&client, &url, &json!({})).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    // Rotating the client CA file: the new CA's clients get in, the old CA's no longer.
    let next_ca = Ca::new("next client ca");
    write_atomically(
        &running.dir.path().join("client-ca.pem"),
        next_ca.pem.as_bytes(),
    );
    let newcomer = running
        .client()
        .identity(next_ca.client_identity())
        .build()
        .unwrap();
    eventually("the new client ca to be trusted", || async {
        post(&newcomer, &url, &json!({})).await.is_ok()
    })
    .await;
    assert!(post(&member, &url, &json!({})).await.is_err());

    running.shut_down().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Shutdown

#[tokio::test]
async fn shutdown_lets_an_in_flight_review_finish_and_refuses_new_connections() {
    let running = start_default().await;
    running.toy.ready.store(true, Ordering::SeqCst);
    let client = running.client().build().unwrap();

    let slow = tokio::spawn({
        let client = client.clone();
        let url = running.url("/validate/enforce");
        async move { post(&client, &url, &json!({"uid": "slow", "action": "hold"})).await }
    });
    tokio::time::timeout(WAIT, running.toy.held.notified())
        .await
        .expect("the slow review starts");

    let Running {
        addrs,
        toy,
        mut stop,
        task,
        ..
    } = running;
    stop.take().unwrap().send(()).unwrap();

    eventually("the webhook listener to close", || async {
        tokio::net::TcpStream::connect(addrs.webhook).await.is_err()
    })
    .await;
    let readyz = plain_client()
        .get(format!("http://{}/readyz", addrs.health))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!task.is_finished());

    toy.release.notify_one();
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["uid"], "slow");

    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns once drained")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addrs.webhook).await.is_err());
    assert!(tokio::net::TcpStream::connect(addrs.health).await.is_err());
}

#[tokio::test]
async fn shutdown_cuts_off_reviews_that_outlast_the_grace_period() {
    let running = start(|options, _, _| options.shutdown_grace = Duration::from_millis(200)).await;
    let client = running.client().build().unwrap();
    let stuck = tokio::spawn({
        let url = running.url("/validate/enforce");
        async move { post(&client, &url, &json!({"action": "hold"})).await }
    });
    tokio::time::timeout(WAIT, running.toy.held.notified())
        .await
        .expect("the stuck review starts");

    let started = Instant::now();
    running.shut_down().await.unwrap();
    assert!(started.elapsed() < WAIT);
    assert!(stuck.await.unwrap().is_err());
}
