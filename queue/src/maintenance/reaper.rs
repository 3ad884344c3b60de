//! The reaper: running jobs whose lease expired are given back.

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use tokio_util::sync::CancellationToken;

use crate::{JobStatus, Queue, Result};

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReapReport {
    pub requeued: u64,
    pub dead: u64,
    pub cancelled: u64,
}

#[derive(Debug, Clone)]
pub struct Reaper {
    queue: Queue,
    every: Duration,
}

impl Reaper {
    pub fn new(queue: Queue, every: Duration) -> Reaper {
        Reaper { queue, every }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        super::every("reaper", self.every, shutdown, || self.queue.reap_expired()).await;
    }
}

impl Queue {
    /// One reaper pass. Three bulk updates, each re-checking expiry, so reapers in every process
    /// can run at once: a job moves once, and each move increments the fencing token, so the old
    /// holder's writes match nothing afterwards. A job is `dead` only when its recorded attempts
    /// (starts) are spent: one leased ahead and never started goes back to the queue unspent.
    pub async fn reap_expired(&self) -> Result<ReapReport> {
        let now = DateTime::now();
        let expired = || {
            doc! {
                "status": JobStatus::Running.as_str(),
                "lease.expires_at": {"$lte": now},
            }
        };
        let moved = |status: JobStatus, error: &str| -> Document {
            let mut set = doc! {
                "status": status.as_str(),
                "last_error": error,
                "updated_at": now,
            };
            if status == JobStatus::Queued {
                set.insert("run_at", now);
            } else {
                set.insert("finished_at", now);
            }
            doc! {"$set": set, "$unset": {"lease.expires_at": ""}, "$inc": {"lease.token": 1_i64}}
        };

        // Queued jobs marked for cancelling whose canceller stopped before cancelling them: no
        // claim takes them, so without this they would wait forever.
        let marked = self.cancel_marked_queued().await?;

        // The common pass finds nothing: one indexed look (on the stand, one scan that stops at
        // the first match) instead of three bulk updates.
        let any = self
            .collection()
            .find_one(expired())
            .projection(doc! {"_id": 1})
            .await?;
        if any.is_none() {
            self.metrics.reaped("cancelled", marked);
            return Ok(ReapReport {
                cancelled: marked,
                ..ReapReport::default()
            });
        }

        let mut asked_to_cancel = expired();
        asked_to_cancel.insert("cancel_requested", true);
        let cancelled = self
            .jobs
            .update_many(
                asked_to_cancel,
                moved(JobStatus::Cancelled, "lease expired after a cancel request"),
            )
            .await?
            .modified_count;

        let mut spent = expired();
        spent.insert("$expr", doc! {"$gte": ["$attempts", "$max_attempts"]});
        let dead = self
            .jobs
            .update_many(
                spent,
                moved(JobStatus::Dead, "lease expired on the last attempt"),
            )
            .await?
            .modified_count;

        let requeued = self
            .jobs
            .update_many(expired(), moved(JobStatus::Queued, "lease expired"))
            .await?
            .modified_count;

        let cancelled = cancelled + marked;
        let report = ReapReport {
            requeued,
            dead,
            cancelled,
        };
        for (outcome, count) in [
            ("requeued", requeued),
            ("dead", dead),
            ("cancelled", cancelled),
        ] {
            self.metrics.reaped(outcome, count);
        }
        if report != ReapReport::default() {
            tracing::info!(requeued, dead, cancelled, "reaped expired leases");
        }
        Ok(report)
    }
}
