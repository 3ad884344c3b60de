//! The operator's schedule controls, as library calls (the admin API exposes them): set or
//! clear a schedule, pause with a note, resume, trigger now, backfill a range. Each validates
//! exactly as the scheduler does, because it is the same code, and counts what it did in the
//! same metrics (in the process that calls it).

use std::sync::Arc;

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use sv0_domain::{DomainError, ScanRun, ScanScope, Schedule, Trigger};
use sv0_pipeline::Pipeline;
use sv0_pipeline::Result;

use crate::metrics::{ReasonLabel, TriggerLabel};
use crate::plan::{MISSED_COUNT_CAP, Skip, SkipReason};
use crate::{SchedulerMetrics, SlotLog, SlotOutcome, slot_key};

/// The most slots one backfill may cover.
pub const MAX_BACKFILL_SLOTS: usize = 1_000;

/// The controls, with what they act through.
#[derive(Clone)]
pub struct Controls {
    pub pipeline: Arc<Pipeline>,
    pub slot_log: SlotLog,
    pub metrics: SchedulerMetrics,
}

impl Controls {
    /// Sets (or, with `None`, clears) a scope's schedule; its next slot is the first after now.
    pub async fn set_schedule(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        schedule: Option<Schedule>,
    ) -> Result<ScanScope> {
        Ok(self
            .pipeline
            .domain()
            .set_schedule(tenant_id, scope_id, schedule, DateTime::now())
            .await?)
    }

    /// Pauses a scope; `note` says why, `by` who.
    pub async fn pause(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        note: Option<String>,
        by: Option<String>,
    ) -> Result<ScanScope> {
        Ok(self
            .pipeline
            .domain()
            .pause_scope(tenant_id, scope_id, note, by, DateTime::now())
            .await?)
    }

    /// Resumes a paused scope from the first slot after now; the slots the pause covered are
    /// recorded as skipped (`paused`). Returns the scope and how many slots the pause skipped.
    pub async fn resume(&self, tenant_id: &str, scope_id: ObjectId) -> Result<(ScanScope, u64)> {
        let now = DateTime::now();
        let Some((before, after)) = self
            .pipeline
            .domain()
            .resume_scope(tenant_id, scope_id, now)
            .await?
        else {
            return Ok((self.pipeline.domain().scope(tenant_id, scope_id).await?, 0));
        };
        let mut skipped = 0;
        if let (Some(schedule), Some(next)) = (&before.schedule, before.next_run_at) {
            // A slot that was waiting for its previous run (always before `next`) is dropped too.
            let waiting = u64::from(before.buffered_slot.is_some());
            let first = before.buffered_slot.unwrap_or(next);
            skipped = schedule.slots()?.count_between(next, now, MISSED_COUNT_CAP) + waiting;
            if skipped > 0 {
                self.slot_log
                    .record(&[SlotOutcome::skipped(
                        tenant_id,
                        scope_id,
                        &Skip {
                            reason: SkipReason::Paused,
                            first,
                            last: None,
                            count: skipped,
                        },
                    )])
                    .await?;
                self.metrics
                    .slots_skipped
                    .get_or_create(&ReasonLabel {
                        reason: SkipReason::Paused.as_str(),
                    })
                    .inc_by(skipped);
            }
        }
        Ok((after, skipped))
    }

    /// Starts a run of the scope now (`manual_api`, `requested_by`), outside its schedule. The
    /// schedule's next slot sees it as the previous run (the overlap policy applies to it).
    pub async fn trigger_now(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        requested_by: Option<String>,
    ) -> Result<ScanRun> {
        let (run, _) = self
            .pipeline
            .start_scan(
                tenant_id,
                scope_id,
                Trigger::ManualApi { requested_by },
                None,
            )
            .await?;
        self.pipeline
            .domain()
            .set_last_run(tenant_id, scope_id, run.id)
            .await?;
        self.metrics
            .runs_created
            .get_or_create(&TriggerLabel {
                trigger: "manual_api",
            })
            .inc();
        Ok(run)
    }

    /// Runs every slot of the scope's schedule in `[from, to]` (past slots only), each once by
    /// slot identity: a slot that ran already is returned with its run. Overlap policy does not
    /// apply: a backfill asks for each slot explicitly. At most [`MAX_BACKFILL_SLOTS`] slots.
    pub async fn backfill(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        from: DateTime,
        to: DateTime,
    ) -> Result<Vec<Backfilled>> {
        let now = DateTime::now();
        if to < from {
            return Err(DomainError::invalid("to", "must not be before `from`").into());
        }
        if to > now {
            return Err(DomainError::invalid(
                "to",
                "a backfill covers past slots only (the schedule runs the future ones)",
            )
            .into());
        }
        let scope = self.pipeline.domain().scope(tenant_id, scope_id).await?;
        let schedule = scope.schedule.ok_or_else(|| {
            DomainError::Conflict(format!("scope {scope_id} has no schedule to backfill"))
        })?;
        let slots = schedule.slots()?.between(from, to, MAX_BACKFILL_SLOTS + 1);
        if slots.len() > MAX_BACKFILL_SLOTS {
            return Err(DomainError::invalid(
                "to",
                format!(
                    "the range holds more than {MAX_BACKFILL_SLOTS} slots; backfill it in parts"
                ),
            )
            .into());
        }
        let mut done = Vec::with_capacity(slots.len());
        let mut outcomes = Vec::new();
        for slot in slots {
            let trigger = Trigger::Scheduled { scope_id, slot };
            let (run, created) = self
                .pipeline
                .start_scan(tenant_id, scope_id, trigger, Some(slot_key(scope_id, slot)))
                .await?;
            if created {
                outcomes.push(SlotOutcome::ran(
                    tenant_id, scope_id, slot, run.id, "backfill",
                ));
                self.metrics
                    .runs_created
                    .get_or_create(&TriggerLabel {
                        trigger: "scheduled",
                    })
                    .inc();
            }
            done.push(Backfilled { slot, run, created });
        }
        self.slot_log.record(&outcomes).await?;
        Ok(done)
    }
}

/// One slot of a backfill: the slot, its run, and whether this call created the run (false:
/// the slot had run already, by the schedule or an earlier backfill).
#[derive(Debug, Clone)]
pub struct Backfilled {
    pub slot: DateTime,
    pub run: ScanRun,
    pub created: bool,
}
