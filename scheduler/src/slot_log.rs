//! `slot_outcomes`: why each slot of a scope ran, was skipped or was missed. One document per
//! run started and one per range of slots skipped for one reason, so an outage of a week on a
//! one-minute schedule is one document, not ten thousand.
//!
//! Each document's `_id` is derived from what it records (scope, slot, outcome), so a tick that
//! is replayed after a crash records nothing twice.

use std::collections::{BTreeSet, HashMap};

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use sv0_domain::{DomainError, Result};

use crate::plan::Skip;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotOutcome {
    #[serde(rename = "_id")]
    pub id: String,
    pub tenant_id: String,
    pub scope_id: ObjectId,
    /// `ran`, `skipped` or `missed`.
    pub outcome: String,
    /// Why a slot was skipped or missed (`overlap`, `paused`, `catch_up_window`, …); for a run,
    /// what started it (`schedule`, `buffered`, `backfill`).
    pub reason: String,
    pub first_slot: DateTime,
    /// The last slot of a range (absent when only the count is known: slots far behind).
    pub last_slot: Option<DateTime>,
    pub count: i64,
    pub run_id: Option<ObjectId>,
    pub recorded_at: DateTime,
}

impl SlotOutcome {
    pub fn ran(
        tenant_id: &str,
        scope_id: ObjectId,
        slot: DateTime,
        run_id: ObjectId,
        reason: &str,
    ) -> SlotOutcome {
        SlotOutcome {
            id: format!("{scope_id}:{}:ran", slot.timestamp_millis()),
            tenant_id: tenant_id.to_string(),
            scope_id,
            outcome: "ran".into(),
            reason: reason.into(),
            first_slot: slot,
            last_slot: Some(slot),
            count: 1,
            run_id: Some(run_id),
            recorded_at: DateTime::now(),
        }
    }

    pub fn skipped(tenant_id: &str, scope_id: ObjectId, skip: &Skip) -> SlotOutcome {
        let outcome = match skip.reason {
            crate::plan::SkipReason::CatchUpWindow => "missed",
            _ => "skipped",
        };
        let reason = skip.reason.as_str();
        SlotOutcome {
            id: format!(
                "{scope_id}:{}:{outcome}:{reason}",
                skip.first.timestamp_millis()
            ),
            tenant_id: tenant_id.to_string(),
            scope_id,
            outcome: outcome.into(),
            reason: reason.into(),
            first_slot: skip.first,
            last_slot: skip.last,
            count: skip.count as i64,
            run_id: None,
            recorded_at: DateTime::now(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SlotLog {
    outcomes: Collection<SlotOutcome>,
}

impl SlotLog {
    pub fn new(db: &Database) -> SlotLog {
        SlotLog {
            outcomes: sv0_storage::durable(db).collection("slot_outcomes"),
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        self.outcomes
            .create_indexes([
                // A scope's slots, newest first (the operator's "why did this slot not run").
                IndexModel::builder()
                    .keys(doc! { "tenant_id": 1, "scope_id": 1, "first_slot": -1 })
                    .build(),
                // The retention prune.
                IndexModel::builder()
                    .keys(doc! { "recorded_at": 1 })
                    .build(),
            ])
            .await?;
        Ok(())
    }

    /// Records `outcomes`; one already recorded (a replayed tick) is left as it is.
    pub async fn record(&self, outcomes: &[SlotOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        match self.outcomes.insert_many(outcomes).ordered(false).await {
            Ok(_) => Ok(()),
            Err(error) if only_duplicates(&error) => Ok(()),
            Err(error) => Err(DomainError::from(error)),
        }
    }

    /// For each of `scopes` (tenant, scope, its `next_run_at`), the outcomes recorded for slots
    /// at or after its `next_run_at`: decisions of a tick whose settlement of the scope did not
    /// land (it failed after recording them, or its claim expired), which a tick deciding the
    /// scope again must keep.
    pub async fn decided_ahead(
        &self,
        scopes: &[(String, ObjectId, DateTime)],
    ) -> Result<HashMap<ObjectId, Vec<SlotOutcome>>> {
        let Some(earliest) = scopes.iter().map(|(_, _, next)| *next).min() else {
            return Ok(HashMap::new());
        };
        let tenants: BTreeSet<&str> = scopes.iter().map(|(t, _, _)| t.as_str()).collect();
        let next_of: HashMap<ObjectId, DateTime> =
            scopes.iter().map(|(_, id, next)| (*id, *next)).collect();
        let found: Vec<SlotOutcome> = self
            .outcomes
            .find(doc! {
                "tenant_id": { "$in": tenants.into_iter().collect::<Vec<_>>() },
                "scope_id": { "$in": next_of.keys().collect::<Vec<_>>() },
                "first_slot": { "$gte": earliest },
            })
            .await?
            .try_collect()
            .await?;
        let mut ahead: HashMap<ObjectId, Vec<SlotOutcome>> = HashMap::new();
        for outcome in found {
            if next_of
                .get(&outcome.scope_id)
                .is_some_and(|next| outcome.first_slot >= *next)
            {
                ahead.entry(outcome.scope_id).or_default().push(outcome);
            }
        }
        Ok(ahead)
    }

    /// A scope's recorded slots, newest first, at most `limit`.
    pub async fn for_scope(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        limit: i64,
    ) -> Result<Vec<SlotOutcome>> {
        Ok(self
            .outcomes
            .find(doc! { "tenant_id": tenant_id, "scope_id": scope_id })
            .sort(doc! { "first_slot": -1, "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// Deletes outcomes recorded before `before`.
    pub async fn prune(&self, before: DateTime) -> Result<u64> {
        Ok(self
            .outcomes
            .delete_many(doc! { "recorded_at": { "$lt": before } })
            .await?
            .deleted_count)
    }
}

fn only_duplicates(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|e| e.code == 11000))
        }
        _ => false,
    }
}
