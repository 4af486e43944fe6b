//! The floor: the least a validating webhook can do on this machine. rustls (ring, TLS 1.2 and
//! 1.3, ALPN `h2` then `http/1.1`, as `attestgate serve` has) and axum on axum-server, one
//! POST route that reads the body, parses the whole AdmissionReview as JSON, and answers
//! `allowed: true` for its uid in the version asked. No policy, no cache, no logging.
//!
//! Run as a child process of the harness (`webhook_load __floor CERT KEY`), on the same tokio
//! runtime settings as the real server (multi-threaded, one worker per core), so that the two
//! are measured the same way. It prints `listening ADDR` on stdout once bound.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

/// `__floor CERT KEY`: serves on 127.0.0.1 (a free port) until killed.
pub(crate) fn main(args: &[String]) -> std::process::ExitCode {
    let [cert, key] = args else {
        eprintln!("usage: webhook_load __floor CERT KEY");
        return std::process::ExitCode::from(2);
    };
    attestgate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve(cert, key));
    std::process::ExitCode::SUCCESS
}

async fn serve(cert: &str, key: &str) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<_, _>>()
        .expect("certificate pem");
    let key = PrivateKeyDer::from_pem_file(key).expect("key pem");
    let mut config = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("address");
    println!("listening {addr}");

    let app = Router::new().route("/validate/{mode}", post(review));
    axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(config)))
        .expect("listener")
        .serve(app.into_make_service())
        .await
        .expect("serve");
}

async fn review(body: Bytes) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(uid) = review["request"]["uid"].as_str() else {
        return (StatusCode::BAD_REQUEST, "no request uid").into_response();
    };
    let api_version = review["apiVersion"]
        .as_str()
        .unwrap_or("admission.k8s.io/v1");
    let answer = json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}
