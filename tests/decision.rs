//! The webhook's decision for one image (`attestgate::decision::Decider`), in process on a
//! multi-thread tokio runtime, against REAL servers on loopback: Debian's `docker-registry`
//! (images pushed with skopeo, as in `tests/resolve.rs`), evidence signed with openssl in local
//! folders, and a real Archivista (with its PostgreSQL) for the Archivista case. Without those
//! peers the tests print "skipped: ..." and pass, except under `CI=true`, where they fail.
//!
//! Requests are counted at the servers, never from our own metrics: a test that counts registry
//! requests reaches the registry through its own `common::TcpProxy` (a TCP proxy on 127.0.0.1
//! that counts the HTTP requests it forwards), and evidence that must be counted or slowed
//! comes from `tests/peers/archivista-standin.py` in `counting` mode, which
//! answers Archivista's search and download API for one envelope, counts the searches and
//! downloads, and can be told to answer late or with an error. The real Archivista offers no
//! way to delay its answers, so the deadline, coalescing and stale-if-error cases use the
//! stand-in in its place.
//!
//! `attestgate resolve IMAGE --config FILE` is run here as well, against the same registry.
//!
//! Every reference points at 127.0.0.1; nothing else is contacted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use attestgate::config::Config;
use attestgate::decision::{CacheUse, Decider, ImageDecision, Outcome};
use common::{attestgate, Counting, KeyKind, OpensslKey, PlainRegistry, TcpProxy, POLICY_TYPE};
use serde_json::Value;
use tokio::time::Instant;

const COMMIT: &str = "68ea7a55316c66a603a6838f05e4c130c2b4ff80";
const OTHER_COMMIT: &str = "1111111111111111111111111111111111111111";
const SRC: &str = "https://github.com/example/hello";
/// Long enough for any loopback answer; the deadline tests set their own.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The world: a registry with two images, keys, policies and evidence
// ---------------------------------------------------------------------------------------------

struct World {
    registry: PlainRegistry,
    dir: tempfile::TempDir,
    builder: OpensslKey,
    /// OCI layouts: `good` (evidence exists for it) and `bad` (built from another commit, no
    /// evidence).
    good_layout: PathBuf,
    /// `sha256:` digests of the pushed `v1` images.
    good: String,
    bad: String,
}

static WORLD: Mutex<Weak<World>> = Mutex::new(Weak::new());

fn world() -> Option<Arc<World>> {
    let mut slot = WORLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(world) = slot.upgrade() {
        return Some(world);
    }
    let registry = PlainRegistry::start()?;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();

    let layout = |name: &str, commit: &str| {
        let path = tmp.join(name);
        let digests: HashMap<String, String> = common::mklayout(&path, commit, SRC);
        (path, digests["v1"].clone())
    };
    let (good_layout, good) = layout("good-layout", COMMIT);
    let (bad_layout, bad) = layout("bad-layout", OTHER_COMMIT);
    assert_ne!(good, bad);
    registry.push(&good_layout, "v1", "demo/good:v1");
    registry.push(&bad_layout, "v1", "demo/bad:v1");

    // `policy.json` wants the builder's signature; `strict.json` another functionary's.
    let policy_key = OpensslKey::generate(tmp, "policy", KeyKind::Ed25519);
    let builder = OpensslKey::generate(tmp, "builder", KeyKind::EcdsaP256);
    let stranger = OpensslKey::generate(tmp, "stranger", KeyKind::EcdsaP256);
    for (file, functionary) in [("policy.json", &builder), ("strict.json", &stranger)] {
        let body = common::build_policy(functionary).to_string();
        std::fs::write(
            tmp.join(file),
            policy_key.envelope(POLICY_TYPE, body.as_bytes()),
        )
        .unwrap();
    }
    std::fs::create_dir(tmp.join("evidence")).unwrap();
    std::fs::create_dir(tmp.join("empty")).unwrap();
    std::fs::write(
        tmp.join("evidence/good.json"),
        common::image_evidence(&builder, hex(&good), COMMIT, SRC),
    )
    .unwrap();

    let world = Arc::new(World {
        registry,
        dir,
        builder,
        good_layout,
        good,
        bad,
    });
    *slot = Arc::downgrade(&world);
    Some(world)
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// `127.0.0.1:PORT` where nothing listens.
fn down_host() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// One `policies:` entry. `policy` is a file of the world's folder; `evidence` is the YAML of
/// the `evidence:` mapping, indented by six spaces.
fn entry(name: &str, pattern: &str, policy: &str, evidence: &str) -> String {
    format!(
        "  - name: {name}
    images: [\"{pattern}\"]
    policy: {policy}
    trust:
      publicKeys: [policy.pub.pem]
    evidence:
{evidence}"
    )
}

/// `evidence:` from one of the world's folders.
fn folder(name: &str) -> String {
    format!("      directories: [{name}]\n")
}

/// `evidence:` from an Archivista at `url`.
fn archivista(url: &str) -> String {
    format!("      archivista:\n        server: {url}\n        requestTimeout: 5s\n")
}

impl World {
    /// `127.0.0.1:PORT/repository` at the registry.
    fn image(&self, repository: &str) -> String {
        format!("{}/{repository}", self.registry.host)
    }

    /// `127.0.0.1:PORT/demo/**`.
    fn demo(&self) -> String {
        format!("{}/demo/**", self.registry.host)
    }

    /// The YAML of a config with `top` (top-level keys) and these policy entries, which
    /// reaches the registry and `extra_insecure` over plain HTTP.
    fn yaml(&self, top: &str, policies: &[String], extra_insecure: &[&str]) -> String {
        let mut insecure = vec![format!("\"{}\"", self.registry.host)];
        insecure.extend(extra_insecure.iter().map(|h| format!("\"{h}\"")));
        let mut yaml = format!(
            "{top}\nregistry:\n  insecure: [{}]\n  maxRetries: 0\n",
            insecure.join(", ")
        );
        if !policies.is_empty() {
            yaml.push_str("policies:\n");
            for p in policies {
                yaml.push_str(p);
            }
        }
        yaml
    }

    /// Writes `yaml` into the world's folder (so relative paths find the policies and keys)
    /// under a fresh name and loads it.
    fn load(&self, yaml: &str) -> Arc<Config> {
        let file = tempfile::Builder::new()
            .prefix("config-")
            .suffix(".yaml")
            .tempfile_in(self.dir.path())
            .unwrap();
        std::fs::write(file.path(), yaml).unwrap();
        Arc::new(Config::load(file.path()).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
    }

    /// A config with the `build` policy over `demo/**`, evidence from the `evidence` folder.
    fn config(&self, top: &str) -> Arc<Config> {
        self.load(&self.yaml(
            top,
            &[entry(
                "build",
                &self.demo(),
                "policy.json",
                &folder("evidence"),
            )],
            &[],
        ))
    }

    /// Pushes the good image as `repository:v1`.
    fn push_good(&self, repository: &str) {
        self.registry
            .push(&self.good_layout, "v1", &format!("{repository}:v1"));
    }

    /// A config with the `build` policy over `demo/**` reached through `proxy`, with these
    /// top-level keys and evidence.
    fn config_via(&self, proxy: &TcpProxy, top: &str, evidence: &str) -> Arc<Config> {
        let host = proxy.host();
        self.load(&self.yaml(
            top,
            &[entry(
                "build",
                &format!("{host}/demo/**"),
                "policy.json",
                evidence,
            )],
            &[&host],
        ))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

async fn decide(decider: &Decider, image: &str) -> ImageDecision {
    decider.decide(image, Instant::now() + DEADLINE).await
}

/// One decision with a fresh decider for `config`.
fn decide_once(config: &Arc<Config>, image: &str) -> ImageDecision {
    block_on(decide(&Decider::new(config.clone()), image))
}

fn violation(decision: &ImageDecision) -> &str {
    match &decision.outcome {
        Outcome::Violation(why) => why,
        other => panic!("expected a violation, got {other:?} in {decision:?}"),
    }
}

fn error(decision: &ImageDecision) -> &str {
    match &decision.outcome {
        Outcome::Error(why) => why,
        other => panic!("expected an error, got {other:?} in {decision:?}"),
    }
}

fn excepted(decision: &ImageDecision) -> &str {
    match &decision.outcome {
        Outcome::Excepted(why) => why,
        other => panic!("expected an exception, got {other:?} in {decision:?}"),
    }
}

/// `YYYY-MM-DD` of today plus `days`, UTC.
fn date(days: i64) -> String {
    let day = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    let format = time::macros::format_description!("[year]-[month]-[day]");
    day.format(&format).unwrap()
}

/// Polls `done` every 20 ms for at most `limit`; whether it came true.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

// ---------------------------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------------------------

#[test]
fn an_image_whose_signed_evidence_names_its_digest_is_admitted() {
    let Some(w) = world() else { return };
    let config = w.config("");
    let label = config.policies[0].label();
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
    assert_eq!(decision.digest.as_deref(), Some(w.good.as_str()));
    assert_eq!(decision.policies, [label]);
    assert_eq!(decision.binding.as_deref(), Some("digest"));
    assert_eq!(decision.cache, CacheUse::Miss);
    assert_eq!(decision.evidence.len(), 1, "{decision:?}");
    assert!(
        decision.evidence[0].ends_with("evidence/good.json"),
        "{decision:?}"
    );
    assert!(decision.outcome.admits());
}

#[test]
fn an_image_without_evidence_is_a_violation_not_an_error() {
    let Some(w) = world() else { return };
    let decision = decide_once(&w.config(""), &w.image("demo/bad:v1"));
    let why = violation(&decision);
    assert!(why.starts_with("policy build: "), "{why}");
    assert_eq!(decision.digest.as_deref(), Some(w.bad.as_str()));
    assert!(decision.evidence.is_empty());
    assert!(!decision.outcome.admits());

    // Evidence that names another image does not help either.
    let config = w.load(&w.yaml(
        "",
        &[entry("build", &w.demo(), "policy.json", &folder("empty"))],
        &[],
    ));
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert!(
        violation(&decision).starts_with("policy build: "),
        "{decision:?}"
    );
}

#[test]
fn an_image_pattern_exception_admits_a_failing_image_until_it_expires() {
    let Some(w) = world() else { return };
    let exception = |expires: &str| {
        format!(
            "exceptions:\n  - image: {}\n    reason: rebuilt next sprint\n    owner: team-a\n    \
             expires: {expires}\n",
            w.image("demo/bad")
        )
    };
    let config = w.config(&exception(&date(1)));
    let decision = decide_once(&config, &w.image("demo/bad:v1"));
    let why = excepted(&decision);
    assert!(why.contains(&w.image("demo/bad")), "{why}");
    assert!(why.contains("owner team-a"), "{why}");
    assert!(decision.outcome.admits());
    // It covers that repository only.
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");

    // Expired yesterday: the image is judged again, and the denial names the exception.
    let config = w.config(&exception(&date(-1)));
    let decision = decide_once(&config, &w.image("demo/bad:v1"));
    let why = violation(&decision);
    // The note comes first, so a line cut short still shows it.
    assert!(why.starts_with("exception expired "), "{why}");
    assert!(why.contains("(owner team-a); policy build: "), "{why}");
}

#[test]
fn a_digest_exception_admits_that_image_and_no_other() {
    let Some(w) = world() else { return };
    let config = w.config(&format!(
        "exceptions:\n  - digest: {}\n    reason: hotfix\n    owner: team-b\n    expires: {}\n",
        w.bad,
        date(30)
    ));
    let decision = decide_once(&config, &w.image("demo/bad:v1"));
    assert!(excepted(&decision).contains(&w.bad), "{decision:?}");
    assert_eq!(decision.digest.as_deref(), Some(w.bad.as_str()));
    // The same repository under the good image's digest is judged by its policy.
    w.push_good("demo/bad-too");
    let decision = decide_once(&config, &w.image("demo/bad-too:v1"));
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
}

#[test]
fn the_denylist_overrides_a_pass_an_exception_and_a_cached_pass() {
    let Some(w) = world() else { return };
    let image = w.image("demo/good:v1");

    // A denylisted signer key: checked on every answer, the cached one included.
    let config = w.config(&format!("denylist:\n  keyids: [{}]\n", w.builder.keyid()));
    let decider = Decider::new(config);
    let (first, second) = block_on(async {
        let first = decide(&decider, &image).await;
        (first, decide(&decider, &image).await)
    });
    for decision in [&first, &second] {
        assert_eq!(
            violation(decision),
            format!("denylisted signer key {}", w.builder.keyid())
        );
    }
    assert_eq!(first.cache, CacheUse::Miss);
    assert_eq!(second.cache, CacheUse::Hit, "the second answer is cached");

    // A denylisted commit (the image's revision label).
    let config = w.config(&format!("denylist:\n  commits: [{COMMIT}]\n"));
    let decision = decide_once(&config, &image);
    assert_eq!(violation(&decision), format!("denylisted commit {COMMIT}"));

    // A denylisted digest, found by resolving the tag, or read from a pinned reference; an
    // exception for the image does not lift it.
    let config = w.config(&format!(
        "denylist:\n  digests: [\"{}\"]\nexceptions:\n  - image: {}\n    reason: r\n    \
         owner: o\n    expires: {}\n",
        w.good,
        w.image("demo/good"),
        date(30)
    ));
    let decision = decide_once(&config, &image);
    assert_eq!(
        violation(&decision),
        format!("denylisted digest {}", w.good)
    );
    let decision = decide_once(&config, &w.image(&format!("demo/good@{}", w.good)));
    assert_eq!(
        violation(&decision),
        format!("denylisted digest {}", w.good)
    );

    // The same image without a denylist passes: the entries above are what denied it.
    let decision = decide_once(&w.config(""), &image);
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
}

#[test]
fn a_second_decision_is_a_cache_hit_that_asks_the_registry_nothing() {
    let Some(w) = world() else { return };
    let proxy = TcpProxy::start(&w.registry.host);
    let image = format!("{}/demo/good:v1", proxy.host());
    let decider = Decider::new(w.config_via(&proxy, "", &folder("evidence")));
    let (first, fetched, second) = block_on(async {
        let first = decide(&decider, &image).await;
        let fetched = proxy.requests();
        (first, fetched, decide(&decider, &image).await)
    });
    assert_eq!(first.outcome, Outcome::Admitted, "{first:?}");
    assert_eq!(first.cache, CacheUse::Miss);
    // At least the tag, the manifest and its config.
    assert!(fetched >= 3, "{fetched} requests for the first decision");
    assert_eq!(second.outcome, Outcome::Admitted, "{second:?}");
    assert_eq!(second.cache, CacheUse::Hit);
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.evidence, first.evidence);
    assert_eq!(
        proxy.requests(),
        fetched,
        "no registry request for the cached decision"
    );
}

#[test]
fn every_policy_covering_an_image_must_pass() {
    let Some(w) = world() else { return };
    let config = w.load(&w.yaml(
        "",
        &[
            entry("build", &w.demo(), "policy.json", &folder("evidence")),
            entry("strict", &w.demo(), "strict.json", &folder("evidence")),
        ],
        &[],
    ));
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    let why = violation(&decision);
    assert!(why.starts_with("policy strict: "), "{why}");
    assert!(!why.contains("policy build"), "{why}");
    assert_eq!(
        decision.policies,
        [config.policies[0].label(), config.policies[1].label()]
    );

    // A policy over other images does not judge this one.
    let config = w.load(&w.yaml(
        "",
        &[
            entry("build", &w.demo(), "policy.json", &folder("evidence")),
            entry(
                "strict",
                &w.image("elsewhere/**"),
                "strict.json",
                &folder("evidence"),
            ),
        ],
        &[],
    ));
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
    assert_eq!(decision.policies, [config.policies[0].label()]);
}

#[test]
fn a_violation_of_one_policy_is_not_turned_into_an_error_by_another() {
    let Some(w) = world() else { return };
    // `strict` fails; `archived` cannot reach its evidence store. The answer is the violation
    // (an error would let a soft-fail gate through), in either order.
    let strict = entry("strict", &w.demo(), "strict.json", &folder("evidence"));
    let unreachable = entry(
        "archived",
        &w.demo(),
        "policy.json",
        &archivista(&format!("http://{}", down_host())),
    );
    for policies in [[strict.clone(), unreachable.clone()], [unreachable, strict]] {
        let config = w.load(&w.yaml("", &policies, &[]));
        let decision = decide_once(&config, &w.image("demo/good:v1"));
        let why = violation(&decision);
        assert!(why.starts_with("policy strict: "), "{why}");
    }
    // Alone, the unreachable store is an error.
    let config = w.load(&w.yaml(
        "",
        &[entry(
            "archived",
            &w.demo(),
            "policy.json",
            &archivista(&format!("http://{}", down_host())),
        )],
        &[],
    ));
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert!(
        error(&decision).starts_with("policy archived: "),
        "{decision:?}"
    );
}

#[test]
fn an_image_no_policy_covers_follows_no_match() {
    let Some(w) = world() else { return };
    let proxy = TcpProxy::start(&w.registry.host);
    let image = format!("{}/elsewhere/app:v1", proxy.host());
    let config = |top: &str| w.config_via(&proxy, top, &folder("evidence"));
    let decision = decide_once(&config(""), &image);
    let why = violation(&decision);
    assert!(
        why.contains(&format!("no policy covers {}/elsewhere/app", proxy.host())),
        "{why}"
    );
    assert_eq!(decision.cache, CacheUse::None);
    let decision = decide_once(&config("noMatch: allow"), &image);
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
    assert!(decision.policies.is_empty());
    // Nothing was resolved: the registry was not asked.
    assert_eq!(decision.digest, None);
    assert_eq!(proxy.requests(), 0);
}

#[test]
fn require_digest_refuses_a_tag_and_admits_the_pinned_image() {
    let Some(w) = world() else { return };
    let config = w.config("requireDigest: true");
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert!(
        violation(&decision).contains("not pinned by digest"),
        "{decision:?}"
    );
    assert_eq!(decision.digest, None);
    let pinned = w.image(&format!("demo/good@{}", w.good));
    let decision = decide_once(&config, &pinned);
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
}

#[test]
fn a_short_name_is_refused_when_asked() {
    let Some(w) = world() else { return };
    // No policy covers Docker Hub and unmatched images are allowed, so only the flag denies.
    let decision = decide_once(
        &w.config("rejectShortNames: true\nnoMatch: allow"),
        "nginx:1.27",
    );
    let why = violation(&decision);
    assert!(why.contains("short name"), "{why}");
    assert!(why.contains("docker.io/library/nginx"), "{why}");
    let decision = decide_once(&w.config("noMatch: allow"), "nginx:1.27");
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
}

#[test]
fn a_registry_that_is_down_is_an_error_not_a_violation() {
    let Some(w) = world() else { return };
    let down = down_host();
    let config = w.load(&w.yaml(
        "",
        &[entry(
            "build",
            &format!("{down}/**"),
            "policy.json",
            &folder("evidence"),
        )],
        &[&down],
    ));
    let decider = Decider::new(config);
    let image = format!("{down}/demo/good:v1");
    let (first, second) = block_on(async {
        let first = decide(&decider, &image).await;
        (first, decide(&decider, &image).await)
    });
    for decision in [&first, &second] {
        assert!(error(decision).contains("unreachable"), "{decision:?}");
        assert!(!decision.outcome.admits());
    }
}

// ---------------------------------------------------------------------------------------------
// Verifications shared, late, and stale
// ---------------------------------------------------------------------------------------------

/// The counting stand-in serving the good image's evidence, and the `evidence:` YAML for it.
fn standin(w: &World, dir: &Path) -> (Counting, String) {
    let envelope = dir.join("envelope.json");
    std::fs::copy(w.dir.path().join("evidence/good.json"), &envelope).unwrap();
    let server = Counting::start(dir, &envelope);
    let yaml = archivista(&server.url);
    (server, yaml)
}

/// Searches are never reused by the Archivista source, so that only the decider can share
/// them.
const NO_SEARCH_CACHE: &str = "cache:\n  evidenceSearchTtl: 0s\n  evidenceEmptySearchTtl: 0s";

#[test]
fn concurrent_decisions_of_a_new_image_share_one_verification() {
    let Some(w) = world() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (server, evidence) = standin(&w, tmp.path());
    let proxy = TcpProxy::start(&w.registry.host);
    let image = format!("{}/demo/good:v1", proxy.host());
    let load = || w.config_via(&proxy, NO_SEARCH_CACHE, &evidence);
    let (single, control, shared, decisions) = block_on(async {
        // Slow enough that every concurrent request arrives while the first still verifies.
        server.control("hit", 0.5).await;

        // What one verification asks, from a fresh config (fresh registry and evidence
        // clients, so nothing is cached).
        let before = (server.counts().await, proxy.requests());
        let one = decide(&Decider::new(load()), &image).await;
        assert_eq!(one.outcome, Outcome::Admitted, "{one:?}");
        let after = (server.counts().await, proxy.requests());
        let single = (
            after.0 .0 - before.0 .0,
            after.0 .1 - before.0 .1,
            after.1 - before.1,
        );

        // The control: five deciders share a config but not their verifications, and the
        // evidence server sees five times the searches.
        let config = load();
        let before = server.counts().await;
        let deciders: Vec<Decider> = (0..5).map(|_| Decider::new(config.clone())).collect();
        futures_util::future::join_all(deciders.iter().map(|d| decide(d, &image))).await;
        let control = server.counts().await.0 - before.0;

        // Twenty requests to one decider.
        let decider = Decider::new(load());
        let before = (server.counts().await, proxy.requests());
        let decisions =
            futures_util::future::join_all((0..20).map(|_| decide(&decider, &image))).await;
        let after = (server.counts().await, proxy.requests());
        let shared = (
            after.0 .0 - before.0 .0,
            after.0 .1 - before.0 .1,
            after.1 - before.1,
        );
        (single, control, shared, decisions)
    });
    assert!(
        single.0 >= 1 && single.1 >= 1 && single.2 >= 1,
        "{single:?}"
    );
    assert_eq!(
        control,
        5 * single.0,
        "searches are not shared without the decider"
    );
    assert_eq!(
        shared, single,
        "(searches, downloads, registry requests) of twenty concurrent decisions"
    );
    for decision in &decisions {
        assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
        assert_eq!(decision.cache, CacheUse::Miss);
    }
}

#[test]
fn a_verification_past_the_deadline_finishes_in_the_background_and_fills_the_cache() {
    let Some(w) = world() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (server, evidence) = standin(&w, tmp.path());
    let image = w.image("demo/good:v1");
    let config = w.load(&w.yaml(
        NO_SEARCH_CACHE,
        &[entry("build", &w.demo(), "policy.json", &evidence)],
        &[],
    ));
    let decider = Decider::new(config);
    block_on(async {
        server.control("hit", 1.5).await;
        let late = decider
            .decide(&image, Instant::now() + Duration::from_millis(400))
            .await;
        let why = error(&late);
        assert!(why.contains("the deadline passed"), "{why}");
        assert!(why.contains("background"), "{why}");
        assert_eq!(decider.background_verifications(), 1);

        // The verification goes on without anyone waiting, and fills the cache.
        assert!(
            eventually(Duration::from_secs(30), || decider
                .background_verifications()
                == 0)
            .await,
            "the background verification did not finish"
        );
        let searched = server.counts().await;
        let retry = decider
            .decide(&image, Instant::now() + Duration::from_millis(400))
            .await;
        assert_eq!(retry.outcome, Outcome::Admitted, "{retry:?}");
        assert_eq!(retry.cache, CacheUse::Hit);
        assert_eq!(
            server.counts().await,
            searched,
            "the retry asked the evidence server nothing"
        );
    });
}

#[test]
fn a_stale_pass_answers_an_evidence_outage_only_when_allowed() {
    let Some(w) = world() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (server, evidence) = standin(&w, tmp.path());
    let image = w.image("demo/good:v1");
    let config = |stale: &str| {
        w.load(&w.yaml(
            &format!("{NO_SEARCH_CACHE}\n  decisionsTtl: 300ms\n{stale}"),
            &[entry("build", &w.demo(), "policy.json", &evidence)],
            &[],
        ))
    };
    let allowed = Decider::new(config("  staleIfError: 1h"));
    let refused = Decider::new(config(""));
    block_on(async {
        for decider in [&allowed, &refused] {
            let fresh = decide(decider, &image).await;
            assert_eq!(fresh.outcome, Outcome::Admitted, "{fresh:?}");
        }
        server.control("error", 0.0).await;
        // Past the 300 ms TTL of both passes.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let stale = decide(&allowed, &image).await;
        assert_eq!(stale.outcome, Outcome::Admitted, "{stale:?}");
        assert_eq!(stale.cache, CacheUse::Stale);
        let denied = decide(&refused, &image).await;
        assert!(error(&denied).starts_with("policy build: "), "{denied:?}");

        // A violation is never answered by a stale pass: the search now finds nothing.
        server.control("empty", 0.0).await;
        let empty = decide(&allowed, &image).await;
        assert!(violation(&empty).starts_with("policy build: "), "{empty:?}");
    });
}

#[test]
fn evidence_from_a_real_archivista_is_admitted_by_its_gitoid() {
    let Some(w) = world() else { return };
    let Some(server) = common::Archivista::start() else {
        return;
    };
    let gitoid = server.upload(&std::fs::read(w.dir.path().join("evidence/good.json")).unwrap());
    let config = w.load(&w.yaml(
        "",
        &[entry(
            "build",
            &w.demo(),
            "policy.json",
            &archivista(&server.url),
        )],
        &[],
    ));
    let decision = decide_once(&config, &w.image("demo/good:v1"));
    assert_eq!(decision.outcome, Outcome::Admitted, "{decision:?}");
    assert_eq!(decision.evidence, [format!("gitoid:{gitoid}")]);
    let decision = decide_once(&config, &w.image("demo/bad:v1"));
    assert!(
        violation(&decision).starts_with("policy build: "),
        "{decision:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// attestgate resolve IMAGE --config FILE
// ---------------------------------------------------------------------------------------------

/// Writes `yaml` as `name` into the world's folder.
fn write_config(w: &World, name: &str, yaml: &str) -> String {
    std::fs::write(w.dir.path().join(name), yaml).unwrap();
    name.to_string()
}

fn resolve_json(w: &World, image: &str, config: &str) -> (common::Run, Value) {
    let run = attestgate(
        w.dir.path(),
        ["resolve", image, "--config", config, "--output", "json"],
    );
    let value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.text()));
    (run, value)
}

#[test]
fn resolve_with_a_config_prints_the_decision_and_exits_by_its_outcome() {
    let Some(w) = world() else { return };
    let config = write_config(
        &w,
        "cli.yaml",
        &w.yaml(
            "",
            &[entry(
                "build",
                &w.demo(),
                "policy.json",
                &folder("evidence"),
            )],
            &[],
        ),
    );

    let (run, out) = resolve_json(&w, &w.image("demo/good:v1"), &config);
    assert_eq!(run.code, 0, "{}", run.text());
    assert_eq!(out["decision"]["outcome"], "admitted", "{out}");
    assert_eq!(out["decision"]["digest"], w.good.as_str());
    assert_eq!(out["decision"]["binding"], "digest");
    assert_eq!(out["policies"][0]["name"], "build");
    assert_eq!(out["policies"][0]["resolution"]["digest"], w.good.as_str());
    assert_eq!(
        out["policies"][0]["resolution"]["verdict"]["passed"], true,
        "{out}"
    );

    let (run, out) = resolve_json(&w, &w.image("demo/bad:v1"), &config);
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(out["decision"]["outcome"], "violation", "{out}");
    assert!(
        out["decision"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("policy build: "),
        "{out}"
    );

    // A registry nobody answers for.
    let down = down_host();
    let down_config = write_config(
        &w,
        "cli-down.yaml",
        &w.yaml(
            "",
            &[entry(
                "build",
                &format!("{down}/**"),
                "policy.json",
                &folder("evidence"),
            )],
            &[&down],
        ),
    );
    let (run, out) = resolve_json(&w, &format!("{down}/demo/good:v1"), &down_config);
    assert_eq!(run.code, 3, "{}", run.text());
    assert_eq!(out["decision"]["outcome"], "error", "{out}");

    // The text report leads with the decision.
    let run = attestgate(
        w.dir.path(),
        ["resolve", &w.image("demo/bad:v1"), "--config", &config],
    );
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stdout.starts_with("DENY: policy build: "),
        "{}",
        run.stdout
    );
}

#[test]
fn resolve_with_a_config_refuses_the_flags_it_replaces_and_a_bad_config() {
    // No registry is needed: both are refused before anything is contacted.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), "deadline: 5s\n").unwrap();
    let run = attestgate(
        dir.path(),
        [
            "resolve",
            "127.0.0.1:9/demo/good:v1",
            "--config",
            "config.yaml",
            "--policy",
            "policy.json",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr
            .contains("--policy cannot be combined with --config"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    std::fs::write(dir.path().join("bad.yaml"), "deadline: 5s\nnomatch: deny\n").unwrap();
    let run = attestgate(
        dir.path(),
        [
            "resolve",
            "127.0.0.1:9/demo/good:v1",
            "--config",
            "bad.yaml",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("bad.yaml"), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown field `nomatch`"),
        "{}",
        run.stderr
    );
}
