//! The process's shutdown trigger: SIGTERM (what the kubelet sends) or SIGINT (ctrl-c).

/// Resolves when the process receives SIGTERM or SIGINT. If no signal handler can be installed
/// it logs why and never resolves, rather than shutting down at once.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};

        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {
                        tracing::info!(signal = "SIGTERM", "shutdown signal received");
                        return;
                    }
                    interrupted = tokio::signal::ctrl_c() => match interrupted {
                        Ok(()) => {
                            tracing::info!(signal = "SIGINT", "shutdown signal received");
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot listen for SIGINT");
                            // SIGTERM still works.
                            terminate.recv().await;
                            tracing::info!(signal = "SIGTERM", "shutdown signal received");
                            return;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot listen for SIGTERM"),
        }
    }

    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!(signal = "SIGINT", "shutdown signal received"),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGINT; only a kill stops the server");
            std::future::pending::<()>().await;
        }
    }
}
