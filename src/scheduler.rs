//! `sv0 scheduler`: a scheduler replica. It ticks (scan scopes' due slots become runs), runs the
//! orphaned-run reaper and the queue's lease reaper, serves `/metrics` and `/healthz`,
//! and stops on SIGTERM or Ctrl-C. Run as many as you like: they share the work through scope
//! claims, and a slot never gets two runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sv0_domain::Domain;
use sv0_pipeline::Pipeline;
use sv0_queue::Queue;
use sv0_queue::maintenance::Reaper;
use sv0_scheduler::{OrphanReaper, Scheduler, SchedulerConfig, SchedulerMetrics, SlotLog};
use sv0_worker::{Health, serve_status};
use tokio_util::sync::CancellationToken;

use crate::telemetry::LogFormat;

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    /// The longest wait between ticks, in milliseconds (50 to 50000; /healthz reports a
    /// scheduler stuck after 60 s without a tick). A tick comes sooner when a scope is due.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(50..=50_000))]
    tick_ms: u64,
    /// How long a claim holds a scope, in milliseconds (1000 to 3600000): a replica that dies
    /// holding scopes delays them by at most this.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    claim_lease_ms: u64,
    /// Scopes claimed per round trip (1 to 10000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// The orphaned-run reaper's period, in seconds (1 to 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    orphans_every_s: u64,
    /// How old a queued run must be, in seconds (1 to 3600), before the orphaned-run reaper
    /// checks that its first job exists (its creator may have lost the database between writing
    /// the run and enqueuing the job) and enqueues it if not.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    first_job_grace_s: u64,
    /// How long slot outcomes are kept, in days (1 to 3650).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_650))]
    slot_log_days: u64,
    /// The queue's lease reaper period, in milliseconds (10 to 3600000).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    reap_every_ms: u64,
    /// Where to serve /metrics and /healthz; port 0 picks a free one (logged).
    #[arg(long, default_value = "127.0.0.1:9465")]
    metrics_addr: std::net::SocketAddr,
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let db = args.db.connect().await?;
    let queue = Queue::new(&db);
    queue
        .ensure_indexes()
        .await
        .context("creating the queue's indexes")?;
    let domain = Domain::new(&db);
    domain
        .ensure_indexes()
        .await
        .context("creating the domain's indexes")?;
    let slot_log = SlotLog::new(&db);
    slot_log
        .ensure_indexes()
        .await
        .context("creating the slot log's indexes")?;

    let mut registry = Registry::with_prefix("sv0");
    // The scheduler starts runs but never resolves a credential; the broker is the pipeline's
    // to carry.
    let broker = crate::broker_from_env(&mut registry)?;
    let pipeline = Arc::new(Pipeline::new(domain, queue.clone(), broker));
    pipeline.metrics().register(&mut registry);
    queue.metrics().register(&mut registry);
    queue.metrics().start_kinds(sv0_pipeline::kinds::ALL);
    let metrics = SchedulerMetrics::default();
    metrics.register(&mut registry);

    let owner = format!("{}:{}", host_name(), std::process::id());
    let mut config = SchedulerConfig::new(owner.clone());
    config.tick = Duration::from_millis(args.tick_ms);
    config.claim_lease = Duration::from_millis(args.claim_lease_ms);
    config.batch = args.batch as usize;
    let scheduler = Scheduler::new(pipeline.clone(), slot_log.clone(), metrics.clone(), config);

    let shutdown = CancellationToken::new();
    let health = Health::default();
    let bound = serve_status(
        args.metrics_addr,
        Arc::new(registry),
        health.clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("--metrics-addr {}", args.metrics_addr))?;
    tracing::info!(addr = %bound, %owner, "serving /metrics and /healthz");

    tokio::spawn(
        OrphanReaper::new(
            pipeline,
            slot_log,
            metrics,
            Duration::from_secs(args.orphans_every_s),
            Duration::from_secs(args.slot_log_days * 24 * 3600),
        )
        .first_job_grace(Duration::from_secs(args.first_job_grace_s))
        .run(shutdown.clone()),
    );
    tokio::spawn(
        Reaper::new(queue.clone(), Duration::from_millis(args.reap_every_ms)).run(shutdown.clone()),
    );
    let signal = shutdown.clone();
    tokio::spawn(async move {
        if crate::shutdown_signal().await.is_ok() {
            tracing::info!("shutdown requested");
        }
        signal.cancel();
    });
    scheduler.run(shutdown, || health.beat()).await;
    Ok(())
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}
