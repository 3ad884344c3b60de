//! The raw ceiling: the least server work a job needs, with the driver alone. Each job gets one
//! claim write and one completion write, batched: `update_many` by `_id $in` over a batch of
//! pre-inserted jobs sets them `running` (with a lease and a token increment, as a claim does),
//! a second `update_many` sets them `succeeded`. No query to find candidates, no fencing, no
//! read-back, no handler: a worker cannot do less per job, so its throughput is bounded by this.

use std::time::{Duration, Instant};

use anyhow::Result;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Collection, Database};

use crate::measure::Throughput;
use crate::ours;

/// Jobs per `update_many`. The driver would take far more (an `_id $in` list of this size is a
/// few tens of KiB against a 16 MiB command limit); 1,000 is already far larger than any worker
/// could claim at once, and other sizes were not compared.
pub const BATCH: usize = 1_000;

/// Claims and completes `jobs` pre-inserted jobs (after `history` finished ones) in batches.
pub async fn run(db: &Database, jobs: usize, history: usize) -> Result<Throughput> {
    let queue = ours::fresh_queue(db).await?;
    ours::insert_history(db, history).await?;
    let ids = ours::enqueue(&queue, jobs).await?;
    let coll = db.collection::<Document>("jobs");

    let begin = Instant::now();
    for batch in ids.chunks(BATCH) {
        lease(&coll, batch).await?;
        coll.update_many(
            doc! {"_id": {"$in": batch}},
            doc! {"$set": {"status": "succeeded", "finished_at": DateTime::now()}},
        )
        .await?;
    }
    let seconds = begin.elapsed().max(Duration::from_millis(1)).as_secs_f64();
    Ok(Throughput {
        done: jobs,
        total: jobs,
        seconds,
    })
}

/// The ceiling's claim: `ids` set `running` under a lease, with the token and the attempts
/// incremented, by one `update_many` on `_id` alone.
pub async fn lease(coll: &Collection<Document>, ids: &[ObjectId]) -> Result<()> {
    let now = DateTime::now();
    let expires = DateTime::from_millis(now.timestamp_millis() + 60_000);
    coll.update_many(
        doc! {"_id": {"$in": ids}},
        doc! {
            "$set": {"status": "running", "lease.owner": "ceiling", "lease.expires_at": expires, "started_at": now},
            "$inc": {"lease.token": 1_i64, "attempts": 1},
        },
    )
    .await?;
    Ok(())
}
