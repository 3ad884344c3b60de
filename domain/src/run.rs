//! `scan_runs`: the pipeline-run root. One document per run; every stage's outcome is a cell of
//! `category_results`, beside the connector's own categories.

use std::collections::BTreeMap;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, DateTime, Document, doc};
use serde::{Deserialize, Serialize};

use crate::category::{CategoryName, DRIVER};
use crate::run_fence::{FenceEntry, RunFence};

/// Why a run exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The scheduler, for one slot of a scope's schedule.
    Scheduled { scope_id: ObjectId, slot: DateTime },
    /// An operator or a seed script through the admin API (and every ingest of a graph).
    ManualApi {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
    },
    /// Infrastructure-as-code tooling (a stack created or changed).
    IacLifecycle {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// CI after a deploy: rematerialize (the run's `rematerialize` says what) for one tenant.
    DeployGate {
        deploy_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
    },
    /// A re-run of an earlier run (`POST /scan-runs/{id}/retry`).
    Retry { retry_of: ObjectId },
}

impl Trigger {
    /// Every [`Trigger::type_name`], in declaration order.
    pub const TYPE_NAMES: [&'static str; 5] = [
        "scheduled",
        "manual_api",
        "iac_lifecycle",
        "deploy_gate",
        "retry",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            Trigger::Scheduled { .. } => "scheduled",
            Trigger::ManualApi { .. } => "manual_api",
            Trigger::IacLifecycle { .. } => "iac_lifecycle",
            Trigger::DeployGate { .. } => "deploy_gate",
            Trigger::Retry { .. } => "retry",
        }
    }
}

/// What a deploy-gate run rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materializer {
    Chains,
    StitchedPaths,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Timeout,
    Cancelled,
}

impl RunStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// The statuses a run ends in.
    pub const FINAL: [RunStatus; 4] = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Running,
    Succeeded,
    Failed,
}

/// One cell of `category_results`, a connector category or a platform stage: exactly these five
/// fields. A cell carries no extra fields, and this type enforces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryResult {
    pub status: CellStatus,
    /// What the cell counts: a connector's items, or per stage what the stage's doc says
    /// (`pipeline/src/stages.rs`).
    pub items_scanned: i64,
    pub started_at: DateTime,
    pub ended_at: Option<DateTime>,
    pub errors: Vec<String>,
}

impl CategoryResult {
    pub fn succeeded(items: u64, started_at: DateTime) -> CategoryResult {
        CategoryResult {
            status: CellStatus::Succeeded,
            items_scanned: items as i64,
            started_at,
            ended_at: Some(DateTime::now()),
            errors: Vec::new(),
        }
    }

    pub fn failed(error: impl Into<String>, started_at: DateTime) -> CategoryResult {
        CategoryResult {
            status: CellStatus::Failed,
            items_scanned: 0,
            started_at,
            ended_at: Some(DateTime::now()),
            errors: vec![error.into()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The longest a run may take from its start; the connector is killed past it, and the
    /// orphaned-run reaper times the run out.
    pub max_runtime_seconds: i64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_runtime_seconds: 3600,
        }
    }
}

/// The longest budget a run may have: a day.
pub const MAX_RUNTIME_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRun {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub tenant_id: String,
    pub trigger: Trigger,
    /// What is scanned: absent on deploy-gate runs and on ingests of a graph.
    pub scope_id: Option<ObjectId>,
    pub instance_id: Option<ObjectId>,
    pub status: RunStatus,
    pub category_results: BTreeMap<CategoryName, CategoryResult>,
    /// The `connector_syncs` record this run's data came from.
    pub sync_id: Option<ObjectId>,
    pub budget: Budget,
    /// What a deploy-gate run (or a retry of one) rebuilds, instead of scanning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rematerialize: Option<Vec<Materializer>>,
    /// Why the run failed, naming the stage or category; absent otherwise.
    pub error: Option<String>,
    /// Idempotency of run creation: one run per (scope, slot), per (deploy, tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// When a worker last took up one of the run's stages (the orphaned-run reaper reads it).
    pub last_claimed_at: Option<DateTime>,
    /// The fence of the stage holder that last took the run up ([`crate::run_fence`]); only grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<RunFence>,
    /// Every landed write of a stage holder, in the order they landed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fence_log: Vec<FenceEntry>,
    /// When the orphaned-run reaper last saw that the queued run's first job exists (or
    /// enqueued it): a creator that lost the database between writing the run and enqueuing its
    /// job leaves a run no worker would ever take up, so the reaper checks each queued run a
    /// minute after its creation, and again every hour while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_job_confirmed_at: Option<DateTime>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub started_at: Option<DateTime>,
    pub finished_at: Option<DateTime>,
}

impl ScanRun {
    /// A new queued run; nothing is stored until it is inserted.
    pub fn new(tenant_id: &str, trigger: Trigger, budget: Budget) -> ScanRun {
        let now = DateTime::now();
        ScanRun {
            id: ObjectId::new(),
            tenant_id: tenant_id.to_string(),
            trigger,
            scope_id: None,
            instance_id: None,
            status: RunStatus::Queued,
            category_results: BTreeMap::new(),
            sync_id: None,
            budget,
            rematerialize: None,
            error: None,
            dedup_key: None,
            last_claimed_at: None,
            fence: None,
            fence_log: Vec::new(),
            first_job_confirmed_at: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        }
    }

    pub fn cell(&self, name: &str) -> Option<&CategoryResult> {
        self.category_results
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
    }

    /// The status the cells add up to once the last stage is done: `succeeded` when every cell
    /// is, else `failed` with the first failing cell named (the driver's first, then in name
    /// order).
    pub fn outcome(&self) -> (RunStatus, Option<String>) {
        let failing = self
            .cell(DRIVER)
            .filter(|c| c.status != CellStatus::Succeeded)
            .map(|c| (DRIVER, c))
            .or_else(|| {
                self.category_results
                    .iter()
                    .find(|(_, c)| c.status != CellStatus::Succeeded)
                    .map(|(k, c)| (k.as_str(), c))
            });
        match failing {
            None => (RunStatus::Succeeded, None),
            Some((name, cell)) => (
                RunStatus::Failed,
                Some(format!(
                    "{name} {}: {}",
                    match cell.status {
                        CellStatus::Running => "did not finish",
                        _ => "failed",
                    },
                    cell.errors
                        .first()
                        .map_or("no error recorded", String::as_str)
                )),
            ),
        }
    }
}

/// The `$set` that writes one cell.
pub(crate) fn cell_update(
    name: &CategoryName,
    cell: &CategoryResult,
) -> bson::ser::Result<Document> {
    Ok(doc! {
        format!("category_results.{name}"): bson::to_bson(cell)?,
        "updated_at": DateTime::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_with_an_extra_field_is_refused() {
        let extra = doc! {
            "status": "succeeded", "items_scanned": 1_i64, "started_at": DateTime::now(),
            "ended_at": DateTime::now(), "errors": [], "sync_id": "x",
        };
        let err = bson::from_document::<CategoryResult>(extra).unwrap_err();
        assert!(err.to_string().contains("sync_id"), "{err}");
        let missing = doc! { "status": "succeeded", "items_scanned": 1_i64 };
        assert!(bson::from_document::<CategoryResult>(missing).is_err());
    }

    #[test]
    fn triggers_are_tagged_by_type() {
        let retry = Trigger::Retry {
            retry_of: ObjectId::new(),
        };
        let stored = bson::to_document(&retry).unwrap();
        assert_eq!(stored.get_str("type").unwrap(), "retry");
        assert!(stored.get_object_id("retry_of").is_ok());
        let back: Trigger = bson::from_document(stored).unwrap();
        assert_eq!(back, retry);
        assert!(bson::from_document::<Trigger>(doc! {"type": "cron"}).is_err());
    }

    #[test]
    fn the_outcome_names_the_failing_cell() {
        let now = DateTime::now();
        let mut run = ScanRun::new(
            "t",
            Trigger::ManualApi { requested_by: None },
            Budget::default(),
        );
        run.category_results.insert(
            CategoryName::parse("identities").unwrap(),
            CategoryResult::succeeded(3, now),
        );
        assert_eq!(run.outcome(), (RunStatus::Succeeded, None));
        run.category_results.insert(
            CategoryName::parse("__eval").unwrap(),
            CategoryResult::failed("rule set broken", now),
        );
        let (status, error) = run.outcome();
        assert_eq!(status, RunStatus::Failed);
        assert_eq!(error.unwrap(), "__eval failed: rule set broken");
        run.category_results.insert(
            CategoryName::parse(DRIVER).unwrap(),
            CategoryResult::failed("connector exited with status 3", now),
        );
        assert!(run.outcome().1.unwrap().starts_with("__driver__ failed"));
    }
}
