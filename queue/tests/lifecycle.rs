//! A job's life through the queue API, against the stand: enqueue, claim, heartbeat, complete,
//! fail, retry, dead, cancel, reap, prune, dedup, order and delay.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use support::{claim_one, job, queue, request, stored_job};
use sv0_queue::{
    CancelOutcome, Commit, FailOutcome, Failure, JobStatus, LeaseState, NewJob, QueueError,
};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_claimed_job_is_running_under_a_fresh_lease_and_completes_once() {
    let (_test, queue) = queue("lifecycle_complete").await;
    let id = queue
        .enqueue(job("k").tenant_id("acme").group_id("run-1"))
        .await
        .unwrap()
        .id;

    let claimed = claim_one(&queue, "w1", HOUR).await;
    assert_eq!(claimed.lease.job_id, id);
    assert_eq!(claimed.lease.token, 1, "the first claim takes token 1");
    assert_eq!(claimed.attempt(), 1);
    assert_eq!(claimed.job.tenant_id.as_deref(), Some("acme"));
    let stored = stored_job(&queue, id).await;
    assert_eq!(stored.status, JobStatus::Running);
    assert_eq!(stored.lease.owner.as_deref(), Some("w1"));
    assert!(stored.lease.expires_at.unwrap() > DateTime::now());

    assert!(
        queue
            .claim(&request("w2", &["k"], 5, HOUR))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(queue.complete(&claimed).await.unwrap(), Commit::Committed);
    let done = stored_job(&queue, id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(done.finished_at.is_some());
    assert_eq!(
        queue.complete(&claimed).await.unwrap(),
        Commit::Committed,
        "the holder repeating its commit (a lost reply) is told it landed"
    );
    assert_eq!(stored_job(&queue, id).await, done, "and nothing changes");
}

#[tokio::test]
async fn claims_follow_priority_then_run_at_and_skip_other_kinds_and_future_jobs() {
    let (_test, queue) = queue("lifecycle_order").await;
    let now = DateTime::now().timestamp_millis();
    let at = |ms: i64| DateTime::from_millis(now + ms);
    let low_old = queue
        .enqueue(job("k").priority(1).run_at(at(-3_000)))
        .await
        .unwrap()
        .id;
    let high_new = queue
        .enqueue(job("k").priority(5).run_at(at(-1_000)))
        .await
        .unwrap()
        .id;
    let high_old = queue
        .enqueue(job("k").priority(5).run_at(at(-2_000)))
        .await
        .unwrap()
        .id;
    queue.enqueue(job("other").priority(9)).await.unwrap();
    queue
        .enqueue(job("k").priority(9).delay(HOUR))
        .await
        .unwrap();

    let claimed = queue.claim(&request("w", &["k"], 10, HOUR)).await.unwrap();
    let order: Vec<_> = claimed.iter().map(|c| c.lease.job_id).collect();
    assert_eq!(order, vec![high_old, high_new, low_old]);
}

#[tokio::test]
async fn a_delayed_job_is_claimable_only_once_due() {
    let (_test, queue) = queue("lifecycle_delay").await;
    queue
        .enqueue(job("k").delay(Duration::from_millis(700)))
        .await
        .unwrap();
    assert!(
        queue
            .claim(&request("w", &["k"], 1, HOUR))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        queue
            .claim(&request("w", &["k"], 1, HOUR))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_batch_claim_takes_up_to_its_limit() {
    let (_test, queue) = queue("lifecycle_batch").await;
    queue
        .enqueue_many((0..25).map(|_| job("k")).collect())
        .await
        .unwrap();
    let first = queue.claim(&request("w", &["k"], 10, HOUR)).await.unwrap();
    let second = queue.claim(&request("w", &["k"], 10, HOUR)).await.unwrap();
    let third = queue.claim(&request("w", &["k"], 10, HOUR)).await.unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (10, 10, 5));
    let all: Vec<&sv0_queue::Claimed> = first.iter().chain(&second).chain(&third).collect();
    let commits = queue.complete_many(&all).await.unwrap();
    assert!(commits.iter().all(|c| *c == Commit::Committed));
}

#[tokio::test]
async fn a_retryable_failure_requeues_with_the_backoff_until_attempts_are_spent() {
    let (_test, queue) = queue("lifecycle_retry").await;
    let id = queue.enqueue(job("k").max_attempts(2)).await.unwrap().id;

    let first = claim_one(&queue, "w", HOUR).await;
    let before = DateTime::now().timestamp_millis();
    let outcome = queue
        .fail(&first, "boom 1", Failure::Retryable)
        .await
        .unwrap();
    let FailOutcome::Retrying { run_at } = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    let waited = run_at.timestamp_millis() - before;
    assert!(
        (9_900..=10_500).contains(&waited),
        "first backoff is the base, 10 s: {waited} ms"
    );
    let stored = stored_job(&queue, id).await;
    assert_eq!(
        (stored.status, stored.last_error.as_deref()),
        (JobStatus::Queued, Some("boom 1"))
    );
    assert!(
        queue
            .claim(&request("w", &["k"], 1, HOUR))
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );

    // Make it due now, as time would, and spend the last attempt.
    let raw = _test.db.collection::<mongodb::bson::Document>("jobs");
    raw.update_one(doc! {"_id": id}, doc! {"$set": {"run_at": DateTime::now()}})
        .await
        .unwrap();
    let second = claim_one(&queue, "w", HOUR).await;
    assert_eq!(second.attempt(), 2);
    assert_eq!(
        queue
            .fail(&second, "boom 2", Failure::Retryable)
            .await
            .unwrap(),
        FailOutcome::Dead
    );
    let stored = stored_job(&queue, id).await;
    assert_eq!(
        (stored.status, stored.last_error.as_deref()),
        (JobStatus::Dead, Some("boom 2"))
    );
}

#[tokio::test]
async fn a_permanent_failure_fails_the_job_at_once() {
    let (_test, queue) = queue("lifecycle_permanent").await;
    let id = queue.enqueue(job("k").max_attempts(5)).await.unwrap().id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    assert_eq!(
        queue
            .fail(&claimed, "bad input", Failure::Permanent)
            .await
            .unwrap(),
        FailOutcome::Failed
    );
    assert_eq!(stored_job(&queue, id).await.status, JobStatus::Failed);
}

#[tokio::test]
async fn stale_holders_writes_change_nothing_after_a_reap_and_a_reclaim() {
    let (_test, queue) = queue("lifecycle_fencing").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let stale = claim_one(&queue, "w1", Duration::ZERO).await;

    let report = queue.reap_expired().await.unwrap();
    assert_eq!(report.requeued, 1);
    assert_eq!(
        queue.heartbeat(&[&stale.lease], HOUR).await.unwrap(),
        vec![LeaseState::Lost]
    );
    assert_eq!(
        queue.complete(&stale).await.unwrap(),
        Commit::LeaseLost,
        "reaped: no commit"
    );

    let fresh = claim_one(&queue, "w2", HOUR).await;
    assert_eq!(
        fresh.lease.token,
        stale.lease.token + 2,
        "reap and claim each bump the token"
    );
    let before = stored_job(&queue, id).await;
    assert_eq!(queue.complete(&stale).await.unwrap(), Commit::LeaseLost);
    assert_eq!(
        queue
            .fail(&stale, "late", Failure::Permanent)
            .await
            .unwrap(),
        FailOutcome::LeaseLost
    );
    assert_eq!(
        queue.heartbeat(&[&stale.lease], HOUR).await.unwrap(),
        vec![LeaseState::Lost]
    );
    assert_eq!(queue.release(&[&stale.lease]).await.unwrap(), 0);
    assert_eq!(
        stored_job(&queue, id).await,
        before,
        "the stale holder changed nothing"
    );

    // The same owner re-claiming does not revive its old holding either.
    assert_eq!(
        queue
            .heartbeat(&[&fresh.lease, &stale.lease], HOUR)
            .await
            .unwrap(),
        vec![
            LeaseState::Held {
                cancel_requested: false
            },
            LeaseState::Lost
        ]
    );
    assert_eq!(queue.complete(&fresh).await.unwrap(), Commit::Committed);
}

#[tokio::test]
async fn the_reaper_requeues_kills_spent_jobs_and_cancels_those_asked_to_stop() {
    let (_test, queue) = queue("lifecycle_reaper").await;
    let requeue = queue
        .enqueue(job("k").max_attempts(3).priority(3))
        .await
        .unwrap()
        .id;
    let spent = queue
        .enqueue(job("k").max_attempts(1).priority(2))
        .await
        .unwrap()
        .id;
    let asked = queue
        .enqueue(job("k").max_attempts(3).priority(1))
        .await
        .unwrap()
        .id;
    let alive = queue.enqueue(job("k").priority(0)).await.unwrap().id;
    let expired = queue
        .claim(&request("w", &["k"], 3, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(expired.len(), 3);
    // Only a started attempt is spent: the job on its last attempt started.
    let last_attempt: Vec<_> = expired.iter().filter(|c| c.lease.job_id == spent).collect();
    queue.record_starts(&last_attempt).await.unwrap();
    let held = claim_one(&queue, "w", HOUR).await;
    assert_eq!(held.lease.job_id, alive);
    assert_eq!(queue.cancel(asked).await.unwrap(), CancelOutcome::Requested);

    let report = queue.reap_expired().await.unwrap();
    assert_eq!((report.requeued, report.dead, report.cancelled), (1, 1, 1));
    let status = |id| {
        let queue = queue.clone();
        async move { stored_job(&queue, id).await.status }
    };
    assert_eq!(status(requeue).await, JobStatus::Queued);
    assert_eq!(status(spent).await, JobStatus::Dead);
    assert_eq!(status(asked).await, JobStatus::Cancelled);
    assert_eq!(
        status(alive).await,
        JobStatus::Running,
        "a live lease is left alone"
    );
    assert_eq!(
        queue.reap_expired().await.unwrap(),
        Default::default(),
        "a second pass finds nothing"
    );
}

#[tokio::test]
async fn heartbeats_extend_the_lease_and_report_a_cancel_request() {
    let (_test, queue) = queue("lifecycle_heartbeat").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let claimed = claim_one(&queue, "w", Duration::from_secs(1)).await;
    let first_expiry = queue
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .lease
        .expires_at
        .unwrap();

    assert_eq!(
        queue.heartbeat(&[&claimed.lease], HOUR).await.unwrap(),
        vec![LeaseState::Held {
            cancel_requested: false
        }]
    );
    let extended = queue
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .lease
        .expires_at
        .unwrap();
    assert!(extended.timestamp_millis() > first_expiry.timestamp_millis() + 3_000_000);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        queue.reap_expired().await.unwrap().requeued,
        0,
        "the extended lease is not reaped"
    );

    assert_eq!(queue.cancel(id).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(
        queue.heartbeat(&[&claimed.lease], HOUR).await.unwrap(),
        vec![LeaseState::Held {
            cancel_requested: true
        }]
    );
    assert_eq!(
        queue.finish_cancelled(&claimed).await.unwrap(),
        Commit::Committed
    );
    assert_eq!(stored_job(&queue, id).await.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn cancelling_a_queued_job_is_immediate_and_final() {
    let (_test, queue) = queue("lifecycle_cancel").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    assert_eq!(queue.cancel(id).await.unwrap(), CancelOutcome::Cancelled);
    assert!(
        queue
            .claim(&request("w", &["k"], 1, HOUR))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        queue.cancel(id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobStatus::Cancelled)
    );
    assert_eq!(
        queue
            .cancel(mongodb::bson::oid::ObjectId::new())
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
}

#[tokio::test]
async fn cancelling_a_group_cancels_queued_and_asks_running_to_stop() {
    let (_test, queue) = queue("lifecycle_cancel_group").await;
    queue
        .enqueue(job("k").group_id("run-1").priority(1))
        .await
        .unwrap();
    queue.enqueue(job("k").group_id("run-1")).await.unwrap();
    let other = queue.enqueue(job("k").group_id("run-2")).await.unwrap().id;
    let running = queue.claim(&request("w", &["k"], 1, HOUR)).await.unwrap();
    assert_eq!(running[0].job.group_id.as_deref(), Some("run-1"));

    let result = queue.cancel_group("run-1").await.unwrap();
    assert_eq!((result.cancelled, result.requested), (1, 1));
    assert_eq!(stored_job(&queue, other).await.status, JobStatus::Queued);
}

#[tokio::test]
async fn a_second_enqueue_with_the_same_dedup_key_returns_the_existing_job() {
    let (_test, queue) = queue("lifecycle_dedup").await;
    let first = queue
        .enqueue(job("k").dedup_key("scope-1@t1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = queue
        .enqueue(job("k").dedup_key("scope-1@t1"))
        .await
        .unwrap();
    assert_eq!((again.id, again.created), (first.id, false));

    let batch = queue
        .enqueue_many(vec![
            job("k").dedup_key("scope-1@t1"),
            job("k").dedup_key("scope-1@t2"),
            job("k").dedup_key("scope-1@t2"),
            job("k"),
            job("k"),
        ])
        .await
        .unwrap();
    assert_eq!(batch[0].id, first.id);
    assert!(!batch[0].created);
    assert!(batch[1].created);
    assert_eq!((batch[2].id, batch[2].created), (batch[1].id, false));
    assert!(
        batch[3].created && batch[4].created,
        "jobs without a key never collide"
    );
    let raw = _test.db.collection::<mongodb::bson::Document>("jobs");
    assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 4);
}

#[tokio::test]
async fn pruning_deletes_only_jobs_finished_before_the_retention() {
    let (_test, queue) = queue("lifecycle_prune").await;
    let old = queue.enqueue(job("k").priority(1)).await.unwrap().id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    queue.complete(&claimed).await.unwrap();
    let queued = queue.enqueue(job("k")).await.unwrap().id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recent = queue.enqueue(job("k").priority(1)).await.unwrap().id;
    queue
        .complete(&claim_one(&queue, "w", HOUR).await)
        .await
        .unwrap();

    assert_eq!(
        queue
            .prune_finished(Duration::from_millis(200))
            .await
            .unwrap(),
        1
    );
    assert!(queue.get(old).await.unwrap().is_none());
    assert!(
        queue.get(recent).await.unwrap().is_some(),
        "finished within the retention"
    );
    assert!(
        queue.get(queued).await.unwrap().is_some(),
        "unfinished jobs are never pruned"
    );
}

#[tokio::test]
async fn depth_counts_queued_jobs_per_kind_and_the_oldest_due_age() {
    let (_test, queue) = queue("lifecycle_depth").await;
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 5_000);
    queue.enqueue(job("a").run_at(past)).await.unwrap();
    queue.enqueue(job("a")).await.unwrap();
    queue.enqueue(job("b").delay(HOUR)).await.unwrap();
    let mut depths = queue.depth().await.unwrap();
    depths.sort_by(|x, y| x.kind.cmp(&y.kind));
    assert_eq!((depths[0].kind.as_str(), depths[0].queued), ("a", 2));
    assert!(depths[0].oldest_age >= Duration::from_secs(5));
    assert_eq!((depths[1].kind.as_str(), depths[1].queued), ("b", 1));
    assert_eq!(
        depths[1].oldest_age,
        Duration::ZERO,
        "a job not due yet has not waited"
    );
}

#[tokio::test]
async fn bad_jobs_are_refused_with_the_field_named_and_nothing_written() {
    let (test, queue) = queue("lifecycle_invalid").await;
    let cases = [
        (NewJob::new("", doc! {}), "kind"),
        (job("k").max_attempts(0), "max_attempts"),
        (job("k").dedup_key(""), "dedup_key"),
    ];
    for (bad, field) in cases {
        let error = queue.enqueue_many(vec![job("k"), bad]).await.unwrap_err();
        assert!(
            matches!(&error, QueueError::Invalid(m) if m.contains(field)),
            "{error}"
        );
    }
    let raw = test.db.collection::<mongodb::bson::Document>("jobs");
    assert_eq!(
        raw.count_documents(doc! {}).await.unwrap(),
        0,
        "a refused batch writes nothing"
    );
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let (_test, queue) = queue("lifecycle_metrics").await;
    let mut registry = prometheus_client::registry::Registry::default();
    queue.metrics().register(&mut registry);
    queue.enqueue_many(vec![job("k"), job("k")]).await.unwrap();
    let a = claim_one(&queue, "w", HOUR).await;
    let b = claim_one(&queue, "w", HOUR).await;
    queue.complete(&a).await.unwrap();
    queue.fail(&b, "x", Failure::Retryable).await.unwrap();
    queue.complete(&a).await.unwrap();
    queue.complete(&b).await.unwrap();

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "queue_jobs_enqueued_total{kind=\"k\"} 2",
        "queue_jobs_claimed_total{kind=\"k\"} 2",
        "queue_jobs_finished_total{kind=\"k\",outcome=\"succeeded\"} 1",
        "queue_jobs_finished_total{kind=\"k\",outcome=\"retrying\"} 1",
        "queue_jobs_retried_total{kind=\"k\"} 1",
        "queue_lease_lost_total{kind=\"k\"} 1",
        "queue_job_duration_seconds_count{kind=\"k\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
