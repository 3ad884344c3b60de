//! A run's first job, built in one place for the entry points that create runs and for the
//! orphaned-run reaper that repairs them.
//!
//! Creating a run is two writes: the run, then its first job. A creator that loses the database
//! between them (its process killed, its link cut) leaves a queued run that no worker will ever
//! take up. The reaper enqueues that job again under the very key its creator would have used,
//! so whichever of the two writes it last, there is one job; and a run whose first job ended
//! without taking it up can never start, so it times out.

use std::time::Duration;

use sv0_domain::{RunStatus, ScanRun};
use sv0_queue::{JobStatus, NewJob};

use crate::{Pipeline, Result, kinds, stage_runner};

/// How much longer than its budget an `execute_scan` attempt may hold its job: the connector
/// is killed at the budget, and the rest of the attempt is bookkeeping.
const SCAN_JOB_MARGIN: Duration = Duration::from_secs(60);

/// What [`Pipeline::restore_first_jobs`] found for one queued run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstJob {
    /// The job is there, queued or running: the run waits its turn.
    Waiting,
    /// The job was missing and has been enqueued now.
    Restored { kind: &'static str },
    /// The job ended without taking the run up: the run can never start.
    Ended {
        kind: &'static str,
        status: JobStatus,
    },
    /// The run has nothing to start from: an ingest whose graph was never recorded.
    Unbuildable,
}

/// The first job of `run`, as its creator enqueues it: a scan's `execute_scan` (under the run's
/// own dedup key when it has one, so that one (scope, slot) is one scan, whoever enqueues it), a
/// deploy gate's `rematerialize`, an ingest's `sync_ingestion`. None for an ingest without its
/// recorded graph.
pub(crate) fn first_job(run: &ScanRun) -> Option<(&'static str, NewJob)> {
    if run.scope_id.is_some() {
        let budget = Duration::from_secs(run.budget.max_runtime_seconds.max(0) as u64);
        let mut job = stage_runner::stage_job(&run.tenant_id, run.id, kinds::EXECUTE_SCAN)
            .timeout(budget + SCAN_JOB_MARGIN);
        if let Some(key) = &run.dedup_key {
            job = job.dedup_key(key.clone());
        }
        return Some((kinds::EXECUTE_SCAN, job));
    }
    let kind = if run.rematerialize.is_some() {
        kinds::REMATERIALIZE
    } else if run.sync_id.is_some() {
        kinds::SYNC_INGESTION
    } else {
        return None;
    };
    Some((kind, stage_runner::stage_job(&run.tenant_id, run.id, kind)))
}

impl Pipeline {
    /// Enqueues the first job of each of `runs` (queued runs) where it is missing, in one
    /// round trip, and says what it found for each, in order. Safe from any number of processes
    /// at once and against a creator still about to enqueue: the job's dedup key keeps it to one.
    pub async fn restore_first_jobs(&self, runs: &[ScanRun]) -> Result<Vec<FirstJob>> {
        let mut found = vec![FirstJob::Unbuildable; runs.len()];
        let mut jobs = Vec::new();
        let mut at = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            if let Some((kind, job)) = first_job(run) {
                jobs.push(job);
                at.push((i, kind));
            }
        }
        if jobs.is_empty() {
            return Ok(found);
        }
        let enqueued = self.queue.enqueue_many(jobs).await?;
        for ((i, kind), job) in at.into_iter().zip(enqueued) {
            found[i] = if job.created {
                FirstJob::Restored { kind }
            } else if job.status.is_final() {
                FirstJob::Ended {
                    kind,
                    status: job.status,
                }
            } else {
                FirstJob::Waiting
            };
        }
        Ok(found)
    }

    /// Times out `run` if it is still queued (no stage ever took it up), as
    /// [`Pipeline::time_out_run`] does; a run a stage has taken up since it was read is left
    /// alone. Returns whether this call timed it out.
    pub async fn time_out_unstarted_run(&self, run: &ScanRun, reason: &str) -> Result<bool> {
        self.stop_run(
            run,
            &[RunStatus::Queued],
            RunStatus::Timeout,
            &format!("timed out: {reason}"),
        )
        .await
    }
}
