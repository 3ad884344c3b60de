//! Helpers shared by the queue's tests.
#![allow(dead_code)] // each test file uses a different part of this

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;
use sv0_queue::{ClaimRequest, Claimed, JobDoc, NewJob, Queue, RetryPolicy};
use sv0_testkit::TestDb;

pub async fn queue(label: &str) -> (TestDb, Queue) {
    let test = TestDb::new(label).await;
    let queue = Queue::new(&test.db).with_retry_policy(RetryPolicy {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(60),
    });
    queue.ensure_indexes().await.unwrap();
    (test, queue)
}

pub fn job(kind: &str) -> NewJob {
    NewJob::new(kind, doc! {"n": 1})
}

pub fn request(owner: &str, kinds: &[&str], limit: usize, ttl: Duration) -> ClaimRequest {
    ClaimRequest {
        owner: owner.to_string(),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        limit,
        lease_ttl: ttl,
    }
}

pub async fn claim_one(queue: &Queue, owner: &str, ttl: Duration) -> Claimed {
    let mut claimed = queue.claim(&request(owner, &["k"], 1, ttl)).await.unwrap();
    assert_eq!(claimed.len(), 1, "one job claimed");
    claimed.remove(0)
}

/// The stored job; it must exist.
pub async fn stored_job(queue: &Queue, id: ObjectId) -> JobDoc {
    queue.get(id).await.unwrap().expect("the job exists")
}
