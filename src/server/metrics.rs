//! The process's Prometheus metrics: one registry, prefix `attestgate`, and the methods the rest
//! of the crate records through.
//!
//! Every method takes `&self`, costs a hash lookup and an atomic at most, and is safe to call
//! from any task. The label values come from the crate itself (modes, decision names, digests),
//! never from a request, so the number of series stays bounded.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::Mode;

/// The content type of [`Metrics::encode`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The decisions [`Metrics::review`] records; each starts at zero for every mode so that rates
/// exist before the first occurrence.
pub const REVIEW_DECISIONS: [&str; 7] = [
    "allowed",
    "denied",
    "warned",
    "audited",
    "skipped",
    "error",
    "bad_request",
];

/// Review duration buckets, in seconds: 1 ms up to the API server's 10 s default timeout.
const REVIEW_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    mode: &'static str,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageLabels {
    mode: &'static str,
    outcome: String,
    cache: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigInfoLabels {
    config_digest: String,
    policy_digests: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

type HistogramFamily = Family<ModeLabels, Histogram, fn() -> Histogram>;

/// The process's metrics. Share it behind an `Arc`; every recording method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    review_duration: HistogramFamily,
    in_flight: Gauge,
    image_decisions: Family<ImageLabels, Counter>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_reload_failing: Gauge,
    config_last_success: Gauge,
    config_info: Family<ConfigInfoLabels, Gauge>,
    /// Held while the info family is swapped, so two reloads never leave two current configs.
    config_info_swap: Mutex<()>,
    policy_expiry: Family<PolicyLabels, Gauge>,
    serving_certificate_expiry: Gauge,
    tls_reloads: Family<ResultLabels, Counter>,
    tls_reload_failing: Gauge,
    background_verifications: Gauge,
    namespaces: Family<ModeLabels, Gauge>,
    namespace_modes_refresh_failing: Gauge,
    namespace_modes_last_success: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and no samples yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("attestgate");
        let metrics = Self {
            registry: Registry::default(),
            reviews: Family::default(),
            review_duration: Family::new_with_constructor(review_histogram),
            in_flight: Gauge::default(),
            image_decisions: Family::default(),
            upstream_errors: Family::default(),
            config_reloads: Family::default(),
            config_reload_failing: Gauge::default(),
            config_last_success: Gauge::default(),
            config_info: Family::default(),
            config_info_swap: Mutex::new(()),
            policy_expiry: Family::default(),
            serving_certificate_expiry: Gauge::default(),
            tls_reloads: Family::default(),
            tls_reload_failing: Gauge::default(),
            background_verifications: Gauge::default(),
            namespaces: Family::default(),
            namespace_modes_refresh_failing: Gauge::default(),
            namespace_modes_last_success: Gauge::default(),
        };
        metrics.register(&mut registry);
        metrics.start_known_series();
        Self {
            registry,
            ..metrics
        }
    }

    /// Creates the series whose labels are known in advance, at zero.
    fn start_known_series(&self) {
        // `get_or_create` returns a read guard on the family; dropping it at once is the point.
        for mode in Mode::ALL {
            let mode = mode.as_str();
            for decision in REVIEW_DECISIONS {
                drop(self.reviews.get_or_create(&ReviewLabels {
                    mode,
                    decision: decision.to_owned(),
                }));
            }
            drop(self.review_duration.get_or_create(&ModeLabels { mode }));
        }
        for ok in [true, false] {
            let labels = ResultLabels {
                result: result_label(ok),
            };
            drop(self.config_reloads.get_or_create(&labels));
            drop(self.tls_reloads.get_or_create(&labels));
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "reviews",
            "Admission reviews answered, by mode and decision",
            self.reviews.clone(),
        );
        registry.register(
            "review_duration_seconds",
            "Time from a review's body read to its answer, by mode",
            self.review_duration.clone(),
        );
        registry.register(
            "reviews_in_flight",
            "Admission reviews being judged now",
            self.in_flight.clone(),
        );
        registry.register(
            "image_decisions",
            "Per-image verdicts, by mode, outcome and whether the cache answered",
            self.image_decisions.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed calls to an upstream (registry, archivista, kubernetes)",
            self.upstream_errors.clone(),
        );
        self.register_config(registry);
        self.register_tls(registry);
        registry.register(
            "background_verifications",
            "Image verifications running in the background now",
            self.background_verifications.clone(),
        );
        self.register_namespaces(registry);
    }

    fn register_namespaces(&self, registry: &mut Registry) {
        registry.register(
            "namespaces",
            "Namespaces by the value of their attestgate.dev/mode label (enforce, warn, audit; \
             unknown values are judged as enforce; unlabelled ones are not reviewed), as last \
             counted (kubernetes.namespaceModes)",
            self.namespaces.clone(),
        );
        registry.register(
            "namespace_modes_refresh_failing",
            "Whether the last count of the namespaces by mode label failed and the figures are \
             older (1) or not (0)",
            self.namespace_modes_refresh_failing.clone(),
        );
        registry.register(
            "namespace_modes_last_success_timestamp_seconds",
            "When the namespaces were last counted by mode label (Unix seconds; 0: never)",
            self.namespace_modes_last_success.clone(),
        );
    }

    fn register_config(&self, registry: &mut Registry) {
        registry.register(
            "config_reloads",
            "Config loads, by result",
            self.config_reloads.clone(),
        );
        registry.register(
            "config_reload_failing",
            "Whether the newest config failed to load and an older one serves (1) or not (0)",
            self.config_reload_failing.clone(),
        );
        registry.register(
            "config_last_success_timestamp_seconds",
            "When a config last loaded successfully (Unix seconds)",
            self.config_last_success.clone(),
        );
        registry.register(
            "config_info",
            "The config being served, by its digest and its policies' digests (always 1)",
            self.config_info.clone(),
        );
        registry.register(
            "policy_expiry_timestamp_seconds",
            "When each loaded policy expires (Unix seconds)",
            self.policy_expiry.clone(),
        );
    }

    fn register_tls(&self, registry: &mut Registry) {
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "When the webhook's serving certificate expires (Unix seconds)",
            self.serving_certificate_expiry.clone(),
        );
        registry.register(
            "tls_reloads",
            "Serving certificate loads after a change on disk, by result",
            self.tls_reloads.clone(),
        );
        registry.register(
            "tls_reload_failing",
            "Whether the newest certificate failed to load and an older one serves (1) or not (0)",
            self.tls_reload_failing.clone(),
        );
    }

    /// Records one answered review: `decision` is one of [`REVIEW_DECISIONS`]; `seconds` is how
    /// long it took.
    pub fn review(&self, mode: Mode, decision: &str, seconds: f64) {
        let mode = mode.as_str();
        self.reviews
            .get_or_create(&ReviewLabels {
                mode,
                decision: decision.to_owned(),
            })
            .inc();
        self.review_duration
            .get_or_create(&ModeLabels { mode })
            .observe(seconds);
    }

    /// Counts a review as in flight until the returned guard drops.
    pub fn review_started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight {
            gauge: &self.in_flight,
        }
    }

    /// Records one image's verdict: `outcome` such as `passed` or `failed`, `cache` such as
    /// `hit` or `miss`.
    pub fn image_decision(&self, mode: Mode, outcome: &str, cache: &str) {
        self.image_decisions
            .get_or_create(&ImageLabels {
                mode: mode.as_str(),
                outcome: outcome.to_owned(),
                cache: cache.to_owned(),
            })
            .inc();
    }

    /// Counts one failed call to `upstream` (`registry`, `archivista`, `kubernetes`, ...).
    pub fn upstream_error(&self, upstream: &str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    /// Records a config load. A success makes `config_digest` and `policy_digests` the current
    /// config (the previous one's info series disappears); a failure leaves the current config's
    /// series alone and raises `config_reload_failing` until the next success.
    pub fn config_reload(&self, ok: bool, config_digest: &str, policy_digests: &str) {
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: result_label(ok),
            })
            .inc();
        if !ok {
            self.config_reload_failing.set(1);
            return;
        }

        self.config_reload_failing.set(0);
        self.config_last_success.set(unix_now());
        // A poisoned lock only means another reload panicked mid-swap; the swap below is
        // complete on its own, so it proceeds.
        let _swap = self
            .config_info_swap
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.config_info.clear();
        self.config_info
            .get_or_create(&ConfigInfoLabels {
                config_digest: config_digest.to_owned(),
                policy_digests: policy_digests.to_owned(),
            })
            .set(1);
    }

    /// Sets when `policy` expires.
    pub fn policy_expiry(&self, policy: &str, unix_seconds: i64) {
        self.policy_expiry
            .get_or_create(&PolicyLabels {
                policy: policy.to_owned(),
            })
            .set(unix_seconds);
    }

    /// Forgets every policy's expiry, before a reload sets the new ones.
    pub fn clear_policy_expiries(&self) {
        self.policy_expiry.clear();
    }

    /// Sets when the serving certificate expires.
    pub fn serving_certificate_expiry(&self, unix_seconds: i64) {
        self.serving_certificate_expiry.set(unix_seconds);
    }

    /// Records a serving-certificate reload.
    pub fn tls_reload(&self, ok: bool) {
        self.tls_reloads
            .get_or_create(&ResultLabels {
                result: result_label(ok),
            })
            .inc();
        self.tls_reload_failing.set(if ok { 0 } else { 1 });
    }

    /// Sets how many image verifications run in the background.
    pub fn background_verifications(&self, n: i64) {
        self.background_verifications.set(n);
    }

    /// Records a count of the namespaces by mode label: `counts` pairs each class (`enforce`,
    /// `warn`, `audit`, `unknown`, `unlabelled`) with its number of namespaces.
    pub fn namespace_modes(&self, counts: &[(&'static str, i64)]) {
        for &(mode, count) in counts {
            self.namespaces
                .get_or_create(&ModeLabels { mode })
                .set(count);
        }
        self.namespace_modes_refresh_failing.set(0);
        self.namespace_modes_last_success.set(unix_now());
    }

    /// Records a count of the namespaces that failed: the last figures stay, marked as older.
    pub fn namespace_modes_failed(&self) {
        self.namespace_modes_refresh_failing.set(1);
    }

    /// Every metric in the OpenMetrics text format ([`METRICS_CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String cannot fail; an error would come from a label encoder, and a
            // partial page is still more useful to a scraper than none.
            tracing::warn!(error = %err, "metrics encoding failed");
        }
        text
    }
}

/// Keeps one review counted in `attestgate_reviews_in_flight` while it lives.
#[derive(Debug)]
pub struct InFlight<'a> {
    gauge: &'a Gauge,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

fn review_histogram() -> Histogram {
    Histogram::new(REVIEW_BUCKETS)
}

fn result_label(ok: bool) -> &'static str {
    if ok {
        "success"
    } else {
        "failure"
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.review(Mode::Enforce, "denied", 0.02);
        metrics.image_decision(Mode::Warn, "failed", "miss");
        metrics.upstream_error("registry");
        metrics.tls_reload(true);
        let text = metrics.encode();
        assert!(text.contains(r#"attestgate_reviews_total{mode="enforce",decision="denied"} 1"#));
        assert!(
            text.contains(
                r#"attestgate_review_duration_seconds_bucket{le="0.025",mode="enforce"} 1"#
            ) || text.contains(
                r#"attestgate_review_duration_seconds_bucket{mode="enforce",le="0.025"} 1"#
            )
        );
        assert!(text.contains(
            r#"attestgate_image_decisions_total{mode="warn",outcome="failed",cache="miss"} 1"#
        ));
        assert!(text.contains(r#"attestgate_upstream_errors_total{upstream="registry"} 1"#));
        assert!(text.contains("attestgate_tls_reload_failing 0"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn config_info_names_only_the_current_config() {
        let metrics = Metrics::new();
        metrics.config_reload(true, "sha256:aa", "p1=sha256:01");
        metrics.config_reload(true, "sha256:bb", "p1=sha256:02");
        metrics.config_reload(false, "sha256:cc", "p1=sha256:03");
        let text = metrics.encode();
        assert!(!text.contains("sha256:aa"));
        assert!(!text.contains("sha256:cc"));
        assert!(text.contains(
            r#"attestgate_config_info{config_digest="sha256:bb",policy_digests="p1=sha256:02"} 1"#
        ));
        assert!(text.contains(r#"attestgate_config_reloads_total{result="success"} 2"#));
        assert!(text.contains(r#"attestgate_config_reloads_total{result="failure"} 1"#));
        assert!(text.contains("attestgate_config_reload_failing 1"));

        metrics.config_reload(true, "sha256:dd", "");
        assert!(metrics
            .encode()
            .contains("attestgate_config_reload_failing 0"));
    }

    #[test]
    fn in_flight_guard_counts_down_on_drop() {
        let metrics = Metrics::new();
        let first = metrics.review_started();
        let second = metrics.review_started();
        assert!(metrics.encode().contains("attestgate_reviews_in_flight 2"));
        drop(first);
        drop(second);
        assert!(metrics.encode().contains("attestgate_reviews_in_flight 0"));
    }

    #[test]
    fn namespace_counts_stay_when_a_count_fails() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        // No figures before the first count (an empty family is not written at all).
        assert!(!text.contains("attestgate_namespaces{"), "{text}");
        assert!(text.contains("attestgate_namespace_modes_last_success_timestamp_seconds 0"));

        metrics.namespace_modes(&[("enforce", 3), ("unknown", 1), ("unlabelled", 7)]);
        metrics.namespace_modes_failed();
        let text = metrics.encode();
        assert!(
            text.contains(r#"attestgate_namespaces{mode="enforce"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"attestgate_namespaces{mode="unknown"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("attestgate_namespace_modes_refresh_failing 1"),
            "{text}"
        );
        assert!(!text.contains("attestgate_namespace_modes_last_success_timestamp_seconds 0\n"));

        metrics.namespace_modes(&[("enforce", 2), ("unknown", 0)]);
        let text = metrics.encode();
        assert!(
            text.contains(r#"attestgate_namespaces{mode="unknown"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("attestgate_namespace_modes_refresh_failing 0"),
            "{text}"
        );
    }

    #[test]
    fn policy_expiries_clear_on_reload() {
        let metrics = Metrics::new();
        metrics.policy_expiry("old", 1_700_000_000);
        metrics.clear_policy_expiries();
        metrics.policy_expiry("new", 1_800_000_000);
        let text = metrics.encode();
        assert!(!text.contains(r#"policy="old""#));
        assert!(
            text.contains(r#"attestgate_policy_expiry_timestamp_seconds{policy="new"} 1800000000"#)
        );
    }
}
