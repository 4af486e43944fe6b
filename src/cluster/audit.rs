//! Judging what runs: every image of the inventory under a config's [`Decider`], by what runs
//! when the node reported it (a pinned `imageID`), else by spec; one record per workload and
//! image, each distinct (reference, pull secrets) decided once.
//!
//! When the config reads image pull secrets, each pod's own are used, as in admission; a pod
//! whose secrets cannot be read is judged with the config's credentials only (logged).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::inventory::{InventoryPod, Workload};
use super::{PodPullSecrets, PullSecrets};
use crate::decision::{Decider, ImageDecision, Outcome};
use crate::image::Keyring;

/// Images decided at once.
const CONCURRENT_DECISIONS: usize = 8;

/// How an image was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgedBy {
    /// By the digest the node reported (`imageID`).
    Running,
    /// By the image the spec writes (no container status names a pinned image).
    Spec,
}

/// One image of one workload and the decision it would get now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The namespace.
    pub namespace: String,
    /// The workload at the top of the owner chain.
    pub workload: Workload,
    /// The image as the spec writes it.
    pub image: String,
    /// The `imageID` the node reported, when one did.
    pub image_id: Option<String>,
    /// The reference that was judged: the pinned `imageID` without its scheme, or the spec's.
    pub judged: String,
    /// Which of the two it is.
    pub judged_by: JudgedBy,
    /// The digest judged: the running one, or what the spec's reference resolved to.
    pub digest: Option<String>,
    /// Where the image is used (`containers[app]`…), over all the workload's pods.
    pub locations: Vec<String>,
    /// The pods running it.
    pub pods: Vec<String>,
    /// `admitted`, `excepted`, `violation` or `error`, with the reason.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The policies that judged it, `name@sha256:digest`.
    pub policies: Vec<String>,
    /// The evidence that passed.
    pub evidence: Vec<String>,
    /// For logs only: the full cause of an error.
    #[serde(skip)]
    pub detail: Option<String>,
}

impl AuditRecord {
    /// Whether admission would refuse it now (a violation or an error).
    pub fn denied(&self) -> bool {
        !self.outcome.admits()
    }
}

/// One record in the making.
#[derive(Debug, Default)]
struct Group {
    image_id: Option<String>,
    locations: BTreeSet<String>,
    pods: BTreeSet<String>,
}

/// What records are grouped by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    namespace: String,
    workload: Workload,
    image: String,
    judged: String,
    judged_by: JudgedBy,
    /// Whose pull secrets it is judged with (`None`: the config's credentials only).
    credentials: Option<usize>,
}

/// Judges every image of `pods` with `decider`, each decision within `per_image`; with
/// `pull_secrets`, each pod's own image pull secrets are used as in admission.
pub async fn audit(
    decider: &Decider,
    pull_secrets: Option<&PullSecrets>,
    pods: &[InventoryPod],
    per_image: Duration,
) -> Vec<AuditRecord> {
    let keyrings = keyrings(pull_secrets, pods, per_image).await;
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    for pod in pods {
        let credentials = keyrings
            .index
            .get(&(pod.namespace.clone(), pod.pull_secrets.clone()));
        for image in &pod.images {
            let (judged, judged_by) = match &image.running {
                Some(running) => (running.clone(), JudgedBy::Running),
                None => (image.image.clone(), JudgedBy::Spec),
            };
            let group = groups
                .entry(GroupKey {
                    namespace: pod.namespace.clone(),
                    workload: pod.workload.clone(),
                    image: image.image.clone(),
                    judged,
                    judged_by,
                    credentials: credentials.copied().flatten(),
                })
                .or_default();
            group.image_id = group.image_id.take().or_else(|| image.image_id.clone());
            group.locations.insert(image.location.clone());
            group.pods.insert(pod.name.clone());
        }
    }

    let unique: BTreeSet<(String, Option<usize>)> = groups
        .keys()
        .map(|k| (k.judged.clone(), k.credentials))
        .collect();
    let limit = Arc::new(Semaphore::new(CONCURRENT_DECISIONS));
    let decided = futures_util::future::join_all(unique.into_iter().map(|(image, credentials)| {
        let limit = limit.clone();
        let keyring = credentials.and_then(|i| keyrings.list.get(i));
        async move {
            let _permit = limit.acquire().await;
            let deadline = Instant::now() + per_image;
            let decision = decider.decide_with(&image, keyring, deadline).await;
            ((image, credentials), decision)
        }
    }))
    .await;
    let decided: HashMap<(String, Option<usize>), ImageDecision> = decided.into_iter().collect();

    groups
        .into_iter()
        .filter_map(|(key, group)| {
            let decision = decided.get(&(key.judged.clone(), key.credentials))?;
            Some(record(key, group, decision))
        })
        .collect()
}

fn record(key: GroupKey, group: Group, decision: &ImageDecision) -> AuditRecord {
    let running_digest = (key.judged_by == JudgedBy::Running)
        .then(|| key.judged.rsplit_once('@').map(|(_, d)| d.to_string()))
        .flatten();
    AuditRecord {
        namespace: key.namespace,
        workload: key.workload,
        image: key.image,
        image_id: group.image_id,
        judged: key.judged,
        judged_by: key.judged_by,
        digest: running_digest.or_else(|| decision.digest.clone()),
        locations: group.locations.into_iter().collect(),
        pods: group.pods.into_iter().collect(),
        outcome: decision.outcome.clone(),
        policies: decision.policies.clone(),
        evidence: decision.evidence.clone(),
        detail: decision.detail.clone(),
    }
}

/// The distinct keyrings of the pods, and which one each (namespace, pod spec) uses.
#[derive(Debug, Default)]
struct Keyrings {
    list: Vec<Keyring>,
    /// `None`: judged with the config's credentials only.
    index: HashMap<(String, PodPullSecrets), Option<usize>>,
}

async fn keyrings(
    pull_secrets: Option<&PullSecrets>,
    pods: &[InventoryPod],
    timeout: Duration,
) -> Keyrings {
    let mut keyrings = Keyrings::default();
    let Some(reader) = pull_secrets else {
        return keyrings;
    };
    for pod in pods {
        let key = (pod.namespace.clone(), pod.pull_secrets.clone());
        if keyrings.index.contains_key(&key) {
            continue;
        }
        let deadline = Instant::now() + timeout;
        let slot = match reader
            .keyring(&pod.namespace, &pod.pull_secrets, deadline)
            .await
        {
            Ok(keyring) => {
                keyrings.list.push(keyring);
                Some(keyrings.list.len() - 1)
            }
            Err(e) => {
                tracing::warn!(
                    namespace = %pod.namespace,
                    pod = %pod.name,
                    error = %e.text(),
                    "image pull secrets could not be read; judging with the config's credentials"
                );
                None
            }
        };
        keyrings.index.insert(key, slot);
    }
    keyrings
}
