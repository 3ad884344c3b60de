//! Built-in diagnostic job kinds, served by `sv0 worker --diagnostics`: operators use them to
//! probe the queue end to end, the benchmarks to measure it, and the tests to drive real worker
//! processes.
//!
//! - `noop`: returns at once.
//! - `probe`: records each run in the `probe_runs` collection (job id, worker, attempt), waits
//!   `sleep_ms` (honouring cancellation), then ends as `outcome` says: `ok` (default), `transient`,
//!   `permanent`, `panic` (the handler panics with the message `probe asked for a panic`), or
//!   `abort` (the whole worker process aborts, as a poison job that crashes its worker would).
//!   With `fail_runs: N` its first N runs of a job fail transiently.

use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};

use crate::{HandlerError, HandlerSet, JobContext, JobHandler};

pub const NOOP: &str = "noop";
pub const PROBE: &str = "probe";
pub const PROBE_RUNS: &str = "probe_runs";

/// Both diagnostic kinds, the probe writing to `db`.
pub fn handlers(db: &Database) -> HandlerSet {
    let mut set = HandlerSet::new();
    set.register(NOOP, Noop)
        .register(PROBE, Probe { db: db.clone() });
    set
}

struct Noop;

#[async_trait::async_trait]
impl JobHandler for Noop {
    async fn run(&self, _job: &JobContext) -> Result<(), HandlerError> {
        Ok(())
    }
}

struct Probe {
    db: Database,
}

#[async_trait::async_trait]
impl JobHandler for Probe {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError> {
        let runs = self.db.collection::<Document>(PROBE_RUNS);
        runs.insert_one(doc! {
            "job_id": job.job_id(),
            "worker": &job.worker_id,
            "attempt": job.attempt(),
            "at": DateTime::now(),
        })
        .await?;
        let payload = job.payload();
        let sleep_ms = payload
            .get_i64("sleep_ms")
            .or_else(|_| payload.get_i32("sleep_ms").map(i64::from));
        if let Ok(ms) = sleep_ms {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)) => {}
                _ = job.cancel.cancelled() => return Ok(()),
            }
        }
        if let Ok(fail_runs) = payload.get_i32("fail_runs") {
            let so_far = runs.count_documents(doc! {"job_id": job.job_id()}).await?;
            if so_far <= fail_runs as u64 {
                return Err(HandlerError::transient(anyhow::anyhow!(
                    "probe run {so_far} of {fail_runs} failing"
                )));
            }
        }
        match payload.get_str("outcome").unwrap_or("ok") {
            "ok" => Ok(()),
            "transient" => Err(HandlerError::transient(anyhow::anyhow!(
                "probe asked for a transient failure"
            ))),
            "permanent" => Err(HandlerError::permanent(anyhow::anyhow!(
                "probe asked for a permanent failure"
            ))),
            "panic" => panic!("probe asked for a panic"),
            "abort" => {
                tracing::error!(job_id = %job.job_id(), "probe asked for an abort");
                std::process::abort()
            }
            other => Err(HandlerError::permanent(anyhow::anyhow!(
                "probe: unknown outcome {other:?}"
            ))),
        }
    }
}
