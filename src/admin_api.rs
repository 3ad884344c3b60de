//! `sv0 admin-api`: serves the admin API (`sv0-admin-api`) over HTTP, with `/healthz`,
//! `/readyz` and `/metrics` on the same port, until SIGTERM or Ctrl-C (requests in flight are
//! finished first). Run as many as you like behind a load balancer: the API keeps no state of
//! its own outside the database. It reads the connector registry the workers read: an instance
//! may only be created of a kind it has.

use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use sv0_admin_api::{AdminApi, ApiMetrics};
use sv0_domain::Domain;
use sv0_pipeline::{ConnectorRegistry, Pipeline};
use sv0_queue::Queue;
use sv0_scheduler::controls::Controls;
use sv0_scheduler::{SchedulerMetrics, SlotLog};

use crate::telemetry::LogFormat;

#[derive(Debug, clap::Args)]
pub struct AdminApiArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    #[command(flatten)]
    reads: crate::LagTolerantReadsArgs,
    /// Where to listen; port 0 picks a free one (logged as `listening`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    connectors: crate::connectors::RegistryArgs,
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

pub async fn run(args: AdminApiArgs) -> anyhow::Result<()> {
    let connectors = args.connectors.registry()?;
    tracing::info!(
        kinds = ?connectors.names().collect::<Vec<_>>(),
        "connector registry: instances may be created of these kinds"
    );
    let db = args.db.connect().await?;
    let mut registry = Registry::with_prefix("sv0");
    let reads = args.reads.preference()?;
    let (controls, metrics) = build(&db, reads, &mut registry, connectors)?;
    let api = AdminApi::new(&db, controls, metrics, Arc::new(registry));
    ensure_indexes(&db).await?;
    api.ensure_indexes()
        .await
        .context("creating the admin API's indexes")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, api.router())
        .with_graceful_shutdown(async {
            if crate::shutdown_signal().await.is_ok() {
                tracing::info!("shutdown requested");
            }
        })
        .await
        .context("serving the admin API")?;
    Ok(())
}

/// The controls the API acts through, holding the connector registry instances are checked
/// against and reading its list pages where `reads` says, and its metrics, registered in
/// `registry`.
pub fn build(
    db: &mongodb::Database,
    reads: mongodb::options::ReadPreference,
    registry: &mut Registry,
    connectors: ConnectorRegistry,
) -> anyhow::Result<(Controls, ApiMetrics)> {
    let broker = crate::broker_from_env(registry)?;
    let queue = Queue::new(db).lag_tolerant_reads(reads.clone());
    queue.metrics().register(registry);
    queue.metrics().start_kinds(sv0_pipeline::kinds::ALL);
    let domain = Domain::new(db).lag_tolerant_reads(reads);
    let pipeline = Arc::new(Pipeline::new(domain, queue, broker).with_connectors(connectors));
    pipeline.metrics().register(registry);
    let scheduler_metrics = SchedulerMetrics::default();
    scheduler_metrics.register(registry);
    let metrics = ApiMetrics::default();
    metrics.register(registry);
    Ok((
        Controls {
            pipeline,
            slot_log: SlotLog::new(db),
            metrics: scheduler_metrics,
        },
        metrics,
    ))
}

pub(crate) async fn ensure_indexes(db: &mongodb::Database) -> anyhow::Result<()> {
    Queue::new(db)
        .ensure_indexes()
        .await
        .context("creating the queue's indexes")?;
    Domain::new(db)
        .ensure_indexes()
        .await
        .context("creating the domain's indexes")?;
    SlotLog::new(db)
        .ensure_indexes()
        .await
        .context("creating the slot log's indexes")?;
    sv0_worker::ensure_registry_indexes(db)
        .await
        .context("creating the worker registry's index")?;
    Ok(())
}
