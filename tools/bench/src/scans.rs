//! Scans per minute by worker processes: a batch of demo scans, queued at once, taken up by 1, 2
//! and 4 `sv0 worker` processes (each at its defaults: every pipeline kind, 16 slots). Each
//! worker count gets a fresh database and the same batch: one tenant per scope, because every
//! stage after the sync works on its tenant's whole inventory, so scopes of one tenant would
//! share their entities and findings; separate tenants are separate customers. The clock runs
//! from the first worker ready to the last run's `finished_at`; each stage's time is the median
//! over the batch's runs of what its cell (for the scan, its job) says.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Result, bail};
use mongodb::Database;
use serde::Serialize;
use sv0_domain::RunStatus;

use crate::measure::{self, Throughput};
use crate::pipeline::{self, Demo, STAGES};
use crate::procs;

pub const WORKERS: [usize; 3] = [1, 2, 4];
/// `sv0 worker`'s default concurrency, which these workers run at.
pub const WORKER_SLOTS: usize = 16;
/// Entities per cloud in every scope (two clouds): the graph of "A scan, stage by stage", so each
/// stage here compares with that scan alone. At the demo's 200 a batch was over in half a
/// second, too short a span to measure a rate over.
pub const SIZE_PER_CLOUD: i64 = pipeline::SIZE_PER_CLOUD;

/// One batch scanned by `workers` processes.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerScans {
    pub workers: usize,
    /// Runs that succeeded (every one must), over the clock's span.
    pub scans: Throughput,
    /// Each stage's median time over the runs, in seconds, in the stages' order.
    pub stage_medians: Vec<(&'static str, f64)>,
}

impl WorkerScans {
    pub fn per_minute(&self) -> f64 {
        60.0 * self.scans.per_second()
    }
}

/// Scans a batch of `scopes` demo scopes with each worker count in turn, on `db`.
pub async fn by_workers(
    sv0: &Path,
    uri: &str,
    db: &Database,
    scopes: usize,
) -> Result<Vec<WorkerScans>> {
    let mut results = Vec::new();
    for workers in WORKERS {
        let result = batch(sv0, uri, db, scopes, workers).await?;
        eprintln!(
            "[scans] {workers} worker(s): {} runs in {:.1} s, {:.1} scans/min",
            result.scans.done,
            result.scans.seconds,
            result.per_minute()
        );
        results.push(result);
    }
    db.drop().await?;
    Ok(results)
}

async fn batch(
    sv0: &Path,
    uri: &str,
    db: &Database,
    scopes: usize,
    workers: usize,
) -> Result<WorkerScans> {
    let mut demo = Demo::fresh(sv0, db).await?;
    let mut queued = Vec::new();
    for n in 0..scopes {
        let scope = demo
            .tenant(&format!("bench-{n:02}"), SIZE_PER_CLOUD)
            .await?;
        queued.push(demo.start_run(&scope).await?);
    }
    let (procs, start) = demo.workers(uri, workers).await?;
    let mut runs = Vec::new();
    for run in &queued {
        runs.push(demo.finished(&run.tenant_id, run.id).await?);
    }
    procs::stop_all(procs).await?;

    if let Some(run) = runs.iter().find(|r| r.status != RunStatus::Succeeded) {
        bail!("scan {} ended {:?}: {:?}", run.id, run.status, run.error);
    }
    let last = runs.iter().filter_map(|r| r.finished_at).max();
    let scans = measure::throughput(start, last, SystemTime::now(), runs.len(), runs.len());
    let mut stage_medians = Vec::new();
    for (stage, _) in STAGES {
        let mut seconds = Vec::new();
        for run in &runs {
            seconds.push(pipeline::stage_seconds(db, run, stage).await?);
        }
        stage_medians.push((stage, measure::percentile(&mut seconds, 0.5)));
    }
    Ok(WorkerScans {
        workers,
        scans,
        stage_medians,
    })
}
