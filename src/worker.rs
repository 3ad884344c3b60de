//! `sv0 worker`: a worker process. It serves the chosen job kinds, runs the queue's reaper (every
//! worker does) and, while it leads the fleet, the fleet-wide duties (the pruner and the depth
//! sampler), serves `/metrics` and `/healthz`, and drains on SIGTERM or Ctrl-C.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sv0_admin_api::AuditLog;
use sv0_domain::{Domain, Retention};
use sv0_pipeline::Pipeline;
use sv0_queue::maintenance::{DepthSampler, Pruner, Reaper};
use sv0_queue::{Queue, RetryPolicy};
use sv0_worker::{MAX_CONCURRENCY, Worker, WorkerConfig, diagnostics, serve_status, while_leading};
use tokio_util::sync::CancellationToken;

use crate::history::HistoryPruner;
use crate::telemetry::LogFormat;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    #[command(flatten)]
    reads: crate::LagTolerantReadsArgs,
    /// Serve only these kinds (comma-separated); default: every pipeline kind (and the
    /// diagnostic ones with --diagnostics).
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Also serve the diagnostic kinds `noop` and `probe`.
    #[arg(long)]
    diagnostics: bool,
    /// Jobs run at once (1 to 10000).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=MAX_CONCURRENCY as i64))]
    concurrency: u16,
    /// A tighter limit for one kind, as KIND=N (N at least 1); repeatable. The kind must be
    /// one this worker serves.
    #[arg(long = "kind-limit", value_parser = parse_kind_limit)]
    kind_limits: Vec<(String, usize)>,
    /// The longest one attempt of a kind may run, as KIND=SECONDS (1 to 604800); past it the
    /// handler is cancelled and the attempt fails as timed out. A job's own timeout wins.
    /// Repeatable.
    #[arg(long = "kind-timeout", value_parser = parse_kind_timeout)]
    kind_timeouts: Vec<(String, Duration)>,
    /// At most this many jobs leased beyond the running ones, and only as many as the worker
    /// expects to start within a quarter second given how long its jobs run; 0 turns it off.
    #[arg(long, default_value_t = 256)]
    claim_ahead: usize,
    /// Lease time to live, in milliseconds (300 to 86400000); heartbeats renew it every third of
    /// it, and a worker that could not renew a lease for four fifths of it stops that job itself.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(300..=DAY_MS))]
    lease_ttl_ms: u64,
    /// The idle poll's floor and cap, in milliseconds (1 to 600000; the cap at least the floor).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    poll_min_ms: u64,
    /// The cap bounds how long a job enqueued into an idle queue waits (on average half of it);
    /// each poll is one indexed query.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    poll_max_ms: u64,
    /// Wake on a change stream where the server has one (`auto`), or poll only (`off`).
    #[arg(long, value_enum, default_value = "auto")]
    change_streams: ChangeStreams,
    /// How long a draining worker lets running jobs finish, in milliseconds (0 to 86400000).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(0..=DAY_MS))]
    grace_ms: u64,
    /// The backoff after a failed attempt: this many milliseconds (1 to 600000), doubling per
    /// attempt, capped at 10 minutes.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    retry_base_ms: u64,
    /// Reaper period, in milliseconds (10 to 3600000).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    reap_every_ms: u64,
    /// Finished jobs are pruned this many seconds after they finished (60 to 315360000, ten
    /// years). Their dedup keys are free again from then on.
    #[arg(long, default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(60..=TEN_YEARS_S))]
    retention_s: u64,
    /// Finished scan runs are deleted this many days after they finished (1 to 36500).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    keep_runs_days: u32,
    /// Connector syncs (each holds a source's whole graph) are deleted this many days after they
    /// were written, but never a source's latest, nor one an unfinished run needs (1 to 36500).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    keep_syncs_days: u32,
    /// Evidence packs are deleted this many days after they were written (1 to 36500).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    keep_evidence_days: u32,
    /// Audit log entries are deleted this many days after they were written (1 to 36500).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    keep_audit_days: u32,
    /// Where to serve /metrics and /healthz; port 0 picks a free one (logged).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    #[command(flatten)]
    connectors: crate::connectors::SandboxArgs,
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ChangeStreams {
    Auto,
    Off,
}

const DAY_MS: u64 = 24 * 3600 * 1000;
const TEN_YEARS_S: u64 = 10 * 365 * 24 * 3600;

fn days(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 24 * 3600)
}

fn parse_kind_timeout(text: &str) -> Result<(String, Duration), String> {
    let (kind, seconds) = text
        .split_once('=')
        .ok_or_else(|| format!("--kind-timeout: expected KIND=SECONDS, got {text:?}"))?;
    let seconds: u64 = seconds
        .parse()
        .map_err(|_| format!("--kind-timeout: {seconds:?} is not a whole number of seconds"))?;
    let max = sv0_queue::MAX_JOB_TIMEOUT.as_secs();
    if kind.is_empty() || !(1..=max).contains(&seconds) {
        return Err(format!(
            "--kind-timeout: expected a kind and 1 to {max} seconds, got {text:?}"
        ));
    }
    Ok((kind.to_string(), Duration::from_secs(seconds)))
}

fn parse_kind_limit(text: &str) -> Result<(String, usize), String> {
    let (kind, limit) = text
        .split_once('=')
        .ok_or_else(|| format!("--kind-limit: expected KIND=N, got {text:?}"))?;
    let limit: usize = limit
        .parse()
        .map_err(|_| format!("--kind-limit: {limit:?} is not a number"))?;
    if kind.is_empty() || !(1..=MAX_CONCURRENCY).contains(&limit) {
        return Err(format!(
            "--kind-limit: expected a kind and a limit of 1 to {MAX_CONCURRENCY}, got {text:?}"
        ));
    }
    Ok((kind.to_string(), limit))
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.poll_max_ms >= args.poll_min_ms,
        "--poll-max-ms ({}) must be at least --poll-min-ms ({})",
        args.poll_max_ms,
        args.poll_min_ms
    );
    let db = args.db.connect().await?;
    let queue = Queue::new(&db)
        .with_retry_policy(RetryPolicy {
            base: Duration::from_millis(args.retry_base_ms),
            cap: Duration::from_secs(600),
        })
        .lag_tolerant_reads(args.reads.preference()?);
    queue
        .ensure_indexes()
        .await
        .context("creating the queue's indexes")?;
    sv0_worker::ensure_registry_indexes(&db)
        .await
        .context("creating the worker registry's index")?;

    let mut registry = Registry::with_prefix("sv0");
    let domain = Domain::new(&db);
    domain
        .ensure_indexes()
        .await
        .context("creating the domain's indexes")?;
    let broker = crate::broker_from_env(&mut registry)?;
    let mut pipeline = Pipeline::new(domain.clone(), queue.clone(), broker);
    // Only a worker that runs connectors needs (and checks) a kernel that can confine them.
    if args.kinds.is_empty()
        || args
            .kinds
            .iter()
            .any(|k| k == sv0_pipeline::kinds::EXECUTE_SCAN)
    {
        let (connectors, sandbox) = args.connectors.load()?;
        sandbox.register_metrics(&mut registry);
        pipeline = pipeline.with_connectors(connectors).with_sandbox(sandbox);
    }
    let pipeline = Arc::new(pipeline);
    pipeline.metrics().register(&mut registry);
    let mut handlers = sv0_pipeline::handlers(pipeline);
    if args.diagnostics {
        handlers.extend(diagnostics::handlers(&db));
    }
    if !args.kinds.is_empty() {
        handlers = handlers.only(&args.kinds).context("--kinds")?;
    }
    let served = handlers.kinds();
    for (flag, kind) in args
        .kind_limits
        .iter()
        .map(|(kind, _)| ("--kind-limit", kind))
        .chain(
            args.kind_timeouts
                .iter()
                .map(|(kind, _)| ("--kind-timeout", kind)),
        )
    {
        anyhow::ensure!(
            served.contains(kind),
            "{flag}: this worker does not serve kind {kind:?} (it serves {served:?})"
        );
    }

    let lease_ttl = Duration::from_millis(args.lease_ttl_ms);
    let mut config = WorkerConfig::new(usize::from(args.concurrency));
    config.kind_limits = args.kind_limits.into_iter().collect::<HashMap<_, _>>();
    config.kind_timeouts = args.kind_timeouts.into_iter().collect::<HashMap<_, _>>();
    config.lease_ttl = lease_ttl;
    config.heartbeat_every = lease_ttl / 3;
    config.self_fence_margin = lease_ttl / 5;
    config.poll_min = Duration::from_millis(args.poll_min_ms);
    config.poll_max = Duration::from_millis(args.poll_max_ms);
    config.change_streams = args.change_streams == ChangeStreams::Auto;
    config.grace = Duration::from_millis(args.grace_ms);
    config.claim_ahead_max = args.claim_ahead;

    queue.metrics().register(&mut registry);
    let worker = Worker::new(queue.clone(), db.clone(), handlers, config);
    worker.metrics().register(&mut registry);

    let shutdown = CancellationToken::new();
    let maintenance = CancellationToken::new();
    let bound = serve_status(
        args.metrics_addr,
        Arc::new(registry),
        worker.health(),
        maintenance.clone(),
    )
    .await
    .with_context(|| format!("--metrics-addr {}", args.metrics_addr))?;
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    tokio::spawn(
        Reaper::new(queue.clone(), Duration::from_millis(args.reap_every_ms))
            .run(maintenance.clone()),
    );
    // Fleet-wide duties: one worker of the fleet (its leader) runs them, whatever the number of
    // workers (the queue's pruner and depth sampler, the history's retention); the reaper stays
    // in every worker, since its passes are index probes and a dead worker's jobs come back
    // sooner.
    let retention = Duration::from_secs(args.retention_s);
    tokio::spawn(while_leading(
        worker.leadership(),
        maintenance.clone(),
        {
            let queue = queue.clone();
            move |term| Pruner::new(queue.clone(), retention, Duration::from_secs(60)).run(term)
        },
        || {},
    ));
    let history = HistoryPruner {
        domain,
        audit: AuditLog::new(&db),
        retention: Retention {
            runs: days(args.keep_runs_days),
            syncs: days(args.keep_syncs_days),
            evidence_packs: days(args.keep_evidence_days),
        },
        audit_retention: days(args.keep_audit_days),
    };
    tokio::spawn(while_leading(
        worker.leadership(),
        maintenance.clone(),
        move |term| history.clone().run(term),
        || {},
    ));
    let metrics = queue.metrics().clone();
    tokio::spawn(while_leading(
        worker.leadership(),
        maintenance.clone(),
        move |term| {
            DepthSampler::new(queue.clone(), Duration::from_secs(15))
                .kinds(served.iter().map(String::as_str))
                .run(term)
        },
        move || metrics.forget_depths(),
    ));

    let signal = shutdown.clone();
    tokio::spawn(async move {
        if crate::shutdown_signal().await.is_ok() {
            tracing::info!("shutdown requested");
        }
        signal.cancel();
    });
    let result = worker.run(shutdown).await;
    maintenance.cancel();
    result
}
