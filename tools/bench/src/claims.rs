//! What one claim costs by backlog. A claim is what a worker does when it looks for work, through
//! the queue's public API from this process: `Queue::candidates` (the sorted candidate query),
//! then `Queue::claim_candidates` (the `update_many` that re-checks the filter over them, and the
//! read-back by `_id`); `Queue::claim` is exactly those two calls, timed here apart so the report
//! can say which one grows. A batch is 16 no-op jobs: one worker at its default concurrency, every
//! slot free, nothing leased ahead. After each sample the batch is given back (`Queue::release`,
//! untimed), which queues it again behind the rest, so every sample sees the same backlog.
//!
//! Two series share their first point: 1,000, 10,000 and 100,000 jobs queued; then 1,000 queued
//! beside 10,000 and 100,000 finished ones. Each point tops up the one before when it can, since
//! filling the collection is most of the section's time. Beside each point, the raw ceiling's
//! claim (`ceiling::lease`: 16 known ids leased by `_id` alone, no query to find them), put back
//! after each sample, untimed.

use std::time::Instant;

use anyhow::Result;
use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use serde::Serialize;
use sv0_queue::{ClaimRequest, Queue};

use crate::measure::percentile;
use crate::{ceiling, ours};

/// Jobs per claim: `sv0 worker`'s default concurrency.
pub const BATCH: usize = 16;
/// Claims timed per point; the p99 is the second slowest.
pub const SAMPLES: usize = 100;
/// (queued, finished) at each point.
pub const POINTS: [(usize, usize); 5] = [
    (1_000, 0),
    (10_000, 0),
    (100_000, 0),
    (1_000, 10_000),
    (1_000, 100_000),
];
const KIND: &str = "noop";

/// The claims measured at one point.
#[derive(Debug, Clone, Serialize)]
pub struct ClaimCost {
    pub queued: usize,
    pub finished: usize,
    /// The whole claim: candidate query, claim write and read-back.
    pub claim: Spread,
    /// The candidate query alone (part of `claim`).
    pub candidates: Spread,
    /// The raw ceiling's claim write.
    pub ceiling: Spread,
    /// Writing the jobs this point added to the one before (or to an empty collection).
    pub fill_seconds: f64,
}

/// Milliseconds, over [`SAMPLES`] samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
}

impl Spread {
    fn of(mut samples_ms: Vec<f64>) -> Spread {
        Spread {
            p50: percentile(&mut samples_ms, 0.50),
            p99: percentile(&mut samples_ms, 0.99),
        }
    }
}

/// Measures every point of `points` on `db`, in order.
pub async fn by_backlog(db: &Database, points: &[(usize, usize)]) -> Result<Vec<ClaimCost>> {
    let mut queue = ours::fresh_queue(db).await?;
    let mut have = (0, 0);
    let mut costs = Vec::new();
    for &(queued, finished) in points {
        if queued < have.0 || finished < have.1 {
            queue = ours::fresh_queue(db).await?;
            have = (0, 0);
        }
        let began = Instant::now();
        ours::enqueue(&queue, queued - have.0).await?;
        ours::insert_history(db, finished - have.1).await?;
        let fill_seconds = began.elapsed().as_secs_f64();
        have = (queued, finished);

        let (claim, candidates) = ours_samples(&queue).await?;
        let cost = ClaimCost {
            queued,
            finished,
            claim,
            candidates,
            ceiling: ceiling_samples(&queue).await?,
            fill_seconds,
        };
        eprintln!(
            "[claims] {queued} queued, {finished} finished (filled in {fill_seconds:.1} s): \
             claim p50 {:.1} ms / p99 {:.1} ms (candidate query p50 {:.1} ms), ceiling p50 {:.1} ms",
            cost.claim.p50, cost.claim.p99, cost.candidates.p50, cost.ceiling.p50
        );
        costs.push(cost);
    }
    db.drop().await?;
    Ok(costs)
}

/// Times [`SAMPLES`] claims of ours: the whole claim and its candidate query.
async fn ours_samples(queue: &Queue) -> Result<(Spread, Spread)> {
    let request = ClaimRequest {
        owner: "sv0-bench".into(),
        kinds: vec![KIND.into()],
        limit: BATCH,
        lease_ttl: std::time::Duration::from_secs(60),
    };
    let (mut whole, mut query) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let began = Instant::now();
        let candidates = queue.candidates(&request.kinds, BATCH).await?;
        query.push(millis(began));
        let ids: Vec<ObjectId> = candidates.into_iter().map(|c| c.id).collect();
        let claimed = queue.claim_candidates(&request, &ids).await?;
        whole.push(millis(began));
        anyhow::ensure!(
            claimed.len() == BATCH,
            "a claim won {} jobs of {BATCH}, with nobody else claiming",
            claimed.len()
        );
        let leases: Vec<_> = claimed.iter().map(|c| &c.lease).collect();
        queue.release(&leases).await?;
    }
    Ok((Spread::of(whole), Spread::of(query)))
}

/// Times [`SAMPLES`] of the ceiling's claim writes over the queue's first batch.
async fn ceiling_samples(queue: &Queue) -> Result<Spread> {
    let ids: Vec<ObjectId> = queue
        .candidates(&[KIND.into()], BATCH)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let coll = queue.collection();
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let began = Instant::now();
        ceiling::lease(&coll, &ids).await?;
        samples.push(millis(began));
        put_back(&coll, &ids).await?;
    }
    Ok(Spread::of(samples))
}

/// Undoes `ceiling::lease`, so the backlog stays as it was.
async fn put_back(coll: &mongodb::Collection<Document>, ids: &[ObjectId]) -> Result<()> {
    coll.update_many(
        doc! {"_id": {"$in": ids}},
        doc! {
            "$set": {"status": "queued"},
            "$unset": {"lease.expires_at": ""},
            "$inc": {"attempts": -1},
        },
    )
    .await?;
    Ok(())
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
