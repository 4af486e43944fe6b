//! Test only: the earlier reading of a review (the whole body into a `serde_json::Value` with
//! duplicate keys refused, then fields and images picked out of the tree), kept as an oracle.
//! The typed one-pass reader must agree with it on every body: same refusal message, same
//! fields, same judgement, same pull-secret reading.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::review::{GroupVersionKind, GroupVersionResource, Operation};
use super::workload::{images_to_judge, ImageUse, Judgement, SkipReason};
use super::{text, ApiVersion, Review, ReviewError, MAX_REVIEW_BYTES};

/// What a reading yields, in a form both readers can produce.
#[derive(Debug, PartialEq)]
struct Reading {
    api_version: ApiVersion,
    uid: String,
    kind: (String, String, String),
    resource: (String, String, String),
    sub_resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    operation: Operation,
    dry_run: bool,
    user: String,
    judgement: Judgement,
    pull_secrets: Option<(Vec<String>, Option<String>, Option<String>)>,
}

fn typed(body: &[u8]) -> Result<Reading, String> {
    let review = Review::parse(body).map_err(|e| kind_of(&e))?;
    let pull_secrets = review.pod_spec().map(|spec| {
        (
            spec.image_pull_secret_names().map(str::to_string).collect(),
            spec.service_account_name.as_str().map(str::to_string),
            spec.service_account.as_str().map(str::to_string),
        )
    });
    Ok(Reading {
        judgement: images_to_judge(&review),
        api_version: review.api_version,
        uid: review.uid,
        kind: (review.kind.group, review.kind.version, review.kind.kind),
        resource: (
            review.resource.group,
            review.resource.version,
            review.resource.resource,
        ),
        sub_resource: review.sub_resource,
        namespace: review.namespace,
        name: review.name,
        operation: review.operation,
        dry_run: review.dry_run,
        user: review.user,
        pull_secrets,
    })
}

/// The message, except for JSON errors, whose text names the exact parse position and kind.
fn kind_of(err: &ReviewError) -> String {
    match err {
        ReviewError::Json(_) => "json".into(),
        ReviewError::DuplicateKey { .. } => "duplicate".into(),
        other => other.to_string(),
    }
}

fn oracle(body: &[u8]) -> Result<Reading, String> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(kind_of(&ReviewError::TooLarge {
            size: body.len(),
            limit: MAX_REVIEW_BYTES,
        }));
    }
    let value = match crate::json_shape::parse_strict(body) {
        Ok(value) => value,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err("duplicate".into())
        }
        Err(_) => return Err("json".into()),
    };
    let Value::Object(top) = value else {
        return Err(ReviewError::NotAnObject.to_string());
    };
    let err = |e: ReviewError| e.to_string();
    match req_str(&top, "kind", "kind")? {
        "AdmissionReview" => {}
        other => return Err(err(ReviewError::NotAdmissionReview(text::clean(other, 64)))),
    }
    let version = req_str(&top, "apiVersion", "apiVersion")?;
    let api_version = ApiVersion::from_api_version(version)
        .ok_or_else(|| err(ReviewError::UnsupportedApiVersion(text::clean(version, 64))))?;
    let request = match top.get("request") {
        None | Some(Value::Null) => return Err(err(ReviewError::Missing("request"))),
        Some(Value::Object(request)) => request,
        Some(_) => return Err(wrong("request", "an object")),
    };
    let uid = req_str(request, "uid", "request.uid")?;
    if uid.is_empty() {
        return Err(err(ReviewError::Empty("request.uid")));
    }
    if uid.len() > 128 {
        return Err(err(ReviewError::UidTooLong(128)));
    }
    let kind = req_obj(request, "kind", "request.kind")?;
    let kind = (
        req_str(kind, "group", "request.kind.group")?.to_string(),
        req_str(kind, "version", "request.kind.version")?.to_string(),
        req_str(kind, "kind", "request.kind.kind")?.to_string(),
    );
    let resource = req_obj(request, "resource", "request.resource")?;
    let resource = (
        req_str(resource, "group", "request.resource.group")?.to_string(),
        req_str(resource, "version", "request.resource.version")?.to_string(),
        req_str(resource, "resource", "request.resource.resource")?.to_string(),
    );
    let operation = match req_str(request, "operation", "request.operation")? {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        other => return Err(err(ReviewError::UnknownOperation(text::clean(other, 64)))),
    };
    let sub_resource = opt_str(request, "subResource", "request.subResource")?;
    let namespace = opt_str(request, "namespace", "request.namespace")?;
    let name = opt_str(request, "name", "request.name")?;
    let dry_run = match request.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(wrong("request.dryRun", "a boolean")),
    };
    let user = match request.get("userInfo") {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(info)) => {
            opt_str(info, "username", "request.userInfo.username")?.unwrap_or_default()
        }
        Some(_) => return Err(wrong("request.userInfo", "an object")),
    };
    let object = request.get("object").filter(|v| !v.is_null());
    let old = request.get("oldObject").filter(|v| !v.is_null());
    let review = OldReview {
        kind: GroupVersionKind {
            group: kind.0.clone(),
            version: kind.1.clone(),
            kind: kind.2.clone(),
        },
        resource: GroupVersionResource {
            group: resource.0.clone(),
            version: resource.1.clone(),
            resource: resource.2.clone(),
        },
        sub_resource: sub_resource.clone(),
        operation,
        object,
        old,
    };
    Ok(Reading {
        api_version,
        uid: uid.to_string(),
        kind,
        resource,
        sub_resource,
        namespace,
        name,
        operation,
        dry_run,
        user,
        judgement: old_images_to_judge(&review),
        pull_secrets: old_pull_secrets(&review),
    })
}

fn wrong(field: &'static str, expected: &'static str) -> String {
    ReviewError::WrongType { field, expected }.to_string()
}

fn req_obj<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a Map<String, Value>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Err(ReviewError::Missing(field).to_string()),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(wrong(field, "an object")),
    }
}

fn req_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a str, String> {
    match map.get(key) {
        None | Some(Value::Null) => Err(ReviewError::Missing(field).to_string()),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(wrong(field, "a string")),
    }
}

fn opt_str(
    map: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(field, "a string")),
    }
}

struct OldReview<'a> {
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    sub_resource: Option<String>,
    operation: Operation,
    object: Option<&'a Value>,
    old: Option<&'a Value>,
}

fn kind_path(group: &str, kind: &str) -> Option<(&'static [&'static str], bool)> {
    match (group, kind) {
        ("", "Pod") => Some((&["spec"], false)),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some((&["spec", "template", "spec"], true)),
        ("batch", "CronJob") => Some((&["spec", "jobTemplate", "spec", "template", "spec"], true)),
        ("", "PodTemplate") => Some((&["template", "spec"], true)),
        _ => None,
    }
}

fn old_pull_secrets(review: &OldReview) -> Option<(Vec<String>, Option<String>, Option<String>)> {
    let (path, _) = kind_path(&review.kind.group, &review.kind.kind)?;
    let mut at = review.object?;
    for key in path {
        at = at.get(*key)?;
    }
    let spec = at.as_object()?;
    let secrets = match spec.get("imagePullSecrets") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("name")?.as_str())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let text = |key: &str| spec.get(key).and_then(Value::as_str).map(str::to_string);
    Some((secrets, text("serviceAccountName"), text("serviceAccount")))
}

fn old_images_to_judge(review: &OldReview) -> Judgement {
    if matches!(review.operation, Operation::Delete | Operation::Connect) {
        return Judgement::Skip(SkipReason::Operation(review.operation));
    }
    let group = review.kind.group.as_str();
    let kind = review.kind.kind.as_str();
    let at = if let Some(sub) = review.sub_resource.as_deref() {
        let on_pods = review.resource.group.is_empty() && review.resource.resource == "pods";
        match (sub, on_pods) {
            ("ephemeralcontainers", true) if group.is_empty() && kind == "Pod" => {
                (&["spec"][..], false)
            }
            ("ephemeralcontainers", true) => {
                return Judgement::Malformed(format!(
                    "pods/ephemeralcontainers carries kind {}, not Pod",
                    text::clean(kind, 63)
                ))
            }
            _ => return Judgement::Skip(SkipReason::SubResource(text::clean(sub, 63))),
        }
    } else {
        match kind_path(group, kind) {
            Some(at) => at,
            None => {
                return Judgement::Skip(SkipReason::NotAWorkload {
                    group: text::clean(group, 63),
                    kind: text::clean(kind, 63),
                })
            }
        }
    };
    let object = match review.object {
        None => return Judgement::Malformed("request.object is missing".into()),
        Some(Value::Object(object)) => object,
        Some(_) => return Judgement::Malformed("request.object is not an object".into()),
    };
    let deleted = object
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(Value::is_string);
    if deleted {
        return Judgement::Skip(SkipReason::BeingDeleted);
    }
    let images = match old_images_of(object, at) {
        Ok(images) => images,
        Err(message) => return Judgement::Malformed(message),
    };
    if review.operation != Operation::Update {
        return Judgement::Judge(images);
    }
    let old: HashSet<String> = match review.old {
        Some(Value::Object(old)) => old_images_of(old, at)
            .map(|uses| uses.into_iter().map(|u| u.image).collect())
            .unwrap_or_default(),
        _ => HashSet::new(),
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

type Entry<'a> = (usize, &'a Map<String, Value>);

fn old_images_of(
    object: &Map<String, Value>,
    (path, template): (&[&str], bool),
) -> Result<Vec<ImageUse>, String> {
    let mut spec = object;
    for (depth, key) in path.iter().enumerate() {
        let here = format!("object.{}", path[..=depth].join("."));
        spec = match spec.get(*key) {
            Some(Value::Object(next)) => next,
            None | Some(Value::Null) => return Err(format!("{here} is missing")),
            Some(_) => return Err(format!("{here} is not an object")),
        };
    }
    let spec_path = format!("object.{}", path.join("."));
    let mut uses: Vec<ImageUse> = Vec::new();
    let mut add = |image: &str, location: String| match uses.iter_mut().find(|u| u.image == image) {
        Some(u) => u.locations.push(location),
        None => uses.push(ImageUse {
            image: image.to_string(),
            locations: vec![location],
            template,
        }),
    };
    let entries = |key: &str| -> Result<Vec<Entry>, String> {
        let items = match spec.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(format!("{spec_path}.{key} is not an array")),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(entry) => Ok((i, entry)),
                _ => Err(format!("{spec_path}.{key}[#{i}] is not an object")),
            })
            .collect()
    };
    let location = |list: &str, entry: &Map<String, Value>, i: usize| match entry.get("name") {
        Some(Value::String(name)) if !name.is_empty() => {
            format!("{list}[{}]", text::clean(name, 63))
        }
        _ => format!("{list}[#{i}]"),
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, entry) in entries(list)? {
            let location = location(list, entry, i);
            match entry.get("image") {
                Some(Value::String(image)) if !image.is_empty() => add(image, location),
                Some(Value::String(_)) => {
                    return Err(format!("{spec_path}.{location}: image is empty"))
                }
                None | Some(Value::Null) => {
                    return Err(format!("{spec_path}.{location}: image is missing"))
                }
                Some(_) => return Err(format!("{spec_path}.{location}: image is not a string")),
            }
        }
    }
    for (i, volume) in entries("volumes")? {
        let location = location("volumes", volume, i);
        let source = match volume.get("image") {
            None | Some(Value::Null) => continue,
            Some(Value::Object(source)) => source,
            Some(_) => return Err(format!("{spec_path}.{location}: image is not an object")),
        };
        match source.get("reference") {
            Some(Value::String(image)) if !image.is_empty() => add(image, location),
            _ => {
                return Err(format!(
                    "{spec_path}.{location}: image.reference is not a non-empty string"
                ))
            }
        }
    }
    Ok(uses)
}

fn agree(body: &[u8]) -> Result<(), TestCaseError> {
    let (new, old) = (typed(body), oracle(body));
    prop_assert_eq!(&new, &old, "{}", String::from_utf8_lossy(body));
    Ok(())
}

const POD: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"UPDATE","userInfo":{"username":"ci","groups":["a"]},"object":{"metadata":{"name":"p","labels":{"a":"b"}},"spec":{"serviceAccountName":"sa","imagePullSecrets":[{"name":"s"}],"initContainers":[{"name":"i","image":"busybox"}],"containers":[{"name":"web","image":"web:1","env":[{"name":"A","value":"1"}]}],"volumes":[{"name":"d","image":{"reference":"data:1"}}]}},"oldObject":{"spec":{"containers":[{"name":"web","image":"web:0"}]}}}}"#;
const CRONJOB: &str = r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u-2","kind":{"group":"batch","version":"v1","kind":"CronJob"},"resource":{"group":"batch","version":"v1","resource":"cronjobs"},"operation":"CREATE","dryRun":true,"object":{"metadata":{"name":"c"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"job","image":"job:1"}]}}}}}}}}"#;

/// Places where a random value goes; kinds are swapped in too, to walk every path.
const PLACES: &[&str] = &[
    "",
    "/kind",
    "/apiVersion",
    "/request",
    "/request/uid",
    "/request/kind",
    "/request/kind/kind",
    "/request/kind/group",
    "/request/resource",
    "/request/resource/resource",
    "/request/subResource",
    "/request/operation",
    "/request/dryRun",
    "/request/userInfo",
    "/request/userInfo/username",
    "/request/object",
    "/request/object/metadata",
    "/request/object/metadata/deletionTimestamp",
    "/request/object/spec",
    "/request/object/spec/template",
    "/request/object/spec/jobTemplate",
    "/request/object/spec/containers",
    "/request/object/spec/containers/0",
    "/request/object/spec/containers/0/image",
    "/request/object/spec/containers/0/name",
    "/request/object/spec/initContainers",
    "/request/object/spec/ephemeralContainers",
    "/request/object/spec/volumes",
    "/request/object/spec/volumes/0/image",
    "/request/object/spec/volumes/0/image/reference",
    "/request/object/spec/imagePullSecrets",
    "/request/object/spec/imagePullSecrets/0",
    "/request/object/spec/serviceAccount",
    "/request/object/template",
    "/request/oldObject",
    "/request/oldObject/spec/containers",
];

const KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("apps", "Deployment"),
    ("batch", "CronJob"),
    ("", "PodTemplate"),
    ("batch", "Job"),
    ("", "ConfigMap"),
];

fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    if pointer.is_empty() {
        return new;
    }
    if let Some(slot) = value.pointer_mut(pointer) {
        *slot = new;
        return value;
    }
    if let Some((parent, key)) = pointer.rsplit_once('/') {
        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
            map.insert(key.to_string(), new);
        }
    }
    value
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!("")),
        "[a-z0-9./:@\u{1b}-]{0,12}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("name".to_string()),
        Just("image".to_string()),
        Just("reference".to_string()),
        Just("containers".to_string()),
        Just("initContainers".to_string()),
        Just("ephemeralContainers".to_string()),
        Just("volumes".to_string()),
        Just("spec".to_string()),
        Just("template".to_string()),
        Just("jobTemplate".to_string()),
        Just("metadata".to_string()),
        Just("deletionTimestamp".to_string()),
        Just("imagePullSecrets".to_string()),
        Just("serviceAccountName".to_string()),
        "[a-z]{1,3}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_typed_reader_agrees_with_the_value_reader(
        cron in any::<bool>(),
        kind in 0usize..KINDS.len(),
        operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
        place in 0usize..PLACES.len(),
        value in json_value(),
    ) {
        let base: Value = serde_json::from_str(if cron { CRONJOB } else { POD }).unwrap();
        let (group, kind) = KINDS[kind];
        let base = set(base, "/request/kind", json!({"group": group, "version": "v1", "kind": kind}));
        let base = set(base, "/request/operation", json!(operation));
        let body = set(base, PLACES[place], value).to_string();
        agree(body.as_bytes())?;
    }

    #[test]
    fn both_readers_refuse_the_same_broken_bodies(
        cron in any::<bool>(),
        at in 0usize..800,
        len in 0usize..6,
        insert in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..6),
            Just(br#""uid":"x","#.to_vec()),
            Just(br#""name":"n","#.to_vec()),
            Just(br#""spec":{},"#.to_vec()),
        ],
    ) {
        let mut body = (if cron { CRONJOB } else { POD }).as_bytes().to_vec();
        let at = at % body.len();
        let end = (at + len).min(body.len());
        body.splice(at..end, insert);
        agree(&body)?;
    }
}

/// Every place, kind and operation, with one value of each kind and shape a pod spec meets.
#[test]
fn the_readers_agree_on_every_simple_value_in_every_place() {
    let values = [
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!([null]),
        json!([{}]),
        json!([{"name": "n", "image": "i"}]),
        json!({"name": "n"}),
        json!({"image": "i"}),
        json!({"reference": ""}),
        json!({"spec": {"containers": [{"image": "t"}]}}),
    ];
    for base in [POD, CRONJOB] {
        let base: Value = serde_json::from_str(base).unwrap();
        for (group, kind) in KINDS {
            for operation in ["CREATE", "UPDATE", "DELETE"] {
                let kind = json!({"group": group, "version": "v1", "kind": kind});
                let review = set(base.clone(), "/request/kind", kind);
                let review = set(review, "/request/operation", json!(operation));
                for place in PLACES {
                    for value in &values {
                        let body = set(review.clone(), place, value.clone()).to_string();
                        assert_eq!(typed(body.as_bytes()), oracle(body.as_bytes()), "{body}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_bases_are_read_alike_and_judged() {
    for base in [POD, CRONJOB] {
        let reading = typed(base.as_bytes()).unwrap();
        assert!(
            matches!(reading.judgement, Judgement::Judge(_)),
            "{reading:?}"
        );
        assert_eq!(Ok(reading), oracle(base.as_bytes()));
    }
}

#[test]
fn repeated_keys_are_refused_where_the_value_reader_refused_them() {
    for body in [
        r#"{"kind":"AdmissionReview","kind":"AdmissionReview"}"#,
        r#"{"request":{"object":{"metadata":{"labels":{"a":"1","a":"2"}}}}}"#,
        r#"{"request":{"object":{"spec":{"containers":[{"image":"a","image":"b"}]}}}}"#,
        r#"{"request":{"options":{"x":[{"y":1,"y":2}]}}}"#,
        r#"{"request":{"oldObject":{"status":{"c":[[{"d":1,"d":1}]]}}}}"#,
    ] {
        assert_eq!(typed(body.as_bytes()).unwrap_err(), "duplicate", "{body}");
        assert_eq!(oracle(body.as_bytes()).unwrap_err(), "duplicate", "{body}");
    }
}
