//! One job's run in a worker: a slot (in claim order), the start recorded, the handler under
//! `with_retry` and its time bound, raced against its cancellation token, then the outcome written
//! through the queue's fenced calls.
//!
//! The runtime stops polling a handler the moment its token fires (a lost lease, a cancel, the
//! time bound, the end of the drain's grace): its future is dropped, so no handler outlives its
//! bound, and the slot is free again. Work a handler spawned elsewhere is its own to stop (it is
//! given the same token). A panic in a handler is caught here and fails the attempt like any
//! error.
//!
//! It must not use `runtime`, which spawns these tasks: the claim loop depends on the job task,
//! never the other way, and what both need lives in `state`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use sv0_queue::{Claimed, Commit, FailOutcome, Failure, QueueError};
use tokio_util::sync::CancellationToken;

use crate::batcher::Batcher;
use crate::slots::Place;
use crate::state::{Inner, Phase, StopReason};
use crate::{HandlerError, JobContext, JobHandler, with_retry};

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
    pub(crate) phase: Arc<Phase>,
}

/// The batched holder writes a worker's job tasks share.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    pub(crate) completions: Batcher,
    pub(crate) starts: Batcher,
}

impl Writes {
    pub(crate) fn start(inner: &Inner) -> Writes {
        let queue = inner.queue.clone();
        let completions = Batcher::start(inner.config.completion_linger, move |jobs| {
            let queue = queue.clone();
            async move { queue.complete_many(&jobs.iter().collect::<Vec<_>>()).await }
        });
        let queue = inner.queue.clone();
        let starts = Batcher::start(Duration::ZERO, move |jobs| {
            let queue = queue.clone();
            async move { queue.record_starts(&jobs.iter().collect::<Vec<_>>()).await }
        });
        Writes {
            completions,
            starts,
        }
    }
}

/// How a started handler ended, when it was not stopped.
enum Ran {
    Returned(Result<(), HandlerError>),
    Panicked(String),
}

impl Inner {
    pub(crate) async fn run_job(self: &Arc<Self>, run: Run, writes: Writes) {
        let Run {
            mut job,
            place,
            cancel,
            stop,
            phase,
        } = run;
        let Some(handler) = self.handlers.get(job.kind()) else {
            // Claims only ask for registered kinds; a missing handler is a bug, not a job error.
            tracing::error!(kind = job.kind(), "no handler for a claimed kind");
            return;
        };
        // A job stopped while it waits for a slot never runs: the stop's reason decides below.
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            slot = place.slot() => Some(slot),
        };
        let ran = match slot {
            // A job given back meanwhile has lost the race to start: its handler is never polled.
            Some(_slot) if !cancel.is_cancelled() && phase.start() => {
                self.run_started(&mut job, handler.as_ref(), &cancel, &stop, &writes)
                    .await
                // The slot is free for the next job while this one's outcome is written.
            }
            _ => None,
        };
        let job_id = job.lease.job_id.to_hex();
        let kind = job.kind().to_string();
        match (ran, stop.get().copied()) {
            (Some(Ran::Returned(Ok(()))), _) => {
                let commit = self
                    .persist("complete", || {
                        let completions = writes.completions.clone();
                        let job = job.clone();
                        async move { completions.write(job).await.map_err(Retry) }
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
            (Some(Ran::Returned(Err(error))), _) => {
                let failure = match &error {
                    HandlerError::Transient(_) => Failure::Retryable,
                    HandlerError::Permanent(_) => Failure::Permanent,
                };
                self.fail(&job, &error.to_string(), failure).await;
            }
            (Some(Ran::Panicked(message)), _) => {
                self.metrics.panicked(&kind);
                tracing::error!(job_id, kind, panic = %message, "handler panicked");
                self.fail(
                    &job,
                    &format!("handler panicked: {message}"),
                    Failure::Retryable,
                )
                .await;
            }
            (None, Some(StopReason::TimedOut)) => {
                let bound = self.time_bound(&job).unwrap_or_default();
                self.metrics.timed_out(&kind);
                self.fail(
                    &job,
                    &format!("timed out after {} ms", bound.as_millis()),
                    Failure::Retryable,
                )
                .await;
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
                tracing::debug!(job_id, kind, "job given back unrun");
            }
            (None, Some(StopReason::Shutdown)) => {
                let released = self
                    .persist("release", || {
                        let queue = self.queue.clone();
                        let job = job.clone();
                        async move { queue.release_started(&job).await.map_err(Retry::from) }
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

    /// Runs a job that has its slot: records its start, then runs the handler until it returns,
    /// panics, is stopped, or passes its time bound. `None` means it was stopped; the stop's
    /// reason says why.
    async fn run_started(
        &self,
        job: &mut Claimed,
        handler: &dyn JobHandler,
        cancel: &CancellationToken,
        stop: &OnceLock<StopReason>,
        writes: &Writes,
    ) -> Option<Ran> {
        // The duration histogram measures the run, not the wait for a slot.
        job.claimed_at = Instant::now();
        let ran_before = job.job.claims > 1;
        if ran_before {
            // This job may have killed the worker that ran it last: its attempt is on record
            // before its handler runs, so that such a job reaches `dead` at last.
            let recorded = self
                .persist("start", || {
                    let starts = writes.starts.clone();
                    let job = job.clone();
                    async move { starts.write(job).await.map_err(Retry) }
                })
                .await;
            if recorded != Some(Commit::Committed) {
                let _ = stop.set(StopReason::LeaseLost);
                return None;
            }
        }
        let context = JobContext {
            job: job.clone(),
            cancel: cancel.clone(),
            worker_id: self.id.clone(),
        };
        let bound = self.time_bound(job);
        let mut handler_run =
            pin!(AssertUnwindSafe(with_retry(cancel, || handler.run(&context))).catch_unwind());
        let mut deadline = pin!(tokio::time::sleep(bound.unwrap_or(Duration::MAX)));
        let mut record_start = pin!(tokio::time::sleep(self.config.start_linger));
        let mut start_recorded = ran_before;
        let ran = loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break None,
                result = &mut handler_run => break Some(match result {
                    Ok(returned) => Ran::Returned(returned),
                    Err(panic) => Ran::Panicked(panic_message(panic.as_ref())),
                }),
                _ = &mut deadline, if bound.is_some() => {
                    let _ = stop.set(StopReason::TimedOut);
                    cancel.cancel();
                    break None;
                }
                // A first run that is still going records its start; one that ends sooner
                // records it with its outcome (the completion or failure sets the attempt).
                _ = &mut record_start, if !start_recorded => {
                    start_recorded = true;
                    writes.starts.send(job.clone());
                }
            }
        };
        self.claim_ahead
            .record(job.kind(), job.claimed_at.elapsed());
        // A handler that returns as its token fires (as it should) was stopped, whatever it
        // returned: the stop's reason decides what is written.
        ran.filter(|_| !cancel.is_cancelled())
    }

    /// The job's own timeout, else its kind's, if either is set.
    fn time_bound(&self, job: &Claimed) -> Option<Duration> {
        job.timeout()
            .or_else(|| self.config.kind_timeouts.get(job.kind()).copied())
    }

    /// Records a failed attempt and logs where the job went.
    async fn fail(&self, job: &Claimed, message: &str, failure: Failure) {
        let outcome = self
            .persist("fail", || {
                let queue = self.queue.clone();
                let job = job.clone();
                let message = message.to_string();
                async move {
                    queue
                        .fail(&job, &message, failure)
                        .await
                        .map_err(Retry::from)
                }
            })
            .await;
        let job_id = job.lease.job_id.to_hex();
        let kind = job.kind();
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

/// A panic's message, as `panic!` formatted it.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
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
