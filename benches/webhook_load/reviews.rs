//! AdmissionReview bodies as the API server sends them: compact JSON, with the fields a real
//! object carries (labels, owner references, managed fields, a service-account volume,
//! tolerations, resources, status), so that parsing costs what it costs in a cluster. A Pod
//! review is about 4 KB.

use serde_json::{json, Value};

const NAMESPACE: &str = "team-a";

fn review(uid: &str, kind: [&str; 3], resource: [&str; 3], name: &str, object: Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "resource": {"group": resource[0], "version": resource[1], "resource": resource[2]},
            "requestKind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
            "requestResource": {"group": resource[0], "version": resource[1], "resource": resource[2]},
            "name": name,
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "13076e42-1513-11ea-b3fc-02897404852e",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                           "system:authenticated"]
            },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
    .to_string()
    .into_bytes()
}

fn container(index: usize, image: &str) -> Value {
    json!({
        "name": format!("app-{index}"),
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
            {"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {"divisor": "0", "resource": "limits.cpu"}}}
        ],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                      "requests": {"cpu": "100m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"},
                           "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                           "failureThreshold": 3},
        "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}
    })
}

fn pod_spec(images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| container(i, image))
        .collect();
    json!({
        "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ], "defaultMode": 420}}],
        "containers": containers,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ],
        "priority": 0,
        "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority"
    })
}

fn managed_fields(manager: &str) -> Value {
    json!([{
        "manager": manager,
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2026-06-01T10:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                     "f:ownerReferences": {".": {}, "k:{\"uid\":\"090d26f8-1812-11ea-b3fc-02897404852e\"}": {}}},
                     "f:spec": {"f:containers": {"k:{\"name\":\"app-0\"}": {".": {}, "f:image": {}, "f:imagePullPolicy": {},
                     "f:name": {}, "f:resources": {}, "f:securityContext": {}}}, "f:dnsPolicy": {},
                     "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}}}
    }])
}

/// A Pod, as the ReplicaSet controller creates it.
pub(crate) fn pod(uid: &str, name: &str, images: &[&str]) -> Vec<u8> {
    let object = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": format!("{name}-"),
            "namespace": NAMESPACE,
            "labels": {"app": "bench", "pod-template-hash": "76fbf58b7d"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-06-01T10:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{name}-rs"), "uid": "090d26f8-1812-11ea-b3fc-02897404852e",
                "controller": true, "blockOwnerDeletion": true}],
            "managedFields": managed_fields("kube-controller-manager")
        },
        "spec": pod_spec(images),
        "status": {"phase": "Pending", "qosClass": "Burstable"}
    });
    review(uid, ["", "v1", "Pod"], ["", "v1", "pods"], name, object)
}

fn template(name: &str, images: &[&str]) -> Value {
    json!({
        "metadata": {"labels": {"app": name}},
        "spec": pod_spec(images)
    })
}

/// A Deployment, as `kubectl apply` creates it.
pub(crate) fn deployment(uid: &str, name: &str, images: &[&str]) -> Vec<u8> {
    let object = json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name},
                     "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "managedFields": managed_fields("kubectl-client-side-apply")},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name, images),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {}
    });
    review(
        uid,
        ["apps", "v1", "Deployment"],
        ["apps", "v1", "deployments"],
        name,
        object,
    )
}

/// The ReplicaSet the Deployment controller creates for it.
pub(crate) fn replicaset(uid: &str, name: &str, images: &[&str]) -> Vec<u8> {
    let object = json!({
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {"name": format!("{name}-rs"), "namespace": NAMESPACE,
                     "labels": {"app": name, "pod-template-hash": "76fbf58b7d"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                         "uid": "0a0d26f8-1812-11ea-b3fc-02897404852e", "controller": true,
                         "blockOwnerDeletion": true}],
                     "managedFields": managed_fields("kube-controller-manager")},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name, "pod-template-hash": "76fbf58b7d"}},
            "template": template(name, images)
        },
        "status": {"replicas": 0}
    });
    review(
        uid,
        ["apps", "v1", "ReplicaSet"],
        ["apps", "v1", "replicasets"],
        &format!("{name}-rs"),
        object,
    )
}
