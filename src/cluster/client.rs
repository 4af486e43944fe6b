//! The Kubernetes client: from a kubeconfig file, from what kubectl would use, or from the
//! pod's own service account; with timeouts on every request.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{
    InClusterError, InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError,
};

/// Where the API server and the credentials for it come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// This kubeconfig file, at its current context.
    Kubeconfig(PathBuf),
    /// What kubectl uses: `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account.
    Infer,
    /// The pod's own service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
}

/// Why the Kubernetes API could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig file cannot be read or used.
    #[error("kubeconfig {} cannot be used", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error("no kubeconfig (KUBECONFIG, ~/.kube/config) and no in-cluster service account")]
    Infer(#[source] InferConfigError),
    /// The pod's service account cannot be used.
    #[error("the in-cluster service account cannot be used")]
    InCluster(#[source] InClusterError),
    /// The client cannot be built (TLS material of the kubeconfig).
    #[error("cannot set up the kubernetes client")]
    Client(#[source] kube::Error),
    /// A request failed: not reached, refused, or answered with an error status.
    #[error("the kubernetes api failed to {action}")]
    Api {
        /// What was asked, such as `list pods in team-a`.
        action: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// A request did not finish in time.
    #[error("the kubernetes api did not {action} in time")]
    Timeout {
        /// What was asked.
        action: String,
    },
    /// A namespace named on the command line does not exist (a typo must not read as "nothing
    /// would be denied").
    #[error("namespace {0} does not exist")]
    NoSuchNamespace(String),
}

impl ClusterError {
    /// Whether the API server was asked and could not be used (`audit` exits 3), as opposed to a
    /// local setup problem (a kubeconfig that cannot be read: exit 2).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Api { .. } | Self::Timeout { .. })
    }

    /// The error on one line: this level, then kube's message, which already carries its own
    /// causes (walking the chain further would print them twice). An API status is said as
    /// `HTTP 403 (Forbidden): message`.
    pub fn text(&self) -> String {
        let cause = match self {
            Self::Kubeconfig { source, .. } => source.to_string(),
            Self::Infer(source) => source.to_string(),
            Self::InCluster(source) => source.to_string(),
            Self::Client(source) | Self::Api { source, .. } => kube_text(source),
            Self::Timeout { .. } | Self::NoSuchNamespace(_) => return self.to_string(),
        };
        format!("{self}: {cause}")
    }
}

/// kube's error without its Debug dump of API statuses.
pub(super) fn kube_text(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!(
                "HTTP {} ({}): {}",
                status.code, status.reason, status.message
            )
        }
        other => other.to_string(),
    }
}

/// A client for the API server `source` names, whose requests time out after
/// `request_timeout` (connecting, sending, and each wait for the answer).
///
/// Needs a tokio runtime (the client runs a task of its own).
///
/// # Errors
/// [`ClusterError`] when the kubeconfig or service account cannot be used.
pub async fn connect(
    source: &ApiSource,
    request_timeout: Duration,
) -> Result<kube::Client, ClusterError> {
    crate::install_crypto_provider();
    let mut config = match source {
        ApiSource::Kubeconfig(path) => {
            let invalid = |source| ClusterError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(invalid)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(invalid)?
        }
        ApiSource::Infer => kube::Config::infer().await.map_err(ClusterError::Infer)?,
        ApiSource::InCluster => kube::Config::incluster().map_err(ClusterError::InCluster)?,
    };
    config.connect_timeout = Some(request_timeout);
    config.read_timeout = Some(request_timeout);
    config.write_timeout = Some(request_timeout);
    // The read timeout counts from the request, not from when a pooled connection went idle.
    config.reset_reader_on_write = true;
    tracing::debug!(server = %config.cluster_url, "kubernetes api client");
    kube::Client::try_from(config).map_err(ClusterError::Client)
}

/// Runs one API request with `action` named in its error, within `timeout`.
pub(super) async fn ask<T>(
    action: impl FnOnce() -> String,
    timeout: Duration,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(ClusterError::Api {
            action: action(),
            source,
        }),
        Err(_) => Err(ClusterError::Timeout { action: action() }),
    }
}
