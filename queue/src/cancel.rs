//! Cancelling: a queued job is cancelled at once; a running one is asked to stop, and its holder
//! sees the request at its next heartbeat and finishes it as `cancelled`.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};

use crate::{JobStatus, Queue, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued; it is `cancelled` now and will never run.
    Cancelled,
    /// It is running; its holder will stop it at its next heartbeat.
    Requested,
    /// It had already finished in this state; nothing changed.
    AlreadyFinished(JobStatus),
    NotFound,
}

/// What cancelling a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCancel {
    pub cancelled: u64,
    pub requested: u64,
}

pub(crate) fn cancel_queued(now: DateTime) -> Document {
    doc! {
        "$set": {"status": JobStatus::Cancelled.as_str(), "finished_at": now, "updated_at": now},
        "$inc": {"lease.token": 1_i64},
    }
}

pub(crate) fn request_cancel(now: DateTime) -> Document {
    doc! {"$set": {"cancel_requested": true, "updated_at": now}}
}

/// Jobs that may still run: queued, or running under a lease.
fn unfinished() -> Document {
    doc! {"$in": [JobStatus::Queued.as_str(), JobStatus::Running.as_str()]}
}

impl Queue {
    /// Cancels one job. Two writes, in an order that leaves no gap: first the job is marked
    /// `cancel_requested` whether queued or running (a marked job is never claimed, and a running
    /// one that fails, is given back or is reaped ends `cancelled` instead of queued), then a
    /// queued job is cancelled outright.
    pub async fn cancel(&self, id: ObjectId) -> Result<CancelOutcome> {
        let now = DateTime::now();
        let marked = self
            .jobs
            .update_one(
                doc! {"_id": id, "status": unfinished()},
                request_cancel(now),
            )
            .await?
            .matched_count;
        if marked == 0 {
            return Ok(match self.get(id).await? {
                Some(job) => CancelOutcome::AlreadyFinished(job.status),
                None => CancelOutcome::NotFound,
            });
        }
        let queued = doc! {"_id": id, "status": JobStatus::Queued.as_str()};
        let cancelled = self
            .jobs
            .update_one(queued, cancel_queued(now))
            .await?
            .matched_count;
        Ok(if cancelled == 1 {
            CancelOutcome::Cancelled
        } else {
            CancelOutcome::Requested
        })
    }

    /// Cancels every unfinished job of a group (e.g. all stages of one run), in the same two
    /// steps as [`Queue::cancel`], so a job that moves between queued and running meanwhile is
    /// still caught.
    pub async fn cancel_group(&self, group_id: &str) -> Result<GroupCancel> {
        let now = DateTime::now();
        let marked = self
            .jobs
            .update_many(
                doc! {"group_id": group_id, "status": unfinished()},
                request_cancel(now),
            )
            .await?
            .matched_count;
        let cancelled = self
            .jobs
            .update_many(
                doc! {"group_id": group_id, "status": JobStatus::Queued.as_str(), "cancel_requested": true},
                cancel_queued(now),
            )
            .await?
            .modified_count;
        Ok(GroupCancel {
            cancelled,
            requested: marked.saturating_sub(cancelled),
        })
    }

    /// Cancels queued jobs that were marked but not yet cancelled (a canceller that stopped
    /// between its two writes); the reaper calls it. Returns how many.
    pub(crate) async fn cancel_marked_queued(&self) -> Result<u64> {
        let now = DateTime::now();
        Ok(self
            .jobs
            .update_many(
                doc! {"status": JobStatus::Queued.as_str(), "cancel_requested": true},
                cancel_queued(now),
            )
            .await?
            .modified_count)
    }
}
