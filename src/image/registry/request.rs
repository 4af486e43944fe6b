//! One registry request under the client's rules: a permit from the registry's concurrency
//! limit, a timeout cut to the caller's deadline, and bounded retries with backoff on 429 and
//! 5xx that never sleep past the deadline.

use std::future::Future;
use std::hash::BuildHasher as _;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{RegistryConfig, RegistryError, MAX_RETRY_BACKOFF};

/// What every request of one resolution shares.
pub(super) struct Rules<'a> {
    pub(super) config: &'a RegistryConfig,
    pub(super) registry: &'a str,
    pub(super) limit: &'a Semaphore,
    pub(super) started: Instant,
    pub(super) deadline: Instant,
}

impl Rules<'_> {
    /// Runs `op` until it succeeds, fails for good, or the retries or the deadline run out.
    /// Each call of `op` is one attempt; the last error is returned as it is.
    pub(super) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut retries = 0;
        loop {
            match self.once(what, op()).await {
                Err(err) if err.is_retryable() && retries < self.config.max_retries => {
                    let pause = backoff(self.config.retry_backoff, retries);
                    if Instant::now() + pause >= self.deadline {
                        return Err(err);
                    }
                    tracing::debug!(
                        registry = self.registry,
                        what,
                        retry = retries + 1,
                        ?pause,
                        "registry asked to retry"
                    );
                    tokio::time::sleep(pause).await;
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    async fn once<T>(
        &self,
        what: &str,
        attempt: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.timeout(what, None));
        }
        let Ok(permit) = tokio::time::timeout(remaining, self.limit.acquire()).await else {
            return Err(self.timeout(what, None));
        };
        // The semaphore is never closed; without a permit the request still runs.
        let _permit = permit.ok();

        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let limit = self.config.request_timeout.min(remaining);
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) if limit == self.config.request_timeout => Err(self.timeout(what, Some(limit))),
            Err(_) => Err(self.timeout(what, None)),
        }
    }

    /// A timeout error: `request` is the request timeout that ran out, `None` when it was the
    /// caller's deadline (then the time since the resolution began is reported).
    pub(super) fn timeout(&self, what: &str, request: Option<Duration>) -> RegistryError {
        RegistryError::Timeout {
            registry: self.registry.to_string(),
            what: what.to_string(),
            waited: request.unwrap_or_else(|| self.started.elapsed()),
        }
    }
}

/// `base` doubled per retry already made, at most [`MAX_RETRY_BACKOFF`], with up to half of it
/// taken off at random so that clients rejected together do not come back together.
fn backoff(base: Duration, retries: u32) -> Duration {
    let full = base
        .saturating_mul(2u32.saturating_pow(retries))
        .min(MAX_RETRY_BACKOFF);
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let permille = u32::try_from(random % 501).unwrap_or(0);
    full - full * permille / 1000
}

/// Why a capped read stopped.
#[derive(Debug)]
pub(super) enum CappedRead {
    /// More than the cap was declared or sent.
    TooLarge,
    /// The stream failed.
    Failed(std::io::Error),
}

/// Reads `stream` whole, refusing (as soon as it is known) anything over `cap` bytes: by the
/// declared length first, then by what actually arrives.
pub(super) async fn read_capped<S, B>(
    mut stream: S,
    declared: Option<u64>,
    cap: u64,
) -> Result<Vec<u8>, CappedRead>
where
    S: Stream<Item = Result<B, std::io::Error>> + Unpin,
    B: AsRef<[u8]>,
{
    if declared.is_some_and(|length| length > cap) {
        return Err(CappedRead::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CappedRead::Failed)?;
        let chunk = chunk.as_ref();
        if (body.len() as u64).saturating_add(chunk.len() as u64) > cap {
            return Err(CappedRead::TooLarge);
        }
        body.extend_from_slice(chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures_util::stream;

    use super::*;
    use oci_client::errors::OciDistributionError;

    fn rules<'a>(config: &'a RegistryConfig, limit: &'a Semaphore, budget: Duration) -> Rules<'a> {
        let now = Instant::now();
        Rules {
            config,
            registry: "127.0.0.1:5000",
            limit,
            started: now,
            deadline: now + budget,
        }
    }

    fn status(code: u16) -> RegistryError {
        RegistryError::ServerError {
            registry: "r".into(),
            status: code,
            source: OciDistributionError::ServerError {
                code,
                url: "u".into(),
                message: String::new(),
            },
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn server_errors_are_retried_a_bounded_number_of_times() {
        let config = RegistryConfig::default();
        let limit = Semaphore::new(1);
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = runtime().block_on(
            rules(&config, &limit, Duration::from_secs(60)).run("m", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(status(503))
            }),
        );
        assert!(matches!(
            result,
            Err(RegistryError::ServerError { status: 503, .. })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), config.max_retries + 1);
    }

    #[test]
    fn a_retry_that_would_end_past_the_deadline_is_not_made() {
        let config = RegistryConfig::default();
        let limit = Semaphore::new(1);
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = runtime().block_on(
            rules(&config, &limit, Duration::from_millis(50)).run("m", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(status(500))
            }),
        );
        assert!(result.is_err());
        // The first pause (200 ms, at least 100 ms after jitter) would end past the deadline.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_slow_answer_is_cut_at_the_deadline() {
        let config = RegistryConfig::default();
        let limit = Semaphore::new(1);
        let result: Result<(), _> = runtime().block_on(async {
            let r = rules(&config, &limit, Duration::from_millis(200));
            r.run("manifest x", || async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
            .await
        });
        let err = result.unwrap_err();
        assert!(
            matches!(&err, RegistryError::Timeout { waited, .. }
                if *waited >= Duration::from_millis(200) && *waited < Duration::from_secs(5)),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn backoff_doubles_is_capped_and_keeps_at_least_half() {
        let base = Duration::from_millis(200);
        for (retries, full) in [(0, 200), (1, 400), (2, 800), (5, 2000)] {
            let pause = backoff(base, retries);
            let full = Duration::from_millis(full);
            assert!(pause <= full && pause >= full / 2, "{retries}: {pause:?}");
        }
    }

    #[test]
    fn capped_reads_stop_at_the_cap() {
        let rt = runtime();
        let chunks = || {
            stream::iter(vec![
                Ok::<_, std::io::Error>(vec![1u8; 6]),
                Ok(vec![2u8; 6]),
            ])
        };
        assert_eq!(
            rt.block_on(read_capped(chunks(), None, 12)).unwrap().len(),
            12
        );
        assert!(matches!(
            rt.block_on(read_capped(chunks(), None, 11)),
            Err(CappedRead::TooLarge)
        ));
        // A declared length over the cap is refused before anything is read.
        assert!(matches!(
            rt.block_on(read_capped(chunks(), Some(100), 12)),
            Err(CappedRead::TooLarge)
        ));
        // A declared length that lies small does not help.
        assert!(matches!(
            rt.block_on(read_capped(chunks(), Some(1), 11)),
            Err(CappedRead::TooLarge)
        ));
        let failing = stream::iter(vec![Err::<Vec<u8>, _>(std::io::Error::other("reset"))]);
        assert!(matches!(
            rt.block_on(read_capped(failing, None, 12)),
            Err(CappedRead::Failed(_))
        ));
    }
}
