//! How claims grow with the fleet: the same backlog of no-op jobs drained by 1, 4, 16, 64 and 128
//! `sv0 worker` processes (4 slots each), each process with its own client, all racing for the
//! head of the same `claim` index. Each worker counts its own claims (`/metrics`): the queries it
//! sent to find and take jobs, and the candidates it tried to take that another worker took
//! first, its collisions. Read from every worker once the queue is empty, they say what a job
//! costs in claim requests, and how much of that is lost to collisions, as the fleet grows.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use mongodb::Database;
use mongodb::bson::Document;
use serde::Serialize;
use tokio::process::Command;

use crate::measure::{self, Throughput};
use crate::ours::{self, Ours};
use crate::procs::{self, Proc};

/// Worker processes at each point.
pub const FLEETS: [usize; 5] = [1, 4, 16, 64, 128];
/// Slots per worker: small, so that the larger fleets hold more slots than the machine has
/// cores without each process idling on a big batch.
pub const SLOTS: usize = 4;
/// The first port of the workers' `/metrics`, one port each from there.
const METRICS_PORT: u16 = 19_400;
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// One fleet's drain and its claims.
#[derive(Debug, Clone, Serialize)]
pub struct FleetClaims {
    pub workers: usize,
    pub drain: Throughput,
    /// Candidate queries and claim writes, summed over the workers.
    pub claim_queries: u64,
    /// Candidates a claim write tried to take and did not: another worker took them first.
    pub collisions: u64,
    /// Jobs claimed, summed over the workers (a job claimed twice, after a lost lease, counts
    /// twice).
    pub claimed: u64,
}

impl FleetClaims {
    pub fn queries_per_job(&self) -> f64 {
        self.claim_queries as f64 / self.claimed.max(1) as f64
    }

    pub fn collisions_per_job(&self) -> f64 {
        self.collisions as f64 / self.claimed.max(1) as f64
    }
}

/// Drains `jobs` no-op jobs with each fleet of [`FLEETS`] (at most `largest` workers) on `db`.
pub async fn by_fleet(
    ours: &Ours,
    db: &Database,
    jobs: usize,
    largest: usize,
    cap: Duration,
) -> Result<Vec<FleetClaims>> {
    let mut results = Vec::new();
    for workers in FLEETS.into_iter().filter(|&w| w <= largest) {
        // The fleet first, idle on an empty queue, then the backlog: a fleet of 128 takes a
        // while to start on two cores, and its first workers must not drain the jobs alone.
        let queue = ours::fresh_queue(db).await?;
        let procs = start(ours, db, workers).await?;
        let start = SystemTime::now();
        ours::enqueue(&queue, jobs).await?;
        let jobs_coll = db.collection::<Document>("jobs");
        measure::wait_until_done(cap, || ours::unfinished(&jobs_coll)).await?;
        let (done, last) = ours::succeeded(&jobs_coll).await?;
        let counted_at = SystemTime::now();
        let mut totals = [0u64; 3];
        for n in 0..workers {
            let metrics = metrics_of(n).await?;
            for (total, name) in totals.iter_mut().zip([
                "sv0_queue_claim_queries_total",
                "sv0_queue_claim_collisions_total",
                "sv0_queue_jobs_claimed_total",
            ]) {
                *total += sum_of(&metrics, name);
            }
        }
        procs::stop_all(procs).await?;
        let drain = measure::throughput(start, last, counted_at, done, jobs);
        eprintln!(
            "[fleet] {workers} worker(s): {:.0} jobs/s, claims {totals:?}",
            drain.per_second()
        );
        let [claim_queries, collisions, claimed] = totals;
        results.push(FleetClaims {
            workers,
            drain,
            claim_queries,
            collisions,
            claimed,
        });
    }
    db.drop().await?;
    Ok(results)
}

/// Starts `workers` processes of [`SLOTS`] slots, each serving `/metrics` on a port of its own,
/// and waits until every one is ready.
async fn start(ours: &Ours, db: &Database, workers: usize) -> Result<Vec<Proc>> {
    let mut procs = Vec::with_capacity(workers);
    for n in 0..workers {
        let mut command = Command::new(&ours.bin);
        command
            .arg("worker")
            .args(["--mongodb-uri", &ours.uri])
            .args(["--database", db.name()])
            .arg("--diagnostics")
            .args(["--concurrency", &SLOTS.to_string()])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", port(n))])
            .args(["--change-streams", "off"]);
        procs.push(Proc::spawn(format!("sv0 worker #{n}"), command)?);
    }
    for proc in &mut procs {
        proc.wait_for(ours::READY, START_TIMEOUT).await?;
    }
    Ok(procs)
}

fn port(worker: usize) -> u16 {
    METRICS_PORT + worker as u16
}

/// Worker `n`'s `/metrics` page.
async fn metrics_of(n: usize) -> Result<String> {
    let addr = format!("127.0.0.1:{}", port(n));
    let (status, page) = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || sv0_testkit::http_get(&addr, "/metrics")
    })
    .await
    .with_context(|| format!("GET {addr}/metrics"))?;
    anyhow::ensure!(status == 200, "GET {addr}/metrics: {status}");
    Ok(page)
}

/// The sum of every series of the counter `name` on a Prometheus text page.
fn sum_of(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
