//! The AdmissionReview request as the API server sends it, read strictly into typed fields.
//!
//! The body is parsed once, refusing duplicate keys at any depth (two readers of the same
//! document must never see two different `uid`s or `image`s) and keeping serde_json's nesting
//! limit. A field the API server always sends is required; a field that is present must have
//! its documented type. Error messages name the field and never quote more than a short,
//! escaped excerpt of a value.

use serde::Deserialize;

use super::object::Node;
use super::strict::{self, record_members, Obj, Scalar};
use super::{text, workload};

/// The largest body [`Review::parse`] reads: room for an UPDATE's object and old object each
/// at the API server's own 3 MiB request limit (etcd's default 1.5 MiB per object keeps real
/// reviews far below it). A cap of 3 MiB refused updates of objects over about 1.4 MiB, and
/// in enforce a refused review is a denial.
pub const MAX_REVIEW_BYTES: usize = 6 * 1024 * 1024;

/// The longest `request.uid` accepted; the API server sends 36-character UUIDs.
const MAX_UID_BYTES: usize = 128;

/// How much of an unexpected value an error message quotes.
const EXCERPT_CHARS: usize = 64;

/// The `apiVersion` of an AdmissionReview; the answer must carry the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `admission.k8s.io/v1`.
    V1,
    /// `admission.k8s.io/v1beta1`.
    V1Beta1,
}

impl ApiVersion {
    /// The value of the `apiVersion` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "admission.k8s.io/v1",
            Self::V1Beta1 => "admission.k8s.io/v1beta1",
        }
    }

    /// The version named by an `apiVersion` value, if it is one we answer.
    pub fn from_api_version(value: &str) -> Option<Self> {
        match value {
            "admission.k8s.io/v1" => Some(Self::V1),
            "admission.k8s.io/v1beta1" => Some(Self::V1Beta1),
            _ => None,
        }
    }
}

/// What the API server does with the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CONNECT` (exec, attach, port-forward, proxy).
    Connect,
}

impl Operation {
    /// The Kubernetes name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `request.kind`: the type of the object (the core group is `""`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupVersionKind {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version, such as `v1`.
    pub version: String,
    /// Kind, such as `Deployment`.
    pub kind: String,
}

/// `request.resource`: the resource that was addressed (the core group is `""`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupVersionResource {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version, such as `v1`.
    pub version: String,
    /// Resource, such as `deployments`.
    pub resource: String,
}

/// One AdmissionReview request, read from the API server's body.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// The version to answer with.
    pub api_version: ApiVersion,
    /// `request.uid`, echoed in the answer.
    pub uid: String,
    /// `request.kind`.
    pub kind: GroupVersionKind,
    /// `request.resource`.
    pub resource: GroupVersionResource,
    /// `request.subResource` (`status`, `scale`, `ephemeralcontainers`…); empty reads as `None`.
    pub sub_resource: Option<String>,
    /// `request.namespace`; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `request.name`; `None` when the name is still to be generated.
    pub name: Option<String>,
    /// `request.operation`.
    pub operation: Operation,
    /// `request.dryRun`: nothing will be persisted.
    pub dry_run: bool,
    /// `request.userInfo.username`, for logs only (empty when absent).
    pub user: String,
    /// `request.object`, read as far as attestgate looks into it.
    pub(crate) object: Obj<Node>,
    /// `request.oldObject`, read as far as attestgate looks into it.
    pub(crate) old_object: Obj<Node>,
}

/// Why a body is not an AdmissionReview we can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is over [`MAX_REVIEW_BYTES`]; it was not parsed.
    #[error("admission review is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON (syntax, truncation, or nesting deeper than serde_json's limit).
    #[error("admission review is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// An object repeats a key.
    #[error("admission review repeats a key in one object (line {line}, column {column})")]
    DuplicateKey {
        /// Line of the repeated key.
        line: usize,
        /// Column of the repeated key.
        column: usize,
    },
    /// The body is JSON but not an object.
    #[error("admission review is not a JSON object")]
    NotAnObject,
    /// A required field is absent or `null`.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("{field} is not {expected}")]
    WrongType {
        /// Path of the field.
        field: &'static str,
        /// The expected type, with its article.
        expected: &'static str,
    },
    /// A required string is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// `request.uid` is longer than any uid the API server makes.
    #[error("request.uid is longer than {0} bytes")]
    UidTooLong(usize),
    /// `kind` is not `AdmissionReview`.
    #[error("kind \"{0}\" is not AdmissionReview")]
    NotAdmissionReview(String),
    /// `apiVersion` is neither `admission.k8s.io/v1` nor `admission.k8s.io/v1beta1`.
    #[error("apiVersion \"{0}\" is not admission.k8s.io/v1 or admission.k8s.io/v1beta1")]
    UnsupportedApiVersion(String),
    /// `request.operation` is not one of the four operations.
    #[error("request.operation \"{0}\" is not CREATE, UPDATE, DELETE or CONNECT")]
    UnknownOperation(String),
}

impl Review {
    /// Reads an AdmissionReview body, refusing anything the API server would not send.
    ///
    /// The whole body is read in one pass: the envelope and the parts of the objects that hold
    /// images into typed fields, the rest walked over and checked for repeated keys only.
    pub fn parse(body: &[u8]) -> Result<Self, ReviewError> {
        if body.len() > MAX_REVIEW_BYTES {
            return Err(ReviewError::TooLarge {
                size: body.len(),
                limit: MAX_REVIEW_BYTES,
            });
        }
        let top = match strict::from_slice::<Obj<Top>>(body).map_err(json_error)? {
            Obj::Object(top) => top,
            Obj::Null | Obj::Other => return Err(ReviewError::NotAnObject),
        };

        match required_str(&top.kind, "kind")? {
            "AdmissionReview" => {}
            other => return Err(ReviewError::NotAdmissionReview(excerpt(other))),
        }
        let version = required_str(&top.api_version, "apiVersion")?;
        let api_version = ApiVersion::from_api_version(version)
            .ok_or_else(|| ReviewError::UnsupportedApiVersion(excerpt(version)))?;

        let request = match top.request {
            Obj::Null => return Err(ReviewError::Missing("request")),
            Obj::Object(request) => request,
            Obj::Other => return Err(wrong_type("request", "an object")),
        };
        Self::from_request(api_version, request)
    }

    fn from_request(api_version: ApiVersion, request: Request) -> Result<Self, ReviewError> {
        let uid = required_str(&request.uid, "request.uid")?;
        if uid.is_empty() {
            return Err(ReviewError::Empty("request.uid"));
        }
        if uid.len() > MAX_UID_BYTES {
            return Err(ReviewError::UidTooLong(MAX_UID_BYTES));
        }
        let uid = uid.to_string();

        let kind = gvk(&request.kind)?;
        let resource = gvr(&request.resource)?;
        let operation = match required_str(&request.operation, "request.operation")? {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            other => return Err(ReviewError::UnknownOperation(excerpt(other))),
        };

        let sub_resource = optional_str(request.sub_resource, "request.subResource")?;
        let namespace = optional_str(request.namespace, "request.namespace")?;
        let name = optional_str(request.name, "request.name")?;
        let dry_run = match request.dry_run {
            Scalar::Null => false,
            Scalar::Bool(dry_run) => dry_run,
            Scalar::Str(_) | Scalar::Other => {
                return Err(wrong_type("request.dryRun", "a boolean"))
            }
        };
        let user = match request.user_info {
            Obj::Null => String::new(),
            Obj::Object(info) => {
                optional_str(info.username, "request.userInfo.username")?.unwrap_or_default()
            }
            Obj::Other => return Err(wrong_type("request.userInfo", "an object")),
        };

        Ok(Self {
            api_version,
            uid,
            kind,
            resource,
            sub_resource,
            namespace,
            name,
            operation,
            dry_run,
            user,
            object: request.object,
            old_object: request.old_object,
        })
    }

    /// The pod spec the object of this request's kind carries (a Pod's, or a workload's
    /// template's), when the kind has one and the object holds it as an object.
    pub(crate) fn pod_spec(&self) -> Option<&Node> {
        let path = workload::pod_spec_path(&self.kind.group, &self.kind.kind)?;
        let mut at = self.object.as_object()?;
        for key in path {
            at = at.child(key).as_object()?;
        }
        Some(at)
    }
}

/// The review itself: what [`Review::parse`] reads of it.
#[derive(Default)]
struct Top {
    kind: Scalar,
    api_version: Scalar,
    request: Obj<Request>,
}

record_members!(Top {
    "kind" => kind,
    "apiVersion" => api_version,
    "request" => request,
});

/// `request`, with its members as they came; [`Review::from_request`] checks their types.
#[derive(Default)]
struct Request {
    uid: Scalar,
    kind: Obj<Names>,
    resource: Obj<Names>,
    sub_resource: Scalar,
    namespace: Scalar,
    name: Scalar,
    operation: Scalar,
    dry_run: Scalar,
    user_info: Obj<UserInfo>,
    object: Obj<Node>,
    old_object: Obj<Node>,
}

record_members!(Request {
    "uid" => uid,
    "kind" => kind,
    "resource" => resource,
    "subResource" => sub_resource,
    "namespace" => namespace,
    "name" => name,
    "operation" => operation,
    "dryRun" => dry_run,
    "userInfo" => user_info,
    "object" => object,
    "oldObject" => old_object,
});

/// `request.kind` or `request.resource`: group, version, and kind or resource.
#[derive(Default)]
struct Names {
    group: Scalar,
    version: Scalar,
    kind: Scalar,
    resource: Scalar,
}

record_members!(Names {
    "group" => group,
    "version" => version,
    "kind" => kind,
    "resource" => resource,
});

/// `request.userInfo`: only the user name, for logs.
#[derive(Default)]
struct UserInfo {
    username: Scalar,
}

record_members!(UserInfo {
    "username" => username,
});

/// Best effort: the version and uid of a body, to answer it when [`Review::parse`] or a later
/// step failed. `None` when the body is over the limit, not JSON, of an unknown version, or has
/// no usable uid. Unlike [`Review::parse`], repeated keys are tolerated (the last one counts,
/// as in the API server's own decoder).
pub fn uid_of(body: &[u8]) -> Option<(ApiVersion, String)> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "apiVersion")]
        api_version: String,
        request: ProbeRequest,
    }
    #[derive(Deserialize)]
    struct ProbeRequest {
        uid: String,
    }

    if body.len() > MAX_REVIEW_BYTES {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let version = ApiVersion::from_api_version(&probe.api_version)?;
    let uid = probe.request.uid;
    (!uid.is_empty() && uid.len() <= MAX_UID_BYTES).then_some((version, uid))
}

fn json_error(err: serde_json::Error) -> ReviewError {
    // The strict reader's only data error is a repeated key (every member is read whatever its
    // type, and the types are checked afterwards), so only the position is kept.
    if err.classify() == serde_json::error::Category::Data {
        ReviewError::DuplicateKey {
            line: err.line(),
            column: err.column(),
        }
    } else {
        ReviewError::Json(err)
    }
}

fn gvk(kind: &Obj<Names>) -> Result<GroupVersionKind, ReviewError> {
    let kind = required_object(kind, "request.kind")?;
    Ok(GroupVersionKind {
        group: required_str(&kind.group, "request.kind.group")?.to_string(),
        version: required_str(&kind.version, "request.kind.version")?.to_string(),
        kind: required_str(&kind.kind, "request.kind.kind")?.to_string(),
    })
}

fn gvr(resource: &Obj<Names>) -> Result<GroupVersionResource, ReviewError> {
    let resource = required_object(resource, "request.resource")?;
    Ok(GroupVersionResource {
        group: required_str(&resource.group, "request.resource.group")?.to_string(),
        version: required_str(&resource.version, "request.resource.version")?.to_string(),
        resource: required_str(&resource.resource, "request.resource.resource")?.to_string(),
    })
}

fn required_object<'a, T>(value: &'a Obj<T>, field: &'static str) -> Result<&'a T, ReviewError> {
    match value {
        Obj::Null => Err(ReviewError::Missing(field)),
        Obj::Object(object) => Ok(object),
        Obj::Other => Err(wrong_type(field, "an object")),
    }
}

fn required_str<'a>(value: &'a Scalar, field: &'static str) -> Result<&'a str, ReviewError> {
    match value {
        Scalar::Null => Err(ReviewError::Missing(field)),
        Scalar::Str(s) => Ok(s),
        Scalar::Bool(_) | Scalar::Other => Err(wrong_type(field, "a string")),
    }
}

/// An optional string; absent, `null` and `""` all read as `None`.
fn optional_str(value: Scalar, field: &'static str) -> Result<Option<String>, ReviewError> {
    match value {
        Scalar::Null => Ok(None),
        Scalar::Str(s) if s.is_empty() => Ok(None),
        Scalar::Str(s) => Ok(Some(s)),
        Scalar::Bool(_) | Scalar::Other => Err(wrong_type(field, "a string")),
    }
}

fn wrong_type(field: &'static str, expected: &'static str) -> ReviewError {
    ReviewError::WrongType { field, expected }
}

fn excerpt(value: &str) -> String {
    text::clean(value, EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn minimal() -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "object": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}
            }
        })
    }

    fn parse(value: &Value) -> Result<Review, ReviewError> {
        Review::parse(value.to_string().as_bytes())
    }

    /// `value` with the member at `pointer` set (added when its parent object exists).
    fn with(mut value: Value, pointer: &str, new: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match value.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                map.insert(key.to_string(), new);
            }
            _ => panic!("no object at {parent}"),
        }
        value
    }

    fn without(mut value: Value, parent: &str, key: &str) -> Value {
        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
            map.remove(key);
        }
        value
    }

    #[test]
    fn a_minimal_review_reads_into_typed_fields() {
        let review = parse(&minimal()).unwrap();
        assert_eq!(review.api_version, ApiVersion::V1);
        assert_eq!(review.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(review.kind.kind, "Pod");
        assert_eq!(review.kind.group, "");
        assert_eq!(review.resource.resource, "pods");
        assert_eq!(review.operation, Operation::Create);
        assert_eq!(review.sub_resource, None);
        assert_eq!(review.namespace, None);
        assert!(!review.dry_run);
        assert_eq!(review.user, "");
        assert!(review.object.as_object().is_some());
        assert_eq!(review.old_object, Obj::Null);
    }

    #[test]
    fn optional_fields_are_read_when_present() {
        let value = minimal();
        let value = with(value, "/apiVersion", json!("admission.k8s.io/v1beta1"));
        let mut value = with(value, "/request/operation", json!("UPDATE"));
        if let Some(Value::Object(request)) = value.pointer_mut("/request") {
            request.insert("subResource".into(), json!("ephemeralcontainers"));
            request.insert("namespace".into(), json!("team-a"));
            request.insert("name".into(), json!("web-0"));
            request.insert("dryRun".into(), json!(true));
            request.insert("userInfo".into(), json!({"username": "alice"}));
            request.insert("oldObject".into(), json!({"spec": {}}));
        }
        let review = parse(&value).unwrap();
        assert_eq!(review.api_version, ApiVersion::V1Beta1);
        assert_eq!(review.operation, Operation::Update);
        assert_eq!(review.sub_resource.as_deref(), Some("ephemeralcontainers"));
        assert_eq!(review.namespace.as_deref(), Some("team-a"));
        assert_eq!(review.name.as_deref(), Some("web-0"));
        assert!(review.dry_run);
        assert_eq!(review.user, "alice");
        let old = review.old_object.as_object().unwrap();
        assert_eq!(old.spec, Obj::Object(Box::default()));
    }

    #[test]
    fn null_objects_read_as_none() {
        let value = with(minimal(), "/request/object", Value::Null);
        assert_eq!(parse(&value).unwrap().object, Obj::Null);
        let value = with(minimal(), "/request/object", json!("pod"));
        assert_eq!(parse(&value).unwrap().object, Obj::Other);
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = vec![b'x'; MAX_REVIEW_BYTES + 1];
        let err = Review::parse(&body).unwrap_err();
        assert!(matches!(err, ReviewError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn non_json_and_non_objects_are_refused() {
        assert!(matches!(
            Review::parse(b"{\"kind\":").unwrap_err(),
            ReviewError::Json(_)
        ));
        assert!(matches!(
            Review::parse(b"null").unwrap_err(),
            ReviewError::NotAnObject
        ));
        assert!(matches!(
            Review::parse(b"[1]").unwrap_err(),
            ReviewError::NotAnObject
        ));
    }

    #[test]
    fn deep_nesting_is_refused_by_the_recursion_limit() {
        let mut body = b"{\"a\":".to_vec();
        body.extend(std::iter::repeat_n(b'[', 10_000));
        body.extend(std::iter::repeat_n(b']', 10_000));
        body.push(b'}');
        let err = Review::parse(&body).unwrap_err();
        let ReviewError::Json(source) = &err else {
            panic!("{err}");
        };
        assert!(source.to_string().contains("recursion limit"), "{source}");
    }

    #[test]
    fn objects_nested_to_the_limit_are_read_without_exhausting_the_stack() {
        // Kept members (`spec` is read into a record at every depth) and skipped ones.
        for key in ["spec", "x"] {
            let depth = 120;
            let mut object = "{}".to_string();
            for _ in 0..depth {
                object = format!(r#"{{"{key}":{object},"k1":1,"k2":2}}"#);
            }
            let mut value = minimal();
            value["request"]["object"] = serde_json::from_str(&object).unwrap();
            let body = value.to_string();
            let parsed = std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || Review::parse(body.as_bytes()).map(|_| ()))
                .unwrap()
                .join()
                .unwrap();
            assert!(parsed.is_ok(), "{key}: {parsed:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_without_quoting_them() {
        let long_key = "k".repeat(10_000);
        let body = format!(
            r#"{{"kind":"AdmissionReview","request":{{"uid":"a","uid":"b"}},"{long_key}":1,"{long_key}":2}}"#
        );
        let err = Review::parse(body.as_bytes()).unwrap_err();
        assert!(matches!(err, ReviewError::DuplicateKey { .. }), "{err}");
        let body = format!(r#"{{"{long_key}":1,"{long_key}":2}}"#);
        let err = Review::parse(body.as_bytes()).unwrap_err();
        assert!(matches!(err, ReviewError::DuplicateKey { .. }), "{err}");
        assert!(err.to_string().len() < 100, "{err}");
    }

    #[test]
    fn kind_and_api_version_are_checked() {
        let err = parse(&with(minimal(), "/kind", json!("Pod"))).unwrap_err();
        assert_eq!(err.to_string(), "kind \"Pod\" is not AdmissionReview");
        let err = parse(&without(minimal(), "", "kind")).unwrap_err();
        assert_eq!(err.to_string(), "kind is missing");
        let err = parse(&with(
            minimal(),
            "/apiVersion",
            json!("admission.k8s.io/v2"),
        ))
        .unwrap_err();
        assert!(
            matches!(err, ReviewError::UnsupportedApiVersion(_)),
            "{err}"
        );
        let err = parse(&with(minimal(), "/apiVersion", json!(1))).unwrap_err();
        assert_eq!(err.to_string(), "apiVersion is not a string");
    }

    #[test]
    fn the_request_and_its_required_fields_are_checked() {
        let cases = [
            (
                with(minimal(), "/request", Value::Null),
                "request is missing",
            ),
            (without(minimal(), "", "request"), "request is missing"),
            (
                with(minimal(), "/request", json!([])),
                "request is not an object",
            ),
            (
                without(minimal(), "/request", "uid"),
                "request.uid is missing",
            ),
            (
                with(minimal(), "/request/uid", json!("")),
                "request.uid is empty",
            ),
            (
                with(minimal(), "/request/uid", json!(7)),
                "request.uid is not a string",
            ),
            (
                without(minimal(), "/request", "kind"),
                "request.kind is missing",
            ),
            (
                with(minimal(), "/request/kind", json!("Pod")),
                "request.kind is not an object",
            ),
            (
                without(minimal(), "/request/kind", "kind"),
                "request.kind.kind is missing",
            ),
            (
                without(minimal(), "/request", "resource"),
                "request.resource is missing",
            ),
            (
                without(minimal(), "/request/resource", "group"),
                "request.resource.group is missing",
            ),
            (
                without(minimal(), "/request", "operation"),
                "request.operation is missing",
            ),
            (
                with(minimal(), "/request/operation", json!("PATCH")),
                "request.operation \"PATCH\" is not CREATE, UPDATE, DELETE or CONNECT",
            ),
            (
                with(minimal(), "/request/dryRun", json!("yes")),
                "request.dryRun is not a boolean",
            ),
            (
                with(minimal(), "/request/namespace", json!({})),
                "request.namespace is not a string",
            ),
            (
                with(minimal(), "/request/userInfo", json!({"username": 1})),
                "request.userInfo.username is not a string",
            ),
        ];
        for (value, message) in cases {
            let err = parse(&value).map(|_| ()).unwrap_err();
            assert_eq!(err.to_string(), message, "{value}");
        }
    }

    #[test]
    fn long_uids_are_refused() {
        let value = with(minimal(), "/request/uid", json!("u".repeat(129)));
        assert!(matches!(
            parse(&value).unwrap_err(),
            ReviewError::UidTooLong(128)
        ));
        let value = with(minimal(), "/request/uid", json!("u".repeat(128)));
        assert!(parse(&value).is_ok());
    }

    #[test]
    fn quoted_values_are_short_and_escaped() {
        let value = with(
            minimal(),
            "/kind",
            json!(format!("\u{1b}[2J{}", "x".repeat(5000))),
        );
        let message = parse(&value).unwrap_err().to_string();
        assert!(message.len() < 120, "{message}");
        assert!(!message.contains('\u{1b}'), "{message}");
    }

    #[test]
    fn uid_of_finds_the_uid_even_when_the_review_is_refused() {
        let body = with(minimal(), "/request/operation", json!("PATCH")).to_string();
        assert!(Review::parse(body.as_bytes()).is_err());
        assert_eq!(
            uid_of(body.as_bytes()),
            Some((
                ApiVersion::V1,
                "705ab4f5-6393-11e8-b7cc-42010a800002".into()
            ))
        );
        let body = with(minimal(), "/apiVersion", json!("admission.k8s.io/v1beta1")).to_string();
        assert_eq!(
            uid_of(body.as_bytes()).map(|(v, _)| v),
            Some(ApiVersion::V1Beta1)
        );
    }

    #[test]
    fn uid_of_gives_up_on_what_it_cannot_echo() {
        assert_eq!(uid_of(b"not json"), None);
        assert_eq!(uid_of(b"null"), None);
        let no_uid = without(minimal(), "/request", "uid").to_string();
        assert_eq!(uid_of(no_uid.as_bytes()), None);
        let empty = with(minimal(), "/request/uid", json!("")).to_string();
        assert_eq!(uid_of(empty.as_bytes()), None);
        let v2 = with(minimal(), "/apiVersion", json!("admission.k8s.io/v2")).to_string();
        assert_eq!(uid_of(v2.as_bytes()), None);
        assert_eq!(uid_of(&vec![b' '; MAX_REVIEW_BYTES + 1]), None);
    }
}
