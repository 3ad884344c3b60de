//! What a scheduler tick costs when 10,000 scopes fall due at once: 100 tenants of 100 scopes,
//! every one on a one-minute schedule. That is a tick's worst case (every scope of a deployment on
//! the same minute), and it must end well inside the minute for the next slot to start on time.
//! Interval slots are aligned to whole minutes since the epoch, so every scope shares one slot, and
//! a tick at an injected time just after it finds all of them due; the clock runs from the call
//! until the tick returns, every run started. Then the same on a fresh copy with three replicas
//! ticking at once, as a deployment that scales the scheduler out would: the claims split the
//! scopes between them, and the database must still hold exactly one run per scope. The replicas
//! are three `Scheduler`s in this process, not three processes: they race for the same scope
//! documents through the same claim protocol either way (process-level replicas are tested in
//! `tests/scheduler_replicas.rs`). No worker runs: the runs and their `execute_scan` jobs are
//! written and left queued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};
use sv0_broker::CredentialBroker;
use sv0_domain::{Domain, Overlap, Schedule, TenantSetup};
use sv0_pipeline::Pipeline;
use sv0_queue::Queue;
use sv0_scheduler::{Scheduler, SchedulerConfig, SchedulerMetrics, SlotLog};

pub const TENANTS: usize = 100;
pub const SCOPES_PER_TENANT: usize = 100;
pub const SCOPES: usize = TENANTS * SCOPES_PER_TENANT;
const REPLICAS: [usize; 2] = [1, 3];
/// Far longer than any tick here: a claim expiring mid-tick would have another replica decide
/// its scopes again, and the tick would measure the takeover instead.
const CLAIM_LEASE: Duration = Duration::from_secs(600);
/// Tenants provisioned at once: setup is not measured, and overlapping its 40,000 round trips
/// hides the client's share of each (the stand still serializes them per collection).
const PROVISIONING: usize = 16;

/// One tick of `replicas` schedulers over every scope.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TickCost {
    pub replicas: usize,
    pub seconds: f64,
    /// The runs each replica created: how the claims split the scopes.
    pub shares: Vec<u64>,
}

impl TickCost {
    pub fn per_second(&self) -> f64 {
        SCOPES as f64 / self.seconds
    }
}

/// Provisions the scopes on `db` and ticks them with one replica, then provisions them afresh
/// and ticks them with three.
pub async fn tick_costs(db: &Database) -> Result<Vec<TickCost>> {
    let mut costs = Vec::new();
    for replicas in REPLICAS {
        let began = Instant::now();
        let slot = provision(db)
            .await
            .with_context(|| format!("provisioning {SCOPES} scopes"))?;
        eprintln!(
            "[scheduler] {SCOPES} scopes provisioned in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        costs.push(tick(db, replicas, slot).await?);
    }
    db.drop().await?;
    Ok(costs)
}

/// `replicas` schedulers tick at once, just after `slot`; each decides the scopes it claims.
async fn tick(db: &Database, replicas: usize, slot: DateTime) -> Result<TickCost> {
    let domain = Domain::new(db);
    let broker = CredentialBroker::unobserved();
    let pipeline = Arc::new(Pipeline::new(domain, Queue::new(db), broker));
    let schedulers: Vec<Scheduler> = (0..replicas)
        .map(|n| {
            let mut config = SchedulerConfig::new(format!("sv0-bench-{n}"));
            config.claim_lease = CLAIM_LEASE;
            Scheduler::new(
                pipeline.clone(),
                SlotLog::new(db),
                SchedulerMetrics::default(),
                config,
            )
        })
        .collect();
    let now = DateTime::from_millis(slot.timestamp_millis() + 1);
    let began = Instant::now();
    let reports = futures::future::try_join_all(schedulers.iter().map(|s| s.tick(now)))
        .await
        .with_context(|| format!("a tick of {replicas} replicas"))?;
    let seconds = began.elapsed().as_secs_f64();
    let shares: Vec<u64> = reports.iter().map(|r| r.runs_created).collect();
    eprintln!("[scheduler] {replicas} replica(s): {seconds:.2} s, runs created by each {shares:?}");

    let created: u64 = shares.iter().sum();
    anyhow::ensure!(
        created == SCOPES as u64,
        "{replicas} replicas created {created} runs, not one per scope ({SCOPES}): {reports:?}"
    );
    let runs = db
        .collection::<Document>("scan_runs")
        .count_documents(doc! {})
        .await?;
    anyhow::ensure!(
        runs == SCOPES as u64,
        "scan_runs holds {runs} runs after {replicas} replicas ticked, not one per scope ({SCOPES})"
    );
    Ok(TickCost {
        replicas,
        seconds,
        shares,
    })
}

/// A fresh `db` with every tenant, instance and scheduled scope; returns the slot they share.
async fn provision(db: &Database) -> Result<DateTime> {
    db.drop().await?;
    let domain = Domain::new(db);
    domain.ensure_indexes().await?;
    Queue::new(db).ensure_indexes().await?;
    SlotLog::new(db).ensure_indexes().await?;
    let mut schedule = Schedule::every(60);
    // Whether an earlier run is still going never changes what a slot becomes: every due
    // scope's tick is one run.
    schedule.overlap = Overlap::Allow;
    // One `now` for every scope, so a setup that straddles a minute does not split the slot.
    let at = DateTime::now();
    futures::stream::iter(0..TENANTS)
        .map(|n| provision_tenant(&domain, n, &schedule, at))
        .buffer_unordered(PROVISIONING)
        .try_collect::<()>()
        .await?;
    schedule
        .slots()?
        .next_after(at)
        .context("a one-minute schedule has a next slot")
}

async fn provision_tenant(
    domain: &Domain,
    n: usize,
    schedule: &Schedule,
    at: DateTime,
) -> Result<()> {
    let tenant = format!("tenant-{n:03}");
    // No worker takes up the runs: no connector registry is needed for the kind.
    let setup = (0..SCOPES_PER_TENANT).fold(TenantSetup::new(&tenant), |setup, s| {
        setup.scope(format!("scope {s}"), doc! {})
    });
    for scope in domain.set_up_tenant(&setup).await?.scopes {
        domain
            .set_schedule(&tenant, scope.id, Some(schedule.clone()), at)
            .await
            .with_context(|| format!("scheduling scope {} of {tenant}", scope.id))?;
    }
    Ok(())
}
