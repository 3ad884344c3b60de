//! The live-worker registry, with a worker running in this process against the stand.

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use sv0_queue::Queue;
use sv0_testkit::TestDb;
use sv0_worker::{Worker, WorkerConfig, diagnostics, live_workers};
use tokio_util::sync::CancellationToken;

fn seen_ago(seconds: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - seconds * 1000)
}

/// The `workers` collection used to gain a document at every process start and lose none, and a
/// killed worker's record said `running` forever, so "live workers" counted the dead. Now a live
/// worker marks records not seen for a while `gone`, and deletes stopped and gone ones after the
/// retention.
#[tokio::test(flavor = "multi_thread")]
async fn stale_worker_records_are_marked_gone_and_old_ones_deleted() {
    let test = TestDb::new("registry_sweep").await;
    let workers = test.db.collection::<Document>("workers");
    let record = |id: &str, state: &str, seen: DateTime| {
        doc! {
            "_id": id, "host": "h", "pid": 1_i64, "kinds": ["noop"], "concurrency": 1_i64,
            "state": state, "started_at": seen, "last_seen_at": seen,
        }
    };
    workers
        .insert_many([
            record("killed-recently", "running", seen_ago(5)),
            record("killed-long-ago", "running", seen_ago(100)),
            record("stopped-long-ago", "stopped", seen_ago(100)),
            record("stopped-recently", "stopped", seen_ago(5)),
        ])
        .await
        .unwrap();

    let queue = Queue::new(&test.db);
    queue.ensure_indexes().await.unwrap();
    let mut config = WorkerConfig::new(1);
    config.lease_ttl = Duration::from_millis(900);
    config.heartbeat_every = Duration::from_millis(300);
    config.self_fence_margin = Duration::from_millis(180);
    config.registry_stale_after = Duration::from_secs(3);
    config.registry_retention = Duration::from_secs(60);
    let worker = Worker::new(
        queue,
        test.db.clone(),
        diagnostics::handlers(&test.db),
        config,
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        async move { worker.run(shutdown).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let state = |id: &'static str| {
        let workers = workers.clone();
        async move {
            workers
                .find_one(doc! {"_id": id})
                .await
                .unwrap()
                .map(|d| d.get_str("state").unwrap().to_string())
        }
    };
    assert_eq!(state("killed-recently").await.as_deref(), Some("gone"));
    assert_eq!(state("killed-long-ago").await, None, "gone, then deleted");
    assert_eq!(state("stopped-long-ago").await, None);
    assert_eq!(state("stopped-recently").await.as_deref(), Some("stopped"));
    let live = live_workers(&test.db, Duration::from_secs(60))
        .await
        .unwrap();
    let ids: Vec<&str> = live.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, [worker.id()], "only the running worker is live");

    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        live_workers(&test.db, Duration::from_secs(60))
            .await
            .unwrap()
            .len(),
        0
    );
}
