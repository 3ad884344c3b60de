//! What the chaos run must leave behind, checked through the crates' own read APIs once the
//! faults have stopped and the work has settled: no job lost, one run per scope slot, every run
//! finished with cells that agree with its status.

use std::collections::{BTreeMap, HashMap};

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use sv0_domain::category::{DRIVER, STAGE_CELLS};
use sv0_domain::{CellStatus, Domain, RunFilter, RunRecord, RunStatus, ScanRun, Schedule, Trigger};
use sv0_queue::{JobFilter, JobStatus, Queue};
use sv0_scheduler::SlotLog;

use crate::workload::Scope;

/// The figures the run ends with.
#[derive(Debug, Default)]
pub struct Findings {
    pub jobs: u64,
    /// Jobs still queued or running after the settle: lost.
    pub lost: u64,
    pub dead_or_failed_jobs: u64,
    pub runs_by_status: BTreeMap<String, u64>,
    pub runs_by_trigger: BTreeMap<String, u64>,
    pub unfinished_runs: Vec<ObjectId>,
    /// Scheduled runs beyond the first for one (scope, slot).
    pub duplicate_slots: u64,
    /// Finished runs whose cells disagree with their status, and why.
    pub inconsistent: Vec<String>,
    /// Slots not run, by outcome and the policy's reason.
    pub slots_not_run: BTreeMap<String, u64>,
    /// Slots between a scope's first and last decided slot that no outcome accounts for.
    pub slots_unaccounted: u64,
    /// Slots two outcomes account for.
    pub slots_recorded_twice: u64,
    /// Stage holders' writes that landed after a write of a newer holder (or a later stage): in
    /// each run's fence log, an entry below one before it; in each keyed set's head log, a commit
    /// by a holder of a run below an earlier commit's holder of the same run; a run's sync or
    /// evidence pack stored under another fence than the holder that linked or stamped it.
    pub stale_commits: Vec<String>,
    /// Keyed-set commits checked (in the heads' logs, which keep each set's latest commits).
    pub set_commits: u64,
    /// Stage holders the fence refused (counted from the workers' logs).
    pub holders_fenced: u64,
}

impl Findings {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.unfinished_runs.is_empty()
            && self.duplicate_slots == 0
            && self.inconsistent.is_empty()
            && self.slots_unaccounted == 0
            && self.slots_recorded_twice == 0
            && self.stale_commits.is_empty()
    }
}

/// Queued or running jobs: what the settle waits on.
pub async fn unsettled_jobs(queue: &Queue) -> anyhow::Result<u64> {
    Ok(queue
        .count_jobs(&JobFilter {
            statuses: vec![JobStatus::Queued, JobStatus::Running],
            ..JobFilter::default()
        })
        .await?)
}

/// Whether any run is still queued or running: the settle waits on these too, since a run
/// whose first job was lost gets it back from the orphaned-run reaper only after its grace.
pub async fn unfinished_runs(domain: &Domain) -> anyhow::Result<bool> {
    for status in [RunStatus::Queued, RunStatus::Running] {
        let filter = RunFilter {
            status: Some(status),
            ..RunFilter::default()
        };
        if !domain.list_runs(&filter, None, 1).await?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

pub async fn all_runs(domain: &Domain) -> anyhow::Result<Vec<ScanRun>> {
    let mut runs = Vec::new();
    let mut after = None;
    loop {
        let page = domain.list_runs(&RunFilter::default(), after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(runs);
        };
        after = Some(last.id);
        runs.extend(page);
    }
}

pub async fn check(
    queue: &Queue,
    domain: &Domain,
    slots: &SlotLog,
    scopes: &[Scope],
) -> anyhow::Result<Findings> {
    let mut findings = Findings {
        jobs: queue.count_jobs(&JobFilter::default()).await?,
        lost: unsettled_jobs(queue).await?,
        dead_or_failed_jobs: queue
            .count_jobs(&JobFilter {
                statuses: vec![JobStatus::Dead, JobStatus::Failed],
                ..JobFilter::default()
            })
            .await?,
        ..Findings::default()
    };
    let mut per_slot: HashMap<(ObjectId, i64), u64> = HashMap::new();
    let runs = all_runs(domain).await?;
    for run in &runs {
        *findings
            .runs_by_status
            .entry(run.status.as_str().to_string())
            .or_default() += 1;
        *findings
            .runs_by_trigger
            .entry(run.trigger.type_name().to_string())
            .or_default() += 1;
        if let Trigger::Scheduled { scope_id, slot } = &run.trigger {
            *per_slot
                .entry((*scope_id, slot.timestamp_millis()))
                .or_default() += 1;
        }
        for stale in sv0_domain::run_fence::stale_entries(&run.fence_log) {
            findings.stale_commits.push(format!(
                "run {}: {:?} by {} landed after a newer holder's write",
                run.id, stale.write, stale.fence
            ));
        }
        if !run.status.is_finished() {
            findings.unfinished_runs.push(run.id);
        } else if let Some(why) = inconsistency(run) {
            findings.inconsistent.push(format!("run {}: {why}", run.id));
        }
    }
    findings.duplicate_slots = per_slot.values().map(|n| n - 1).sum();
    for head in domain.set_heads().await? {
        findings.set_commits += head.log.len() as u64;
        for stale in sv0_domain::set_head::stale_commits(&head.log) {
            findings.stale_commits.push(format!(
                "set {}: take {} by run {} ({:?}) committed after a newer holder of the run",
                head.id, stale.take, stale.run_id, stale.fence
            ));
        }
    }
    stale_records(domain, &runs, &mut findings).await?;
    let schedule = Schedule::every(crate::workload::EVERY_SECONDS).slots()?;
    for scope in scopes {
        let id = ObjectId::parse_str(&scope.id)?;
        let outcomes = slots.for_scope(&scope.tenant, id, 10_000).await?;
        let mut recorded = 0;
        for outcome in &outcomes {
            let count = outcome.count.max(0) as u64;
            recorded += count;
            if outcome.outcome != "ran" {
                *findings
                    .slots_not_run
                    .entry(format!("{} ({})", outcome.outcome, outcome.reason))
                    .or_default() += count;
            }
        }
        // Every slot from the first decided to the last is run, skipped or missed exactly once.
        let first = outcomes.iter().map(|o| o.first_slot).min();
        let last = outcomes
            .iter()
            .map(|o| o.last_slot.unwrap_or(o.first_slot))
            .max();
        if let (Some(first), Some(last)) = (first, last) {
            let after_last = DateTime::from_millis(last.timestamp_millis() + 1);
            let expected = schedule.count_between(first, after_last, 1_000_000);
            findings.slots_unaccounted += expected.saturating_sub(recorded);
            findings.slots_recorded_twice += recorded.saturating_sub(expected);
        }
    }
    Ok(findings)
}

/// A run's sync must carry the fence of the holder that linked it to the run, and its evidence
/// pack that of the holder that last stamped `__evidence`: a record of any other holder is a
/// taken-over holder's write that landed.
async fn stale_records(
    domain: &Domain,
    runs: &[ScanRun],
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let syncs = domain.record_fences(RunRecord::Sync).await?;
    let packs = domain.record_fences(RunRecord::EvidencePack).await?;
    for run in runs {
        let last = |write: &str| {
            run.fence_log
                .iter()
                .rev()
                .find(|e| e.write == write)
                .map(|e| e.fence)
        };
        let checks = [
            ("sync", syncs.get(&run.id), last("sync")),
            ("evidence pack", packs.get(&run.id), last("cell __evidence")),
        ];
        for (record, stored, holder) in checks {
            if let (Some(Some(stored)), Some(holder)) = (stored, holder)
                && *stored != holder
            {
                findings.stale_commits.push(format!(
                    "run {}: its {record} was stored by {stored}, not by {holder}",
                    run.id
                ));
            }
        }
    }
    Ok(())
}

/// Why a finished run's cells disagree with its status, if they do.
fn inconsistency(run: &ScanRun) -> Option<String> {
    let cells = &run.category_results;
    let any = |status: CellStatus| cells.values().any(|c| c.status == status);
    match run.status {
        RunStatus::Succeeded => {
            if any(CellStatus::Failed) || any(CellStatus::Running) {
                return Some("succeeded with a failed or running cell".into());
            }
            // A scan runs every stage; a deploy-gate run only the ones it rebuilds.
            let scan = run.scope_id.is_some();
            STAGE_CELLS
                .iter()
                .find(|stage| {
                    scan && run
                        .cell(stage)
                        .is_none_or(|c| c.status != CellStatus::Succeeded)
                })
                .map(|stage| format!("succeeded without {stage} succeeded"))
        }
        RunStatus::Failed => (run.error.is_none() && !any(CellStatus::Failed))
            .then(|| "failed with no error and no failed cell".into()),
        RunStatus::Timeout => (run.error.is_none() && run.cell(DRIVER).is_none())
            .then(|| "timed out with no reason recorded".into()),
        RunStatus::Cancelled | RunStatus::Queued | RunStatus::Running => None,
    }
}
