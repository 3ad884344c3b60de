//! `with_retry`: a handler's transient failures are retried in place, at most three times, after
//! fixed 1 s, 2 s and 4 s pauses. Anything else ends the attempt at once. No jitter and no
//! adaptive backoff, on purpose: the schedule is predictable.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::HandlerError;

pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Runs `attempt` until it succeeds, fails permanently, or has failed transiently four times
/// (the first run and three retries). A cancelled token ends the wait with the last error.
pub async fn with_retry<T, F, Fut>(
    cancel: &CancellationToken,
    mut attempt: F,
) -> Result<T, HandlerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HandlerError>>,
{
    for delay in RETRY_DELAYS {
        match attempt().await {
            Err(HandlerError::Transient(error)) => {
                tracing::warn!(error = %error, retry_in = ?delay, "transient failure, retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Err(HandlerError::Transient(error)),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            done => return done,
        }
    }
    attempt().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    async fn run(fail_first: u32, permanent: bool) -> (Result<u32, HandlerError>, Vec<u64>) {
        let calls = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let result = with_retry(&CancellationToken::new(), || {
            let calls = calls.clone();
            let times = times.clone();
            async move {
                times.lock().unwrap().push(started.elapsed().as_secs());
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n <= fail_first {
                    if permanent {
                        return Err(HandlerError::permanent(anyhow::anyhow!("bad")));
                    }
                    return Err(HandlerError::transient(anyhow::anyhow!("flaky {n}")));
                }
                Ok(n)
            }
        })
        .await;
        let times = times.lock().unwrap().clone();
        (result, times)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_after_1_2_and_4_seconds() {
        let (result, times) = run(3, false).await;
        assert_eq!(result.unwrap(), 4);
        assert_eq!(times, vec![0, 1, 3, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fourth_transient_failure_is_returned() {
        let (result, times) = run(10, false).await;
        assert!(matches!(result, Err(HandlerError::Transient(_))));
        assert_eq!(times, vec![0, 1, 3, 7], "four runs, three retries");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let (result, times) = run(10, true).await;
        assert!(matches!(result, Err(HandlerError::Permanent(_))));
        assert_eq!(times, vec![0]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = with_retry(&cancel, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(HandlerError::transient(anyhow::anyhow!("flaky"))) }
        })
        .await;
        assert!(matches!(result, Err(HandlerError::Transient(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
