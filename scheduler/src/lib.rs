//! sv0 pipeline's scheduler: it turns scan scopes' schedules into scheduled runs, and times out
//! runs that nobody is working on.
//!
//! It owns the tick ([`Scheduler`]: claim due scopes, decide each due slot by the scope's
//! catch-up and overlap policies, start the runs, record the decision), the `slot_outcomes`
//! collection (why each slot ran, was skipped or was missed), the operator's schedule controls
//! ([`controls::Controls`]: set a schedule, pause, resume, trigger now, backfill) and the
//! orphaned-run reaper ([`OrphanReaper`]). What a schedule's slots are is the domain's
//! ([`sv0_domain::Schedule`]); runs are started through the pipeline's entry points.
//!
//! It must not write runs, scopes or jobs itself (the domain, the pipeline and the queue do),
//! and must never depend on being the only replica: every decision is fenced by a scope claim,
//! and every run it creates carries its slot's dedup key, so any number of replicas, retried
//! ticks and restarts create at most one run per scope slot.

pub mod controls;
mod metrics;
mod orphans;
pub mod plan;
mod slot_log;
mod tick;

pub use metrics::{ReasonLabel, SchedulerMetrics, TriggerLabel};
pub use orphans::OrphanReaper;
pub use slot_log::{SlotLog, SlotOutcome};
pub use tick::{Scheduler, SchedulerConfig, TickReport};

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;

/// The dedup key of a scope slot's run and of its `execute_scan` job.
pub fn slot_key(scope_id: ObjectId, slot: DateTime) -> String {
    format!("scheduled:{scope_id}:{}", slot.timestamp_millis())
}
