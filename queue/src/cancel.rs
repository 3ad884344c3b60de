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

fn cancel_queued(now: DateTime) -> Document {
    doc! {
        "$set": {"status": JobStatus::Cancelled.as_str(), "finished_at": now, "updated_at": now},
        "$inc": {"lease.token": 1_i64},
    }
}

fn request_cancel(now: DateTime) -> Document {
    doc! {"$set": {"cancel_requested": true, "updated_at": now}}
}

impl Queue {
    /// Cancels one job.
    pub async fn cancel(&self, id: ObjectId) -> Result<CancelOutcome> {
        // A job can move between queued and running while we look (claimed, or released); each
        // step is atomic, so a few rounds settle it.
        for _ in 0..5 {
            let now = DateTime::now();
            let queued = doc! {"_id": id, "status": JobStatus::Queued.as_str()};
            if self
                .jobs
                .update_one(queued, cancel_queued(now))
                .await?
                .matched_count
                == 1
            {
                return Ok(CancelOutcome::Cancelled);
            }
            let running = doc! {"_id": id, "status": JobStatus::Running.as_str()};
            if self
                .jobs
                .update_one(running, request_cancel(now))
                .await?
                .matched_count
                == 1
            {
                return Ok(CancelOutcome::Requested);
            }
            match self.get(id).await? {
                None => return Ok(CancelOutcome::NotFound),
                Some(job) if job.status.is_final() => {
                    return Ok(CancelOutcome::AlreadyFinished(job.status));
                }
                Some(_) => continue,
            }
        }
        Ok(CancelOutcome::Requested)
    }

    /// Cancels every unfinished job of a group (e.g. all stages of one run).
    pub async fn cancel_group(&self, group_id: &str) -> Result<GroupCancel> {
        let now = DateTime::now();
        let cancelled = self
            .jobs
            .update_many(
                doc! {"group_id": group_id, "status": JobStatus::Queued.as_str()},
                cancel_queued(now),
            )
            .await?
            .modified_count;
        let requested = self
            .jobs
            .update_many(
                doc! {"group_id": group_id, "status": JobStatus::Running.as_str()},
                request_cancel(now),
            )
            .await?
            .modified_count;
        Ok(GroupCancel {
            cancelled,
            requested,
        })
    }
}
