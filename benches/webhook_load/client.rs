//! The load client: HTTPS to a webhook (HTTP/2 multiplexed, as client-go speaks, or one
//! HTTP/1.1 connection per concurrent request), answers read and classified, latencies kept
//! and summarised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::Value;

/// How the client speaks to the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/2 over one TLS connection per client (ALPN).
    H2,
    /// HTTP/1.1, one keep-alive connection per request in flight.
    Http1,
}

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::H2 => "HTTP/2",
            Self::Http1 => "HTTP/1.1",
        }
    }
}

/// A client trusting only the bench CA.
pub(crate) fn client(ca_pem: &str, protocol: Protocol) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::tls::Certificate::from_pem(ca_pem.as_bytes()).expect("ca")])
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60));
    let builder = match protocol {
        Protocol::H2 => builder,
        Protocol::Http1 => builder.http1_only(),
    };
    builder.build().expect("client")
}

/// Opens the client's connection (TLS handshake) before a measurement.
pub(crate) async fn connect(client: &reqwest::Client, base: &str) {
    let _ = client.get(format!("{base}/")).send().await;
}

/// One answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// POSTs one review; `Err` on transport failure.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
) -> Result<Answer, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok(Answer { status, body })
}

/// What a review answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// Denied because an image did not meet the policy.
    Violation(String),
    /// Denied because a decision could not be made (upstream failure, deadline).
    Error(String),
    /// Not a 200 AdmissionReview.
    Broken(String),
}

/// Reads an answer of `attestgate serve` (or the floor).
pub(crate) fn verdict(answer: &Answer) -> Verdict {
    if answer.status != 200 {
        return Verdict::Broken(format!(
            "HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let Ok(value) = serde_json::from_slice::<Value>(&answer.body) else {
        return Verdict::Broken("not JSON".into());
    };
    let response = &value["response"];
    if response["allowed"].as_bool() == Some(true) {
        return Verdict::Allowed;
    }
    let message = response["status"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if message.contains("verification error") {
        Verdict::Error(message)
    } else {
        Verdict::Violation(message)
    }
}

/// Latency figures of a set of requests.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

/// Nearest-rank percentiles.
pub(crate) fn summarize(latencies: &[Duration]) -> Summary {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        return Summary::default();
    }
    let rank = |p: f64| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary {
        n,
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: sorted[n - 1],
    }
}

/// Milliseconds with one decimal.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// What a closed-loop run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    /// Answered in the measured window.
    pub(crate) completed: usize,
    /// Sent at all, warm-up and overrun included (for CPU per request).
    pub(crate) sent: usize,
    pub(crate) failed: usize,
    pub(crate) not_allowed: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latencies: Vec<Duration>,
}

impl Run {
    pub(crate) fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` workers POST `bodies` (round robin) back to back to `url` for `duration`
/// after `warmup`; only requests that start and end in the measured window count. With
/// HTTP/2 the workers share `clients` (one connection each) round robin.
pub(crate) async fn closed_loop(
    clients: &[reqwest::Client],
    url: &str,
    bodies: Arc<Vec<Bytes>>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Run {
    let start = Instant::now();
    let measure_from = start + warmup;
    let measure_to = measure_from + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = clients[worker % clients.len()].clone();
        let url = url.to_string();
        let bodies = bodies.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut run = Run::default();
            let mut next = worker;
            while !stop.load(Ordering::Relaxed) {
                let body = bodies[next % bodies.len()].clone();
                next += concurrency;
                let sent = Instant::now();
                let answer = post(&client, &url, body).await;
                let done = Instant::now();
                run.sent += 1;
                if sent < measure_from || done > measure_to {
                    continue;
                }
                match answer {
                    Ok(answer) if answer.status == 200 => {
                        run.completed += 1;
                        run.latencies.push(done - sent);
                        if !allowed_fast(&answer.body) {
                            run.not_allowed += 1;
                        }
                    }
                    _ => run.failed += 1,
                }
            }
            run
        });
    }
    tokio::time::sleep_until((measure_to).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Run {
        elapsed: duration,
        ..Run::default()
    };
    while let Some(joined) = tasks.join_next().await {
        let run = joined.expect("worker");
        total.completed += run.completed;
        total.sent += run.sent;
        total.failed += run.failed;
        total.not_allowed += run.not_allowed;
        total.latencies.extend(run.latencies);
    }
    total
}

/// `"allowed":true` in the answer, without parsing it (the client must stay cheap).
fn allowed_fast(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"allowed\":true";
    body.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}
