//! The pruner: finished jobs are deleted once their retention has passed.

use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use tokio_util::sync::CancellationToken;

use crate::{JobStatus, Queue, Result};

#[derive(Debug, Clone)]
pub struct Pruner {
    queue: Queue,
    retention: Duration,
    every: Duration,
}

impl Pruner {
    pub fn new(queue: Queue, retention: Duration, every: Duration) -> Pruner {
        Pruner {
            queue,
            retention,
            every,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        super::every("pruner", self.every, shutdown, || {
            self.queue.prune_finished(self.retention)
        })
        .await;
    }
}

impl Queue {
    /// Deletes jobs that finished more than `retention` ago; returns how many. A job's dedup key
    /// is free again once it is pruned.
    pub async fn prune_finished(&self, retention: Duration) -> Result<u64> {
        let cutoff = DateTime::from_millis(
            DateTime::now()
                .timestamp_millis()
                .saturating_sub(retention.as_millis() as i64),
        );
        let finals: Vec<&str> = JobStatus::FINAL.iter().map(|s| s.as_str()).collect();
        let deleted = self
            .jobs
            .delete_many(doc! {"status": {"$in": finals}, "finished_at": {"$lte": cutoff}})
            .await?
            .deleted_count;
        if deleted > 0 {
            tracing::info!(deleted, "pruned finished jobs");
        }
        Ok(deleted)
    }
}
