//! Which images a request asks the cluster to run.
//!
//! A Pod carries its pod spec at `spec`; the workload controllers carry one in a template, which
//! is where their pods' images come from. Images are read from `initContainers`, `containers`,
//! `ephemeralContainers` (in that order) and from image volumes (`volumes[].image.reference`).
//!
//! A pod spec that cannot be read (a list that is not an array, a container without an image or
//! with an image that is not a non-empty string) is [`Judgement::Malformed`]: the caller denies
//! it, since there is no image to verify and the API server would not have let such an object
//! through itself. A malformed *old* object on UPDATE is read as holding no images, so every
//! image of the new object is judged.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::object::Node;
use super::review::{Operation, Review};
use super::strict::{List, Obj, Scalar};
use super::text;

/// How long a container or volume name may be in a location label.
const MAX_NAME_CHARS: usize = 63;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Admit without looking at any image.
    Skip(SkipReason),
    /// Verify these images (possibly none: a pod spec without containers).
    Judge(Vec<ImageUse>),
    /// The pod spec cannot be read; deny with this message (short, escaped).
    Malformed(String),
}

/// Why a request is admitted without judging images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// DELETE and CONNECT run no new image.
    Operation(Operation),
    /// `metadata.deletionTimestamp` is set: the object is going away and is never denied.
    BeingDeleted,
    /// The kind holds no pod spec we judge (a Role, a ConfigMap…).
    NotAWorkload {
        /// API group of the kind (escaped, cut short).
        group: String,
        /// The kind (escaped, cut short).
        kind: String,
    },
    /// A subresource that cannot change images (`status`, `scale`…); escaped, cut short.
    SubResource(String),
    /// An UPDATE whose images all ran before.
    NoNewImages,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operation(op) => write!(f, "operation {op} is not judged"),
            Self::BeingDeleted => f.write_str("the object is being deleted"),
            Self::NotAWorkload { group, kind } if group.is_empty() => {
                write!(f, "kind {kind} holds no pod spec")
            }
            Self::NotAWorkload { group, kind } => {
                write!(f, "kind {kind}.{group} holds no pod spec")
            }
            Self::SubResource(name) => write!(f, "subresource {name} is not judged"),
            Self::NoNewImages => f.write_str("the update adds no new image"),
        }
    }
}

/// One image of a request and where it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUse {
    /// The reference exactly as written in the object (never empty).
    pub image: String,
    /// Where it is used: `containers[app]`, `initContainers[init]`, `volumes[data]`…; an unnamed
    /// entry is labelled by its index (`containers[#0]`).
    pub locations: Vec<String>,
    /// The image comes from a workload's pod template, not from a Pod.
    pub template: bool,
}

/// Where the pod spec sits in an object of some kind.
#[derive(Debug, Clone, Copy)]
struct PodSpecAt {
    path: &'static [&'static str],
    template: bool,
}

const POD: PodSpecAt = PodSpecAt {
    path: &["spec"],
    template: false,
};
const TEMPLATE: PodSpecAt = PodSpecAt {
    path: &["spec", "template", "spec"],
    template: true,
};
const JOB_TEMPLATE: PodSpecAt = PodSpecAt {
    path: &["spec", "jobTemplate", "spec", "template", "spec"],
    template: true,
};
const POD_TEMPLATE: PodSpecAt = PodSpecAt {
    path: &["template", "spec"],
    template: true,
};

/// The images `review` asks to run that must be verified, or why there are none to verify.
///
/// On UPDATE only images that appear nowhere in the old object are judged: an image already
/// running was judged when it was introduced.
pub fn images_to_judge(review: &Review) -> Judgement {
    if matches!(review.operation, Operation::Delete | Operation::Connect) {
        return Judgement::Skip(SkipReason::Operation(review.operation));
    }
    let at = match pod_spec_at(review) {
        Ok(at) => at,
        Err(judgement) => return judgement,
    };
    let object = match &review.object {
        Obj::Null => return Judgement::Malformed("request.object is missing".into()),
        Obj::Object(object) => object,
        Obj::Other => return Judgement::Malformed("request.object is not an object".into()),
    };
    if object.is_being_deleted() {
        return Judgement::Skip(SkipReason::BeingDeleted);
    }

    let images = match images_of(object, at) {
        Ok(images) => images,
        Err(message) => return Judgement::Malformed(message),
    };
    if review.operation != Operation::Update {
        return Judgement::Judge(images);
    }

    let old: HashSet<String> = match &review.old_object {
        Obj::Object(old) => images_of(old, at)
            .map(|uses| uses.into_iter().map(|u| u.image).collect())
            .unwrap_or_default(),
        Obj::Null | Obj::Other => HashSet::new(),
    };
    let new: Vec<ImageUse> = images
        .into_iter()
        .filter(|u| !old.contains(&u.image))
        .collect();
    if new.is_empty() {
        Judgement::Skip(SkipReason::NoNewImages)
    } else {
        Judgement::Judge(new)
    }
}

/// Where objects of a kind keep their pod spec (member names from the object down); `None` for
/// kinds that hold none.
pub(crate) fn pod_spec_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    pod_spec_of_kind(group, kind).map(|at| at.path)
}

fn pod_spec_of_kind(group: &str, kind: &str) -> Option<PodSpecAt> {
    match (group, kind) {
        ("", "Pod") => Some(POD),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some(TEMPLATE),
        ("batch", "CronJob") => Some(JOB_TEMPLATE),
        ("", "PodTemplate") => Some(POD_TEMPLATE),
        _ => None,
    }
}

/// Where the request's kind keeps its pod spec, or the judgement when there is none to read.
fn pod_spec_at(review: &Review) -> Result<PodSpecAt, Judgement> {
    let group = review.kind.group.as_str();
    let kind = review.kind.kind.as_str();

    if let Some(sub) = review.sub_resource.as_deref() {
        let on_pods = review.resource.group.is_empty() && review.resource.resource == "pods";
        return match (sub, on_pods) {
            ("ephemeralcontainers", true) if group.is_empty() && kind == "Pod" => Ok(POD),
            ("ephemeralcontainers", true) => Err(Judgement::Malformed(format!(
                "pods/ephemeralcontainers carries kind {}, not Pod",
                text::clean(kind, MAX_NAME_CHARS)
            ))),
            _ => Err(Judgement::Skip(SkipReason::SubResource(text::clean(
                sub,
                MAX_NAME_CHARS,
            )))),
        };
    }

    match pod_spec_of_kind(group, kind) {
        Some(at) => Ok(at),
        None => Err(Judgement::Skip(SkipReason::NotAWorkload {
            group: text::clean(group, MAX_NAME_CHARS),
            kind: text::clean(kind, MAX_NAME_CHARS),
        })),
    }
}

/// Every image of the pod spec at `at`, one entry per distinct reference in order of first
/// use; an error message when the spec cannot be read.
fn images_of(object: &Node, at: PodSpecAt) -> Result<Vec<ImageUse>, String> {
    let spec = pod_spec(object, at.path)?;
    let spec_path = SpecPath(at.path);
    let mut images = Images::new(at.template);

    let lists = [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
        ("ephemeralContainers", &spec.ephemeral_containers),
    ];
    for (list, items) in lists {
        for (index, entry) in entries(items, list, spec_path)? {
            let location = location(list, &entry.name, index);
            match &entry.image {
                Scalar::Str(image) if !image.is_empty() => images.add(image, location),
                Scalar::Str(_) => {
                    return Err(format!("{spec_path}.{location}: image is empty"));
                }
                Scalar::Null => return Err(format!("{spec_path}.{location}: image is missing")),
                Scalar::Bool(_) | Scalar::Other => {
                    return Err(format!("{spec_path}.{location}: image is not a string"))
                }
            }
        }
    }

    for (index, volume) in entries(&spec.volumes, "volumes", spec_path)? {
        let location = location("volumes", &volume.name, index);
        let source = match &volume.image {
            Obj::Null => continue,
            Obj::Object(source) => source,
            Obj::Other => return Err(format!("{spec_path}.{location}: image is not an object")),
        };
        match &source.reference {
            Scalar::Str(image) if !image.is_empty() => images.add(image, location),
            _ => {
                return Err(format!(
                    "{spec_path}.{location}: image.reference is not a non-empty string"
                ));
            }
        }
    }

    Ok(images.uses)
}

/// `object.` and the path of a pod spec, as messages name it.
#[derive(Clone, Copy)]
struct SpecPath(&'static [&'static str]);

impl fmt::Display for SpecPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("object")?;
        for key in self.0 {
            write!(f, ".{key}")?;
        }
        Ok(())
    }
}

/// Follows `path` to the pod spec, which must be an object.
fn pod_spec<'a>(object: &'a Node, path: &'static [&'static str]) -> Result<&'a Node, String> {
    let mut current = object;
    for (depth, key) in path.iter().enumerate() {
        let here = || SpecPath(path.get(..=depth).unwrap_or(path));
        current = match current.child(key) {
            Obj::Object(next) => next,
            Obj::Null => return Err(format!("{} is missing", here())),
            Obj::Other => return Err(format!("{} is not an object", here())),
        };
    }
    Ok(current)
}

/// The entries of the list `key` of a pod spec (none when absent), each of which must be an
/// object.
fn entries<'a, T>(
    items: &'a List<T>,
    key: &str,
    spec_path: SpecPath,
) -> Result<impl Iterator<Item = (usize, &'a T)>, String> {
    let items = match items {
        List::Null => &[],
        List::Array(items) => items.as_slice(),
        List::Other => return Err(format!("{spec_path}.{key} is not an array")),
    };
    if let Some(index) = items.iter().position(Option::is_none) {
        return Err(format!("{spec_path}.{key}[#{index}] is not an object"));
    }
    Ok(items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| Some((index, item.as_ref()?))))
}

/// `list[name]`, or `list[#index]` when the entry has no usable name.
fn location(list: &str, name: &Scalar, index: usize) -> String {
    match name {
        Scalar::Str(name) if !name.is_empty() => {
            format!("{list}[{}]", text::clean(name, MAX_NAME_CHARS))
        }
        _ => format!("{list}[#{index}]"),
    }
}

/// Image uses gathered in order of first appearance, one per distinct reference.
struct Images {
    uses: Vec<ImageUse>,
    index: HashMap<String, usize>,
    template: bool,
}

impl Images {
    fn new(template: bool) -> Self {
        Self {
            uses: Vec::new(),
            index: HashMap::new(),
            template,
        }
    }

    fn add(&mut self, image: &str, location: String) {
        if let Some(&at) = self.index.get(image) {
            if let Some(existing) = self.uses.get_mut(at) {
                existing.locations.push(location);
            }
            return;
        }
        self.index.insert(image.to_string(), self.uses.len());
        self.uses.push(ImageUse {
            image: image.to_string(),
            locations: vec![location],
            template: self.template,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn review(group: &str, kind: &str, operation: &str, object: Value) -> Review {
        review_with(group, kind, operation, object, Value::Null, None)
    }

    fn review_with(
        group: &str,
        kind: &str,
        operation: &str,
        object: Value,
        old: Value,
        sub_resource: Option<&str>,
    ) -> Review {
        let resource = format!("{}s", kind.to_lowercase());
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": resource},
                "subResource": sub_resource,
                "operation": operation,
                "object": object,
                "oldObject": old,
            }
        });
        Review::parse(body.to_string().as_bytes()).unwrap()
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    fn judged(judgement: Judgement) -> Vec<(String, Vec<String>, bool)> {
        match judgement {
            Judgement::Judge(uses) => uses
                .into_iter()
                .map(|u| (u.image, u.locations, u.template))
                .collect(),
            other => panic!("expected images, got {other:?}"),
        }
    }

    fn malformed(judgement: Judgement) -> String {
        match judgement {
            Judgement::Malformed(message) => message,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    fn used(image: &str, locations: &[&str], template: bool) -> (String, Vec<String>, bool) {
        (
            image.to_string(),
            locations.iter().map(|l| l.to_string()).collect(),
            template,
        )
    }

    #[test]
    fn a_pod_yields_every_list_and_image_volumes_once_per_image() {
        let object = pod(json!({
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "containers": [
                {"name": "app", "image": "registry.example/app:v1"},
                {"name": "side", "image": "busybox:1.36"},
                {"image": "registry.example/helper:v2"}
            ],
            "ephemeralContainers": [{"name": "debugger", "image": "nicolaka/netshoot"}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "data", "image": {"reference": "registry.example/data:v3"}},
                {"name": "nulled", "image": null}
            ]
        }));
        let uses = judged(images_to_judge(&review("", "Pod", "CREATE", object)));
        assert_eq!(
            uses,
            vec![
                used(
                    "busybox:1.36",
                    &["initContainers[init]", "containers[side]"],
                    false
                ),
                used("registry.example/app:v1", &["containers[app]"], false),
                used("registry.example/helper:v2", &["containers[#2]"], false),
                used(
                    "nicolaka/netshoot",
                    &["ephemeralContainers[debugger]"],
                    false
                ),
                used("registry.example/data:v3", &["volumes[data]"], false),
            ]
        );
    }

    #[test]
    fn every_workload_kind_is_read_at_its_template() {
        let spec = json!({"containers": [{"name": "c", "image": "img:1"}]});
        let template = json!({"spec": {"template": {"spec": spec}}});
        let cases = [
            ("apps", "Deployment", template.clone()),
            ("apps", "ReplicaSet", template.clone()),
            ("apps", "StatefulSet", template.clone()),
            ("apps", "DaemonSet", template.clone()),
            ("batch", "Job", template.clone()),
            ("", "ReplicationController", template.clone()),
            (
                "batch",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
            ),
            ("", "PodTemplate", json!({"template": {"spec": spec}})),
        ];
        for (group, kind, object) in cases {
            let uses = judged(images_to_judge(&review(group, kind, "CREATE", object)));
            assert_eq!(
                uses,
                vec![used("img:1", &["containers[c]"], true)],
                "{kind}"
            );
        }
    }

    #[test]
    fn a_kind_in_the_wrong_group_is_not_a_workload() {
        let object = json!({"spec": {"template": {"spec": {"containers": []}}}});
        let judgement = images_to_judge(&review("example.com", "Deployment", "CREATE", object));
        let Judgement::Skip(reason) = judgement else {
            panic!("{judgement:?}");
        };
        assert_eq!(
            reason.to_string(),
            "kind Deployment.example.com holds no pod spec"
        );
    }

    #[test]
    fn other_kinds_deletes_and_connects_are_skipped() {
        let role = json!({"rules": []});
        assert_eq!(
            images_to_judge(&review("rbac.authorization.k8s.io", "Role", "CREATE", role)),
            Judgement::Skip(SkipReason::NotAWorkload {
                group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into()
            })
        );
        let object = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        for (operation, op) in [
            ("DELETE", Operation::Delete),
            ("CONNECT", Operation::Connect),
        ] {
            let judgement = images_to_judge(&review("", "Pod", operation, object.clone()));
            assert_eq!(judgement, Judgement::Skip(SkipReason::Operation(op)));
        }
        assert_eq!(
            SkipReason::Operation(Operation::Delete).to_string(),
            "operation DELETE is not judged"
        );
    }

    #[test]
    fn objects_being_deleted_are_skipped() {
        let mut object = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let judgement = images_to_judge(&review("", "Pod", "CREATE", object.clone()));
        assert_eq!(judgement, Judgement::Skip(SkipReason::BeingDeleted));
        for not_a_time in [Value::Null, json!(false), json!(0), json!({}), json!([])] {
            object["metadata"]["deletionTimestamp"] = not_a_time;
            assert!(matches!(
                images_to_judge(&review("", "Pod", "CREATE", object.clone())),
                Judgement::Judge(_)
            ));
        }
    }

    #[test]
    fn updates_judge_only_images_new_anywhere_in_the_old_object() {
        let old = pod(json!({
            "containers": [{"name": "a", "image": "app:1"}],
            "volumes": [{"name": "v", "image": {"reference": "data:1"}}]
        }));
        let new = pod(json!({
            "containers": [
                {"name": "a", "image": "data:1"},
                {"name": "b", "image": "app:2"}
            ]
        }));
        let r = review_with("", "Pod", "UPDATE", new, old.clone(), None);
        assert_eq!(
            judged(images_to_judge(&r)),
            vec![used("app:2", &["containers[b]"], false)]
        );
        let r = review_with("", "Pod", "UPDATE", old.clone(), old, None);
        assert_eq!(
            images_to_judge(&r),
            Judgement::Skip(SkipReason::NoNewImages)
        );
    }

    #[test]
    fn an_unreadable_old_object_makes_every_image_new() {
        let new = pod(json!({"containers": [{"name": "a", "image": "app:1"}]}));
        for old in [
            Value::Null,
            json!("None"),
            pod(json!({"containers": "app:1"})),
        ] {
            let r = review_with("", "Pod", "UPDATE", new.clone(), old, None);
            assert_eq!(
                judged(images_to_judge(&r)),
                vec![used("app:1", &["containers[a]"], false)]
            );
        }
    }

    #[test]
    fn the_ephemeral_containers_subresource_is_judged_like_a_pod() {
        let old = pod(json!({"containers": [{"name": "app", "image": "app:1"}]}));
        let new = pod(json!({
            "containers": [{"name": "app", "image": "app:1"}],
            "ephemeralContainers": [{"name": "debugger-x", "image": "busybox:1.36"}]
        }));
        let mut r = review_with("", "Pod", "UPDATE", new, old, Some("ephemeralcontainers"));
        r.resource.resource = "pods".into();
        assert_eq!(
            judged(images_to_judge(&r)),
            vec![used(
                "busybox:1.36",
                &["ephemeralContainers[debugger-x]"],
                false
            )]
        );
        r.kind.kind = "EphemeralContainers".into();
        assert!(malformed(images_to_judge(&r)).contains("not Pod"));
    }

    #[test]
    fn other_subresources_are_skipped() {
        let object = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let r = review_with("", "Pod", "UPDATE", object, Value::Null, Some("status"));
        assert_eq!(
            images_to_judge(&r),
            Judgement::Skip(SkipReason::SubResource("status".into()))
        );
        let scale = json!({"spec": {"replicas": 3}});
        let r = review_with(
            "apps",
            "Deployment",
            "UPDATE",
            scale,
            Value::Null,
            Some("scale"),
        );
        assert!(matches!(
            images_to_judge(&r),
            Judgement::Skip(SkipReason::SubResource(_))
        ));
    }

    #[test]
    fn a_pod_spec_without_containers_has_no_images() {
        let r = review("", "Pod", "CREATE", pod(json!({})));
        assert_eq!(images_to_judge(&r), Judgement::Judge(vec![]));
        let r = review("", "Pod", "CREATE", pod(json!({"containers": []})));
        assert_eq!(images_to_judge(&r), Judgement::Judge(vec![]));
    }

    #[test]
    fn unreadable_pod_specs_are_malformed_with_a_located_message() {
        let cases = [
            (json!({"metadata": {}}), "object.spec is missing"),
            (json!({"spec": []}), "object.spec is not an object"),
            (
                pod(json!({"containers": {"a": 1}})),
                "object.spec.containers is not an array",
            ),
            (
                pod(json!({"containers": ["nginx"]})),
                "object.spec.containers[#0] is not an object",
            ),
            (
                pod(json!({"containers": [{"name": "a"}]})),
                "object.spec.containers[a]: image is missing",
            ),
            (
                pod(json!({"initContainers": [{"name": "i", "image": ""}]})),
                "object.spec.initContainers[i]: image is empty",
            ),
            (
                pod(json!({"containers": [{"name": "a", "image": ["x"]}]})),
                "object.spec.containers[a]: image is not a string",
            ),
            (
                pod(json!({"volumes": [{"name": "v", "image": "x"}]})),
                "object.spec.volumes[v]: image is not an object",
            ),
            (
                pod(json!({"volumes": [{"name": "v", "image": {"reference": ""}}]})),
                "object.spec.volumes[v]: image.reference is not a non-empty string",
            ),
        ];
        for (object, message) in cases {
            let judgement = images_to_judge(&review("", "Pod", "CREATE", object));
            assert_eq!(malformed(judgement), message);
        }
        let r = review(
            "apps",
            "Deployment",
            "CREATE",
            json!({"spec": {"template": 1}}),
        );
        assert_eq!(
            malformed(images_to_judge(&r)),
            "object.spec.template is not an object"
        );
        let r = review("", "Pod", "CREATE", Value::Null);
        assert_eq!(malformed(images_to_judge(&r)), "request.object is missing");
        let r = review("", "Pod", "CREATE", json!("pod"));
        assert_eq!(
            malformed(images_to_judge(&r)),
            "request.object is not an object"
        );
    }

    #[test]
    fn names_in_locations_are_escaped_and_short() {
        let name = format!("a\u{1b}[31m{}", "n".repeat(200));
        let object = pod(json!({"containers": [{"name": name, "image": "x"}]}));
        let uses = judged(images_to_judge(&review("", "Pod", "CREATE", object)));
        let location = &uses[0].1[0];
        assert!(!location.contains('\u{1b}'), "{location}");
        assert!(
            location.chars().count() <= MAX_NAME_CHARS + 12,
            "{location}"
        );
    }
}
