//! What runs in the cluster: every Pod of the namespaces in scope, rolled up to the workload at
//! the top of its owner chain (Pod → ReplicaSet → Deployment, Pod → Job → CronJob,
//! StatefulSet, DaemonSet, ReplicationController; a Pod without a controller is its own
//! workload), with its images by spec and by what actually runs.
//!
//! What runs is read from `status.initContainerStatuses`, `containerStatuses` and
//! `ephemeralContainerStatuses`: an `imageID` such as `docker.io/library/nginx@sha256:…` or
//! `docker-pullable://nginx@sha256:…` names the manifest the node pulled, which is more
//! faithful than the tag the spec writes. An `imageID` without a repository (`sha256:…`, the
//! image's local id) names no pullable manifest and is not used. Image volumes have no status
//! and are listed by spec.
//!
//! ReplicaSets and Jobs are listed by metadata only, to find their owners.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ListParams, ObjectList};
use kube::Api;
use serde::Serialize;

use super::client::{ask, ClusterError};
use super::{PodPullSecrets, MODE_LABEL};
use crate::image::ImageReference;

/// Items asked for per list request; longer lists are read in pages.
const PAGE_SIZE: u32 = 500;

/// Which namespaces are inventoried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Those labelled `attestgate.dev/mode` (any value): the namespaces the webhook judges.
    Labelled,
    /// This one.
    Namespace(String),
    /// Every namespace.
    All,
}

/// A workload at the top of its owner chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// `Deployment`, `CronJob`, `StatefulSet`, `DaemonSet`, `Pod`…
    pub kind: String,
    /// Its name.
    pub name: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// One image of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodImage {
    /// Where it is used: `containers[app]`, `initContainers[init]`, `volumes[data]`…
    pub location: String,
    /// The image as the spec writes it.
    pub image: String,
    /// The container status's `imageID`, as the node reported it.
    pub image_id: Option<String>,
    /// What runs, as a pinned reference (`name@sha256:…`) read from `image_id`.
    pub running: Option<String>,
}

/// One pod and its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The workload it belongs to.
    pub workload: Workload,
    /// Its images, in spec order.
    pub images: Vec<PodImage>,
    /// What its spec says about pull credentials.
    pub pull_secrets: PodPullSecrets,
}

/// Lists the pods of `scope` with `client`, each request within `timeout`.
///
/// # Errors
/// [`ClusterError`] when a list cannot be read.
pub async fn list_pods(
    client: &kube::Client,
    scope: &Scope,
    timeout: Duration,
) -> Result<Vec<InventoryPod>, ClusterError> {
    let namespaces = match scope {
        Scope::All => return list_in(client, None, timeout).await,
        Scope::Namespace(namespace) => {
            let api: Api<Namespace> = Api::all(client.clone());
            let action = || format!("get namespace {namespace}");
            let found = tokio::time::timeout(timeout, api.get_opt(namespace))
                .await
                .map_err(|_| ClusterError::Timeout { action: action() })?
                .map_err(|source| ClusterError::Api {
                    action: action(),
                    source,
                })?;
            if found.is_none() {
                return Err(ClusterError::NoSuchNamespace(namespace.clone()));
            }
            vec![namespace.clone()]
        }
        Scope::Labelled => {
            let api: Api<Namespace> = Api::all(client.clone());
            let params = ListParams::default().labels(MODE_LABEL);
            list_all(
                || format!("list namespaces labelled {MODE_LABEL}"),
                timeout,
                &params,
                |p| {
                    let api = api.clone();
                    async move { api.list_metadata(&p).await }
                },
            )
            .await?
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()
        }
    };
    let mut pods = Vec::new();
    for namespace in namespaces {
        pods.extend(list_in(client, Some(&namespace), timeout).await?);
    }
    Ok(pods)
}

/// The pods of one namespace (`None`: all), rolled up.
async fn list_in(
    client: &kube::Client,
    namespace: Option<&str>,
    timeout: Duration,
) -> Result<Vec<InventoryPod>, ClusterError> {
    let place = namespace.map_or_else(|| "all namespaces".to_string(), |n| n.to_string());
    let params = ListParams::default();
    let pods: Api<Pod> = api(client, namespace);
    let pods = list_all(
        || format!("list pods in {place}"),
        timeout,
        &params,
        |p| {
            let api = pods.clone();
            async move { api.list(&p).await }
        },
    )
    .await?;
    let replicasets: Api<ReplicaSet> = api(client, namespace);
    let replicasets = list_all(
        || format!("list replicasets in {place}"),
        timeout,
        &params,
        |p| {
            let api = replicasets.clone();
            async move { api.list_metadata(&p).await }
        },
    )
    .await?;
    let jobs: Api<Job> = api(client, namespace);
    let jobs = list_all(
        || format!("list jobs in {place}"),
        timeout,
        &params,
        |p| {
            let api = jobs.clone();
            async move { api.list_metadata(&p).await }
        },
    )
    .await?;

    let owners = Owners {
        replicasets: controllers(replicasets.iter().map(|r| &r.metadata)),
        jobs: controllers(jobs.iter().map(|j| &j.metadata)),
    };
    Ok(pods.iter().filter_map(|pod| owners.roll_up(pod)).collect())
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Every page of a list.
async fn list_all<T, F, Fut>(
    action: impl Fn() -> String,
    timeout: Duration,
    params: &ListParams,
    list: F,
) -> Result<Vec<T>, ClusterError>
where
    T: Clone,
    F: Fn(ListParams) -> Fut,
    Fut: std::future::Future<Output = Result<ObjectList<T>, kube::Error>>,
{
    let mut items = Vec::new();
    let mut page = params.clone().limit(PAGE_SIZE);
    loop {
        let list = ask(&action, timeout, list(page.clone())).await?;
        items.extend(list.items);
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => page = params.clone().limit(PAGE_SIZE).continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// The controller of each ReplicaSet and Job by (namespace, name).
type Controllers = HashMap<(String, String), Option<OwnerReference>>;

fn controllers<'a>(objects: impl Iterator<Item = &'a ObjectMeta>) -> Controllers {
    objects
        .filter_map(|meta| {
            let key = (meta.namespace.clone()?, meta.name.clone()?);
            Some((key, controller(meta).cloned()))
        })
        .collect()
}

/// The owner reference marked `controller: true`.
fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

struct Owners {
    replicasets: Controllers,
    jobs: Controllers,
}

impl Owners {
    /// The pod with its workload and images; `None` for a pod without a namespace or name.
    fn roll_up(&self, pod: &Pod) -> Option<InventoryPod> {
        let namespace = pod.metadata.namespace.clone()?;
        let name = pod.metadata.name.clone()?;
        let workload = self.workload(&namespace, &name, controller(&pod.metadata));
        let spec = pod.spec.as_ref()?;
        Some(InventoryPod {
            images: images(pod),
            pull_secrets: PodPullSecrets::of(spec),
            namespace,
            name,
            workload,
        })
    }

    /// The top of the owner chain of a pod controlled by `owner`.
    fn workload(&self, namespace: &str, pod: &str, owner: Option<&OwnerReference>) -> Workload {
        let Some(owner) = owner else {
            return Workload {
                kind: "Pod".into(),
                name: pod.into(),
            };
        };
        let parent = match (group_of(&owner.api_version), owner.kind.as_str()) {
            ("apps", "ReplicaSet") => self.replicasets.get(&key(namespace, &owner.name)),
            ("batch", "Job") => self.jobs.get(&key(namespace, &owner.name)),
            _ => None,
        };
        let top = match parent.and_then(Option::as_ref) {
            Some(p)
                if matches!(
                    (group_of(&p.api_version), p.kind.as_str()),
                    ("apps", "Deployment") | ("batch", "CronJob")
                ) =>
            {
                p
            }
            _ => owner,
        };
        Workload {
            kind: top.kind.clone(),
            name: top.name.clone(),
        }
    }
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

/// The images of a pod in spec order: init containers, containers, ephemeral containers (each
/// with what its status says runs), then image volumes.
pub fn images(pod: &Pod) -> Vec<PodImage> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let status = pod.status.as_ref();
    let statuses =
        |pick: fn(&k8s_openapi::api::core::v1::PodStatus) -> &Option<Vec<ContainerStatus>>| {
            status
                .and_then(|s| pick(s).as_ref())
                .map_or(&[][..], Vec::as_slice)
        };
    let mut out = Vec::new();
    let mut add = |list: &str, name: &str, image: Option<&String>, found: &[ContainerStatus]| {
        let Some(image) = image.filter(|i| !i.is_empty()) else {
            return;
        };
        let image_id = found
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.image_id.clone())
            .filter(|id| !id.is_empty());
        out.push(PodImage {
            location: format!("{list}[{name}]"),
            image: image.clone(),
            running: image_id.as_deref().and_then(running_reference),
            image_id,
        });
    };
    let init = statuses(|s| &s.init_container_statuses);
    for c in spec.init_containers.iter().flatten() {
        add("initContainers", &c.name, c.image.as_ref(), init);
    }
    let main = statuses(|s| &s.container_statuses);
    for c in &spec.containers {
        add("containers", &c.name, c.image.as_ref(), main);
    }
    let ephemeral = statuses(|s| &s.ephemeral_container_statuses);
    for c in spec.ephemeral_containers.iter().flatten() {
        add("ephemeralContainers", &c.name, c.image.as_ref(), ephemeral);
    }
    for volume in spec.volumes.iter().flatten() {
        let reference = volume.image.as_ref().and_then(|i| i.reference.as_ref());
        add("volumes", &volume.name, reference, &[]);
    }
    out
}

/// The pinned reference an `imageID` names, without its scheme (`docker-pullable://`,
/// `docker://`); `None` when it names no repository and digest.
pub fn running_reference(image_id: &str) -> Option<String> {
    let text = image_id
        .split_once("://")
        .map_or(image_id, |(_, rest)| rest);
    let (name, _) = text.rsplit_once('@')?;
    if name.is_empty() {
        return None;
    }
    let reference = ImageReference::parse(text).ok()?;
    reference.digest()?;
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEX: &str = "4a371bebf2ddabab2785e7fc04a643798bdd8bf7c8365a4a51de646298b3c689";

    #[test]
    fn an_image_id_names_what_runs_without_its_scheme() {
        let pinned = format!("docker.io/library/nginx@sha256:{HEX}");
        assert_eq!(running_reference(&pinned), Some(pinned.clone()));
        assert_eq!(
            running_reference(&format!("docker-pullable://{pinned}")),
            Some(pinned)
        );
        assert_eq!(
            running_reference(&format!("127.0.0.1:5000/team/app@sha256:{HEX}")),
            Some(format!("127.0.0.1:5000/team/app@sha256:{HEX}"))
        );
        for unusable in [
            format!("sha256:{HEX}"),
            format!("docker://sha256:{HEX}"),
            "docker.io/library/nginx:1.27".to_string(),
            "docker.io/library/nginx@sha256:short".to_string(),
            String::new(),
        ] {
            assert_eq!(running_reference(&unusable), None, "{unusable}");
        }
    }

    fn owner(api_version: &str, kind: &str, name: &str) -> serde_json::Value {
        json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": "u", "controller": true})
    }

    fn pod(owner: Option<serde_json::Value>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p-1", "namespace": "team", "ownerReferences": owner.into_iter().collect::<Vec<_>>()},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "containers": [{"name": "app", "image": "127.0.0.1:5000/team/app:v1"}, {"name": "side", "image": "side:1"}],
                "volumes": [{"name": "data", "image": {"reference": "127.0.0.1:5000/team/data:v1"}}, {"name": "tmp", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "regcred"}]
            },
            "status": {
                "containerStatuses": [{
                    "name": "app", "image": "127.0.0.1:5000/team/app:v1",
                    "imageID": format!("docker-pullable://127.0.0.1:5000/team/app@sha256:{HEX}"),
                    "ready": true, "restartCount": 0
                }, {
                    "name": "side", "image": "side:1", "imageID": format!("sha256:{HEX}"),
                    "ready": true, "restartCount": 0
                }]
            }
        }))
        .unwrap()
    }

    fn meta(namespace: &str, name: &str, owner: Option<serde_json::Value>) -> ObjectMeta {
        serde_json::from_value(json!({
            "name": name, "namespace": namespace,
            "ownerReferences": owner.into_iter().collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn images_come_by_spec_with_what_runs() {
        let images = images(&pod(None));
        let summary: Vec<(&str, &str, Option<&str>)> = images
            .iter()
            .map(|i| (i.location.as_str(), i.image.as_str(), i.running.as_deref()))
            .collect();
        let running = format!("127.0.0.1:5000/team/app@sha256:{HEX}");
        assert_eq!(
            summary,
            vec![
                ("initContainers[init]", "busybox:1.36", None),
                (
                    "containers[app]",
                    "127.0.0.1:5000/team/app:v1",
                    Some(running.as_str())
                ),
                ("containers[side]", "side:1", None),
                ("volumes[data]", "127.0.0.1:5000/team/data:v1", None),
            ]
        );
        assert_eq!(images[2].image_id, Some(format!("sha256:{HEX}")));
    }

    #[test]
    fn pods_roll_up_to_the_top_of_their_owner_chain() {
        let owners = Owners {
            replicasets: controllers(
                [
                    meta(
                        "team",
                        "web-5d8",
                        Some(owner("apps/v1", "Deployment", "web")),
                    ),
                    meta("team", "bare-rs", None),
                ]
                .iter(),
            ),
            jobs: controllers(
                [meta(
                    "team",
                    "nightly-29",
                    Some(owner("batch/v1", "CronJob", "nightly")),
                )]
                .iter(),
            ),
        };
        let cases = [
            (
                Some(owner("apps/v1", "ReplicaSet", "web-5d8")),
                "Deployment/web",
            ),
            (
                Some(owner("apps/v1", "ReplicaSet", "bare-rs")),
                "ReplicaSet/bare-rs",
            ),
            (
                Some(owner("apps/v1", "ReplicaSet", "gone")),
                "ReplicaSet/gone",
            ),
            (
                Some(owner("batch/v1", "Job", "nightly-29")),
                "CronJob/nightly",
            ),
            (
                Some(owner("apps/v1", "StatefulSet", "db")),
                "StatefulSet/db",
            ),
            (
                Some(owner("apps/v1", "DaemonSet", "agent")),
                "DaemonSet/agent",
            ),
            (
                Some(owner("example.com/v1", "ReplicaSet", "web-5d8")),
                "ReplicaSet/web-5d8",
            ),
            (None, "Pod/p-1"),
        ];
        for (owner, want) in cases {
            let rolled = owners.roll_up(&pod(owner)).unwrap();
            assert_eq!(rolled.workload.to_string(), want);
            assert_eq!(rolled.pull_secrets.secrets, vec!["regcred".to_string()]);
        }
    }
}
