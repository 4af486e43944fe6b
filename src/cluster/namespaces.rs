//! How many namespaces carry each value of the mode label (`attestgate.dev/mode`), for the
//! `attestgate_namespaces{mode}` metric (`kubernetes.namespaceModes`).
//!
//! The API server, not the webhook, picks a namespace's mode: the webhook entries select
//! namespaces by the label, and a review never carries the namespace's labels. So the server
//! lists the namespaces (metadata only, in pages) every interval and counts them the way the
//! selectors sort them: exactly `enforce`, `warn` or `audit` is that mode; any other value (a
//! typo such as `enforcee`, or an empty value) is `unknown` and is matched by the enforce entry;
//! no label is `unlabelled` (not reviewed). kube-system and the release namespace are counted by
//! their label like any other, though the entries never send their requests.
//!
//! The count only feeds metrics and the log: it never takes part in an admission answer, in
//! readiness, or in shutdown. A failed list keeps the last figures.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::Api;

use super::client::{ask, ClusterError};
use super::{connect, ApiSource, MODE_LABEL};

/// Namespaces asked for per list request; more are read in pages.
const PAGE_SIZE: u32 = 500;

/// Namespaces with an unknown value named in one log line; the rest are only counted.
pub const LOGGED_NAMES: usize = 10;

/// What a namespace's mode label makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelClass {
    /// `enforce`.
    Enforce,
    /// `warn`.
    Warn,
    /// `audit`.
    Audit,
    /// Any other value, the empty one included: judged as enforce.
    Unknown,
    /// No label: not reviewed.
    Unlabelled,
}

impl LabelClass {
    /// Every class, in the order of [`Census::counts`].
    pub const ALL: [Self; 5] = [
        Self::Enforce,
        Self::Warn,
        Self::Audit,
        Self::Unknown,
        Self::Unlabelled,
    ];

    /// The class of a label value (`None`: no label). The match is exact, as the selectors'
    /// `In`/`NotIn` are: `Enforce` or ` audit` is unknown.
    pub fn of(value: Option<&str>) -> Self {
        match value {
            None => Self::Unlabelled,
            Some("enforce") => Self::Enforce,
            Some("warn") => Self::Warn,
            Some("audit") => Self::Audit,
            Some(_) => Self::Unknown,
        }
    }

    /// The metric's `mode` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Warn => "warn",
            Self::Audit => "audit",
            Self::Unknown => "unknown",
            Self::Unlabelled => "unlabelled",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Enforce => 0,
            Self::Warn => 1,
            Self::Audit => 2,
            Self::Unknown => 3,
            Self::Unlabelled => 4,
        }
    }
}

/// The namespaces counted by class, and the unknown values by namespace name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    counts: [u64; 5],
    unknown: BTreeMap<String, String>,
}

impl Census {
    /// Counts one namespace by its metadata.
    pub fn add(&mut self, meta: &ObjectMeta) {
        let value = meta
            .labels
            .as_ref()
            .and_then(|labels| labels.get(MODE_LABEL))
            .map(String::as_str);
        let class = LabelClass::of(value);
        self.counts[class.index()] += 1;
        if let (LabelClass::Unknown, Some(name), Some(value)) = (class, &meta.name, value) {
            self.unknown.insert(name.clone(), value.to_owned());
        }
    }

    /// How many namespaces are in `class`.
    pub fn count(&self, class: LabelClass) -> u64 {
        self.counts[class.index()]
    }

    /// Every class with its count, in [`LabelClass::ALL`] order, as the metric takes them.
    pub fn counts(&self) -> Vec<(&'static str, i64)> {
        LabelClass::ALL
            .iter()
            .map(|&class| {
                let count = i64::try_from(self.count(class)).unwrap_or(i64::MAX);
                (class.as_str(), count)
            })
            .collect()
    }

    /// The namespaces with an unknown value, by name, with that value.
    pub fn unknown(&self) -> &BTreeMap<String, String> {
        &self.unknown
    }
}

/// Lists every namespace (metadata only, in pages) with `client` and counts them; each request
/// within `timeout`.
///
/// # Errors
/// [`ClusterError`] when a page cannot be read (the whole count is then dropped).
pub async fn census(client: &kube::Client, timeout: Duration) -> Result<Census, ClusterError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut census = Census::default();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        // Each page is counted as it comes, so that no list of every namespace is held.
        let page = ask(
            || "list namespaces".to_owned(),
            timeout,
            api.list_metadata(&params),
        )
        .await?;
        for namespace in &page.items {
            census.add(&namespace.metadata);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                params = ListParams::default()
                    .limit(PAGE_SIZE)
                    .continue_token(&token)
            }
            None => return Ok(census),
        }
    }
}

/// The background count: connects to the API server `source` names (on the first round, and
/// again after a round that could not connect), counts the namespaces every `interval`, logs
/// the changes, and hands every outcome to a report (the metrics).
#[derive(Debug)]
pub struct NamespaceModes {
    source: ApiSource,
    interval: Duration,
    request_timeout: Duration,
}

impl NamespaceModes {
    /// A count of the namespaces of `source` every `interval`, each request within
    /// `request_timeout`. `source` is never [`ApiSource::Infer`] in the server: the config's
    /// kubeconfig, else the pod's own service account.
    pub fn new(source: ApiSource, interval: Duration, request_timeout: Duration) -> Self {
        Self {
            source,
            interval,
            request_timeout,
        }
    }

    /// Counts at once, then every interval, until the task is aborted; `report` gets every
    /// outcome.
    pub async fn run<R>(self, mut report: R)
    where
        R: FnMut(Result<&Census, &ClusterError>) + Send,
    {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut client = None;
        let mut log = ChangeLog::default();
        loop {
            ticker.tick().await;
            let outcome = self.round(&mut client).await;
            log.record(outcome.as_ref());
            report(outcome.as_ref());
        }
    }

    async fn round(&self, client: &mut Option<kube::Client>) -> Result<Census, ClusterError> {
        let connected = match client {
            Some(connected) => connected.clone(),
            None => {
                let connected = connect(&self.source, self.request_timeout).await?;
                *client = Some(connected.clone());
                connected
            }
        };
        census(&connected, self.request_timeout).await
    }
}

/// What was last logged, so that a line is written when something changes, not every round.
#[derive(Debug, Default)]
struct ChangeLog {
    /// The unknown values last logged; `None` before the first count.
    unknown: Option<BTreeMap<String, String>>,
    failing: bool,
}

impl ChangeLog {
    fn record(&mut self, outcome: Result<&Census, &ClusterError>) {
        let census = match outcome {
            Ok(census) => census,
            Err(error) => {
                if self.failing {
                    tracing::debug!(error = %error.text(), "namespaces still cannot be counted");
                } else {
                    tracing::warn!(
                        error = %error.text(),
                        "cannot count the namespaces by mode label; the metrics keep the last figures"
                    );
                }
                self.failing = true;
                return;
            }
        };
        if self.failing {
            tracing::info!("namespaces counted by mode label again");
            self.failing = false;
        }
        tracing::debug!(
            enforce = census.count(LabelClass::Enforce),
            warn = census.count(LabelClass::Warn),
            audit = census.count(LabelClass::Audit),
            unknown = census.count(LabelClass::Unknown),
            unlabelled = census.count(LabelClass::Unlabelled),
            "namespaces counted by mode label"
        );
        if self.unknown.as_ref() == Some(census.unknown()) {
            return;
        }
        let unknown = census.unknown();
        if unknown.is_empty() {
            if self.unknown.is_some() {
                tracing::info!(
                    label = MODE_LABEL,
                    "no namespace has an unknown mode label value any more"
                );
            }
        } else {
            let (named, omitted) = named(unknown);
            tracing::warn!(
                label = MODE_LABEL,
                count = unknown.len(),
                namespaces = %named,
                omitted,
                "namespaces whose mode label value is not enforce, warn or audit: they are \
                 judged as enforce (kubectl get ns -L attestgate.dev/mode)"
            );
        }
        self.unknown = Some(unknown.clone());
    }
}

/// The first [`LOGGED_NAMES`] namespaces as `name="value"`, and how many more there are.
fn named(unknown: &BTreeMap<String, String>) -> (String, usize) {
    let named: Vec<String> = unknown
        .iter()
        .take(LOGGED_NAMES)
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    (named.join(", "), unknown.len().saturating_sub(LOGGED_NAMES))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str, value: Option<&str>) -> ObjectMeta {
        let mut labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        if let Some(value) = value {
            labels.insert(MODE_LABEL.to_owned(), value.to_owned());
        }
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn values_are_classified_exactly_as_the_selectors_match_them() {
        assert_eq!(LabelClass::of(Some("enforce")), LabelClass::Enforce);
        assert_eq!(LabelClass::of(Some("warn")), LabelClass::Warn);
        assert_eq!(LabelClass::of(Some("audit")), LabelClass::Audit);
        assert_eq!(LabelClass::of(None), LabelClass::Unlabelled);
        for unknown in [
            "", "enforcee", "Enforce", "AUDIT", " audit", "warn ", "off", "true",
        ] {
            assert_eq!(
                LabelClass::of(Some(unknown)),
                LabelClass::Unknown,
                "{unknown:?}"
            );
        }
        let names: Vec<&str> = LabelClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["enforce", "warn", "audit", "unknown", "unlabelled"]);
    }

    #[test]
    fn a_census_counts_every_class_and_names_the_unknown_values() {
        let mut census = Census::default();
        for meta in [
            namespace("a", Some("enforce")),
            namespace("b", Some("enforce")),
            namespace("c", Some("warn")),
            namespace("d", Some("enforcee")),
            namespace("e", Some("")),
            namespace("f", None),
            // A namespace without labels at all.
            ObjectMeta {
                name: Some("g".to_owned()),
                ..ObjectMeta::default()
            },
            // The label on another key does not count.
            ObjectMeta {
                name: Some("h".to_owned()),
                labels: Some(BTreeMap::from([(
                    "example.com/mode".to_owned(),
                    "enforce".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
        ] {
            census.add(&meta);
        }
        assert_eq!(
            census.counts(),
            [
                ("enforce", 2),
                ("warn", 1),
                ("audit", 0),
                ("unknown", 2),
                ("unlabelled", 3)
            ]
        );
        let unknown: Vec<(&str, &str)> = census
            .unknown()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(unknown, [("d", "enforcee"), ("e", "")]);
    }

    #[test]
    fn a_log_line_names_a_few_namespaces_and_counts_the_rest() {
        let few: BTreeMap<String, String> = [("team-typo", "enforcee"), ("team-empty", "")]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            named(&few),
            (r#"team-empty="", team-typo="enforcee""#.to_owned(), 0)
        );
        let many: BTreeMap<String, String> = (0..25)
            .map(|i| (format!("ns-{i:02}"), "x".to_owned()))
            .collect();
        let (text, omitted) = named(&many);
        assert_eq!(omitted, 15);
        assert_eq!(text.matches("=\"x\"").count(), LOGGED_NAMES);
        assert!(
            text.starts_with("ns-00=") && text.ends_with("ns-09=\"x\""),
            "{text}"
        );
    }

    #[test]
    fn the_change_log_remembers_what_it_logged() {
        let mut log = ChangeLog::default();
        let mut census = Census::default();
        census.add(&namespace("team-typo", Some("enforcee")));
        log.record(Ok(&census));
        assert_eq!(log.unknown.as_ref(), Some(census.unknown()));
        let error = ClusterError::Timeout {
            action: "list namespaces".to_owned(),
        };
        log.record(Err(&error));
        assert!(log.failing);
        // A failure forgets nothing: the same set after it is not a change.
        assert_eq!(log.unknown.as_ref(), Some(census.unknown()));
        log.record(Ok(&Census::default()));
        assert!(!log.failing);
        assert_eq!(log.unknown, Some(BTreeMap::new()));
    }
}
