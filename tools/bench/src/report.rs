//! The table: one row per scenario, a cell per peer, the ratios, the targets, and the
//! Markdown report around them.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::claims::{self, ClaimCost};
use crate::fleet::{self, FleetClaims};
use crate::measure::{Latency, Memory, Throughput, thousands};
use crate::pipeline::StageCost;
use crate::scans::{self, WorkerScans};
use crate::scheduler::{self, TickCost};

/// One measurement of one peer in one scenario.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Cell {
    Throughput(Throughput),
    Latency(Latency),
    Memory(Memory),
    /// The measurement makes no sense for this peer (no latency for the raw ceiling).
    NotApplicable,
    /// Could be measured, is not, for the stated reason.
    NotRun(String),
    Failed(String),
}

impl From<Throughput> for Cell {
    fn from(t: Throughput) -> Cell {
        Cell::Throughput(t)
    }
}
impl From<Latency> for Cell {
    fn from(l: Latency) -> Cell {
        Cell::Latency(l)
    }
}
impl From<Memory> for Cell {
    fn from(m: Memory) -> Cell {
        Cell::Memory(m)
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Throughput(t) if t.capped() => write!(
                f,
                "{} jobs/s (capped: {} of {} in {:.0} s)",
                thousands(t.per_second().round() as usize),
                thousands(t.done),
                thousands(t.total),
                t.seconds
            ),
            Cell::Throughput(t) => write!(
                f,
                "{} jobs/s ({:.2} s)",
                thousands(t.per_second().round() as usize),
                t.seconds
            ),
            Cell::Latency(l) => write!(
                f,
                "p50 {:.0} ms / p99 {:.0} ms / p99.9 {:.0} ms ({} jobs)",
                l.p50,
                l.p99,
                l.p999,
                l.samples_ms.len()
            ),
            Cell::Memory(m) => {
                write!(f, "peak {:.1} MB (now {:.1} MB", m.peak_mb, m.current_mb)?;
                match m.at_rest_mb {
                    Some(rest) => write!(f, "; at rest {rest:.1} MB)"),
                    None => write!(f, ")"),
                }
            }
            Cell::NotApplicable => write!(f, "—"),
            Cell::NotRun(why) => write!(f, "not run: {why}"),
            Cell::Failed(_) => write!(f, "FAILED (error in the log)"),
        }
    }
}

/// One scenario across the three peers.
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub ours: Cell,
    /// The `--baseline` binary's cell, when one was given.
    pub baseline: Option<Cell>,
    pub agenda: Cell,
    pub ceiling: Cell,
}

impl Row {
    /// The row's cells, in the table's column order.
    fn cells(&self) -> [String; 6] {
        [
            self.name.clone(),
            self.ours.to_string(),
            self.agenda.to_string(),
            self.ceiling.to_string(),
            self.vs_agenda(),
            self.vs_ceiling(),
        ]
    }

    /// Every failure's message, for the end of the run.
    pub fn errors(&self) -> Vec<String> {
        [
            ("ours", Some(&self.ours)),
            ("baseline", self.baseline.as_ref()),
            ("agenda", Some(&self.agenda)),
            ("ceiling", Some(&self.ceiling)),
        ]
        .into_iter()
        .filter_map(|(peer, cell)| Some((peer, cell?)))
        .filter_map(|(peer, cell)| match cell {
            Cell::Failed(e) => Some(format!("[{}] {peer}: {e}", self.name)),
            _ => None,
        })
        .collect()
    }

    /// Ours relative to agenda: throughput ×, or for latency and memory the p50 / peak ×
    /// (lower is better there).
    fn vs_agenda(&self) -> String {
        match (&self.ours, &self.agenda) {
            (Cell::Throughput(_), Cell::Throughput(a)) if a.done == 0 => {
                "— (agenda: none done)".into()
            }
            (Cell::Throughput(o), Cell::Throughput(a)) => {
                format!("×{:.1}", o.per_second() / a.per_second())
            }
            (Cell::Latency(o), Cell::Latency(a)) => format!("p50 ×{:.2}", o.p50 / a.p50),
            (Cell::Memory(o), Cell::Memory(a)) => format!("peak ×{:.2}", o.peak_mb / a.peak_mb),
            _ => "—".into(),
        }
    }

    fn vs_ceiling(&self) -> String {
        match (&self.ours, &self.ceiling) {
            (Cell::Throughput(o), Cell::Throughput(c)) => {
                format!("{:.0} %", 100.0 * o.per_second() / c.per_second())
            }
            _ => "—".into(),
        }
    }
}

/// Progress output: a row as soon as it is measured.
pub fn print_row(row: &Row) {
    let [name, ours, agenda, ceiling, vs_agenda, vs_ceiling] = row.cells();
    let baseline = match &row.baseline {
        Some(cell) => format!(" | baseline {cell}"),
        None => String::new(),
    };
    eprintln!(
        "== {name} | ours {ours}{baseline} | agenda {agenda} | ceiling {ceiling} | ours/agenda {vs_agenda} | ours/ceiling {vs_ceiling}"
    );
}

/// The table as Markdown (readable as plain text too), then the targets.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | ours (sv0 worker) | agenda 6 | raw ceiling | ours / agenda | ours / ceiling |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        out += &format!("| {} |\n", row.cells().join(" | "));
    }
    out += "\nTargets:\n\n";
    out += &targets(rows);
    if rows.iter().any(|r| r.baseline.is_some()) {
        out += "\n";
        out += &against_baseline(rows);
    }
    out
}

/// This build next to the `--baseline` build, measured in the same run on the same server: how
/// much slower (or bigger) this build is in each row, and whether it stays within 10 %.
fn against_baseline(rows: &[Row]) -> String {
    let mut out = String::from(
        "This build against the baseline build (`--baseline`), same run, same server\n\
         (no row more than 10 % worse; a latency row by its p99, within 2 ms \
         counting as equal):\n\n\
         | scenario | this build | baseline | this / baseline | within 10 % |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let Some(base) = &row.baseline else { continue };
        // How much worse this build is, as a factor ≥ 1 when worse: rates fall, times and
        // memory rise.
        let (ratio, worse) = match (&row.ours, base) {
            (Cell::Throughput(o), Cell::Throughput(b)) => {
                let r = o.per_second() / b.per_second();
                (format!("×{r:.2} (rate)"), Some(1.0 / r))
            }
            // Latencies are whole milliseconds of two clocks' readings: a p99 within 2 ms of the
            // baseline's is the same p99, whatever the ratio.
            (Cell::Latency(o), Cell::Latency(b)) => (
                format!("p50 ×{:.2}, p99 ×{:.2}", o.p50 / b.p50, o.p99 / b.p99),
                Some(if o.p99 - b.p99 <= 2.0 {
                    1.0
                } else {
                    o.p99 / b.p99
                }),
            ),
            // Judged by what the drain added: the resting size is the binary, which grew with
            // the stages and the broker whatever the queue does (both figures are shown).
            (Cell::Memory(o), Cell::Memory(b)) => {
                let peak = o.peak_mb / b.peak_mb;
                match o.drain_mb().zip(b.drain_mb()) {
                    Some((od, bd)) => (
                        format!("peak ×{peak:.2}, added by the drain ×{:.2}", od / bd),
                        Some(od / bd),
                    ),
                    None => (format!("peak ×{peak:.2}"), Some(peak)),
                }
            }
            _ => ("—".into(), None),
        };
        let verdict = match worse {
            Some(w) if w <= 1.10 => "yes",
            Some(_) => "NO",
            None => "—",
        };
        out += &format!(
            "| {} | {} | {base} | {ratio} | {verdict} |\n",
            row.name, row.ours
        );
    }
    out
}

/// Each target, met or not, for every row it applies to.
fn targets(rows: &[Row]) -> String {
    let mut out = String::new();
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    for row in rows {
        match (&row.ours, &row.agenda, &row.ceiling) {
            (Cell::Throughput(o), agenda, ceiling) => {
                match agenda {
                    Cell::Throughput(a) if a.done == 0 => {
                        out += &format!(
                            "- ≥5× agenda, {}: agenda finished no job within the cap — met\n",
                            row.name
                        );
                    }
                    Cell::Throughput(a) => {
                        let x = o.per_second() / a.per_second();
                        out += &format!(
                            "- ≥5× agenda, {}: ×{x:.1} — {}\n",
                            row.name,
                            verdict(x >= 5.0)
                        );
                    }
                    _ => {}
                }
                if let Cell::Throughput(c) = ceiling {
                    let share = o.per_second() / c.per_second();
                    out += &format!(
                        "- ≥50 % of the raw ceiling, {}: {:.0} % — {}\n",
                        row.name,
                        100.0 * share,
                        verdict(share >= 0.5)
                    );
                }
            }
            (Cell::Latency(l), _, _) => {
                out += &format!(
                    "- p50 ≤ 20 ms with idle workers, {}: {:.0} ms — {}\n",
                    row.name,
                    l.p50,
                    verdict(l.p50 <= 20.0)
                );
                out += &format!(
                    "- p99 ≤ 20 ms with idle workers, {}: {:.0} ms — {}\n",
                    row.name,
                    l.p99,
                    verdict(l.p99 <= 20.0)
                );
            }
            (Cell::Memory(m), _, _) => {
                out += &format!(
                    "- worker RSS ≤ 50 MB, {}: peak {:.1} MB — {}\n",
                    row.name,
                    m.peak_mb,
                    verdict(m.peak_mb <= 50.0)
                );
            }
            _ => {}
        }
    }
    out
}

/// Facts about the machine the figures come from.
pub struct Machine {
    cores: usize,
    cpu: String,
    memory: String,
    load: String,
    node: String,
}

impl Machine {
    pub async fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        let node = tokio::process::Command::new("node")
            .arg("--version")
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: field(&cpuinfo, "model name"),
            memory: field(&meminfo, "MemTotal"),
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
            node,
        }
    }
}

/// How a benchmark run was made, for the report's opening paragraph.
pub struct RunFacts<'a> {
    pub revision: &'a str,
    pub elapsed: Duration,
    pub cap_secs: u64,
    /// Runs per drain cell of ours and the baseline (1 without a baseline).
    pub repeat: u16,
}

/// Everything one run measured: what the Markdown report and the JSON file are written from.
#[derive(Debug, Serialize)]
pub struct Results {
    pub rows: Vec<Row>,
    pub scan: Option<Vec<StageCost>>,
    pub ticks: Option<Vec<TickCost>>,
    pub scans: Option<Vec<WorkerScans>>,
    pub claims: Option<Vec<ClaimCost>>,
    pub fleet: Option<Vec<FleetClaims>>,
}

/// The results as JSON, for `scripts/plot-bench`.
pub fn json(results: &Results, revision: &str) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct File<'a> {
        revision: &'a str,
        measured_at: String,
        #[serde(flatten)]
        results: &'a Results,
    }
    Ok(serde_json::to_string_pretty(&File {
        revision,
        measured_at: now(),
        results,
    })?)
}

fn now() -> String {
    mongodb::bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

/// The whole of `docs/benchmarks.md`: how it was made, the table, the targets, the sections of
/// their own, and the explanation (`tools/bench/src/explanation.md`, which states no figures of its
/// own). The plots it links are drawn from the JSON file by `scripts/plot-bench`.
pub fn markdown(results: &Results, machine: &Machine, facts: &RunFacts) -> String {
    let RunFacts {
        revision,
        elapsed,
        cap_secs,
        repeat,
    } = *facts;
    let repetitions = if repeat > 1 {
        format!(
            "Each drain of ours and of the baseline ran {repeat} times, the two alternating, and\n\
             its cell is the median run; every other cell is one run"
        )
    } else {
        "One repetition per cell".to_string()
    };
    // scripts/plot-bench draws it from the polling row's samples.
    let polling = |r: &Row| r.name.contains("polling") && matches!(r.ours, Cell::Latency(_));
    let latency_plot = if results.rows.iter().any(polling) {
        "\nEvery enqueue→start latency sample of the polling row, ours and agenda's, as a \
         cumulative distribution:\n\n![Enqueue→start latency, polling](bench-latency.png)\n"
    } else {
        ""
    };
    let mut out = format!(
        "# Benchmarks\n\n\
         Produced by one command, `./scripts/bench`, which writes this file. Measured {} at\n\
         revision `{revision}`; the run took {:.0} s. {repetitions}: treat differences of\n\
         a few per cent as noise. Drains slower than {cap_secs} s are stopped there and reported at\n\
         the rate they reached (marked *capped*).\n\n\
         Machine: {} cores ({}), {} of memory, shared with other work (load average {} when the\n\
         run began); node {}; devdb (mongo-java-server 1.47.0, in memory) as the server for every\n\
         peer. **These are the stand's figures, not MongoDB's**: compare the columns, not the\n\
         absolute numbers (`tools/devdb/README.md`, \"Its cost model\").\n\n\
         ## Results\n\n{}{latency_plot}\n",
        now(),
        elapsed.as_secs_f64(),
        machine.cores,
        machine.cpu,
        machine.memory,
        machine.load,
        machine.node,
        table(&results.rows),
    );
    if let Some(costs) = &results.scan {
        out += &scan_section(costs);
    }
    if let Some(costs) = &results.ticks {
        out += &tick_section(costs);
    }
    if let Some(scans) = &results.scans {
        out += &scans_section(scans);
    }
    if let Some(costs) = &results.claims {
        out += &claims_section(costs);
    }
    if let Some(fleets) = &results.fleet {
        out += &fleet_section(fleets);
    }
    out += include_str!("explanation.md");
    out
}

fn scan_section(costs: &[StageCost]) -> String {
    format!(
        "## A scan, stage by stage\n\n\
         The demo connector's graph of {} entities (two clouds of {}), scanned by one \
         `sv0 worker`, then scanned again unchanged, then again with {} % of each cloud's \
         entities changed (the demo connector's `drift`, which renames them; see \"A scan's \
         cost\" below):\n\n{}\n{}",
        thousands(2 * crate::pipeline::SIZE_PER_CLOUD as usize),
        thousands(crate::pipeline::SIZE_PER_CLOUD as usize),
        crate::pipeline::DRIFT_PERCENT,
        scan_table(costs),
        drift_sentence(costs),
    )
}

/// What the re-scan of changed entities wrote, against the graph and the first scan's findings.
fn drift_sentence(costs: &[StageCost]) -> String {
    let stage = |name: &str| costs.iter().find(|c| c.stage == name);
    let (Some(entities), Some(findings)) = (stage("__sync"), stage("__eval")) else {
        return String::new();
    };
    let share = |part: u64, whole: u64| 100.0 * part as f64 / whole.max(1) as f64;
    let size = 2 * crate::pipeline::SIZE_PER_CLOUD as u64;
    format!(
        "With {} % of the entities changed, the re-scan writes {} entities ({:.1} % of {}) and \
         {} findings ({:.1} % of the {} the first scan wrote): each changed item once, the \
         others not at all. The drift renames entities, so it changes the findings whose titles \
         name them, and no chain or stitched path, which name entities by id.\n\n",
        crate::pipeline::DRIFT_PERCENT,
        thousands(entities.drifted.written as usize),
        share(entities.drifted.written, size),
        thousands(size as usize),
        thousands(findings.drifted.written as usize),
        share(findings.drifted.written, findings.first.written),
        thousands(findings.first.written as usize),
    )
}

fn tick_section(costs: &[TickCost]) -> String {
    format!(
        "## Scheduler tick\n\n\
         {} scopes ({} tenants of {}, each on a one-minute schedule) due at the same slot, \
         decided by one tick of one scheduler, then, on a fresh copy, by three replicas \
         ticking at once (in one process, racing for the same scope claims):\n\n{}\n\
         Per scope, `Pipeline::start_scan` makes five round trips one after another (reads \
         of the tenant, the scope and its connector instance, then writes of the run and its \
         `execute_scan` job), against five per batch of 500 scopes for the claim, the slot \
         outcomes and the settle: the tick is those round trips, one scope after another, \
         and a replica adds its own sequence of them. Two of them (the scope read by \
         `{{_id, tenant_id}}`, the settle by `{{_id, claim.nonce}}`) have unique indexes of \
         exactly those fields: on the stand, which uses an index only when a query's \
         fields match one exactly, each scanned `scan_scopes` without them, and a first \
         measurement grew with the square of the scopes (about 95 s for one replica). A \
         replica that loses the race for a batch goes on to the next one, so replicas \
         ticking at once share the scopes: the last column says how they fell.\n\n",
        thousands(scheduler::SCOPES),
        scheduler::TENANTS,
        scheduler::SCOPES_PER_TENANT,
        tick_table(costs)
    )
}

/// The Markdown table of the costs.
pub fn scan_table(costs: &[StageCost]) -> String {
    let drift = crate::pipeline::DRIFT_PERCENT;
    let mut out = format!(
        "| stage | first scan: time | first scan: documents written | unchanged re-scan: time | re-scan: documents written | {drift} % changed: time | {drift} % changed: documents written |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let (mut first, mut again, mut drifted) = (0.0, 0.0, 0.0);
    for c in costs {
        first += c.first.seconds;
        again += c.again.seconds;
        drifted += c.drifted.seconds;
        out += &format!(
            "| {} | {:.2} s | {} | {:.2} s | {} | {:.2} s | {} |\n",
            c.stage,
            c.first.seconds,
            thousands(c.first.written as usize),
            c.again.seconds,
            thousands(c.again.written as usize),
            c.drifted.seconds,
            thousands(c.drifted.written as usize),
        );
    }
    out += &format!(
        "| **all stages** | **{first:.2} s** | | **{again:.2} s** | | **{drifted:.2} s** | |\n"
    );
    out
}

/// The Markdown table of the ticks.
pub fn tick_table(costs: &[TickCost]) -> String {
    let mut out = String::from(
        "| replicas | time, until every replica's tick returned | scopes per second | runs created by each replica |\n\
         | --- | --- | --- | --- |\n",
    );
    for c in costs {
        let shares: Vec<String> = c.shares.iter().map(|&n| thousands(n as usize)).collect();
        out += &format!(
            "| {} | {:.2} s | {} | {} |\n",
            c.replicas,
            c.seconds,
            thousands(c.per_second().round() as usize),
            shares.join(" / ")
        );
    }
    out
}

fn scans_section(scans: &[WorkerScans]) -> String {
    let (Some(one), Some(most)) = (scans.first(), scans.last()) else {
        return String::new();
    };
    let runs = one.scans.total;
    let room = if runs <= scans::WORKER_SLOTS {
        "One worker already has more slots than the batch has runs, so the processes added \
         here add no room: they add CPU for the workers' own work"
    } else {
        "One worker runs as many scans at once as it has slots; the processes added here add \
         room, and CPU for the workers' own work"
    };
    let ratio = most.per_minute() / one.per_minute();
    let bound = if ratio < 1.5 {
        ", so more processes barely move the rate: what bounds it here is the stand and the \
         two cores, not the workers"
    } else {
        ""
    };
    format!(
        "## Scans per minute by worker processes\n\n\
         A batch of {runs} demo scans, one scope per tenant, each of two clouds of {} entities \
         ({} in all), queued at once, then taken up by {} `sv0 worker` processes at their \
         defaults ({} slots each, every pipeline kind, polling); each worker count starts from \
         a fresh database with the same batch. Scans per minute are the runs (every one must \
         succeed) over the span from the first worker ready to the last run's `finished_at`; \
         each stage's time is its median over the batch's runs (the scan: its job; the other \
         stages: their cells).\n\n\
         ![Scans per minute by worker processes](bench-scans-by-workers.png)\n\n{}\n\
         {room} (the stages' evaluation, chain assembly and stitching run in the worker) and \
         requests in flight at once. On this machine the workers share two cores with devdb \
         and with the connector process each scan starts, and devdb serializes every operation \
         on a collection, while every tenant's scan writes to the same collections \
         (`entities`, `findings`, `chains`, `scan_runs`, `jobs`): the runs of a batch wait for \
         each other there, whichever process sends their writes (compare each stage with the \
         same graph scanned alone, in \"A scan, stage by stage\"). {} workers scanned at ×{ratio:.2} \
         the rate of one{bound}. On MongoDB, on machines of its own, writes to one collection \
         proceed in parallel, and worker processes on more machines add CPU that this one does \
         not have.\n\n",
        thousands(scans::SIZE_PER_CLOUD as usize),
        thousands(2 * scans::SIZE_PER_CLOUD as usize),
        counts(scans),
        scans::WORKER_SLOTS,
        scans_table(scans),
        most.workers,
    )
}

/// The worker counts, as "1, 2 and 4".
fn counts(scans: &[WorkerScans]) -> String {
    let counts: Vec<String> = scans.iter().map(|s| s.workers.to_string()).collect();
    match counts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => counts.concat(),
    }
}

/// The Markdown table of the scans by workers.
pub fn scans_table(scans: &[WorkerScans]) -> String {
    let stages = scans.first().map_or(&[][..], |s| &s.stage_medians[..]);
    let mut out = String::from("| worker processes | scans | time | scans per minute |");
    for (stage, _) in stages {
        out += &format!(" {stage} (median) |");
    }
    out += &format!("\n|{}\n", " --- |".repeat(4 + stages.len()));
    for s in scans {
        out += &format!(
            "| {} | {} | {:.1} s | {:.1} |",
            s.workers,
            s.scans.done,
            s.scans.seconds,
            s.per_minute()
        );
        for (_, seconds) in &s.stage_medians {
            out += &format!(" {seconds:.2} s |");
        }
        out += "\n";
    }
    out
}

fn claims_section(costs: &[ClaimCost]) -> String {
    let (Some(first), Some(most_queued), Some(most_finished)) = (
        costs.first(),
        costs.iter().rfind(|c| c.finished == 0),
        costs.iter().rfind(|c| c.finished > 0),
    ) else {
        return format!("## Claim cost by backlog\n\n{}\n", claims_table(costs));
    };
    let growth = |to: &ClaimCost| format!("×{:.1}", to.claim.p50 / first.claim.p50);
    let fill: f64 = costs.iter().map(|c| c.fill_seconds).sum();
    format!(
        "## Claim cost by backlog\n\n\
         One claim of {batch} no-op jobs (`sv0 worker`'s default concurrency, every slot free, \
         nothing leased ahead), made from the bench process through the queue's API as a worker \
         makes it: `Queue::candidates`, then `Queue::claim_candidates`, three round trips (the \
         sorted candidate query, the claim's `update_many` re-checking the filter over the \
         candidates, the read-back by `_id`). {samples} claims per point, one after another; \
         after each, the batch is given back (`Queue::release`, untimed), so every claim sees \
         the same backlog. The p99 is the second slowest of the {samples}. Queued jobs are \
         written with `enqueue_many`, finished ones inserted as the queue leaves them; writing \
         them took {fill:.1} s in all (the last column). The raw ceiling leases the same \
         number of known jobs by one `update_many` on `_id` alone, as the drains' ceiling \
         does: no query to find them.\n\n\
         ![Claim cost by backlog](bench-claim-cost.png)\n\n{}\n\
         - **By queued jobs** (from {} to {} queued, the median claim grew {}). devdb ignores \
           non-unique indexes (docs/design.md, \"The test stand and its cost model\"; \
           `tools/devdb/README.md`, \"Its cost model\"), so the candidate \
           query scans the whole collection and sorts every queued job by priority and \
           `run_at` to return the first {batch}, and the claim's `update_many` scans it again \
           (without a sort: its filter turns most jobs away on their `_id` range). So the claim \
           grows with the backlog, the candidate query most of all. On MongoDB the `claim` \
           index (`status, kind, priority, run_at`) serves that filter and sort: the query \
           reads the first {batch} entries of the range of queued jobs of the kind, whatever \
           lies behind them, and the re-check and the read-back are `_id` lookups, so the \
           claim's cost would stay flat (logarithmic in the index's size).\n\
         - **By finished jobs** ({} queued, from {} to {} finished beside them, the median \
           claim grew {}). The stand still scans every document, but `status` turns a \
           finished job away on its first key and only the queued jobs are sorted, so history \
           costs far less than the same number of queued jobs. On MongoDB finished jobs lie \
           outside the claim index's range and cost nothing; on the stand only the pruner \
           (the retention) keeps this flat.\n\
         - **The raw ceiling** is `_id` lookups on either server, so it stays flat: the gap \
           between it and the claim is the price of finding the jobs.\n\n",
        claims_table(costs),
        thousands(first.queued),
        thousands(most_queued.queued),
        growth(most_queued),
        thousands(most_finished.queued),
        thousands(first.finished),
        thousands(most_finished.finished),
        growth(most_finished),
        batch = claims::BATCH,
        samples = claims::SAMPLES,
    )
}

/// The Markdown table of the claim costs.
pub fn claims_table(costs: &[ClaimCost]) -> String {
    let mut out = String::from(
        "| queued | finished | claim p50 | claim p99 | its candidate query p50 | raw ceiling p50 | raw ceiling p99 | writing the jobs it added |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for c in costs {
        out += &format!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} s |\n",
            thousands(c.queued),
            thousands(c.finished),
            c.claim.p50,
            c.claim.p99,
            c.candidates.p50,
            c.ceiling.p50,
            c.ceiling.p99,
            c.fill_seconds
        );
    }
    out
}

fn fleet_section(fleets: &[FleetClaims]) -> String {
    let (Some(one), Some(most)) = (fleets.first(), fleets.last()) else {
        return String::new();
    };
    format!(
        "## Claims by worker processes

         The same backlog of {} no-op jobs drained by fleets of {} `sv0 worker` processes, {}          slots each, every process with its own client, started idle before the jobs were          enqueued (polling, change streams off). Each worker counts its claim queries (the          candidate query and the claim write) and its collisions (candidates a claim write          tried to take and another worker took first); the table sums them over the fleet once          the queue is empty. From {} to {} workers, claim queries per job went from {:.3} to          {:.3} and collisions per job from {:.3} to {:.3}.\n\n{}\n",
        thousands(one.drain.total),
        fleets
            .iter()
            .map(|f| f.workers.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        fleet::SLOTS,
        one.workers,
        most.workers,
        one.queries_per_job(),
        most.queries_per_job(),
        one.collisions_per_job(),
        most.collisions_per_job(),
        fleet_table(fleets),
    )
}

pub fn fleet_table(fleets: &[FleetClaims]) -> String {
    let mut out = String::from(
        "| workers | slots | jobs per second | claim queries per job | collisions per job | jobs claimed |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for f in fleets {
        out += &format!(
            "| {} | {} | {} | {:.3} | {:.3} | {} |\n",
            f.workers,
            f.workers * fleet::SLOTS,
            thousands(f.drain.per_second().round() as usize),
            f.queries_per_job(),
            f.collisions_per_job(),
            thousands(f.claimed as usize),
        );
    }
    out
}
