//! The queue handle: the `jobs` collection, the retry policy, and the metrics every call records.

use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReadPreference;
use mongodb::{Collection, Database};

use crate::{JobDoc, QueueMetrics, Result, RetryPolicy};

/// The collection a queue lives in unless told otherwise.
pub const DEFAULT_COLLECTION: &str = "jobs";

/// A handle on one queue collection. Cheap to clone; every clone records into the same metrics.
#[derive(Debug, Clone)]
pub struct Queue {
    pub(crate) jobs: Collection<JobDoc>,
    /// The same collection for the reads that may lag (the depth sample, list pages).
    pub(crate) lists: Collection<Document>,
    pub(crate) retry: RetryPolicy,
    pub(crate) metrics: QueueMetrics,
}

impl Queue {
    /// The queue in `db.jobs`, with the default retry policy.
    pub fn new(db: &Database) -> Queue {
        Queue::in_collection(db, DEFAULT_COLLECTION)
    }

    /// The queue in another collection of `db` (several independent queues, or tests).
    pub fn in_collection(db: &Database, name: &str) -> Queue {
        Queue {
            jobs: sv0_storage::durable(db).collection(name),
            lists: sv0_storage::durable(db).collection(name),
            retry: RetryPolicy::default(),
            metrics: QueueMetrics::default(),
        }
    }

    /// The backoff between a failed attempt and the next.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Queue {
        self.retry = retry;
        self
    }

    /// Sends the reads that may lag (the depth sample, the operator's list pages) where
    /// `preference` says, say to a secondary; every other read stays on the primary.
    pub fn lag_tolerant_reads(mut self, preference: ReadPreference) -> Queue {
        let namespace = self.jobs.namespace();
        let db = self.jobs.client().database(&namespace.db);
        self.lists = sv0_storage::lag_tolerant(&db, preference).collection(&namespace.coll);
        self
    }

    /// The metrics this queue records; register them once per process.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// One job by id, in whatever state it is.
    pub async fn get(&self, id: ObjectId) -> Result<Option<JobDoc>> {
        Ok(self.jobs.find_one(doc! {"_id": id}).await?)
    }

    /// The underlying collection, for reading and watching it (a worker's wake-ups). Write to it
    /// only through the queue's calls: they keep the lease and fencing invariants.
    pub fn collection(&self) -> Collection<Document> {
        self.jobs.clone_with_type()
    }
}

/// `now + delay` as a BSON date.
pub(crate) fn after(now: DateTime, delay: Duration) -> DateTime {
    DateTime::from_millis(
        now.timestamp_millis()
            .saturating_add(delay.as_millis() as i64),
    )
}

/// Cuts an error message to a bounded size on a character boundary. The queue stores what it is
/// given: callers pass messages that carry no secret (the broker's types cannot print one).
pub(crate) fn truncate_error(message: &str) -> String {
    const MAX_BYTES: usize = 2_000;
    if message.len() <= MAX_BYTES {
        return message.to_string();
    }
    let mut end = MAX_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &message[..end], message.len() - end)
}

#[cfg(test)]
mod tests {
    use super::truncate_error;

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(3_000);
        let cut = truncate_error(&long);
        assert!(cut.len() < 2_100, "{}", cut.len());
        assert!(cut.ends_with("(4000 bytes cut)"), "{cut}");
        assert_eq!(truncate_error("short"), "short");
    }
}
