//! `sv0 all`: every role in one process, for a laptop or a first look: a worker serving every
//! pipeline kind, a scheduler replica and the admin API, on one database, stopping together on
//! SIGTERM or Ctrl-C. Each role is the same code `sv0 worker`, `sv0 scheduler` and
//! `sv0 admin-api` run, with its defaults; in production run them as separate processes, so that
//! they scale, restart and fail apart.

use clap::{Args, FromArgMatches};

use crate::admin_api::AdminApiArgs;
use crate::scheduler::SchedulerArgs;
use crate::telemetry::LogFormat;
use crate::worker::WorkerArgs;

#[derive(Debug, clap::Args)]
pub struct AllArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    /// Where the admin API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Where the worker serves /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    worker_metrics_addr: std::net::SocketAddr,
    /// Where the scheduler serves /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:9465")]
    scheduler_metrics_addr: std::net::SocketAddr,
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

pub async fn run(args: AllArgs) -> anyhow::Result<()> {
    let db = [
        "--mongodb-uri".to_string(),
        args.db.mongodb_uri.clone(),
        "--database".to_string(),
        args.db.database.clone(),
    ];
    let worker: WorkerArgs = role(
        "worker",
        &db,
        &["--metrics-addr", &args.worker_metrics_addr.to_string()],
    )?;
    let scheduler: SchedulerArgs = role(
        "scheduler",
        &db,
        &["--metrics-addr", &args.scheduler_metrics_addr.to_string()],
    )?;
    let api: AdminApiArgs = role("admin-api", &db, &["--listen", &args.listen.to_string()])?;
    tracing::info!(api = %args.listen, "running a worker, a scheduler and the admin API in one process");
    // Each role stops on the signal by itself; the first to fail stops the others.
    tokio::try_join!(
        crate::worker::run(worker),
        crate::scheduler::run(scheduler),
        crate::admin_api::run(api),
    )?;
    Ok(())
}

/// A role's arguments, parsed as its own subcommand would parse them (so every default and
/// range check is that subcommand's).
fn role<T: Args + FromArgMatches>(
    name: &'static str,
    db: &[String],
    extra: &[&str],
) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new(name));
    let matches = command.try_get_matches_from(
        std::iter::once(name.to_string())
            .chain(db.iter().cloned())
            .chain(extra.iter().map(|s| s.to_string())),
    )?;
    Ok(T::from_arg_matches(&matches)?)
}
