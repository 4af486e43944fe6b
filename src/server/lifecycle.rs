//! The server's life: bind both listeners, serve with certificate reload, and on the shutdown
//! signal stop accepting, drain in-flight requests within the grace period, and return.

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::error::ServeError;
use super::health::{self, HealthState};
use super::metrics::Metrics;
use super::options::ServeOptions;
use super::reload;
use super::reviewer::Reviewer;
use super::tls::{TlsContents, TlsFiles};
use super::webhook::{self, WebhookState};
use crate::display_chain;

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay open before its first request arrives, and how long an
/// HTTP/1 request's headers may take.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The addresses the server actually listens on (the ports the OS picked for port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    /// The HTTPS webhook listener.
    pub webhook: SocketAddr,
    /// The plain-HTTP health and metrics listener.
    pub health: SocketAddr,
}

/// A server with its certificate loaded and its listeners bound, not yet serving.
#[derive(Debug)]
pub struct Server<R> {
    reviewer: Arc<R>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    webhook_listener: TcpListener,
    health_listener: TcpListener,
    tls: RustlsConfig,
    tls_files: TlsFiles,
    tls_digest: [u8; 32],
    addrs: LocalAddrs,
}

impl<R: Reviewer> Server<R> {
    /// Loads the certificate, key and client CA, and binds both listeners. Connections that
    /// arrive before [`run`](Self::run) wait in the listen backlog.
    ///
    /// # Errors
    /// The TLS files do not load (or the leaf has expired), or a listener cannot be bound.
    pub async fn bind(
        reviewer: Arc<R>,
        metrics: Arc<Metrics>,
        options: ServeOptions,
    ) -> Result<Self, ServeError> {
        crate::install_crypto_provider();
        let tls_files = TlsFiles {
            cert: options.cert_file.clone(),
            key: options.key_file.clone(),
            client_ca: options.client_ca_file.clone(),
        };
        let contents = TlsContents::read(&tls_files).await?;
        let loaded = contents.build(&tls_files)?;
        metrics.serving_certificate_expiry(loaded.not_after);

        let webhook_listener = listen(options.listen).await?;
        let health_listener = listen(options.health_listen).await?;
        let addrs = LocalAddrs {
            webhook: local_addr(&webhook_listener, options.listen)?,
            health: local_addr(&health_listener, options.health_listen)?,
        };
        tracing::info!(
            webhook = %addrs.webhook,
            health = %addrs.health,
            client_auth = options.client_ca_file.is_some(),
            cert_not_after = loaded.not_after,
            "listening"
        );

        Ok(Self {
            reviewer,
            metrics,
            options,
            webhook_listener,
            health_listener,
            tls: RustlsConfig::from_config(loaded.config),
            tls_files,
            tls_digest: contents.digest(),
            addrs,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// within the grace period (cutting off the rest), stops the health listener and returns.
    ///
    /// # Errors
    /// The webhook listener failed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Self {
            reviewer,
            metrics,
            options,
            webhook_listener,
            health_listener,
            tls,
            tls_files,
            tls_digest,
            addrs: _,
        } = self;
        let handle = Handle::<SocketAddr>::new();
        let shutting_down = Arc::new(AtomicBool::new(false));
        let grace = options.shutdown_grace;

        let _reloader = OwnedTask(tokio::spawn(reload::watch(
            tls_files,
            tls.clone(),
            Arc::clone(&metrics),
            options.reload_interval,
            tls_digest,
        )));
        let health = HealthTask::spawn(
            health_listener,
            HealthState {
                reviewer: Arc::clone(&reviewer),
                metrics: Arc::clone(&metrics),
                shutting_down: Arc::clone(&shutting_down),
            },
        );
        let _trigger = OwnedTask(tokio::spawn({
            let handle = handle.clone();
            async move {
                shutdown.await;
                shutting_down.store(true, Ordering::Relaxed);
                tracing::info!(grace_seconds = grace.as_secs_f64(), "shutting down");
                handle.graceful_shutdown(Some(grace));
            }
        }));

        let router = webhook::router(Arc::new(WebhookState {
            reviewer,
            metrics,
            max_body_bytes: options.max_body_bytes,
        }));
        let served = https_server(webhook_listener, tls, handle)?
            .serve(router.into_make_service())
            .await;

        health.stop(grace).await;
        served.map_err(ServeError::Webhook)?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The HTTPS server on `listener`: rustls with `tls` (swapped on reload), h2 and HTTP/1.1, the
/// handshake and first-request timeouts, shut down through `handle`.
fn https_server(
    listener: TcpListener,
    tls: RustlsConfig,
    handle: Handle<SocketAddr>,
) -> Result<axum_server::Server<SocketAddr, RustlsAcceptor>, ServeError> {
    let acceptor = RustlsAcceptor::new(tls).handshake_timeout(HANDSHAKE_TIMEOUT);
    let listener = listener.into_std().map_err(ServeError::Webhook)?;
    let mut https = axum_server::from_tcp(listener)
        .map_err(ServeError::Webhook)?
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(FIRST_REQUEST_TIMEOUT);
    https
        .http_builder()
        .http1()
        .header_read_timeout(FIRST_REQUEST_TIMEOUT);
    Ok(https)
}

/// The running health listener and the way to stop it.
struct HealthTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: OwnedTask,
}

impl HealthTask {
    /// Serves the probe routes on `listener` until [`stop`](Self::stop).
    fn spawn<R: Reviewer>(listener: TcpListener, state: HealthState<R>) -> Self {
        let router = health::router(Arc::new(state));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future()
                .await;
            if let Err(err) = served {
                tracing::error!(error = %display_chain(&err), "health listener failed");
            }
        });
        Self {
            stop,
            task: OwnedTask(task),
        }
    }

    /// Asks the health listener to finish its requests and waits up to `grace` for it.
    async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(grace, &mut self.task.0).await.is_err() {
            tracing::warn!("health listener did not stop within the grace period");
        }
    }
}

/// A spawned task owned by the server: aborted when the owner goes away, so a cancelled `run`
/// leaves nothing behind.
struct OwnedTask(JoinHandle<()>);

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })
}
