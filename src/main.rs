//! `sv0`: the one binary of sv0 pipeline. Each subcommand runs one role. Errors are reported
//! here, at the edge, with their context.

mod dev;
mod enqueue;
mod telemetry;
mod worker;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sv0",
    version,
    about = "sv0 pipeline: connector scans and their stages on a MongoDB job queue"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the local stand (devdb), print its URI and version, check a write and a read.
    Dev(dev::DevArgs),
    /// Enqueue jobs (one JSON line per job on stdout).
    Enqueue(enqueue::EnqueueArgs),
    /// Run a worker: claim and run jobs of the served kinds; serve /metrics and /healthz.
    Worker(worker::WorkerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
        Command::Enqueue(args) => enqueue::run(args).await,
        Command::Worker(args) => {
            telemetry::init(args.log_format);
            worker::run(args).await
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
