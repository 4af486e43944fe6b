//! `attestgate serve --config FILE`: the admission webhook over HTTPS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::{printable, EXIT_PASSED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::cluster::certificates::{error_text, SelfManaged};
use crate::cluster::namespaces::NamespaceModes;
use crate::cluster::{connect, ApiSource};
use crate::config::{KubernetesSettings, SelfManagedCertificates};
use crate::server::{shutdown_signal, Metrics, ServeOptions, Server, DEFAULT_MAX_BODY_BYTES};
use crate::webhook::Webhook;

/// Flags of `attestgate serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (policies, trust, exceptions, registry, server addresses and the
    /// serving certificate files).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = super::LogFormat::Json)]
    pub(super) log_format: super::LogFormat,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

/// Runs the server until SIGTERM or SIGINT; returns the exit code.
pub(super) fn run(args: ServeArgs) -> u8 {
    crate::install_crypto_provider();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        builder.worker_threads(workers.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("attestgate: cannot start the runtime: {e}");
            return EXIT_USAGE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> u8 {
    let metrics = Arc::new(Metrics::new());
    let webhook = {
        let metrics = metrics.clone();
        let path = args.config.clone();
        match tokio::task::spawn_blocking(move || Webhook::new(&path, metrics)).await {
            Ok(w) => Arc::new(w),
            Err(e) => {
                eprintln!("attestgate: loading the config failed: {e}");
                return EXIT_USAGE;
            }
        }
    };
    let Some(decider) = webhook.decider() else {
        // Without a config there are no addresses or certificate to serve with; exiting makes
        // the failure visible (CrashLoopBackOff with this message) instead of a silent replica.
        let problem = webhook.problem().unwrap_or_default();
        tracing::error!(error = %problem, "the config did not load; not serving");
        eprintln!("attestgate: {}", printable(&problem));
        return EXIT_USAGE;
    };
    let settings = decider.config().server.clone();
    let (Some(cert_file), Some(key_file)) = (settings.cert_file, settings.key_file) else {
        eprintln!(
            "attestgate: {}: server.certFile and server.keyFile are needed to serve",
            webhook.config_path().display()
        );
        return EXIT_USAGE;
    };
    // Self-managed certificates: the files are written before the server reads them.
    let certificates = match &settings.self_managed_certificates {
        Some(managed) => {
            let kubernetes = &decider.config().kubernetes;
            match self_managed(managed, kubernetes, &cert_file, &key_file).await {
                Ok(task) => Some(task),
                Err(message) => {
                    tracing::error!(error = %message, "self-managed certificates failed; not serving");
                    eprintln!("attestgate: {}", printable(&message));
                    return EXIT_UNREACHABLE;
                }
            }
        }
        None => None,
    };
    let options = ServeOptions {
        listen: settings.listen,
        health_listen: settings.health_listen,
        cert_file,
        key_file,
        client_ca_file: settings.client_ca_file,
        reload_interval: settings.reload_interval,
        shutdown_grace: settings.shutdown_grace,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
    };
    let kubernetes = decider.config().kubernetes.clone();
    let server = match Server::bind(webhook.clone(), metrics.clone(), options).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(task) = &certificates {
                task.abort();
            }
            let message = crate::display_chain(&e);
            tracing::error!(error = %message, "cannot serve");
            eprintln!("attestgate: {}", printable(&message));
            return EXIT_UNREACHABLE;
        }
    };
    let addrs = server.local_addrs();
    tracing::info!(
        webhook = %addrs.webhook,
        health = %addrs.health,
        config = %webhook.config_path().display(),
        "serving"
    );
    let watcher = tokio::spawn(webhook.clone().watch(settings.reload_interval));
    let namespace_modes = count_namespace_modes(&kubernetes, metrics);
    let outcome = server.run(shutdown_signal()).await;
    watcher.abort();
    if let Some(task) = namespace_modes {
        task.abort();
    }
    if let Some(task) = certificates {
        task.abort();
    }
    match outcome {
        Ok(()) => {
            tracing::info!("stopped");
            EXIT_PASSED
        }
        Err(e) => {
            let message = crate::display_chain(&e);
            tracing::error!(error = %message, "the server failed");
            eprintln!("attestgate: {}", printable(&message));
            EXIT_UNREACHABLE
        }
    }
}

/// Makes or reads the self-managed certificates once (their files written, the webhook
/// configuration's caBundle set), then starts the task that renews them; the error is a
/// printable message.
async fn self_managed(
    managed: &SelfManagedCertificates,
    kubernetes: &KubernetesSettings,
    cert_file: &Path,
    key_file: &Path,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let client = connect(&api_source(kubernetes), kubernetes.request_timeout)
        .await
        .map_err(|e| e.text())?;
    let certificates = SelfManaged::new(
        client,
        managed.clone(),
        cert_file.to_owned(),
        key_file.to_owned(),
        kubernetes.request_timeout,
    );
    let done = certificates
        .reconcile()
        .await
        .map_err(|e| format!("self-managed certificates: {}", error_text(&e)))?;
    certificates.log(&done);
    Ok(tokio::spawn(certificates.run()))
}

/// Where the server reaches the API: never inferred, but the kubeconfig the config names, else
/// the pod's own service account.
fn api_source(kubernetes: &KubernetesSettings) -> ApiSource {
    match &kubernetes.kubeconfig {
        Some(path) => ApiSource::Kubeconfig(path.clone()),
        None => ApiSource::InCluster,
    }
}

/// Starts the count of namespaces by mode label (`kubernetes.namespaceModes`) into `metrics`,
/// when it is on. It runs beside the server and never holds it up: it connects on its own
/// first round, and a failure only marks the figures as older.
fn count_namespace_modes(
    kubernetes: &KubernetesSettings,
    metrics: Arc<Metrics>,
) -> Option<tokio::task::JoinHandle<()>> {
    let settings = kubernetes.namespace_modes?;
    tracing::info!(
        interval_ms = u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX),
        "counting namespaces by mode label"
    );
    let counter = NamespaceModes::new(
        api_source(kubernetes),
        settings.interval,
        kubernetes.request_timeout,
    );
    Some(tokio::spawn(counter.run(move |outcome| match outcome {
        Ok(census) => metrics.namespace_modes(&census.counts()),
        Err(_) => metrics.namespace_modes_failed(),
    })))
}
