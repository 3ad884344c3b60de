//! `sv0 all`: every role in one process, for a laptop or a first look: a worker serving every
//! pipeline kind, a scheduler replica and the admin API, on one database, stopping together on
//! SIGTERM or Ctrl-C. Each role is the same code `sv0 worker`, `sv0 scheduler` and
//! `sv0 admin-api` run, with its defaults; in production run them as separate processes, so that
//! they scale, restart and fail apart. The connector options are the worker's; the admin API
//! reads the same registry, so it accepts exactly the kinds the worker can run.

use std::collections::HashMap;
use std::ffi::OsString;
use std::pin::Pin;

use clap::{Args, FromArgMatches};
use tokio::task::JoinSet;

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
    supervise(vec![
        ("worker", Box::pin(crate::worker::run(worker))),
        ("scheduler", Box::pin(crate::scheduler::run(scheduler))),
        ("admin-api", Box::pin(crate::admin_api::run(api))),
    ])
    .await
}

type RoleRun = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs each role as a task of its own until all have stopped (each stops on the signal by
/// itself). The first to fail, by an error or a panic, ends the rest and the process with an
/// error naming it: a role that is gone while the others carry on is a process that looks up
/// and is not, and a panic's own message says where, not which role.
async fn supervise(roles: Vec<(&'static str, RoleRun)>) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    let mut names = HashMap::new();
    for (name, run) in roles {
        names.insert(tasks.spawn(run).id(), name);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, outcome),
            Err(error) => {
                let id = error.id();
                let outcome = if error.is_panic() {
                    Err(anyhow::anyhow!(
                        "panicked: {}",
                        panic_message(error.into_panic())
                    ))
                } else {
                    Err(anyhow::anyhow!("{error}"))
                };
                (id, outcome)
            }
        };
        let name = names.get(&id).copied().unwrap_or("a role");
        match outcome {
            Ok(()) => tracing::info!(role = name, "role stopped"),
            Err(error) => {
                tasks.abort_all();
                return Err(error.context(format!("the {name} role failed; stopping every role")));
            }
        }
    }
    Ok(())
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |message| message.to_string()),
    }
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

    /// A role that runs until the others stop it, as a role waits for the signal.
    fn waiting() -> RoleRun {
        Box::pin(std::future::pending())
    }

    #[tokio::test]
    async fn a_role_that_panics_in_its_task_stops_every_role_naming_it() {
        let error = supervise(vec![
            ("worker", waiting()),
            (
                "scheduler",
                Box::pin(async {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    panic!("the tick went wrong")
                }),
            ),
            ("admin-api", waiting()),
        ])
        .await
        .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "the scheduler role failed; stopping every role: panicked: the tick went wrong"
        );
    }

    #[tokio::test]
    async fn a_role_that_fails_stops_every_role_naming_it() {
        let error = supervise(vec![
            ("worker", waiting()),
            (
                "admin-api",
                Box::pin(async { Err(anyhow::anyhow!("--listen: address in use")) }),
            ),
        ])
        .await
        .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "the admin-api role failed; stopping every role: --listen: address in use"
        );
    }

    #[tokio::test]
    async fn roles_that_all_stop_cleanly_are_a_clean_stop() {
        supervise(vec![
            ("worker", Box::pin(async { Ok(()) })),
            ("scheduler", Box::pin(async { Ok(()) })),
        ])
        .await
        .unwrap();
    }
}
