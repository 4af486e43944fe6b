//! The parts of `request.object` (and `oldObject`) that attestgate reads, kept as they came.
//!
//! The kind of the object is not known while it is read (the API server writes `request.kind`
//! first, but JSON does not promise it), so every object on the way to a pod spec is read into
//! the same [`Node`]: the members that lead to a pod spec (`spec`, `template`, `jobTemplate`),
//! the members of a pod spec that hold images or pull credentials, and `metadata`. Which of them
//! count is decided afterwards, from the kind (`super::workload`). Everything else is walked
//! over, checked for repeated keys and dropped.

use super::strict::{record_members, List, Obj, Scalar};

/// An object on the way to a pod spec, or the pod spec itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// `metadata` (read on the object itself only).
    pub(crate) metadata: Obj<Metadata>,
    /// `spec`.
    pub(crate) spec: Obj<Box<Node>>,
    /// `template`.
    pub(crate) template: Obj<Box<Node>>,
    /// `jobTemplate`.
    pub(crate) job_template: Obj<Box<Node>>,
    /// `initContainers`.
    pub(crate) init_containers: List<Container>,
    /// `containers`.
    pub(crate) containers: List<Container>,
    /// `ephemeralContainers`.
    pub(crate) ephemeral_containers: List<Container>,
    /// `volumes`.
    pub(crate) volumes: List<Volume>,
    /// `imagePullSecrets` (only their `name` is read).
    pub(crate) image_pull_secrets: List<Container>,
    /// `serviceAccountName`.
    pub(crate) service_account_name: Scalar,
    /// `serviceAccount` (the deprecated spelling).
    pub(crate) service_account: Scalar,
}

impl Node {
    /// The member `key` on the way to a pod spec (`spec`, `template` or `jobTemplate`).
    pub(crate) fn child(&self, key: &str) -> &Obj<Box<Node>> {
        match key {
            "spec" => &self.spec,
            "template" => &self.template,
            "jobTemplate" => &self.job_template,
            _ => &Obj::Null,
        }
    }

    /// `metadata.deletionTimestamp` is set, to a string: the API server writes an RFC 3339
    /// time there and clears the field on create. Any other type is not a deletion, so an
    /// object cannot skip its review by putting `false` or `{}` there.
    pub(crate) fn is_being_deleted(&self) -> bool {
        self.metadata
            .as_object()
            .is_some_and(|m| m.deletion_timestamp.as_str().is_some())
    }

    /// The names of `imagePullSecrets` that are strings; entries of another shape are left out.
    pub(crate) fn image_pull_secret_names(&self) -> impl Iterator<Item = &str> {
        let items = match &self.image_pull_secrets {
            List::Array(items) => items.as_slice(),
            List::Null | List::Other => &[],
        };
        items
            .iter()
            .flatten()
            .filter_map(|secret| secret.name.as_str())
    }
}

record_members!(Node {
    "metadata" => metadata,
    "spec" => spec,
    "template" => template,
    "jobTemplate" => job_template,
    "initContainers" => init_containers,
    "containers" => containers,
    "ephemeralContainers" => ephemeral_containers,
    "volumes" => volumes,
    "imagePullSecrets" => image_pull_secrets,
    "serviceAccountName" => service_account_name,
    "serviceAccount" => service_account,
});

/// `metadata`: only whether the object is being deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// `deletionTimestamp`, whatever its type.
    pub(crate) deletion_timestamp: Scalar,
}

record_members!(Metadata {
    "deletionTimestamp" => deletion_timestamp,
});

/// A container (or anything else read by `name` and `image`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Container {
    /// `name`.
    pub(crate) name: Scalar,
    /// `image`.
    pub(crate) image: Scalar,
}

record_members!(Container {
    "name" => name,
    "image" => image,
});

/// A volume: its name and, for an image volume, the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Volume {
    /// `name`.
    pub(crate) name: Scalar,
    /// `image`: the image volume source.
    pub(crate) image: Obj<ImageSource>,
}

record_members!(Volume {
    "name" => name,
    "image" => image,
});

/// An image volume source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageSource {
    /// `reference`.
    pub(crate) reference: Scalar,
}

record_members!(ImageSource {
    "reference" => reference,
});
