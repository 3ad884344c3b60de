//! What the worker's suites share: real `sv0 worker` processes (from the test kit), and the
//! queue as these tests set it up and read it back.
#![allow(dead_code, unused_imports)] // each test file uses a different part of this

use std::time::Duration;

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use sv0_queue::{NewJob, Queue};
use sv0_testkit::{Stand, TestDb, stand};

pub use sv0_testkit::{Sv0Process, all, count, eventually, http_get, sv0, wait_count};

/// The stored document of one job.
pub async fn job(db: &Database, id: ObjectId) -> Document {
    db.collection::<Document>("jobs")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .expect("the job exists")
}

/// Waits until the job `id` has `status`.
pub async fn wait_status(db: &Database, id: ObjectId, status: &str, within: Duration) {
    eventually(&format!("job {id} to be {status}"), within, || {
        let db = db.clone();
        async move { job(&db, id).await.get_str("status").unwrap() == status }
    })
    .await;
}

/// `n` probe jobs that each sleep `sleep_ms`.
pub fn probes(n: usize, sleep_ms: i64) -> Vec<NewJob> {
    (0..n)
        .map(|_| NewJob::new("probe", doc! {"sleep_ms": sleep_ms}))
        .collect()
}

/// A fresh test database on the shared stand, with the queue's indexes made.
pub async fn setup(label: &str) -> (TestDb, Queue) {
    setup_on(stand(), label).await
}

/// The same on a given stand (say, the one with an oplog).
pub async fn setup_on(stand: &Stand, label: &str) -> (TestDb, Queue) {
    let test = TestDb::on(stand, label).await;
    let queue = Queue::new(&test.db);
    queue.ensure_indexes().await.unwrap();
    (test, queue)
}

/// How long a job waited between its enqueue and its claim, in milliseconds.
pub async fn start_latency_ms(db: &Database, id: ObjectId) -> i64 {
    let stored = job(db, id).await;
    let at = |field| stored.get_datetime(field).unwrap().timestamp_millis();
    at("started_at") - at("created_at")
}

/// Enqueues `jobs` in one call and returns their ids, in order.
pub async fn enqueue_ids(queue: &Queue, jobs: Vec<NewJob>) -> Vec<ObjectId> {
    let enqueued = queue.enqueue_many(jobs).await.unwrap();
    enqueued.into_iter().map(|e| e.id).collect()
}
