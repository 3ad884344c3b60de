//! The depth sampler: queued jobs and the oldest due job's age per kind, by one aggregation per
//! period rather than a count per request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use tokio_util::sync::CancellationToken;

use crate::{JobStatus, Queue, Result};

/// Queue depth of one kind at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct KindDepth {
    pub kind: String,
    pub queued: i64,
    /// How long the oldest due job has waited; zero when none is due yet.
    pub oldest_age: Duration,
}

#[derive(Debug)]
pub struct DepthSampler {
    queue: Queue,
    every: Duration,
    kinds: HashSet<String>,
}

impl DepthSampler {
    pub fn new(queue: Queue, every: Duration) -> DepthSampler {
        DepthSampler {
            queue,
            every,
            kinds: HashSet::new(),
        }
    }

    /// Kinds reported from the first sample on, at zero while none is queued: an empty queue is
    /// a depth of 0, not a missing series (and an alert on depth can tell the two apart).
    pub fn kinds<'a>(mut self, kinds: impl IntoIterator<Item = &'a str>) -> DepthSampler {
        self.kinds.extend(kinds.into_iter().map(str::to_string));
        self
    }

    pub async fn run(self, shutdown: CancellationToken) {
        // Kinds seen before are set to zero when they empty, instead of keeping a stale value.
        let seen = Arc::new(Mutex::new(self.kinds));
        super::every("depth sampler", self.every, shutdown, || {
            sample(self.queue.clone(), seen.clone())
        })
        .await;
    }
}

async fn sample(queue: Queue, seen: Arc<Mutex<HashSet<String>>>) -> Result<()> {
    let depths = queue.depth().await?;
    let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for kind in seen.iter() {
        if !depths.iter().any(|d| &d.kind == kind) {
            queue.metrics.set_depth(kind, 0, 0.0);
        }
    }
    for depth in depths {
        queue
            .metrics
            .set_depth(&depth.kind, depth.queued, depth.oldest_age.as_secs_f64());
        seen.insert(depth.kind);
    }
    Ok(())
}

impl Queue {
    /// Queued jobs per kind and the oldest due job's age.
    pub async fn depth(&self) -> Result<Vec<KindDepth>> {
        let now = DateTime::now();
        let groups: Vec<Document> = self
            .lists
            .aggregate(vec![
                doc! {"$match": {"status": JobStatus::Queued.as_str()}},
                doc! {"$group": {"_id": "$kind", "queued": {"$sum": 1}, "oldest_run_at": {"$min": "$run_at"}}},
            ])
            .await?
            .try_collect()
            .await?;
        Ok(groups
            .iter()
            .filter_map(|g| {
                let waited = g
                    .get_datetime("oldest_run_at")
                    .map(|at| now.timestamp_millis() - at.timestamp_millis())
                    .unwrap_or(0)
                    .max(0);
                Some(KindDepth {
                    kind: g.get_str("_id").ok()?.to_string(),
                    queued: g
                        .get_i32("queued")
                        .map(i64::from)
                        .or_else(|_| g.get_i64("queued"))
                        .ok()?,
                    oldest_age: Duration::from_millis(waited as u64),
                })
            })
            .collect())
    }
}
