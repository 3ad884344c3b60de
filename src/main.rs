//! `sv0`: the one binary of sv0 pipeline. Each subcommand runs one role. Errors are reported
//! here, at the edge, with their context.

mod admin_api;
mod all;
mod connectors;
mod ctl;
#[cfg(feature = "stand")]
mod demo;
#[cfg(feature = "stand")]
mod dev;
mod enqueue;
mod history;
mod migrate;
mod runs;
mod scheduler;
mod telemetry;
mod token;
mod worker;

use anyhow::Context;
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
    /// The main job: a demo tenant scanned end to end, every stage, on the local stand.
    #[cfg(feature = "stand")]
    Demo(demo::DemoArgs),
    /// Start the local stand (devdb), print its URI and version, check a write and a read.
    #[cfg(feature = "stand")]
    Dev(dev::DevArgs),
    /// Enqueue jobs (one JSON line per job on stdout).
    Enqueue(enqueue::EnqueueArgs),
    /// Run a worker: claim and run jobs of the served kinds; serve /metrics and /healthz.
    Worker(worker::WorkerArgs),
    /// Run a scheduler replica: scan scopes' due slots become runs; orphaned runs time out.
    Scheduler(scheduler::SchedulerArgs),
    /// List a tenant's newest scan runs.
    Runs(runs::RunsArgs),
    /// Serve the admin API: what operators and CI act through.
    AdminApi(admin_api::AdminApiArgs),
    /// A worker, a scheduler and the admin API in one process (a laptop, a first look).
    All(all::AllArgs),
    /// Create, list or revoke the admin API's tokens (next to the database).
    Token(token::TokenArgs),
    /// Act through the admin API: runs, rematerialize, scopes, instances, jobs, tokens.
    Ctl(ctl::CtlArgs),
    /// Create every collection's indexes, then exit (a deployment's one-shot step).
    Migrate(migrate::MigrateArgs),
}

/// Every runtime thread's stack. serde's BSON deserializer recurses once per nesting level of a
/// document, some kilobytes a level, so a 2 MiB stack (tokio's default) overflows on a document
/// some 100 levels deep, which MongoDB stores (it allows 100 levels; the stand, any number), and
/// a stack overflow aborts the whole process, every request in it. 64 MiB reads any document
/// MongoDB can store with room to spare; it is a virtual reservation, paged in only as deep as a
/// read goes.
const RUNTIME_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_THREAD_STACK_BYTES)
        .build()
        .context("starting the async runtime")?;
    // Spawned rather than run by `block_on`, which polls on the main thread: that thread's stack
    // is the operating system's (8 MiB), not the runtime's.
    runtime.block_on(async {
        match tokio::spawn(run(cli)).await {
            Ok(done) => done,
            Err(joined) if joined.is_panic() => std::panic::resume_unwind(joined.into_panic()),
            Err(joined) => Err(anyhow::anyhow!("the main task ended: {joined}")),
        }
    })
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let done = match cli.command {
        #[cfg(feature = "stand")]
        Command::Demo(args) => demo::run(args).await,
        #[cfg(feature = "stand")]
        Command::Dev(args) => dev::run(args).await,
        Command::Enqueue(args) => enqueue::run(args).await,
        Command::Worker(args) => {
            telemetry::init(args.log_format);
            worker::run(args).await
        }
        Command::Runs(args) => runs::run(args).await,
        Command::Scheduler(args) => {
            telemetry::init(args.log_format);
            scheduler::run(args).await
        }
        Command::AdminApi(args) => {
            telemetry::init(args.log_format);
            admin_api::run(args).await
        }
        Command::All(args) => {
            telemetry::init(args.log_format);
            all::run(args).await
        }
        Command::Token(args) => token::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        // Its exit code tells a CI step whether every run succeeded.
        Command::Ctl(args) => return ctl::run(args).await,
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}

/// Where the reads that may lag behind the primary go, for the processes that make them: the
/// worker (the queue's depth sample, in the fleet's leader) and the admin API (list pages).
#[derive(Debug, Clone, clap::Args)]
struct LagTolerantReadsArgs {
    /// Where the queue's depth sample and the list pages are read: `primary` keeps them there;
    /// the other modes take that load off the primary, and a page may then miss the newest
    /// writes by as much as the secondary lags. Claims, fences and read-backs always read the
    /// primary.
    #[arg(
        long,
        env = "SV0_LAG_TOLERANT_READS",
        value_enum,
        default_value = "primary"
    )]
    lag_tolerant_reads: LagTolerantReads,
    /// With a mode other than `primary`: how far behind a secondary may be and still serve
    /// those reads, in seconds (90 to 86400; MongoDB refuses less than 90).
    #[arg(long, value_parser = clap::value_parser!(u64).range(90..=86_400))]
    max_staleness_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LagTolerantReads {
    Primary,
    PrimaryPreferred,
    SecondaryPreferred,
    Secondary,
    Nearest,
}

impl LagTolerantReadsArgs {
    fn preference(&self) -> anyhow::Result<mongodb::options::ReadPreference> {
        use mongodb::options::{ReadPreference, ReadPreferenceOptions};
        let options = Some(
            ReadPreferenceOptions::builder()
                .max_staleness(self.max_staleness_s.map(std::time::Duration::from_secs))
                .build(),
        );
        Ok(match self.lag_tolerant_reads {
            LagTolerantReads::Primary if self.max_staleness_s.is_some() => anyhow::bail!(
                "--max-staleness-s: only with a --lag-tolerant-reads mode other than primary"
            ),
            LagTolerantReads::Primary => ReadPreference::Primary,
            LagTolerantReads::PrimaryPreferred => ReadPreference::PrimaryPreferred { options },
            LagTolerantReads::SecondaryPreferred => ReadPreference::SecondaryPreferred { options },
            LagTolerantReads::Secondary => ReadPreference::Secondary { options },
            LagTolerantReads::Nearest => ReadPreference::Nearest { options },
        })
    }
}

/// Where the queue and the pipeline's collections live; shared by every subcommand that uses them.
#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The MongoDB connection string. `--help` never prints its value from the environment: it
    /// may hold a password.
    #[arg(
        long,
        env = "SV0_MONGODB_URI",
        hide_env_values = true,
        default_value = "mongodb://127.0.0.1:27017/"
    )]
    mongodb_uri: String,
    /// The database holding the queue and the pipeline's collections.
    #[arg(long, env = "SV0_DATABASE", default_value = "sv0")]
    database: String,
}

impl DbArgs {
    async fn connect(&self) -> anyhow::Result<mongodb::Database> {
        let client = mongodb::Client::with_uri_str(&self.mongodb_uri)
            .await
            .context("--mongodb-uri")?;
        Ok(client.database(&self.database))
    }
}

/// The credential broker as the environment configures it (broker/README.md): the `env`
/// provider always, Azure Key Vault when `SV0_KEYVAULT_URL` is set.
fn broker_from_env(
    registry: &mut prometheus_client::registry::Registry,
) -> anyhow::Result<sv0_broker::CredentialBroker> {
    use sv0_broker::{
        BrokerMetrics, CredentialBroker, EnvProvider, KeyVaultConfig, KeyVaultProvider,
    };
    let mut broker = CredentialBroker::new(BrokerMetrics::new(registry))
        .with_env(EnvProvider::from_process_env());
    if let Some(config) = KeyVaultConfig::from_env(|name| std::env::var(name).ok())? {
        broker = broker.with_key_vault(KeyVaultProvider::connect(config)?);
    }
    Ok(broker)
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
