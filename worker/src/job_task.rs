//! One job's run in a worker: a slot (in claim order), the handler under `with_retry`, raced
//! against its cancellation token, then the outcome written through the queue's fenced calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sv0_queue::{Claimed, Commit, FailOutcome, Failure, QueueError};
use tokio_util::sync::CancellationToken;

use crate::completions::Completions;
use crate::runtime::{Inner, StopReason};
use crate::slots::Place;
use crate::{HandlerError, JobContext, with_retry};

/// How long an outcome write keeps retrying a database that is away. Past the lease's life the
/// write would be fenced out anyway, and the job runs again elsewhere.
fn write_deadline(inner: &Inner) -> Duration {
    inner.config.lease_ttl
}

/// A claimed job, its place in line for a slot, and what can stop it.
pub(crate) struct Run {
    pub(crate) job: Claimed,
    pub(crate) place: Place,
    pub(crate) cancel: CancellationToken,
    pub(crate) stop: Arc<OnceLock<StopReason>>,
    /// Set once the job has its slot.
    pub(crate) started: Arc<AtomicBool>,
}

impl Inner {
    pub(crate) async fn run_job(self: &Arc<Self>, run: Run, completions: Completions) {
        let Run {
            mut job,
            place,
            cancel,
            stop,
            started,
        } = run;
        let Some(handler) = self.handlers.get(job.kind()) else {
            // Claims only ask for registered kinds; a missing handler is a bug, not a job error.
            tracing::error!(kind = job.kind(), "no handler for a claimed kind");
            return;
        };
        let context = JobContext {
            job: job.clone(),
            cancel: cancel.clone(),
            worker_id: self.id.clone(),
        };
        // A job stopped while it waits for a slot never runs: the stop's reason decides below.
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            slot = place.slot() => Some(slot),
        };
        let outcome = match slot {
            None => None,
            Some(_slot) => {
                started.store(true, Ordering::Release);
                // The duration histogram measures the run, not the wait for a slot.
                job.claimed_at = Instant::now();
                let outcome = tokio::select! {
                    result = with_retry(&cancel, || handler.run(&context)) => Some(result),
                    _ = cancel.cancelled() => None,
                };
                self.claim_ahead.record(job.claimed_at.elapsed());
                // The slot is free for the next job while this one's outcome is written.
                outcome
            }
        };
        // A handler that returns as its token fires (as it should) was stopped, whatever it
        // returned: the stop's reason decides what is written.
        let outcome = outcome.filter(|_| !cancel.is_cancelled());
        let job_id = job.lease.job_id.to_hex();
        let kind = job.kind().to_string();
        let reason = stop.get().copied();
        match (outcome, reason) {
            (Some(Ok(())), _) => {
                let commit = self
                    .persist("complete", || {
                        let completions = completions.clone();
                        let job = job.clone();
                        async move { completions.complete(job).await.map_err(Retry) }
                    })
                    .await;
                match commit {
                    // One line per job is the busiest line a worker writes: debug, so that it is opt-in.
                    Some(Commit::Committed) => tracing::debug!(job_id, kind, "job committed"),
                    Some(Commit::LeaseLost) => {
                        tracing::warn!(job_id, kind, during = "complete", "lease lost")
                    }
                    None => {}
                }
            }
            (Some(Err(error)), _) => {
                let failure = match &error {
                    HandlerError::Transient(_) => Failure::Retryable,
                    HandlerError::Permanent(_) => Failure::Permanent,
                };
                let message = error.to_string();
                let outcome = self
                    .persist("fail", || {
                        let queue = self.queue.clone();
                        let job = job.clone();
                        let message = message.clone();
                        async move {
                            queue
                                .fail(&job, &message, failure)
                                .await
                                .map_err(Retry::from)
                        }
                    })
                    .await;
                match outcome {
                    Some(FailOutcome::LeaseLost) => {
                        tracing::warn!(job_id, kind, during = "fail", "lease lost")
                    }
                    Some(outcome) => {
                        tracing::info!(job_id, kind, ?outcome, error = %message, "job failed")
                    }
                    None => {}
                }
            }
            (None, Some(StopReason::LeaseLost) | None) => {
                tracing::warn!(job_id, kind, "work abandoned: the lease was lost");
            }
            (None, Some(StopReason::CancelRequested)) => {
                let done = self
                    .persist("cancel", || {
                        let queue = self.queue.clone();
                        let job = job.clone();
                        async move { queue.finish_cancelled(&job).await.map_err(Retry::from) }
                    })
                    .await;
                tracing::info!(job_id, kind, ?done, "job cancelled on request");
            }
            (None, Some(StopReason::GivenBack)) => {
                tracing::debug!(job_id, kind, "job given back unrun on shutdown");
            }
            (None, Some(StopReason::Shutdown)) => {
                let released = self
                    .persist("release", || {
                        let queue = self.queue.clone();
                        let lease = job.lease.clone();
                        async move { queue.release(&[&lease]).await.map_err(Retry::from) }
                    })
                    .await;
                tracing::info!(
                    job_id,
                    kind,
                    released = released.unwrap_or(0),
                    "job released on shutdown"
                );
            }
        }
    }

    /// Retries an outcome write while the database is away, up to the write deadline.
    async fn persist<T, F, Fut>(&self, what: &'static str, mut write: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Retry>>,
    {
        let deadline = tokio::time::Instant::now() + write_deadline(self);
        let mut pause = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(value) => return Some(value),
                Err(Retry(error)) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(what, %error, "outcome write failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(Retry(error)) => {
                    tracing::error!(what, %error, "outcome write failed; the lease will expire and the job run again");
                    return None;
                }
            }
        }
    }
}

/// A failed outcome write, as text: the write is retried whatever the cause, since a permanent
/// storage error would fail again and the deadline ends it.
struct Retry(String);

impl From<QueueError> for Retry {
    fn from(error: QueueError) -> Retry {
        Retry(error.to_string())
    }
}
