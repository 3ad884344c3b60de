//! Failure scenarios at the queue's API, against the stand. Each test names the scenario it
//! pins; each failed on the code before the fix.

mod support;

use std::time::Duration;

use mongodb::bson::{Document, doc};
use support::{claim_one, job, queue, request, stored_job};
use sv0_queue::{CancelOutcome, Commit, FailOutcome, Failure, JobStatus, Queue};
use sv0_testkit::{FaultProxy, TestDb, stand};

const HOUR: Duration = Duration::from_secs(3600);

/// One malformed document among a claim's candidates used to fail the read-back for the whole
/// batch, leaving every job of it `running` under a lease nobody heartbeats. Now the malformed job
/// alone is `failed`, with the bad field named, and its neighbours are claimed.
#[tokio::test]
async fn a_malformed_job_is_failed_alone_and_its_neighbours_are_claimed() {
    let (test, queue) = queue("hardening_malformed").await;
    let ids: Vec<_> = queue
        .enqueue_many((0..5).map(|_| job("k")).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let raw = test.db.collection::<Document>("jobs");
    raw.update_one(
        doc! {"_id": ids[2]},
        doc! {"$set": {"max_attempts": 1.5_f64}},
    )
    .await
    .unwrap();

    let claimed = queue
        .claim(&request("w", &["k"], 10, HOUR))
        .await
        .expect("the claim succeeds for the readable jobs");
    let mut won: Vec<_> = claimed.iter().map(|c| c.lease.job_id).collect();
    won.sort();
    let mut expected = ids.clone();
    expected.remove(2);
    expected.sort();
    assert_eq!(won, expected, "every readable job is claimed");

    let bad = raw.find_one(doc! {"_id": ids[2]}).await.unwrap().unwrap();
    assert_eq!(bad.get_str("status").unwrap(), "failed", "{bad}");
    let error = bad.get_str("last_error").unwrap();
    assert!(error.contains("max_attempts"), "names the field: {error}");
}

/// A claim whose reply is lost after its write landed used to leave its batch `running` under this
/// owner until the reaper requeued it. Now the claim gives the batch back by its nonce before it
/// returns the error, spending nothing.
#[tokio::test]
async fn a_claim_whose_reply_is_lost_gives_its_batch_back() {
    if sv0_testkit::on_real_mongodb() {
        return; // the proxy needs the stand's single address
    }
    let test = TestDb::new("hardening_lost_claim").await;
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let client = mongodb::Client::with_uri_str(stand().uri_via(proxy.addr()))
        .await
        .unwrap();
    let queue = Queue::new(&client.database(test.name()));
    queue.ensure_indexes().await.unwrap();
    let ids: Vec<_> = queue
        .enqueue_many((0..4).map(|_| job("k")).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();

    // Every chunk waits 400 ms each way: the claim's write reaches the server at about 400 ms and
    // its reply would arrive at about 800 ms; the connection is cut in between.
    proxy.set_latency(Duration::from_millis(400));
    let claiming = {
        let queue = queue.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            queue
                .claim_candidates(&request("w", &["k"], 4, HOUR), &ids)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.cut_connections();
    let result = claiming.await.unwrap();
    assert!(result.is_err(), "the claim reports its lost reply");
    proxy.restore();

    let direct = Queue::new(&test.db);
    for id in ids {
        let stored = stored_job(&direct, id).await;
        assert_eq!(stored.status, JobStatus::Queued, "given back: {stored:?}");
        assert_eq!(stored.attempts, 0, "no attempt spent");
        assert_eq!(
            stored.lease.token, 2,
            "the claim and the give-back each moved the token"
        );
    }
}

/// A claim used to spend an attempt, so a job leased ahead and reaped unstarted (its worker
/// killed) died on its last attempt without ever running. Now only a recorded start spends one.
#[tokio::test]
async fn a_job_reaped_unstarted_spends_no_attempt_and_a_started_one_does() {
    let (_test, queue) = queue("hardening_unstarted").await;
    let unstarted = queue
        .enqueue(job("k").max_attempts(1).priority(1))
        .await
        .unwrap()
        .id;
    let started = queue.enqueue(job("k").max_attempts(1)).await.unwrap().id;
    let claimed = queue
        .claim(&request("w", &["k"], 2, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        claimed[0].attempt(),
        1,
        "the attempt this holding would run"
    );
    let runs: Vec<_> = claimed
        .iter()
        .filter(|c| c.lease.job_id == started)
        .collect();
    assert_eq!(
        queue.record_starts(&runs).await.unwrap(),
        [Commit::Committed]
    );
    assert_eq!(
        queue.record_starts(&runs).await.unwrap(),
        [Commit::Committed],
        "recording a start again (a lost reply) changes nothing and is told it landed"
    );

    let report = queue.reap_expired().await.unwrap();
    assert_eq!((report.requeued, report.dead), (1, 1));
    let never_ran = stored_job(&queue, unstarted).await;
    assert_eq!(
        (never_ran.status, never_ran.attempts),
        (JobStatus::Queued, 0)
    );
    let ran = stored_job(&queue, started).await;
    assert_eq!((ran.status, ran.attempts), (JobStatus::Dead, 1));
    assert_eq!(
        queue.record_starts(&runs).await.unwrap(),
        [Commit::LeaseLost],
        "a reaped holder's start is fenced out"
    );
}

/// A job whose cancel was requested while it ran, and whose handler then failed transiently, used
/// to be queued again and run again. Now it ends `cancelled`.
#[tokio::test]
async fn a_retryable_failure_after_a_cancel_request_cancels_the_job() {
    let (_test, queue) = queue("hardening_cancel_fail").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    assert_eq!(queue.cancel(id).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(
        queue
            .fail(&claimed, "flaky", Failure::Retryable)
            .await
            .unwrap(),
        FailOutcome::Cancelled
    );
    let stored = stored_job(&queue, id).await;
    assert_eq!(stored.status, JobStatus::Cancelled);
    assert!(stored.finished_at.is_some());
}

/// A draining worker's release used to requeue a job whose cancel was requested, and it ran again.
/// Now the release cancels it.
#[tokio::test]
async fn releasing_a_job_asked_to_cancel_cancels_it() {
    let (_test, queue) = queue("hardening_cancel_release").await;
    let asked = queue.enqueue(job("k").priority(1)).await.unwrap().id;
    let plain = queue.enqueue(job("k")).await.unwrap().id;
    let claimed = queue.claim(&request("w", &["k"], 2, HOUR)).await.unwrap();
    assert_eq!(queue.cancel(asked).await.unwrap(), CancelOutcome::Requested);
    let leases: Vec<_> = claimed.iter().map(|c| &c.lease).collect();
    assert_eq!(queue.release(&leases).await.unwrap(), 2);
    assert_eq!(stored_job(&queue, asked).await.status, JobStatus::Cancelled);
    assert_eq!(stored_job(&queue, plain).await.status, JobStatus::Queued);
}

/// `cancel_group` used to cancel queued jobs and ask running ones in two writes, so a job released
/// between them (running at the first, queued at the second) escaped both and ran again. Now every
/// unfinished job of the group is marked first: the released job is cancelled by its release, and
/// a marked queued job is never claimed.
#[tokio::test]
async fn a_group_cancel_catches_a_job_that_moves_between_queued_and_running() {
    let (_test, queue) = queue("hardening_cancel_group").await;
    let moving = queue
        .enqueue(job("k").group_id("run-1").priority(1))
        .await
        .unwrap()
        .id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    assert_eq!(claimed.lease.job_id, moving);
    queue.cancel_group("run-1").await.unwrap();
    assert_eq!(queue.release(&[&claimed.lease]).await.unwrap(), 1);
    assert_eq!(
        stored_job(&queue, moving).await.status,
        JobStatus::Cancelled
    );

    // A queued job marked by a canceller that stopped before its second write is never claimed,
    // and the reaper finishes the cancel.
    let marked = queue.enqueue(job("k").group_id("run-2")).await.unwrap().id;
    let raw = _test.db.collection::<Document>("jobs");
    raw.update_one(
        doc! {"_id": marked},
        doc! {"$set": {"cancel_requested": true}},
    )
    .await
    .unwrap();
    assert!(
        queue
            .claim(&request("w", &["k"], 5, HOUR))
            .await
            .unwrap()
            .is_empty(),
        "a job marked for cancelling is never claimed"
    );
    assert_eq!(queue.reap_expired().await.unwrap().cancelled, 1);
    assert_eq!(
        stored_job(&queue, marked).await.status,
        JobStatus::Cancelled
    );
}

/// A `fail` whose reply was lost and whose retry matched nothing used to be reported as a lost
/// lease (and counted as one). Now the holder is told its failure landed.
#[tokio::test]
async fn a_repeated_fail_is_recognised_as_landed() {
    let (_test, queue) = queue("hardening_fail_twice").await;
    queue.enqueue(job("k").max_attempts(3)).await.unwrap();
    let claimed = claim_one(&queue, "w", HOUR).await;
    let first = queue
        .fail(&claimed, "boom", Failure::Retryable)
        .await
        .unwrap();
    assert!(matches!(first, FailOutcome::Retrying { .. }), "{first:?}");
    assert_eq!(
        queue
            .fail(&claimed, "boom", Failure::Retryable)
            .await
            .unwrap(),
        first,
        "the same outcome, not a lost lease"
    );
}

/// An enqueue deduplicated onto a finished job used to say only `created: false`, which a producer
/// reads as "already queued". It now carries the job's status.
#[tokio::test]
async fn a_deduplicated_enqueue_tells_the_existing_jobs_status() {
    let (_test, queue) = queue("hardening_dedup_status").await;
    let first = queue.enqueue(job("k").dedup_key("key-1")).await.unwrap();
    assert_eq!(first.status, JobStatus::Queued);
    let claimed = claim_one(&queue, "w", HOUR).await;
    queue
        .fail(&claimed, "bad", Failure::Permanent)
        .await
        .unwrap();
    let again = queue.enqueue(job("k").dedup_key("key-1")).await.unwrap();
    assert_eq!(
        (again.id, again.created, again.status),
        (first.id, false, JobStatus::Failed)
    );
}
