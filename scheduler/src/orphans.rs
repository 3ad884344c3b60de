//! The orphaned-run reaper (ADR-027): a `running` run that no stage has taken up for longer
//! than its budget (`last_claimed_at` + `budget.max_runtime_seconds`) has lost its worker or its
//! jobs; it becomes `timeout`, its `__driver__` cell says why, and its remaining jobs are
//! cancelled. A long run inside its budget is left alone. The same pass prunes old slot
//! outcomes. Safe in every replica at once: finishing a run is conditional on it still running.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::DateTime;
use sv0_domain::Result;
use sv0_pipeline::Pipeline;
use tokio_util::sync::CancellationToken;

use crate::{SchedulerMetrics, SlotLog};

pub struct OrphanReaper {
    pipeline: Arc<Pipeline>,
    slot_log: SlotLog,
    metrics: SchedulerMetrics,
    every: Duration,
    /// How long slot outcomes are kept.
    slot_log_retention: Duration,
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
        }
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
        let mut timed_out = 0;
        for run in self.pipeline.domain.orphaned_runs(now).await? {
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
}
