//! What devdb lost and what recovery did with it (`--devdb-kill`). A SIGKILLed devdb forgets about
//! the last second of acknowledged writes, so the processes go on from things the database no
//! longer has. The evidence is what the run keeps as it goes, set against what the database holds
//! once the work has settled: the run ids the API answered with, the schedulers' `slot ran` lines
//! and the workers' `job committed` lines. A clean stop loses nothing, so without `--devdb-kill`
//! every loss reads 0: the control.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use mongodb::bson::oid::ObjectId;
use sv0_domain::Domain;
use sv0_queue::{JobFilter, JobStatus, Queue};
use sv0_scheduler::SlotLog;

use crate::workload::Scope;

/// The workers' log filter: `info`, plus the `job committed` line of every job (debug, since it is
/// a worker's busiest line), the evidence of an acknowledged completion.
pub const WORKER_LOG_FILTER: (&str, &str) = ("RUST_LOG", "info,sv0_worker::job_task=debug");

/// The checks that do not gate a `--devdb-kill` run: they compare what the schedulers decided
/// with what was recorded of it, and the stand takes back a scope's claim or a run after a
/// scheduler acted on it, so another decides the slot again and both decisions are recorded,
/// which a journaled MongoDB does not cause. Every other check still gates: whatever the stand
/// forgot, what it keeps is the database of a moment before, and from there every job and run
/// must end, every finished run's cells agree with its status, no reaped holder's write land and
/// no secret leak.
pub const NOT_GATED_AFTER_SIGKILL: [&str; 3] = [
    "duplicate runs for one scope slot",
    "scope slots unaccounted for (neither run, skipped nor missed)",
    "scope slots accounted for twice",
];

/// Acknowledged writes gone after the run, by kind, and what recovery did.
#[derive(Debug, Default)]
pub struct Losses {
    /// Whether devdb's restarts were SIGKILLs (`--devdb-kill`): the checks in
    /// [`NOT_GATED_AFTER_SIGKILL`] then do not gate.
    pub devdb_killed: bool,
    pub api_runs: u64,
    pub api_runs_lost: u64,
    pub scheduled_runs: u64,
    pub scheduled_runs_lost: u64,
    /// Slots whose logged run was lost but that have another run, started after the loss.
    pub lost_slots_run_again: u64,
    pub slots_run: u64,
    pub slots_run_without_outcome: u64,
    pub jobs_committed: u64,
    pub committed_jobs_lost: u64,
    pub jobs_committed_again: u64,
    pub committed_jobs_not_succeeded: u64,
    /// Queued runs the orphaned-run reaper gave their lost first job: the repair of a creator
    /// that lost the database between its two writes.
    pub first_jobs_restored: u64,
    pub runs_timed_out_by_reaper: u64,
}

impl Losses {
    /// Whether a failed check fails the run.
    pub fn gates(&self, check: &str) -> bool {
        !(self.devdb_killed && NOT_GATED_AFTER_SIGKILL.contains(&check))
    }

    pub fn rows(&self) -> [(String, u64); 9] {
        [
            (
                format!(
                    "runs the API acknowledged ({}), absent afterwards",
                    self.api_runs
                ),
                self.api_runs_lost,
            ),
            (
                format!(
                    "runs a scheduler logged as started ({}), absent afterwards",
                    self.scheduled_runs
                ),
                self.scheduled_runs_lost,
            ),
            (
                "of which their slot was run again by a new run".into(),
                self.lost_slots_run_again,
            ),
            (
                format!(
                    "slots a scheduler logged as run ({}) with no `ran` outcome in the slot log",
                    self.slots_run
                ),
                self.slots_run_without_outcome,
            ),
            (
                format!(
                    "jobs a worker logged as committed ({}), absent afterwards",
                    self.jobs_committed
                ),
                self.committed_jobs_lost,
            ),
            (
                "jobs committed again after a logged commit (their completion lost, run again)"
                    .into(),
                self.jobs_committed_again,
            ),
            (
                "jobs logged as committed that did not end succeeded".into(),
                self.committed_jobs_not_succeeded,
            ),
            (
                "queued runs given their lost first job by the orphaned-run reaper".into(),
                self.first_jobs_restored,
            ),
            (
                "runs timed out by the orphaned-run reaper".into(),
                self.runs_timed_out_by_reaper,
            ),
        ]
    }
}

/// Counts what was acknowledged (`api_runs`: the run ids the API answered with) and is gone.
pub async fn account(
    dir: &Path,
    api_runs: &[String],
    queue: &Queue,
    domain: &Domain,
    slot_log: &SlotLog,
    scopes: &[Scope],
) -> anyhow::Result<Losses> {
    let runs: HashSet<String> = crate::checks::all_runs(domain)
        .await?
        .iter()
        .map(|run| run.id.to_hex())
        .collect();
    let api_runs: HashSet<&String> = api_runs.iter().collect();
    let mut losses = Losses {
        api_runs: api_runs.len() as u64,
        api_runs_lost: api_runs.iter().filter(|id| !runs.contains(**id)).count() as u64,
        ..Losses::default()
    };

    // Each slot a scheduler ran, with every run it logged for it (a slot whose run was lost is
    // decided again, since the scope's new state was lost with it).
    let mut slots: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for event in events(dir, "scheduler-", &["slot ran"])? {
        let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
        slots
            .entry((field("scope_id"), field("slot")))
            .or_default()
            .insert(field("run_id"));
    }
    let mut recorded = HashSet::new();
    for scope in scopes {
        let id = ObjectId::parse_str(&scope.id)?;
        for outcome in slot_log.for_scope(&scope.tenant, id, 10_000).await? {
            if outcome.outcome == "ran" {
                // The same rendering of the slot as the scheduler's log line.
                recorded.insert((scope.id.clone(), outcome.first_slot.to_string()));
            }
        }
    }
    losses.slots_run = slots.len() as u64;
    for (slot, run_ids) in &slots {
        let lost = run_ids.iter().filter(|id| !runs.contains(*id)).count() as u64;
        losses.scheduled_runs += run_ids.len() as u64;
        losses.scheduled_runs_lost += lost;
        if lost > 0 && run_ids.iter().any(|id| runs.contains(id)) {
            losses.lost_slots_run_again += 1;
        }
        if !recorded.contains(slot) {
            losses.slots_run_without_outcome += 1;
        }
    }

    let mut commits: HashMap<ObjectId, u64> = HashMap::new();
    for event in events(dir, "worker-", &["job committed"])? {
        if let Some(id) = event["job_id"]
            .as_str()
            .and_then(|id| ObjectId::parse_str(id).ok())
        {
            *commits.entry(id).or_default() += 1;
        }
    }
    losses.jobs_committed = commits.len() as u64;
    losses.jobs_committed_again = commits.values().filter(|n| **n > 1).count() as u64;
    let ids: Vec<ObjectId> = commits.into_keys().collect();
    let mut found = 0;
    for chunk in ids.chunks(1_000) {
        let filter = JobFilter {
            ids: chunk.to_vec(),
            ..JobFilter::default()
        };
        for job in queue.list_jobs(&filter, None, 1_000).await? {
            found += 1;
            if job.status != JobStatus::Succeeded {
                losses.committed_jobs_not_succeeded += 1;
            }
        }
    }
    losses.committed_jobs_lost = ids.len() as u64 - found;

    losses.first_jobs_restored =
        events(dir, "scheduler-", &["queued run had no first job"])?.len() as u64;
    losses.runs_timed_out_by_reaper = events(
        dir,
        "scheduler-",
        &[
            "orphaned run timed out",
            "queued run that can never start timed out",
        ],
    )?
    .len() as u64;
    Ok(losses)
}

/// The JSON log lines whose message starts with one of `messages`, from the logs of the
/// processes whose names start with `process`.
pub fn events(
    dir: &Path,
    process: &str,
    messages: &[&str],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !(name.starts_with(process) && name.ends_with(".log")) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let message = event["message"].as_str().unwrap_or_default();
            if messages.iter().any(|m| message.starts_with(m)) {
                found.push(event);
            }
        }
    }
    Ok(found)
}

/// How many times a worker's stage holder was refused by its run's fence (a take-up skipped, or
/// a write refused), as the workers' logs say: the fence at work, not a failure.
pub fn holders_fenced(dir: &std::path::Path) -> anyhow::Result<u64> {
    let refusals = [
        "stage write refused by the run's fence",
        "a newer holder has the run; job skipped",
    ];
    Ok(events(dir, "worker-", &refusals)?.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Findings;

    fn passes(devdb_killed: bool, findings: Findings) -> bool {
        let losses = Losses {
            devdb_killed,
            ..Losses::default()
        };
        let (_, passed) = crate::report(
            1,
            150,
            &findings,
            &losses,
            &Default::default(),
            &Default::default(),
            &Default::default(),
        );
        passed
    }

    #[test]
    fn a_sigkill_run_excuses_the_slot_checks_and_nothing_else() {
        let twice = || Findings {
            slots_recorded_twice: 1,
            duplicate_slots: 1,
            slots_unaccounted: 1,
            ..Findings::default()
        };
        assert!(!passes(false, twice()));
        assert!(passes(true, twice()));
        let lost = Findings {
            lost: 1,
            ..Findings::default()
        };
        assert!(!passes(true, lost));
        assert!(passes(true, Findings::default()));
    }
}
