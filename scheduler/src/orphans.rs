//! The orphaned-run reaper: a `running` run that no stage has taken up for longer than its budget
//! (`last_claimed_at` + `budget.max_runtime_seconds`) has lost its worker or its jobs; it becomes
//! `timeout`, its `__driver__` cell says why, and its remaining jobs are cancelled. A long run
//! inside its budget is left alone.
//!
//! It also checks every `queued` run once it is older than the first-job grace, and again every
//! [`FIRST_JOB_RECHECK`] while it waits: a creator that lost the database between writing the
//! run and enqueuing its first job left a run nothing would ever start, and gets that job
//! enqueued; a run whose first job ended without taking it up (cancelled on its own, dead)
//! times out. The same pass prunes old slot outcomes. Safe in every replica at once: finishing a
//! run is conditional on its status, and the first job's dedup key keeps it to one.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::DateTime;
use sv0_pipeline::Result;
use sv0_pipeline::{FirstJob, Pipeline};
use tokio_util::sync::CancellationToken;

use crate::{SchedulerMetrics, SlotLog};

/// How old a queued run must be before the reaper checks its first job: longer than its creator
/// takes between the two writes, so that the reaper rarely races a live creator (a race is
/// harmless, as the job's dedup key keeps it to one).
pub const FIRST_JOB_GRACE: Duration = Duration::from_secs(60);

/// How long after a check a queued run is checked again: a first job only ends without taking
/// its run up by an operator's hand or a defect, so an hour is soon enough, and a backlog of
/// waiting runs costs one batched check per run per hour.
pub const FIRST_JOB_RECHECK: Duration = Duration::from_secs(3600);

/// Queued runs checked per round trip.
const FIRST_JOB_BATCH: i64 = 500;

pub struct OrphanReaper {
    pipeline: Arc<Pipeline>,
    slot_log: SlotLog,
    metrics: SchedulerMetrics,
    every: Duration,
    /// How long slot outcomes are kept.
    slot_log_retention: Duration,
    first_job_grace: Duration,
}

impl OrphanReaper {
    pub fn new(
        pipeline: Arc<Pipeline>,
        slot_log: SlotLog,
        metrics: SchedulerMetrics,
        every: Duration,
        slot_log_retention: Duration,
    ) -> OrphanReaper {
        OrphanReaper {
            pipeline,
            slot_log,
            metrics,
            every,
            slot_log_retention,
            first_job_grace: FIRST_JOB_GRACE,
        }
    }

    /// How old a queued run must be before its first job is checked (default
    /// [`FIRST_JOB_GRACE`]).
    pub fn first_job_grace(mut self, grace: Duration) -> OrphanReaper {
        self.first_job_grace = grace;
        self
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.pass(DateTime::now()).await {
                tracing::warn!(%error, "orphaned-run reaper pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }

    /// One pass at `now`; returns how many runs it timed out.
    pub async fn pass(&self, now: DateTime) -> Result<u64> {
        let mut timed_out = self.check_first_jobs(now).await?;
        for run in self.pipeline.domain().orphaned_runs(now).await? {
            let idle_s = run.last_claimed_at.map_or(0, |at| {
                (now.timestamp_millis() - at.timestamp_millis()) / 1000
            });
            let reason = format!(
                "no stage took the run up for {idle_s} s, past its budget of {} s (its worker \
                 is gone or its jobs died)",
                run.budget.max_runtime_seconds
            );
            if self.pipeline.time_out_run(&run, &reason).await? {
                timed_out += 1;
                self.metrics.runs_timed_out.inc();
                tracing::warn!(run_id = %run.id, tenant_id = %run.tenant_id, idle_s,
                    budget_s = run.budget.max_runtime_seconds, "orphaned run timed out");
            }
        }
        let retention_ms = self.slot_log_retention.as_millis() as i64;
        self.slot_log
            .prune(DateTime::from_millis(now.timestamp_millis() - retention_ms))
            .await?;
        Ok(timed_out)
    }

    /// Checks the first job of every queued run that is due a check: enqueues a missing one,
    /// times out a run whose job ended without taking it up. Returns how many runs it timed out.
    async fn check_first_jobs(&self, now: DateTime) -> Result<u64> {
        let ago =
            |d: Duration| DateTime::from_millis(now.timestamp_millis() - d.as_millis() as i64);
        let mut timed_out = 0;
        loop {
            let runs = self
                .pipeline
                .domain()
                .queued_runs_to_check(
                    ago(self.first_job_grace),
                    ago(FIRST_JOB_RECHECK),
                    FIRST_JOB_BATCH,
                )
                .await?;
            let found = self.pipeline.restore_first_jobs(&runs).await?;
            let mut confirmed = Vec::new();
            for (run, found) in runs.iter().zip(found) {
                let reason = match found {
                    FirstJob::Waiting => {
                        confirmed.push(run.id);
                        continue;
                    }
                    FirstJob::Restored { kind } => {
                        self.metrics.first_jobs_restored.inc();
                        tracing::warn!(run_id = %run.id, tenant_id = %run.tenant_id, kind,
                            "queued run had no first job (its creator lost the database \
                             between the two writes); enqueued it");
                        confirmed.push(run.id);
                        continue;
                    }
                    FirstJob::Ended { kind, status } => format!(
                        "its first job ({kind}) ended {} without taking the run up",
                        status.as_str()
                    ),
                    FirstJob::Unbuildable => "it has nothing to start from (an ingest whose \
                        graph was never recorded: its request lost the database)"
                        .to_string(),
                };
                if self.pipeline.time_out_unstarted_run(run, &reason).await? {
                    timed_out += 1;
                    self.metrics.runs_timed_out.inc();
                    tracing::warn!(run_id = %run.id, tenant_id = %run.tenant_id, %reason,
                        "queued run that can never start timed out");
                }
            }
            self.pipeline
                .domain()
                .confirm_first_jobs(&confirmed, now)
                .await?;
            if (runs.len() as i64) < FIRST_JOB_BATCH {
                return Ok(timed_out);
            }
        }
    }
}
