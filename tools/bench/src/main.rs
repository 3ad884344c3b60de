//! sv0-bench: our worker, agenda and the raw ceiling side by side, in one run, on the same devdb
//! instance, with no-op handlers; prints one table and can write it to `docs/benchmarks.md`.
//!
//! Run it through `./scripts/bench`, which installs and builds everything it needs. Benchmarks,
//! not tests: nothing here runs under `cargo test`.

mod agenda;
mod ceiling;
mod claims;
mod fleet;
mod measure;
mod ours;
mod pipeline;
mod procs;
mod report;
mod scans;
mod scheduler;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use mongodb::{Client, Database};
use sv0_devdb::DevDb;

use crate::report::{Cell, Results, Row};

/// Runs every benchmark and prints one table.
#[derive(Debug, Parser)]
struct Args {
    /// The `sv0` binary (release build).
    #[arg(long)]
    sv0: PathBuf,
    /// Another `sv0` binary (say, a release build of an earlier revision) to measure in the same
    /// run, next to `--sv0` in every row of ours: adds a "this build against the baseline" table.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The agenda peer's directory (holds peer.mjs and its node_modules).
    #[arg(long)]
    agenda_dir: PathBuf,
    /// Also write the report to this Markdown file (only when every cell was measured).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write every result to this JSON file, the latency samples included, for
    /// `scripts/plot-bench` (only when every cell was measured).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The source revision measured, for the report.
    #[arg(long, default_value = "unknown")]
    revision: String,
    /// Run only the scenarios whose name contains this text; repeatable (any of them).
    #[arg(long)]
    only: Vec<String>,
    /// Smaller sizes for the warm-up, the latency rows, the scans by workers and the claim cost,
    /// to check in a minute or two that they run and what they write: not figures to publish.
    #[arg(long)]
    quick: bool,
    /// With `--baseline`: each drain of ours and of the baseline runs this many times, the two
    /// alternating, and each cell is the median run (one run of a drain varies by ±10 % on a
    /// shared machine; the comparison needs less than that).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=15))]
    repeat: u16,
    /// The longest a drain may run: a slower peer is reported at the rate it reached by then.
    #[arg(long, default_value_t = 45)]
    cap_secs: u64,
}

/// One drain scenario: jobs pre-enqueued, finished jobs already there, worker processes.
struct Drain {
    jobs: usize,
    history: usize,
    processes: usize,
}

/// Total concurrency of every drain, split evenly over the processes.
const CONCURRENCY: usize = 16;
const DRAINS: [Drain; 7] = [
    drain(2_000, 0, 1),
    drain(2_000, 0, 2),
    drain(2_000, 0, 4),
    drain(10_000, 0, 1),
    drain(10_000, 0, 2),
    drain(10_000, 0, 4),
    drain(2_000, 50_000, 2),
];
const fn drain(jobs: usize, history: usize, processes: usize) -> Drain {
    Drain {
        jobs,
        history,
        processes,
    }
}
/// The latency runs: jobs one at a time, at this rate.
const LATENCY_RATE: f64 = 20.0;
/// The memory run: one worker of this concurrency drains this many jobs.
const MEMORY_CONCURRENCY: usize = 32;
const MEMORY_JOBS: usize = 2_000;

/// The sizes `--quick` shrinks.
struct Sizes {
    /// Jobs drained once, unmeasured, before anything is measured (fewer for agenda: it is slow).
    warmup_jobs: usize,
    agenda_warmup_jobs: usize,
    latency_jobs: usize,
    /// Scopes (one per tenant) in the batch the worker counts scan.
    scan_scopes: usize,
    /// The claim cost's backlogs are divided by this.
    claim_divisor: usize,
    /// The claims by fleet: jobs drained, and the largest fleet.
    fleet_jobs: usize,
    fleet_largest: usize,
}
const FULL: Sizes = Sizes {
    warmup_jobs: 10_000,
    agenda_warmup_jobs: 500,
    latency_jobs: 1_000,
    scan_scopes: 12,
    claim_divisor: 1,
    fleet_jobs: 10_000,
    fleet_largest: 128,
};
const QUICK: Sizes = Sizes {
    warmup_jobs: 1_000,
    agenda_warmup_jobs: 50,
    latency_jobs: 100,
    scan_scopes: 4,
    claim_divisor: 10,
    fleet_jobs: 1_000,
    fleet_largest: 16,
};

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let began = Instant::now();
    let machine = report::Machine::read().await;
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| name.contains(o));
    let cap = Duration::from_secs(args.cap_secs);
    let sizes = if args.quick { QUICK } else { FULL };

    // Benchmarks run on polling, with the oplog off (an idle change stream costs the stand a
    // core); only the change-stream latency row gets its own `--oplog` instance.
    let devdb = DevDb::builder().start()?;
    let client = Client::with_uri_str(devdb.uri()).await?;
    let ours = ours::Ours {
        bin: args.sv0.clone(),
        uri: devdb.uri(),
    };
    let baseline = args.baseline.as_ref().map(|bin| ours::Ours {
        bin: bin.clone(),
        uri: devdb.uri(),
    });
    let agenda = agenda::Agenda {
        dir: args.agenda_dir.clone(),
        uri: devdb.uri(),
    };

    // The server is a JVM: its hot paths run interpreted until compiled, and the first cell
    // measured ran several times slower than the same cell later. So each peer's own operations
    // run once first, unmeasured: a drain of ours, of agenda, and the ceiling's loop.
    eprintln!("warming the server up…");
    let warmup = scratch(&client, "warmup");
    ours.drain(&warmup, sizes.warmup_jobs, 0, 1, CONCURRENCY, cap)
        .await
        .context("warm-up, ours")?;
    agenda
        .drain(&warmup, sizes.agenda_warmup_jobs, 0, 1, CONCURRENCY, cap)
        .await
        .context("warm-up, agenda")?;
    ceiling::run(&warmup, sizes.warmup_jobs, 0).await?;
    warmup.drop().await?;

    let mut rows = Vec::new();
    for d in &DRAINS {
        let per = CONCURRENCY / d.processes;
        let mut name = format!(
            "drain {} jobs, {} × {per}",
            measure::thousands(d.jobs),
            d.processes
        );
        if d.history > 0 {
            name += &format!(", {} finished already", measure::thousands(d.history));
        }
        if !wanted(&name) {
            continue;
        }
        let db = |peer: &str| scratch(&client, peer);
        let base_db = db("baseline");
        let (jobs, history, procs) = (d.jobs, d.history, d.processes);
        let (ours_cell, base_cell) = match &baseline {
            None => (
                cell(
                    &name,
                    "ours",
                    ours.drain(&db("ours"), jobs, history, procs, per, cap),
                )
                .await,
                None,
            ),
            Some(b) => {
                let (mut mine, mut theirs) = (Vec::new(), Vec::new());
                let ours_db = db("ours");
                for _ in 0..args.repeat {
                    let run = ours.drain(&ours_db, jobs, history, procs, per, cap);
                    mine.push(cell(&name, "ours", run).await);
                    let run = b.drain(&base_db, jobs, history, procs, per, cap);
                    theirs.push(cell(&name, "baseline", run).await);
                }
                (median(mine), Some(median(theirs)))
            }
        };
        let row = Row {
            ours: ours_cell,
            baseline: base_cell,
            agenda: cell(
                &name,
                "agenda",
                agenda.drain(&db("agenda"), jobs, history, procs, per, cap),
            )
            .await,
            ceiling: cell(
                &name,
                "ceiling",
                ceiling::run(&db("ceiling"), jobs, history),
            )
            .await,
            name,
        };
        report::print_row(&row);
        rows.push(row);
    }

    let base_db = scratch(&client, "baseline");
    let name = "enqueue→start latency at 20 jobs/s, 2 × 8 idle, polling".to_string();
    if wanted(&name) {
        let row = Row {
            ours: cell(
                &name,
                "ours",
                ours.latency(
                    &scratch(&client, "ours"),
                    sizes.latency_jobs,
                    LATENCY_RATE,
                    false,
                ),
            )
            .await,
            baseline: baseline_cell(
                &name,
                baseline
                    .as_ref()
                    .map(|b| b.latency(&base_db, sizes.latency_jobs, LATENCY_RATE, false)),
            )
            .await,
            agenda: cell(
                &name,
                "agenda",
                agenda.latency(
                    &scratch(&client, "agenda"),
                    sizes.latency_jobs,
                    LATENCY_RATE,
                ),
            )
            .await,
            ceiling: Cell::NotApplicable,
            name,
        };
        report::print_row(&row);
        rows.push(row);
    }

    let name = format!("worker memory, 1 × {MEMORY_CONCURRENCY}, after draining 2,000 jobs");
    if wanted(&name) {
        let row = Row {
            ours: cell(
                &name,
                "ours",
                ours.memory(&scratch(&client, "ours"), MEMORY_JOBS, MEMORY_CONCURRENCY),
            )
            .await,
            baseline: baseline_cell(
                &name,
                baseline
                    .as_ref()
                    .map(|b| b.memory(&base_db, MEMORY_JOBS, MEMORY_CONCURRENCY)),
            )
            .await,
            agenda: cell(
                &name,
                "agenda",
                agenda.memory(&scratch(&client, "agenda"), MEMORY_JOBS, MEMORY_CONCURRENCY),
            )
            .await,
            ceiling: Cell::NotApplicable,
            name,
        };
        report::print_row(&row);
        rows.push(row);
    }
    // Sections of their own, not rows of the table; a failure is reported at the end, like a
    // failed cell.
    let mut errors = Vec::new();
    let uri = devdb.uri();
    let scan_name = "scan of a 10,000-entity graph, stage by stage";
    let scan = if wanted(scan_name) {
        let db = scratch(&client, "pipeline");
        let run = pipeline::scan_costs(&args.sv0, &uri, &db);
        section(scan_name, run, |r| report::scan_table(r), &mut errors).await
    } else {
        None
    };
    let ticks_name = "scheduler tick, 10,000 due scopes, 1 and 3 replicas";
    let ticks = if wanted(ticks_name) {
        let db = scratch(&client, "scheduler");
        let run = scheduler::tick_costs(&db);
        section(ticks_name, run, |r| report::tick_table(r), &mut errors).await
    } else {
        None
    };
    let scans_name = format!(
        "scans per minute by worker processes (1, 2, 4), {} scopes of {} entities",
        sizes.scan_scopes,
        measure::thousands(2 * scans::SIZE_PER_CLOUD as usize)
    );
    let scans = if wanted(&scans_name) {
        let db = scratch(&client, "scans");
        let run = scans::by_workers(&args.sv0, &uri, &db, sizes.scan_scopes);
        section(&scans_name, run, |r| report::scans_table(r), &mut errors).await
    } else {
        None
    };
    let claims_name = "claim cost by backlog";
    let claims = if wanted(claims_name) {
        let points: Vec<(usize, usize)> = claims::POINTS
            .iter()
            .map(|&(queued, finished)| {
                (queued / sizes.claim_divisor, finished / sizes.claim_divisor)
            })
            .collect();
        let db = scratch(&client, "claims");
        let run = claims::by_backlog(&db, &points);
        section(claims_name, run, |r| report::claims_table(r), &mut errors).await
    } else {
        None
    };
    let fleet_name = "claims by worker processes (1 to 128), no-op jobs";
    let fleet = if wanted(fleet_name) {
        let db = scratch(&client, "fleet");
        let run = fleet::by_fleet(&ours, &db, sizes.fleet_jobs, sizes.fleet_largest, cap);
        section(fleet_name, run, |r| report::fleet_table(r), &mut errors).await
    } else {
        None
    };
    drop(client);
    devdb.stop()?;

    let name =
        "enqueue→start latency at 20 jobs/s, 2 × 8 idle, change streams (--oplog)".to_string();
    if wanted(&name) {
        let oplog = DevDb::builder().oplog(true).start()?;
        let client = Client::with_uri_str(oplog.uri()).await?;
        let base_db = scratch(&client, "baseline");
        let ours = ours::Ours {
            bin: args.sv0.clone(),
            uri: oplog.uri(),
        };
        let baseline = args.baseline.as_ref().map(|bin| ours::Ours {
            bin: bin.clone(),
            uri: oplog.uri(),
        });
        let row = Row {
            ours: cell(
                &name,
                "ours",
                ours.latency(
                    &scratch(&client, "ours"),
                    sizes.latency_jobs,
                    LATENCY_RATE,
                    true,
                ),
            )
            .await,
            baseline: baseline_cell(
                &name,
                baseline
                    .as_ref()
                    .map(|b| b.latency(&base_db, sizes.latency_jobs, LATENCY_RATE, true)),
            )
            .await,
            agenda: Cell::NotRun(
                "agenda's MongoBackend polls; its change-stream channel is a separate opt-in"
                    .into(),
            ),
            ceiling: Cell::NotApplicable,
            name,
        };
        report::print_row(&row);
        rows.push(row);
        drop(client);
        oplog.stop()?;
    }

    let elapsed = began.elapsed();
    let text = report::table(&rows);
    println!("\n{text}");
    let results = Results {
        rows,
        scan,
        ticks,
        scans,
        claims,
        fleet,
    };
    for (name, table) in [
        (scan_name, results.scan.as_deref().map(report::scan_table)),
        (ticks_name, results.ticks.as_deref().map(report::tick_table)),
        (
            &scans_name,
            results.scans.as_deref().map(report::scans_table),
        ),
        (
            claims_name,
            results.claims.as_deref().map(report::claims_table),
        ),
        (
            fleet_name,
            results.fleet.as_deref().map(report::fleet_table),
        ),
    ] {
        if let Some(table) = table {
            println!("{name}:\n\n{table}");
        }
    }
    errors.extend(results.rows.iter().flat_map(Row::errors));
    for error in &errors {
        eprintln!("FAILED {error}");
    }
    anyhow::ensure!(
        errors.is_empty(),
        "some cells failed; the report was not written"
    );
    if let Some(path) = &args.markdown {
        let markdown = report::markdown(
            &results,
            &machine,
            &report::RunFacts {
                revision: &args.revision,
                elapsed,
                cap_secs: args.cap_secs,
                repeat: baseline.as_ref().map_or(1, |_| args.repeat),
            },
        );
        std::fs::write(path, markdown).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.json {
        let json = report::json(&results, &args.revision)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A database of its own for one peer in one scenario; each measurement drops it first.
fn scratch(client: &Client, peer: &str) -> Database {
    client.database(&format!("bench_{peer}"))
}

/// Runs a section of its own and shows its table; a failure is logged and kept in `errors`, not
/// the end of the run, so the other sections still get measured.
async fn section<T>(
    name: &str,
    run: impl Future<Output = Result<T>>,
    table: impl Fn(&T) -> String,
    errors: &mut Vec<String>,
) -> Option<T> {
    eprintln!("[{name}]…");
    match run.await {
        Ok(value) => {
            eprintln!("{}", table(&value));
            Some(value)
        }
        Err(e) => {
            eprintln!("[{name}] FAILED: {e:#}");
            errors.push(format!("[{name}]: {e:#}"));
            None
        }
    }
}

/// The baseline binary's cell in a row, when `--baseline` was given.
async fn baseline_cell<T: Into<Cell>>(
    row: &str,
    run: Option<impl Future<Output = Result<T>>>,
) -> Option<Cell> {
    match run {
        Some(run) => Some(cell(row, "baseline", run).await),
        None => None,
    }
}

/// The median of repeated drain cells by rate; a failed run fails the cell.
fn median(mut cells: Vec<Cell>) -> Cell {
    if let Some(failed) = cells.iter().find(|c| matches!(c, Cell::Failed(_))) {
        return failed.clone();
    }
    let rate = |c: &Cell| match c {
        Cell::Throughput(t) => t.per_second(),
        _ => 0.0,
    };
    cells.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    cells.swap_remove(cells.len() / 2)
}

/// Runs one measurement, logging its progress; a failure becomes a failed cell, not the end of
/// the run, so the other cells still get measured.
async fn cell<T: Into<Cell>>(row: &str, peer: &str, run: impl Future<Output = Result<T>>) -> Cell {
    eprintln!("[{row}] {peer}…");
    let began = Instant::now();
    match run.await {
        Ok(value) => {
            let cell = value.into();
            eprintln!("[{row}] {peer}: {cell} ({:.0?})", began.elapsed());
            cell
        }
        Err(e) => {
            eprintln!("[{row}] {peer} FAILED: {e:#}");
            Cell::Failed(format!("{e:#}"))
        }
    }
}
