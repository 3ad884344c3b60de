//! `sv0 all`: every role in one process, for a laptop or a first look: a worker serving every
//! pipeline kind, a scheduler replica and the admin API, on one database, stopping together on
//! SIGTERM or Ctrl-C. Each role is the same code `sv0 worker`, `sv0 scheduler` and
//! `sv0 admin-api` run, with its defaults; in production run them as separate processes, so that
//! they scale, restart and fail apart. The connector options are the worker's; the admin API
//! reads the same registry, so it accepts exactly the kinds the worker can run.

use std::ffi::OsString;

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
    #[command(flatten)]
    connectors: crate::connectors::SandboxArgs,
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
    let worker: WorkerArgs = role("worker", &db, worker_args(&args))?;
    let scheduler: SchedulerArgs = role(
        "scheduler",
        &db,
        vec![
            "--metrics-addr".into(),
            args.scheduler_metrics_addr.to_string().into(),
        ],
    )?;
    let api: AdminApiArgs = role("admin-api", &db, api_args(&args))?;
    tracing::info!(api = %args.listen, "running a worker, a scheduler and the admin API in one process");
    // Each role stops on the signal by itself; the first to fail stops the others.
    tokio::try_join!(
        crate::worker::run(worker),
        crate::scheduler::run(scheduler),
        crate::admin_api::run(api),
    )?;
    Ok(())
}

/// `--connectors FILE` when `all` was given one. The worker and the API read the one registry:
/// the API accepts exactly the kinds the worker can run.
fn registry_args(args: &AllArgs) -> Vec<OsString> {
    match &args.connectors.registry.connectors {
        Some(path) => vec!["--connectors".into(), path.into()],
        None => Vec::new(),
    }
}

/// The worker's own flags: where it serves metrics, and how it confines connectors.
fn worker_args(args: &AllArgs) -> Vec<OsString> {
    let mut extra: Vec<OsString> = vec![
        "--metrics-addr".into(),
        args.worker_metrics_addr.to_string().into(),
        "--connector-user".into(),
        args.connectors.connector_user.clone().into(),
    ];
    extra.extend(registry_args(args));
    if let Some(dir) = &args.connectors.connector_runs_dir {
        extra.extend(["--connector-runs-dir".into(), dir.into()]);
    }
    if args.connectors.allow_unconfined_connectors {
        extra.push("--allow-unconfined-connectors".into());
    }
    extra
}

/// The admin API's own flags: where it listens, and the registry it checks instances against.
fn api_args(args: &AllArgs) -> Vec<OsString> {
    let mut extra: Vec<OsString> = vec!["--listen".into(), args.listen.to_string().into()];
    extra.extend(registry_args(args));
    extra
}

/// A role's arguments, parsed as its own subcommand would parse them (so every default and
/// range check is that subcommand's).
fn role<T: Args + FromArgMatches>(
    name: &'static str,
    db: &[String],
    extra: Vec<OsString>,
) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new(name));
    let matches = command.try_get_matches_from(
        std::iter::once(OsString::from(name))
            .chain(db.iter().map(OsString::from))
            .chain(extra),
    )?;
    Ok(T::from_arg_matches(&matches)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(flags: &[&str]) -> AllArgs {
        role("all", &[], flags.iter().map(OsString::from).collect()).unwrap()
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn the_connector_flags_reach_the_worker_and_the_registry_the_api() {
        let args = all(&[
            "--connectors",
            "/etc/sv0/connectors.toml",
            "--connector-user",
            "10002:10002",
            "--connector-runs-dir",
            "/var/lib/sv0/runs",
            "--allow-unconfined-connectors",
            "--listen",
            "127.0.0.1:0",
        ]);
        let worker = worker_args(&args);
        assert_eq!(
            strings(worker.clone()),
            [
                "--metrics-addr",
                "127.0.0.1:9464",
                "--connector-user",
                "10002:10002",
                "--connectors",
                "/etc/sv0/connectors.toml",
                "--connector-runs-dir",
                "/var/lib/sv0/runs",
                "--allow-unconfined-connectors",
            ]
        );
        let api = api_args(&args);
        assert_eq!(
            strings(api.clone()),
            [
                "--listen",
                "127.0.0.1:0",
                "--connectors",
                "/etc/sv0/connectors.toml"
            ]
        );
        // Each role's own parser takes them.
        role::<WorkerArgs>("worker", &[], worker).unwrap();
        role::<AdminApiArgs>("admin-api", &[], api).unwrap();
    }
}
