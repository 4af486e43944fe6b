//! Load harness for `attestgate serve` (issue 7): the real server, release build, over TLS on
//! loopback, against the real Debian `docker-registry` and the real Archivista (or an evidence
//! directory when Archivista is not installed), each behind a latency injector
//! (`proxy.rs`: a fixed delay per response, optional 429s for a fraction of requests, and the
//! count of requests the upstream saw). Scenarios:
//!
//! - `cold`: single-image Pods of images never seen (latency per review, the upstream requests
//!   of the first one on a timeline, grouped into sequential round trips), then Deployments
//!   with 30 new images each;
//! - `burst`: 500 concurrent reviews of one new image, and what the upstreams saw;
//! - `rollout`: 200 Deployments over 20 images, each as the API server sees a rollout
//!   (Deployment, ReplicaSet, three Pods), without and with 429s injected;
//! - `warm`: everything cached, throughput and latency of the real server against the floor
//!   (`floor.rs`, a minimal rustls + axum server that parses the review and always allows),
//!   in the same run, over HTTP/2 and HTTP/1.1;
//! - `memory`: peak RSS with a 50 MB SBOM envelope in the evidence, under load, and request
//!   bodies over the cap refused without being read.
//!
//! Run: `benches/run.sh` (or `cargo bench --bench webhook_load -- [options]`); `--help` lists
//! the options. The report (Markdown) goes to stdout and to `target/webhook_load/report.md`.
//! Client, proxies and servers share the machine's cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
mod floor;
mod process;
mod proxy;
mod raw;
mod reviews;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use client::{closed_loop, connect, ms, post, summarize, verdict, Protocol, Verdict};
use process::{cpu_seconds, mib, reset_peak, status_kb, Floor, Served};
use proxy::{Counts, Event, Proxy, Timeline, Upstream};
use world::World;

const USAGE: &str = "\
webhook_load: load harness for `attestgate serve` (see benches/run.sh)

options (defaults in brackets):
  --only LIST              scenarios to run, comma-separated [cold,burst,rollout,warm,memory]
  --quick                  small counts, for a smoke run (about a minute)
  --delay-ms N             injected delay per upstream response [100]
  --cold N                 single-image Pods of new images [40]
  --deployment-images N    images per cold Deployment [30]
  --deployment-reps N      cold Deployments [3]
  --burst N                concurrent reviews of one new image [500]
  --rollout N              Deployments in the rollout [200]
  --rollout-images N       distinct images in the rollout [20]
  --refusals F             fraction of upstream requests answered 429 in the rollout [0.1]
  --warm-seconds N         measured seconds per warm run [8]
  --warm-rounds N          floor/real alternations per protocol [2]
  --warm-concurrency N     requests in flight in the warm runs [32]
  --sbom-mb N              size of the SBOM envelope [50]
  --sbom-images N          distinct images with such an envelope [2]
  --registry-concurrency N maxConcurrentPerRegistry for every server [the default]
  --out FILE               where to write the report [target/webhook_load/report.md]
";

#[derive(Debug, Clone)]
struct Options {
    only: Vec<String>,
    delay: Duration,
    cold: usize,
    deployment_images: usize,
    deployment_reps: usize,
    burst: usize,
    rollout: usize,
    rollout_images: usize,
    refusals: f64,
    warm_seconds: u64,
    warm_rounds: usize,
    warm_concurrency: usize,
    sbom_mb: usize,
    sbom_images: usize,
    registry_concurrency: Option<usize>,
    out: std::path::PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            only: ["cold", "burst", "rollout", "warm", "memory"]
                .map(String::from)
                .to_vec(),
            delay: Duration::from_millis(100),
            cold: 40,
            deployment_images: 30,
            deployment_reps: 3,
            burst: 500,
            rollout: 200,
            rollout_images: 20,
            refusals: 0.1,
            warm_seconds: 8,
            warm_rounds: 2,
            warm_concurrency: 32,
            sbom_mb: 50,
            sbom_images: 2,
            registry_concurrency: None,
            out: world::root().join("target/webhook_load/report.md"),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            let number = |v: String| {
                v.parse::<usize>()
                    .map_err(|_| format!("{flag}: not a number: {v}"))
            };
            match flag.as_str() {
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                "--help" | "-h" => return Err(USAGE.into()),
                "--quick" => {
                    o.cold = 8;
                    o.deployment_images = 30;
                    o.deployment_reps = 1;
                    o.burst = 200;
                    o.rollout = 40;
                    o.rollout_images = 8;
                    o.warm_seconds = 3;
                    o.warm_rounds = 1;
                    o.sbom_mb = 10;
                    o.sbom_images = 1;
                }
                "--only" => o.only = value()?.split(',').map(String::from).collect(),
                "--delay-ms" => o.delay = Duration::from_millis(number(value()?)? as u64),
                "--cold" => o.cold = number(value()?)?,
                "--deployment-images" => o.deployment_images = number(value()?)?,
                "--deployment-reps" => o.deployment_reps = number(value()?)?,
                "--burst" => o.burst = number(value()?)?,
                "--rollout" => o.rollout = number(value()?)?,
                "--rollout-images" => o.rollout_images = number(value()?)?.max(1),
                "--refusals" => {
                    let v = value()?;
                    o.refusals = v.parse().map_err(|_| format!("--refusals: {v}"))?;
                }
                "--warm-seconds" => o.warm_seconds = number(value()?)? as u64,
                "--warm-rounds" => o.warm_rounds = number(value()?)?.max(1),
                "--warm-concurrency" => o.warm_concurrency = number(value()?)?.max(1),
                "--sbom-mb" => o.sbom_mb = number(value()?)?,
                "--sbom-images" => o.sbom_images = number(value()?)?.max(1),
                "--registry-concurrency" => o.registry_concurrency = Some(number(value()?)?),
                "--out" => o.out = value()?.into(),
                other => return Err(format!("unknown option {other}\n\n{USAGE}")),
            }
        }
        Ok(o)
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only.iter().any(|s| s == scenario)
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__floor") {
        return floor::main(&args[1..]);
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    attestgate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
    std::process::ExitCode::SUCCESS
}

/// The Markdown report, printed as it grows.
#[derive(Default)]
struct Report(String);

impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }
}

/// Everything the scenarios share.
struct Bench {
    options: Options,
    world: Arc<World>,
    registry: Proxy,
    archivista: Option<Proxy>,
    timeline: Arc<Timeline>,
    tls: tempfile::TempDir,
    ca: String,
}

impl Bench {
    /// `PROXY/bench/NAME:v1`.
    fn image(&self, name: &str) -> String {
        format!("{}/bench/{name}:v1", self.registry.host())
    }

    fn upstreams(&self, delay: Duration, refusals: f64) {
        for proxy in std::iter::once(&self.registry).chain(self.archivista.as_ref()) {
            proxy.set_delay(delay);
            proxy.set_refusals(refusals);
        }
    }

    /// What each upstream saw since the last call.
    fn counts(&self) -> (Counts, Counts) {
        (
            self.registry.take_counts(),
            self.archivista
                .as_ref()
                .map(Proxy::take_counts)
                .unwrap_or_default(),
        )
    }

    /// A fresh `attestgate serve` (empty caches) with `extra` top-level YAML.
    fn serve(&self, dir: &tempfile::TempDir, extra: &str) -> Served {
        for file in ["tls.crt", "tls.key"] {
            std::fs::copy(self.tls.path().join(file), dir.path().join(file)).expect("tls copy");
        }
        let mut extra = extra.to_string();
        if let Some(n) = self.options.registry_concurrency {
            extra = format!("  maxConcurrentPerRegistry: {n}\n{extra}");
        }
        let config = self.world.config(
            dir.path(),
            &self.registry.host(),
            self.archivista.as_ref().map(Proxy::host).as_deref(),
            &extra,
        );
        Served::start(dir.path(), &config)
    }

    fn client(&self, protocol: Protocol) -> reqwest::Client {
        client::client(&self.ca, protocol)
    }
}

async fn run(options: Options) {
    let mut report = Report::default();
    let started = Instant::now();
    let world = tokio::task::spawn_blocking(World::start)
        .await
        .expect("peers");
    let world = Arc::new(world);
    let timeline = Timeline::new();
    let registry = Proxy::start(Upstream::Registry, &world.peers.registry, timeline.clone()).await;
    let archivista = match &world.peers.archivista {
        Some(host) => Some(Proxy::start(Upstream::Archivista, host, timeline.clone()).await),
        None => None,
    };
    let tls = tempfile::tempdir().expect("tempdir");
    let ca = world::serving_certificate(tls.path());
    let bench = Bench {
        options: options.clone(),
        world,
        registry,
        archivista,
        timeline,
        tls,
        ca,
    };

    header(&bench, &mut report);
    let images = prepare(&bench).await;
    report.line(format!(
        "Set-up (peers, {} images pushed, their evidence signed and stored): {:.0} s\n",
        images.len(),
        started.elapsed().as_secs_f64()
    ));

    if options.runs("cold") {
        cold(&bench, &mut report).await;
    }
    if options.runs("burst") {
        burst(&bench, &mut report).await;
    }
    if options.runs("rollout") {
        rollout(&bench, &mut report).await;
    }
    if options.runs("warm") {
        warm(&bench, &mut report).await;
    }
    if options.runs("memory") {
        memory(&bench, &images, &mut report).await;
    }
    report.line(format!(
        "\nTotal time: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    if let Some(parent) = options.out.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&options.out, &report.0).expect("report");
    eprintln!("report written to {}", options.out.display());
}

fn header(bench: &Bench, report: &mut Report) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    report.line("# webhook_load report\n");
    report.line(format!(
        "- machine: {cores} cores ({model}), {memory} RAM, {} {}; date {date}",
        std::env::consts::OS,
        std::env::consts::ARCH
    ));
    report.line(
        "- the load client, the latency proxies, the registry, Archivista and PostgreSQL run on \
         the same cores as the server under test",
    );
    report.line(format!(
        "- server: `attestgate serve` (release build), TLS on loopback, deadline 8 s, \
         webhookTimeoutSeconds 10, default caches and registry settings{}",
        match bench.options.registry_concurrency {
            Some(n) => format!(" except maxConcurrentPerRegistry {n}"),
            None => String::new(),
        }
    ));
    report.line(format!(
        "- registry: Debian docker-registry (distribution), plain HTTP, no auth; images are \
         two-platform OCI indexes (index, 2 manifests, 2 configs); evidence: {}",
        bench.world.evidence_kind()
    ));
    report.line(format!(
        "- injected delay per upstream response: {} (on every request, both upstreams)\n",
        ms(bench.options.delay)
    ));
}

/// Pushes every image the selected scenarios use and stores its evidence.
async fn prepare(bench: &Bench) -> BTreeMap<String, world::Image> {
    let o = &bench.options;
    let mut names: Vec<(String, Option<usize>)> = Vec::new();
    if o.runs("cold") {
        names.extend((0..o.cold).map(|i| (format!("cold-{i}"), None)));
        for r in 0..o.deployment_reps {
            names.extend((0..o.deployment_images).map(|j| (format!("dep-{r}-{j}"), None)));
        }
    }
    if o.runs("burst") {
        names.push(("burst-0".into(), None));
    }
    if o.runs("rollout") {
        names.extend((0..o.rollout_images).map(|i| (format!("roll-{i}"), None)));
    }
    if o.runs("warm") {
        names.push(("warm-0".into(), None));
    }
    if o.runs("memory") {
        names.extend(
            (0..o.sbom_images).map(|i| (format!("sbom-{i}"), Some(o.sbom_mb * 1024 * 1024))),
        );
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, sbom) in names {
        let world = bench.world.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let image = world.image(&name, sbom).await;
            (name, image)
        });
    }
    let mut images = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (name, image) = done.expect("image prepared");
        images.insert(name, image);
    }
    images
}

/// Requests grouped into sequential round trips: a request that arrives a delay after the
/// first one of the current group was sent after some response of it.
fn round_trips(events: &[Event], delay: Duration) -> Vec<Vec<&Event>> {
    let mut groups: Vec<Vec<&Event>> = Vec::new();
    let mut opened = Duration::ZERO;
    for event in events {
        match groups.last_mut() {
            Some(group) if event.at < opened + delay.mul_f64(0.8) => group.push(event),
            _ => {
                opened = event.at;
                groups.push(vec![event]);
            }
        }
    }
    groups
}

fn describe_group(group: &[&Event]) -> String {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in group {
        let who = match e.upstream {
            Upstream::Registry => "registry",
            Upstream::Archivista => "archivista",
        };
        *kinds.entry(format!("{who}: {}", e.kind)).or_default() += 1;
    }
    kinds
        .into_iter()
        .map(|(k, n)| if n > 1 { format!("{k} ×{n}") } else { k })
        .collect::<Vec<_>>()
        .join("; ")
}

fn upstream_table(report: &mut Report, rows: &[(&str, &Counts, &Counts)]) {
    report.line("| phase | registry requests | Archivista requests |");
    report.line("|---|---|---|");
    for (phase, registry, archivista) in rows {
        report.line(format!(
            "| {phase} | {} ({}) | {} ({}) |",
            registry.total(),
            registry.describe(),
            archivista.total(),
            archivista.describe()
        ));
    }
}

fn latency_row(report: &mut Report, what: &str, latencies: &[Duration], extra: &str) {
    let s = summarize(latencies);
    report.line(format!(
        "| {what} | {} | {} | {} | {} | {} | {extra} |",
        s.n,
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max)
    ));
}

fn uid(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n:08}-0000-4000-8000-000000000000")
}

// ---------------------------------------------------------------------------------------------

async fn cold(bench: &Bench, report: &mut Report) {
    let o = &bench.options;
    report.line("## 1. Cold path\n");
    bench.upstreams(o.delay, 0.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let served = bench.serve(&dir, "");
    let client = bench.client(Protocol::H2);
    connect(&client, &served.base()).await;
    bench.counts();

    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut first = Vec::new();
    for i in 0..o.cold {
        let name = format!("cold-{i}");
        let body = reviews::pod(&uid("cold", i), &name, &[&bench.image(&name)]);
        if i == 0 {
            bench.timeline.start();
        }
        let sent = Instant::now();
        let answer = post(&client, &served.url(), Bytes::from(body)).await;
        latencies.push(sent.elapsed());
        if i == 0 {
            first = bench.timeline.stop();
        }
        match answer.map(|a| verdict(&a)) {
            Ok(Verdict::Allowed) => {}
            other => failures.push(format!("{name}: {other:?}")),
        }
    }
    let (pods_registry, pods_archivista) = bench.counts();

    let mut deployments = Vec::new();
    let mut deployment_events = Vec::new();
    for r in 0..o.deployment_reps {
        let images: Vec<String> = (0..o.deployment_images)
            .map(|j| bench.image(&format!("dep-{r}-{j}")))
            .collect();
        let refs: Vec<&str> = images.iter().map(String::as_str).collect();
        let body = reviews::deployment(&uid("dep", r), &format!("dep-{r}"), &refs);
        bench.timeline.start();
        let sent = Instant::now();
        let answer = post(&client, &served.url(), Bytes::from(body)).await;
        deployments.push(sent.elapsed());
        let events = bench.timeline.stop();
        if r == 0 {
            deployment_events = events;
        }
        match answer.map(|a| verdict(&a)) {
            Ok(Verdict::Allowed) => {}
            other => failures.push(format!("dep-{r}: {other:?}")),
        }
    }
    let (dep_registry, dep_archivista) = bench.counts();
    let peak = status_kb(served.pid(), "VmHWM");

    report.line(format!(
        "Each review names images never seen before (fresh server, empty caches), sent one at \
         a time over HTTP/2; {} injected per upstream response.\n",
        ms(o.delay)
    ));
    report.line("| review | n | p50 | p90 | p99 | max | target |");
    report.line("|---|---|---|---|---|---|---|");
    latency_row(
        report,
        "Pod, 1 new image",
        &latencies,
        &format!(
            "p99 < 1 s: {}",
            if summarize(&latencies).p99 < Duration::from_secs(1) {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
    latency_row(
        report,
        &format!("Deployment, {} new images", o.deployment_images),
        &deployments,
        &format!(
            "< 3 s: {}",
            if summarize(&deployments).max < Duration::from_secs(3) {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
    report.line(format!(
        "\nWith n = {} the p99 is the largest but one or the largest sample; all were allowed: {}.\n",
        o.cold,
        if failures.is_empty() {
            "yes".to_string()
        } else {
            format!("NO: {}", failures.join("; "))
        }
    ));
    upstream_table(
        report,
        &[
            (
                &format!("{} Pods", o.cold),
                &pods_registry,
                &pods_archivista,
            ),
            (
                &format!("{} Deployments", o.deployment_reps),
                &dep_registry,
                &dep_archivista,
            ),
        ],
    );

    let groups = round_trips(&first, o.delay);
    report.line(format!(
        "\nThe first Pod's upstream requests, as the proxies saw them arrive ({} sequential round \
         trips, {} requests; review latency {}):\n",
        groups.len(),
        first.len(),
        ms(latencies.first().copied().unwrap_or_default())
    ));
    report.line("| round trip | arrives at | requests |");
    report.line("|---|---|---|");
    for (n, group) in groups.iter().enumerate() {
        report.line(format!(
            "| {} | {} | {} |",
            n + 1,
            ms(group[0].at),
            describe_group(group)
        ));
    }
    let dep_groups = round_trips(&deployment_events, o.delay);
    let last = deployment_events.last().map(|e| e.at).unwrap_or_default();
    report.line(format!(
        "\nThe first Deployment: {} requests in {} arrival waves, the last {} after the first.",
        deployment_events.len(),
        dep_groups.len(),
        ms(last)
    ));
    report.line(format!(
        "\nPeak RSS of the server over the cold runs (VmHWM): {}\n",
        mib(peak)
    ));
}

// ---------------------------------------------------------------------------------------------

async fn burst(bench: &Bench, report: &mut Report) {
    let o = &bench.options;
    report.line(format!(
        "## 2a. Burst: {} concurrent reviews of one new image\n",
        o.burst
    ));
    bench.upstreams(o.delay, 0.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let served = bench.serve(&dir, "");
    // HTTP/2 allows 200 streams per connection here; 100 reviews per connection keeps every
    // review in flight at once.
    let connections = o.burst.div_ceil(100).max(1);
    let clients: Vec<reqwest::Client> = (0..connections)
        .map(|_| bench.client(Protocol::H2))
        .collect();
    for c in &clients {
        connect(c, &served.base()).await;
    }
    bench.counts();
    reset_peak(served.pid());

    let image = bench.image("burst-0");
    let barrier = Arc::new(tokio::sync::Barrier::new(o.burst));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..o.burst {
        let client = clients[i % connections].clone();
        let url = served.url();
        let body = Bytes::from(reviews::pod(
            &uid("burst", i),
            &format!("burst-{i}"),
            &[&image],
        ));
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let sent = Instant::now();
            let answer = post(&client, &url, body).await;
            (sent.elapsed(), answer.map(|a| verdict(&a)))
        });
    }
    let mut latencies = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (latency, outcome) = done.expect("task");
        latencies.push(latency);
        let label = match outcome {
            Ok(Verdict::Allowed) => "allowed".to_string(),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("transport error: {e}"),
        };
        *outcomes.entry(label).or_default() += 1;
    }
    let (registry, archivista) = bench.counts();
    let peak = status_kb(served.pid(), "VmHWM");
    report.line(format!(
        "{} reviews released together over {connections} HTTP/2 connections, {} per upstream \
         response.\n",
        o.burst,
        ms(o.delay)
    ));
    report.line("| reviews | n | p50 | p90 | p99 | max | outcomes |");
    report.line("|---|---|---|---|---|---|---|");
    latency_row(
        report,
        "burst",
        &latencies,
        &outcomes
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    report.line("");
    upstream_table(report, &[("burst", &registry, &archivista)]);
    let coalesced = registry.of("HEAD manifest by tag") == 1
        && archivista.of("POST /query (search)") <= 2
        && archivista.of("GET /download (envelope)") <= 1;
    report.line(format!(
        "\nOne resolution (one tag lookup, each manifest and config once) and one verification \
         (its search rounds and download once) for {} reviews: {}. Peak RSS during the burst: {}.\n",
        o.burst,
        if coalesced { "yes" } else { "NO" },
        mib(peak)
    ));
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reviewed {
    kind: &'static str,
    latency: Duration,
    outcome: Result<Verdict, String>,
}

async fn rollout(bench: &Bench, report: &mut Report) {
    let o = &bench.options;
    report.line(format!(
        "## 2b. Rollout: {} Deployments over {} images\n",
        o.rollout, o.rollout_images
    ));
    report.line(format!(
        "Each Deployment is reviewed as the API server sees its rollout: the Deployment, then \
         its ReplicaSet, then 3 Pods at once; 20 Deployments roll out at a time, over 4 HTTP/2 \
         connections; {} per upstream response; a fresh server (empty caches) per run.\n",
        ms(o.delay)
    ));
    report.line(
        "| run | reviews | answered | allowed | denied: error | denied: violation | \
         over 8 s deadline | over 10 s timeout | p50 | p99 | max |",
    );
    report.line("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut upstream_rows = Vec::new();
    let mut error_texts: BTreeMap<String, usize> = BTreeMap::new();
    for refusals in [0.0, o.refusals] {
        bench.upstreams(o.delay, refusals);
        let dir = tempfile::tempdir().expect("tempdir");
        let served = bench.serve(&dir, "");
        let clients: Vec<reqwest::Client> = (0..4).map(|_| bench.client(Protocol::H2)).collect();
        for c in &clients {
            connect(c, &served.base()).await;
        }
        bench.counts();
        let limit = Arc::new(tokio::sync::Semaphore::new(20));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for d in 0..o.rollout {
            let client = clients[d % clients.len()].clone();
            let url = served.url();
            let image = bench.image(&format!("roll-{}", d % o.rollout_images));
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let name = format!("app-{d}");
                let mut done = Vec::new();
                let send = |kind: &'static str, body: Vec<u8>| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let sent = Instant::now();
                        let outcome = post(&client, &url, Bytes::from(body))
                            .await
                            .map(|a| verdict(&a));
                        Reviewed {
                            kind,
                            latency: sent.elapsed(),
                            outcome,
                        }
                    }
                };
                done.push(
                    send(
                        "Deployment",
                        reviews::deployment(&uid("d", d), &name, &[&image]),
                    )
                    .await,
                );
                done.push(
                    send(
                        "ReplicaSet",
                        reviews::replicaset(&uid("rs", d), &name, &[&image]),
                    )
                    .await,
                );
                let pods = (0..3).map(|p| {
                    send(
                        "Pod",
                        reviews::pod(&uid("p", d * 3 + p), &format!("{name}-{p}"), &[&image]),
                    )
                });
                done.extend(futures_util::future::join_all(pods).await);
                done
            });
        }
        let mut all = Vec::new();
        while let Some(done) = tasks.join_next().await {
            all.extend(done.expect("task"));
        }
        let wall = started.elapsed();
        let (registry, archivista) = bench.counts();
        let count = |f: &dyn Fn(&Reviewed) -> bool| all.iter().filter(|r| f(r)).count();
        let answered =
            count(&|r| matches!(r.outcome, Ok(ref v) if !matches!(v, Verdict::Broken(_))));
        let allowed = count(&|r| matches!(r.outcome, Ok(Verdict::Allowed)));
        let errors = count(&|r| matches!(r.outcome, Ok(Verdict::Error(_))));
        let violations = count(&|r| matches!(r.outcome, Ok(Verdict::Violation(_))));
        let late = count(&|r| r.latency > Duration::from_secs(8));
        let timed_out = count(&|r| r.latency > Duration::from_secs(10));
        for r in &all {
            if let Ok(Verdict::Error(text) | Verdict::Violation(text)) = &r.outcome {
                let reason = text
                    .split(": verification error: ")
                    .nth(1)
                    .or_else(|| text.split(": denied: ").nth(1))
                    .unwrap_or(text)
                    .to_string();
                *error_texts
                    .entry(format!("{} ({})", reason, r.kind))
                    .or_default() += 1;
            }
        }
        let latencies: Vec<Duration> = all.iter().map(|r| r.latency).collect();
        let s = summarize(&latencies);
        let run = format!("{:.0} % 429s", refusals * 100.0);
        report.line(format!(
            "| {run} | {} | {answered} | {allowed} | {errors} | {violations} | {late} | {timed_out} | {} | {} | {} |",
            all.len(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        ));
        upstream_rows.push((
            run,
            registry,
            archivista,
            wall,
            status_kb(served.pid(), "VmHWM"),
        ));
    }
    report.line("");
    let rows: Vec<(String, Counts, Counts)> = upstream_rows
        .iter()
        .map(|(run, r, a, wall, peak)| {
            (
                format!(
                    "{run} (wall {:.1} s, peak RSS {})",
                    wall.as_secs_f64(),
                    mib(*peak)
                ),
                r.clone(),
                a.clone(),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &Counts, &Counts)> =
        rows.iter().map(|(p, r, a)| (p.as_str(), r, a)).collect();
    upstream_table(report, &borrowed);
    if !error_texts.is_empty() {
        report.line("\nDenial reasons (all runs):\n");
        for (text, n) in &error_texts {
            report.line(format!("- {n} × {text}"));
        }
    }
    report.line("");
}

// ---------------------------------------------------------------------------------------------

/// One server's warm runs of one protocol, added up.
#[derive(Default)]
struct Warm {
    completed: usize,
    sent: usize,
    seconds: f64,
    cpu: f64,
    bad: usize,
    latencies: Vec<Duration>,
}

async fn warm(bench: &Bench, report: &mut Report) {
    let o = &bench.options;
    report.line("## 3. Warm path: the real server against the floor\n");
    bench.upstreams(o.delay, 0.0);
    let dir = tempfile::tempdir().expect("tempdir");
    // The tag stays cached for the whole run, so that nothing but the caches answers.
    let served = bench.serve(&dir, "cache:\n  tagTtl: 10m\n");
    let floor = Floor::start(bench.tls.path());

    let image = bench.image("warm-0");
    let bodies: Vec<Bytes> = (0..4096)
        .map(|i| {
            Bytes::from(reviews::pod(
                &uid("warm", i),
                &format!("warm-{i}"),
                &[&image],
            ))
        })
        .collect();
    let body_bytes = bodies[0].len();
    let bodies = Arc::new(bodies);
    let prewarm = bench.client(Protocol::H2);
    for _ in 0..2 {
        let answer = post(&prewarm, &served.url(), bodies[0].clone())
            .await
            .expect("prewarm");
        assert_eq!(
            verdict(&answer),
            Verdict::Allowed,
            "the warm image must pass"
        );
    }
    bench.counts();

    let warmup = Duration::from_secs(1);
    let duration = Duration::from_secs(o.warm_seconds);
    let mut rows = Vec::new();
    for protocol in [Protocol::H2, Protocol::Http1] {
        let mut totals: BTreeMap<&str, Warm> = BTreeMap::new();
        for _round in 0..o.warm_rounds {
            for (name, url, base, pid) in [
                ("floor", floor.url(), floor.base(), floor.pid()),
                ("attestgate", served.url(), served.base(), served.pid()),
            ] {
                let clients = vec![bench.client(protocol)];
                connect(&clients[0], &base).await;
                let cpu_before = cpu_seconds(pid);
                let run = closed_loop(
                    &clients,
                    &url,
                    bodies.clone(),
                    o.warm_concurrency,
                    warmup,
                    duration,
                )
                .await;
                let cpu = cpu_seconds(pid) - cpu_before;
                let entry = totals.entry(name).or_default();
                entry.completed += run.completed;
                entry.seconds += run.elapsed.as_secs_f64();
                entry.bad += run.failed + run.not_allowed;
                entry.latencies.extend(run.latencies);
                entry.cpu += cpu;
                entry.sent += run.sent;
            }
        }
        rows.push((protocol, totals));
    }
    let (registry, archivista) = bench.counts();

    report.line(format!(
        "Closed loop: {} requests in flight, {} s measured per run after 1 s of warm-up, {} \
         alternations floor → attestgate per protocol; one Pod review of {} bytes (uids \
         differ), its image verified beforehand. Both servers use the same certificate and \
         run on the same cores as the client.\n",
        o.warm_concurrency, o.warm_seconds, o.warm_rounds, body_bytes
    ));
    report.line(
        "| protocol | server | reviews/s | p50 | p90 | p99 | max | server CPU per review | failed or not allowed |",
    );
    report.line("|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (protocol, totals) in &rows {
        for name in ["floor", "attestgate"] {
            let w = &totals[name];
            let s = summarize(&w.latencies);
            report.line(format!(
                "| {} | {name} | {:.0} | {} | {} | {} | {} | {:.0} µs | {} |",
                protocol.name(),
                w.completed as f64 / w.seconds,
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.max),
                w.cpu / w.sent.max(1) as f64 * 1e6,
                w.bad
            ));
        }
        let rate = |n: &str| totals[n].completed as f64 / totals[n].seconds;
        let p99 = |n: &str| summarize(&totals[n].latencies).p99.as_secs_f64();
        ratios.push((
            protocol.name(),
            rate("attestgate") / rate("floor"),
            p99("attestgate") / p99("floor"),
        ));
    }
    report.line("");
    for (protocol, throughput, p99) in &ratios {
        report.line(format!(
            "- {protocol}: attestgate reaches {:.0} % of the floor's throughput (target ≥ 80 %: {}) \
             with {:.2}× its p99 (target < 1.5×: {})",
            throughput * 100.0,
            if *throughput >= 0.8 { "met" } else { "MISSED" },
            p99,
            if *p99 < 1.5 { "met" } else { "MISSED" }
        ));
    }
    report.line(format!(
        "- upstream requests during the warm runs: registry {}, Archivista {}",
        registry.describe(),
        archivista.describe()
    ));
    report.line(format!(
        "- peak RSS: attestgate {}, floor {}\n",
        mib(status_kb(served.pid(), "VmHWM")),
        mib(status_kb(floor.pid(), "VmHWM"))
    ));
}

// ---------------------------------------------------------------------------------------------

async fn memory(bench: &Bench, images: &BTreeMap<String, world::Image>, report: &mut Report) {
    let o = &bench.options;
    report.line("## 4. Memory\n");
    bench.upstreams(Duration::ZERO, 0.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let served = bench.serve(&dir, "");
    let pid = served.pid();
    let client = bench.client(Protocol::H2);
    connect(&client, &served.base()).await;
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    rows.push((
        "idle after start".into(),
        "—".into(),
        status_kb(pid, "VmHWM"),
    ));
    // First, while the process is small: bodies over the cap must not make it grow.
    oversized(bench, &served, &mut rows);

    let envelope = format!(
        "{:.1} MB",
        images["sbom-0"].evidence_bytes as f64 / 1_000_000.0
    );
    // One SBOM image, cold: download, hash check, verification.
    reset_peak(pid);
    let image = bench.image("sbom-0");
    let body = Bytes::from(reviews::pod(&uid("sbom", 0), "sbom-0", &[&image]));
    let sent = Instant::now();
    let answer = post(&client, &served.url(), body.clone()).await;
    let cold = sent.elapsed();
    let outcome = answer.map(|a| verdict(&a));
    let cold_ok = matches!(outcome, Ok(Verdict::Allowed));
    rows.push((
        format!("first review of an image whose evidence is a {envelope} envelope"),
        format!(
            "{} ({})",
            ms(cold),
            if cold_ok {
                "allowed".to_string()
            } else {
                format!("{outcome:?}")
            }
        ),
        status_kb(pid, "VmHWM"),
    ));

    // The same image under load (answered from the caches).
    reset_peak(pid);
    let bodies: Vec<Bytes> = (0..1024)
        .map(|i| Bytes::from(reviews::pod(&uid("sbomw", i), "sbom-w", &[&image])))
        .collect();
    let run = closed_loop(
        std::slice::from_ref(&client),
        &served.url(),
        Arc::new(bodies),
        32,
        Duration::from_millis(200),
        Duration::from_secs(3),
    )
    .await;
    rows.push((
        "3 s of load (32 in flight) on that image, cached".into(),
        format!("{:.0} reviews/s", run.per_second()),
        status_kb(pid, "VmHWM"),
    ));

    // Distinct SBOM images verified at once (each its own envelope), from a fresh server.
    let mut concurrent_ok = true;
    if o.sbom_images > 1 {
        drop(served);
        let dir2 = tempfile::tempdir().expect("tempdir");
        let fresh = bench.serve(&dir2, "");
        let client = bench.client(Protocol::H2);
        connect(&client, &fresh.base()).await;
        reset_peak(fresh.pid());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..o.sbom_images {
            let image = bench.image(&format!("sbom-{i}"));
            let body = Bytes::from(reviews::pod(&uid("sbomc", i), "sbom-c", &[&image]));
            let (client, url) = (client.clone(), fresh.url());
            tasks.spawn(async move { post(&client, &url, body).await.map(|a| verdict(&a)) });
        }
        let sent = Instant::now();
        while let Some(done) = tasks.join_next().await {
            concurrent_ok &= matches!(done.expect("task"), Ok(Verdict::Allowed));
        }
        rows.push((
            format!(
                "{} distinct images with {envelope} envelopes verified at once (fresh server)",
                o.sbom_images
            ),
            ms(sent.elapsed()),
            status_kb(fresh.pid(), "VmHWM"),
        ));
    }

    report.line(format!(
        "Evidence of the SBOM images: one signed collection each (git, docker and a CycloneDX \
         SBOM attestation of many small components), envelope {envelope}; stored in {}. The \
         chart's memory limit is 384 Mi. All SBOM reviews allowed: {}.\n",
        bench.world.evidence_kind(),
        if cold_ok && concurrent_ok {
            "yes"
        } else {
            "NO"
        }
    ));
    report.line("| phase | figure | peak RSS of the phase (VmHWM) |");
    report.line("|---|---|---|");
    for (phase, figure, kb) in &rows {
        report.line(format!("| {phase} | {figure} | {} |", mib(*kb)));
    }
    report.line("");
}

/// Bodies over the 6 MiB cap: one announced as 100 MB and never sent, one streamed in chunks
/// that would never end; each must be refused at once, without the server reading it whole.
fn oversized(bench: &Bench, served: &Served, rows: &mut Vec<(String, String, u64)>) {
    let pid = served.pid();
    reset_peak(pid);
    let announced = raw::post(
        served.webhook,
        &bench.ca,
        "Content-Length: 104857600\r\n",
        std::iter::empty(),
    );
    rows.push((
        "a body announced as 100 MB (Content-Length), none of it sent".into(),
        format!("{} after {}", announced.status, ms(announced.elapsed)),
        status_kb(pid, "VmHWM"),
    ));
    reset_peak(pid);
    let chunk = vec![b' '; 256 * 1024];
    let framed = {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        framed
    };
    // 16 MiB offered, never finished (no last chunk).
    let streamed = raw::post(
        served.webhook,
        &bench.ca,
        "Transfer-Encoding: chunked\r\n",
        std::iter::repeat_n(framed, 64),
    );
    rows.push((
        "a chunked body with no length, 16 MiB offered in 256 KiB chunks and never ended".into(),
        format!(
            "{} after {}; {:.1} MiB written by the client before the answer",
            streamed.status,
            ms(streamed.elapsed),
            streamed.written as f64 / 1024.0 / 1024.0
        ),
        status_kb(pid, "VmHWM"),
    ));
}
