//! `sv0-chaos`: the chaos run (issue 17). The real processes (devdb on a data file, 3 workers, 2
//! schedulers, the admin API) run a demo workload while faults drawn from a printed seed kill,
//! restart and partition them; then the faults stop, the work settles, and the checks run. A
//! failed check exits non-zero with the seed, so the run can be replayed.
//!
//! This binary owns the orchestration and the checks only: it reads what the run left through
//! the queue's, the domain's and the scheduler's public APIs, never their collections.

mod checks;
mod cluster;
mod faults;
mod secrets;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sv0_domain::Domain;
use sv0_queue::Queue;
use sv0_scheduler::SlotLog;

use crate::cluster::{Db, Launcher, Role};
use crate::faults::Cluster;
use crate::workload::{ActionCounts, Actions};

const DATABASE: &str = "sv0_chaos";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Profile {
    /// 150 s of faults, about 4 minutes in all: what CI runs.
    Short,
    /// 30 minutes of faults, by hand.
    Long,
}

#[derive(Debug, clap::Parser)]
#[command(about = "The chaos run: real processes under faults from a printed seed, then checked")]
struct Args {
    #[arg(long, value_enum, default_value = "short")]
    profile: Profile,
    /// How long faults are injected, in seconds; overrides the profile's.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    seconds: Option<u64>,
    /// Replays a run: the faults and the API actions are drawn from this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Where devdb's data file and the processes' logs go (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long the work may take to settle after the faults stop, in seconds.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(10..=3_600))]
    settle_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = clap::Parser::parse();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let seconds = args.seconds.unwrap_or(match args.profile {
        Profile::Short => 150,
        Profile::Long => 1_800,
    });
    println!("sv0 chaos run: seed {seed} (replay with --seed {seed}), {seconds} s of faults");
    let passed = run(&args, seed, seconds).await?;
    if !passed {
        anyhow::bail!("a check failed; replay with --seed {seed}");
    }
    Ok(())
}

async fn run(args: &Args, seed: u64, seconds: u64) -> anyhow::Result<bool> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("sv0-chaos-{seed}")),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("--dir {}", dir.display()))?;
    // A run starts from nothing: an earlier run's data file and logs in the same place go.
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("devdb.h2") || name.ends_with(".log") {
            std::fs::remove_file(&path)?;
        }
    }
    let here = std::env::current_exe()?;
    let sv0 = here.with_file_name("sv0");
    let connector = here.with_file_name("sv0-demo-connector");
    for binary in [&sv0, &connector] {
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing: build it beside sv0-chaos (cargo build -p sv0 -p sv0-demo-connector)",
            binary.display()
        );
    }

    let db = Db::start(&dir.join("devdb.h2"))?;
    let direct = format!("mongodb://{}/?directConnection=true", db.addr());
    let client = mongodb::Client::with_uri_str(&direct).await?;
    let database = client.database(DATABASE);
    let domain = Domain::new(&database);
    let queue = Queue::new(&database);
    queue.ensure_indexes().await?;
    let scopes = workload::provision(&domain, &connector).await?;
    println!(
        "workload: {} tenants, {} scopes every 5 s; logs and data in {}",
        workload::TENANTS.len(),
        scopes.len(),
        dir.display()
    );

    let launcher = Launcher {
        sv0: sv0.clone(),
        database: DATABASE.into(),
        logs: dir.clone(),
        db_addr: db.addr(),
    };
    let credentials = workload::credential_env()?;
    let worker_args = [
        "worker",
        "--metrics-addr",
        "127.0.0.1:0",
        "--change-streams",
        "off",
        "--lease-ttl-ms",
        "6000",
        "--reap-every-ms",
        "1000",
    ];
    let mut processes = Vec::new();
    for n in 1..=3 {
        processes.push(launcher.start(
            &format!("worker-{n}"),
            Role::Worker,
            &worker_args,
            &credentials,
        )?);
    }
    for n in 1..=2 {
        processes.push(launcher.start(
            &format!("scheduler-{n}"),
            Role::Scheduler,
            &[
                "scheduler",
                "--metrics-addr",
                "127.0.0.1:0",
                "--tick-ms",
                "1000",
            ],
            &[],
        )?);
    }
    let api = launcher.start(
        "admin-api",
        Role::AdminApi,
        &["admin-api", "--listen", "127.0.0.1:0"],
        &[],
    )?;
    let api_log = api.log_path().to_path_buf();
    processes.push(api);
    let token = workload::create_token(&sv0, &direct, DATABASE)?;

    let counts = Arc::new(ActionCounts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let actions = tokio::spawn(
        Actions {
            sv0,
            api_log,
            responses: dir.join(workload::RESPONSES),
            token,
            scopes: scopes.clone(),
            counts: counts.clone(),
            stop: stop.clone(),
        }
        .run(seed),
    );

    let began = Instant::now();
    let mut cluster = Cluster {
        db,
        launcher,
        processes,
    };
    let (mut cluster, faults) = tokio::task::spawn_blocking(move || {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let faults = cluster.inject_until(began + Duration::from_secs(seconds), &mut rng);
        (cluster, faults)
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    actions.await?;
    cluster.heal()?;
    println!(
        "faults over after {:.0} s; settling (scopes paused, waiting for every job to finish)",
        began.elapsed().as_secs_f64()
    );

    workload::pause_all(&domain, &scopes).await?;
    let settle = Instant::now();
    while checks::unsettled_jobs(&queue).await? > 0
        && settle.elapsed() < Duration::from_secs(args.settle_seconds)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("settled in {:.0} s", settle.elapsed().as_secs_f64());

    let findings = checks::check(&queue, &domain, &SlotLog::new(&database), &scopes).await?;
    let sightings = secrets::search(&dir, &database, &cluster).await?;
    drop(client);
    cluster.stop()?;
    print!(
        "{}",
        report(seed, seconds, &findings, &faults, &counts, &sightings)
    );
    Ok(findings.passed() && sightings.total() == 0)
}

fn report(
    seed: u64,
    seconds: u64,
    findings: &checks::Findings,
    faults: &faults::FaultCounts,
    counts: &ActionCounts,
    sightings: &secrets::Sightings,
) -> String {
    let ok = |good: bool| if good { "ok" } else { "FAILED" };
    let mut out = format!(
        "\n| check | result | |\n| --- | --- | --- |\n\
         | jobs enqueued | {} | |\n\
         | lost (queued or running after the settle) | {} | {} |\n\
         | runs not finished | {} | {} |\n\
         | duplicate runs for one scope slot | {} | {} |\n\
         | runs whose cells disagree with their status | {} | {} |\n\
         | scope slots unaccounted for (neither run, skipped nor missed) | {} | {} |\n\
         | scope slots accounted for twice | {} | {} |\n\
         | jobs dead or failed (kept, with their error) | {} | |\n\
         | canary secret in {} process logs | {} | {} |\n\
         | canary secret in {} documents of every collection | {} | {} |\n\
         | canary secret on {} /metrics pages | {} | {} |\n\
         | canary secret in {} lines of API responses | {} | {} |\n",
        findings.jobs,
        findings.lost,
        ok(findings.lost == 0),
        findings.unfinished_runs.len(),
        ok(findings.unfinished_runs.is_empty()),
        findings.duplicate_slots,
        ok(findings.duplicate_slots == 0),
        findings.inconsistent.len(),
        ok(findings.inconsistent.is_empty()),
        findings.slots_unaccounted,
        ok(findings.slots_unaccounted == 0),
        findings.slots_recorded_twice,
        ok(findings.slots_recorded_twice == 0),
        findings.dead_or_failed_jobs,
        sightings.logs_searched,
        sightings.in_logs,
        ok(sightings.in_logs == 0),
        sightings.documents_searched,
        sightings.in_collections,
        ok(sightings.in_collections == 0),
        sightings.pages_searched,
        sightings.on_metrics_pages,
        ok(sightings.on_metrics_pages == 0),
        sightings.responses_searched,
        sightings.in_api_responses,
        ok(sightings.in_api_responses == 0),
    );
    let line = |out: &mut String, what: &str, n: u64| {
        out.push_str(&format!("| {what} | {n} | |\n"));
    };
    for (status, n) in &findings.runs_by_status {
        line(&mut out, &format!("runs {status}"), *n);
    }
    for (trigger, n) in &findings.runs_by_trigger {
        line(&mut out, &format!("runs triggered by {trigger}"), *n);
    }
    for (why, n) in &findings.slots_not_run {
        line(&mut out, &format!("slots {why}"), *n);
    }
    for (fault, n) in faults {
        line(&mut out, fault, *n);
    }
    for (what, n) in [
        ("manual runs through the API", &counts.triggers),
        ("retries through the API", &counts.retries),
        (
            "rematerializations through the API",
            &counts.rematerializations,
        ),
        (
            "API actions refused or failed (during faults)",
            &counts.failed,
        ),
    ] {
        line(&mut out, what, n.load(Ordering::Relaxed));
    }
    for why in findings.inconsistent.iter().take(10) {
        out.push_str(&format!("\ninconsistent: {why}"));
    }
    out.push_str(&format!(
        "\nseed {seed}, {seconds} s of faults: {}\n",
        if findings.passed() && sightings.total() == 0 {
            "PASSED"
        } else {
            "FAILED"
        }
    ));
    out
}
