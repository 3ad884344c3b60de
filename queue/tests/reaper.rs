//! The reaper's passes: its background loop runs until shut down; a requeued job is due at once
//! and unfinished, one it ends is stamped `finished_at`; its report counts every cancel it
//! finished; `queue_jobs_reaped_total` counts exactly what each pass did. Behaviour that mutation
//! testing (`./scripts/mutants`, see docs/testing.md) found unpinned by the rest of the suite:
//! each test names the mutants it kills; each asserts what the queue promises, not how it does it.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use support::{claim_one, job, queue, request, stored_job};
use sv0_queue::maintenance::Reaper;
use sv0_queue::{Claimed, JobStatus};
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

/// The queue's metrics as Prometheus text.
fn metrics_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The reaper's background loop runs passes until it is told to stop, and then stops. Kills
/// `Reaper::run` → `()`.
#[tokio::test]
async fn the_reaper_task_reaps_until_shut_down() {
    let (_test, queue) = queue("mk_reaper_run").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    claim_one(&queue, "w", Duration::ZERO).await;
    let shutdown = CancellationToken::new();
    let task =
        tokio::spawn(Reaper::new(queue.clone(), Duration::from_millis(20)).run(shutdown.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_job(&queue, id).await.status != JobStatus::Queued {
        assert!(tokio::time::Instant::now() < deadline, "never reaped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the reaper stops when shut down")
        .unwrap();
}

/// A reaped job that goes back to the queue is due at once (`run_at` is the reap, not its old
/// due time) and is not finished; one that ends (`dead`, `cancelled`) gets its `finished_at`, so
/// the pruner can delete it after the retention. Kills `==` → `!=` on the status in the
/// reaper's update (requeueing with `finished_at` instead of `run_at`).
#[tokio::test]
async fn the_reaper_requeues_due_now_and_stamps_the_jobs_it_ends() {
    let (_test, queue) = queue("mk_reaper_times").await;
    let long_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    let requeue = queue
        .enqueue(job("k").run_at(long_ago).priority(3))
        .await
        .unwrap()
        .id;
    let spent = queue
        .enqueue(job("k").max_attempts(1).priority(2))
        .await
        .unwrap()
        .id;
    let asked = queue.enqueue(job("k").priority(1)).await.unwrap().id;
    let expired = queue
        .claim(&request("w", &["k"], 3, Duration::ZERO))
        .await
        .unwrap();
    let started: Vec<&Claimed> = expired.iter().filter(|c| c.lease.job_id == spent).collect();
    queue.record_starts(&started).await.unwrap();
    queue.cancel(asked).await.unwrap();

    let before = DateTime::now().timestamp_millis();
    let report = queue.reap_expired().await.unwrap();
    assert_eq!((report.requeued, report.dead, report.cancelled), (1, 1, 1));

    let requeued = stored_job(&queue, requeue).await;
    assert_eq!(requeued.status, JobStatus::Queued);
    assert!(
        requeued.run_at.timestamp_millis() >= before,
        "due from the reap on, not from its old run_at: {:?}",
        requeued.run_at
    );
    assert_eq!(requeued.finished_at, None, "a requeued job is not finished");
    for id in [spent, asked] {
        let ended = stored_job(&queue, id).await;
        assert!(ended.status.is_final(), "{ended:?}");
        let finished = ended.finished_at.expect("an ended job has finished_at");
        assert!(finished.timestamp_millis() >= before, "{ended:?}");
    }
    assert_eq!(
        claim_one(&queue, "w2", HOUR).await.lease.job_id,
        requeue,
        "the requeued job is claimable at once"
    );
}

/// A pass's `cancelled` counts both kinds of cancel it finished: running jobs whose lease expired
/// after a cancel request, and queued jobs marked by a canceller that stopped between its two
/// writes. Kills `+` → `-` and `+` → `*` in the report's sum.
#[tokio::test]
async fn a_reap_reports_every_cancel_it_finished() {
    let (test, queue) = queue("mk_reaper_cancel_sum").await;
    let running = queue.enqueue(job("k").priority(1)).await.unwrap().id;
    let marked: Vec<_> = queue
        .enqueue_many(vec![job("k"), job("k")])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        claim_one(&queue, "w", Duration::ZERO).await.lease.job_id,
        running
    );
    queue.cancel(running).await.unwrap();
    test.db
        .collection::<Document>("jobs")
        .update_many(
            doc! {"_id": {"$in": &marked}},
            doc! {"$set": {"cancel_requested": true}},
        )
        .await
        .unwrap();

    let report = queue.reap_expired().await.unwrap();
    assert_eq!((report.requeued, report.dead, report.cancelled), (0, 0, 3));
    for id in marked.into_iter().chain([running]) {
        assert_eq!(stored_job(&queue, id).await.status, JobStatus::Cancelled);
    }
}

/// The `queue_jobs_reaped_total` counter counts exactly what the passes did, per outcome: every
/// outcome's series is there at 0 from the start, a pass that finds nothing adds nothing, a pass
/// that only finishes marked cancels counts them, and a pass that requeues counts that alone.
#[tokio::test]
async fn the_reaped_metric_counts_what_each_pass_did() {
    let (test, queue) = queue("mk_reaper_metrics").await;
    let mut registry = prometheus_client::registry::Registry::default();
    queue.metrics().register(&mut registry);

    assert_eq!(queue.reap_expired().await.unwrap(), Default::default());
    let text = metrics_text(&registry);
    for outcome in ["requeued", "dead", "cancelled"] {
        assert!(
            text.contains(&format!(
                "queue_jobs_reaped_total{{outcome=\"{outcome}\"}} 0"
            )),
            "an idle pass reaps nothing, and every outcome starts at 0:\n{text}"
        );
    }

    let marked = queue.enqueue(job("k")).await.unwrap().id;
    test.db
        .collection::<Document>("jobs")
        .update_one(
            doc! {"_id": marked},
            doc! {"$set": {"cancel_requested": true}},
        )
        .await
        .unwrap();
    assert_eq!(queue.reap_expired().await.unwrap().cancelled, 1);
    let text = metrics_text(&registry);
    assert!(
        text.contains("queue_jobs_reaped_total{outcome=\"cancelled\"} 1"),
        "{text}"
    );

    queue.enqueue(job("k")).await.unwrap();
    claim_one(&queue, "w", Duration::ZERO).await;
    assert_eq!(queue.reap_expired().await.unwrap().requeued, 1);
    let text = metrics_text(&registry);
    assert!(
        text.contains("queue_jobs_reaped_total{outcome=\"requeued\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("queue_jobs_reaped_total{outcome=\"cancelled\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("queue_jobs_reaped_total{outcome=\"dead\"} 0"),
        "no job died, so no dead count:\n{text}"
    );
}
