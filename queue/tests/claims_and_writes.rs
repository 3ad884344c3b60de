//! Claims, enqueues and lease holders' writes at their edges: argument and size bounds, the
//! claim's read-back, the fences of mixed batches, stale and repeated holders' writes, starts and
//! releases per lease, and a duplicate reported with a write concern error. Behaviour that
//! mutation testing (`./scripts/mutants`, see docs/testing.md) found unpinned by the rest of the
//! suite: each test names the mutants it kills; each asserts what the queue promises, not how it
//! does it.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use support::{claim_one, job, queue, request, stored_job};
use sv0_queue::{
    Claimed, Commit, FailOutcome, Failure, JobStatus, LeaseState, MAX_JOB_TIMEOUT, Queue,
    QueueError,
};
use sv0_testkit::{FaultProxy, TestDb, stand};

const HOUR: Duration = Duration::from_secs(3600);

fn kinds(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| k.to_string()).collect()
}

/// The queue's metrics as Prometheus text.
fn metrics_text(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// A claim asks for at least one kind and a limit above 0; either missing is refused, whichever
/// step is called, and nothing is claimed (a `limit(0)` query means "no limit" to MongoDB).
/// Kills `||` → `&&` in `candidates` and in `claim_candidates`.
#[tokio::test]
async fn a_claim_without_kinds_or_with_a_zero_limit_is_refused() {
    let (_test, queue) = queue("mk_claim_args").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    for (names, limit) in [(&["k"][..], 0), (&[][..], 1)] {
        let found = queue.candidates(&kinds(names), limit).await;
        assert!(
            matches!(found, Err(QueueError::Invalid(_))),
            "candidates({names:?}, {limit}): {found:?}"
        );
        let claimed = queue
            .claim_candidates(&request("w", names, limit, HOUR), &[id])
            .await;
        assert!(
            matches!(claimed, Err(QueueError::Invalid(_))),
            "claim_candidates({names:?}, {limit}): {claimed:?}"
        );
    }
    assert_eq!(stored_job(&queue, id).await.status, JobStatus::Queued);
}

/// A claim hands out only jobs it still holds when it reads them back: a job its write leased
/// and that was reaped before the read-back (a zero TTL, a slow reply) is queued again and must
/// not be run by this caller too. Kills the read-back guard → `true` and its `&&` → `||`.
#[tokio::test]
async fn a_claim_does_not_hand_out_a_job_reaped_before_its_read_back() {
    if sv0_testkit::on_real_mongodb() {
        return; // the proxy needs the stand's single address
    }
    let test = TestDb::new("mk_claim_read_back").await;
    let direct = Queue::new(&test.db);
    direct.ensure_indexes().await.unwrap();
    let id = direct.enqueue(job("k")).await.unwrap().id;
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let client = mongodb::Client::with_uri_str(stand().uri_via(proxy.addr()))
        .await
        .unwrap();
    let slow = Queue::new(&client.database(test.name()));
    slow.get(id).await.unwrap(); // a pooled connection, before the latency

    // Each chunk waits 500 ms each way: once the claim's write shows, its reply and the
    // read-back that follows take a second to reach the server.
    proxy.set_latency(Duration::from_millis(500));
    let claiming = tokio::spawn(async move {
        slow.claim_candidates(&request("w", &["k"], 1, Duration::ZERO), &[id])
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_job(&direct, id).await.status != JobStatus::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim's write never landed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(direct.reap_expired().await.unwrap().requeued, 1);

    let claimed = claiming.await.unwrap().expect("the claim itself succeeds");
    proxy.restore();
    assert!(
        claimed.is_empty(),
        "a reaped job is not handed out: {:?}",
        claimed.iter().map(|c| c.job.status).collect::<Vec<_>>()
    );
    assert_eq!(stored_job(&direct, id).await.status, JobStatus::Queued);
}

/// The bounds a job is checked against are inclusive and exact: a kind of 1 to 100 bytes, a
/// dedup key of 1 to 512, a timeout above zero and at most 7 days. Kills the `>` → `>=`/`==`
/// mutants of `validate`, its `||` → `&&` on the timeout, and the arithmetic of
/// `MAX_JOB_TIMEOUT`.
#[test]
fn a_jobs_bounds_are_inclusive_and_exact() {
    let ok = |j: sv0_queue::NewJob| j.validate().is_ok();
    assert!(ok(job(&"k".repeat(100))), "a 100-byte kind is accepted");
    assert!(!ok(job(&"k".repeat(101))), "a 101-byte kind is refused");
    assert!(ok(job("k").dedup_key("d".repeat(512))), "a 512-byte key");
    assert!(!ok(job("k").dedup_key("d".repeat(513))), "a 513-byte key");
    assert!(ok(job("k").max_attempts(1)), "a single attempt");

    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(MAX_JOB_TIMEOUT, week, "the documented bound is 7 days");
    assert!(ok(job("k").timeout(week)), "a timeout of 7 days");
    assert!(!ok(job("k").timeout(week + Duration::from_millis(1))));
    assert!(ok(job("k").timeout(Duration::from_millis(1))));
    assert!(!ok(job("k").timeout(Duration::ZERO)), "a zero timeout");
}

/// One batch may hold leases of several owners (a worker that took over from another in one
/// process, or a tool): each lease is fenced on its own owner, and every current one lands.
/// Kills `==` → `!=` in the batch fence's shared-owner check.
#[tokio::test]
async fn a_batch_of_leases_of_different_owners_all_land() {
    let (_test, queue) = queue("mk_mixed_owners").await;
    queue.enqueue_many(vec![job("k"), job("k")]).await.unwrap();
    let first = claim_one(&queue, "w1", HOUR).await;
    let second = claim_one(&queue, "w2", HOUR).await;
    let held = LeaseState::Held {
        cancel_requested: false,
    };
    assert_eq!(
        queue
            .heartbeat(&[&first.lease, &second.lease], HOUR)
            .await
            .unwrap(),
        [held, held]
    );
    assert_eq!(
        queue.complete_many(&[&first, &second]).await.unwrap(),
        [Commit::Committed, Commit::Committed]
    );
    for claimed in [&first, &second] {
        assert_eq!(
            stored_job(&queue, claimed.lease.job_id).await.status,
            JobStatus::Succeeded
        );
    }
}

/// A holder whose lease was reaped is told so when its handler then fails transiently, whether
/// the job is still queued or another worker has it now, and the job is left as it is: the
/// failure is neither taken for a landed retry nor for a cancel. Kills `&&` → `||` in `fail`'s
/// landed check and `==` → `!=` on its cancel path's match count.
#[tokio::test]
async fn a_reaped_holders_retryable_failure_is_a_lost_lease() {
    let (_test, queue) = queue("mk_stale_fail").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let stale = claim_one(&queue, "w1", Duration::ZERO).await;
    assert_eq!(queue.reap_expired().await.unwrap().requeued, 1);

    let reaped = stored_job(&queue, id).await;
    assert_eq!(
        queue
            .fail(&stale, "late", Failure::Retryable)
            .await
            .unwrap(),
        FailOutcome::LeaseLost,
        "queued again after the reap"
    );
    assert_eq!(stored_job(&queue, id).await, reaped, "nothing changed");

    let fresh = claim_one(&queue, "w2", HOUR).await;
    let taken = stored_job(&queue, id).await;
    assert_eq!(
        queue
            .fail(&stale, "late", Failure::Retryable)
            .await
            .unwrap(),
        FailOutcome::LeaseLost,
        "running under another worker"
    );
    assert_eq!(stored_job(&queue, id).await, taken, "nothing changed");
    assert_eq!(queue.complete(&fresh).await.unwrap(), Commit::Committed);
}

/// A holding is one `(owner, token)`: when the same worker claims a job again after its first
/// lease was reaped, the first holding is gone even though the owner matches. Kills `&&` → `||`
/// in the check that a stored lease is this holding.
#[tokio::test]
async fn the_same_owners_earlier_holding_is_lost_after_a_reclaim() {
    let (_test, queue) = queue("mk_same_owner").await;
    let id = queue.enqueue(job("k")).await.unwrap().id;
    let old = claim_one(&queue, "w", Duration::ZERO).await;
    queue.reap_expired().await.unwrap();
    let new = claim_one(&queue, "w", HOUR).await;
    assert_eq!(new.lease.owner, old.lease.owner);

    assert_eq!(
        queue
            .heartbeat(&[&old.lease, &new.lease], HOUR)
            .await
            .unwrap(),
        [
            LeaseState::Lost,
            LeaseState::Held {
                cancel_requested: false
            }
        ]
    );
    let before = stored_job(&queue, id).await;
    assert_eq!(queue.complete(&old).await.unwrap(), Commit::LeaseLost);
    assert_eq!(
        queue.fail(&old, "old", Failure::Permanent).await.unwrap(),
        FailOutcome::LeaseLost
    );
    assert_eq!(stored_job(&queue, id).await, before);
    assert_eq!(queue.complete(&new).await.unwrap(), Commit::Committed);
}

/// A holder repeating its `fail` (its first reply was lost) is told the outcome that landed, for
/// every final outcome, and the repeat changes nothing. Kills the deletion of the `dead`,
/// `failed` and `cancelled` arms of the landed-outcome lookup.
#[tokio::test]
async fn a_repeated_fail_reports_the_final_outcome_that_landed() {
    let (_test, queue) = queue("mk_fail_repeat").await;

    let dead = queue.enqueue(job("k").max_attempts(1)).await.unwrap().id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    let again = |claimed: Claimed, failure: Failure, expected: FailOutcome| {
        let queue = queue.clone();
        async move {
            assert_eq!(
                queue.fail(&claimed, "boom", failure).await.unwrap(),
                expected
            );
            let landed = stored_job(&queue, claimed.lease.job_id).await;
            assert_eq!(
                queue.fail(&claimed, "boom", failure).await.unwrap(),
                expected,
                "the repeat reports what landed"
            );
            assert_eq!(stored_job(&queue, claimed.lease.job_id).await, landed);
        }
    };
    again(claimed, Failure::Retryable, FailOutcome::Dead).await;
    assert_eq!(stored_job(&queue, dead).await.status, JobStatus::Dead);

    queue.enqueue(job("k")).await.unwrap();
    let claimed = claim_one(&queue, "w", HOUR).await;
    again(claimed, Failure::Permanent, FailOutcome::Failed).await;

    let asked = queue.enqueue(job("k")).await.unwrap().id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    queue.cancel(asked).await.unwrap();
    again(claimed, Failure::Retryable, FailOutcome::Cancelled).await;
}

/// In a batch commit where one lease was lost, the job that landed now is counted once as
/// succeeded, the lost one as a lost lease; repeating the batch (a lost reply) reports the same
/// commits and counts no success again. Kills the mutants of `finish`'s "landed now" guard
/// (→ `false`, `&&` → `||`, `==` → `!=`): a landed commit recognised, but counted once.
#[tokio::test]
async fn a_partly_landed_batch_commit_counts_each_job_once() {
    let (_test, queue) = queue("mk_partial_commit").await;
    let mut registry = prometheus_client::registry::Registry::default();
    queue.metrics().register(&mut registry);
    queue
        .enqueue_many(vec![job("k").priority(1), job("k")])
        .await
        .unwrap();
    let held = claim_one(&queue, "w", HOUR).await;
    let stale = claim_one(&queue, "w", Duration::ZERO).await;
    queue.reap_expired().await.unwrap();

    let expected = [Commit::Committed, Commit::LeaseLost];
    assert_eq!(
        queue.complete_many(&[&held, &stale]).await.unwrap(),
        expected
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("queue_jobs_finished_total{kind=\"k\",outcome=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("queue_lease_lost_total{kind=\"k\"} 1"),
        "{text}"
    );

    // A repeat a few milliseconds later, as after a lost reply.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        queue.complete_many(&[&held, &stale]).await.unwrap(),
        expected
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("queue_jobs_finished_total{kind=\"k\",outcome=\"succeeded\"} 1"),
        "the repeat is not a second success:\n{text}"
    );
    assert!(
        text.contains("queue_lease_lost_total{kind=\"k\"} 2"),
        "{text}"
    );
    assert_eq!(
        stored_job(&queue, held.lease.job_id).await.status,
        JobStatus::Succeeded
    );
}

/// Recording starts in a batch reports each lease on its own: the current holding's start lands
/// (its attempt is spent), a reaped one's does not; jobs on different attempts each record their
/// own number. Kills the mutants of `record_starts`'s landed check and of the grouping by attempt.
#[tokio::test]
async fn recording_starts_reports_each_lease_and_sets_its_own_attempt() {
    let (test, queue) = queue("mk_record_starts").await;
    let raw = test.db.collection::<Document>("jobs");
    let retried = queue.enqueue(job("k").priority(2)).await.unwrap().id;
    let fresh = queue.enqueue(job("k").priority(1)).await.unwrap().id;
    let stale_id = queue.enqueue(job("k")).await.unwrap().id;

    // `retried` ran once and failed: its next run is attempt 2.
    let first = claim_one(&queue, "w", HOUR).await;
    assert_eq!(first.lease.job_id, retried);
    queue.record_starts(&[&first]).await.unwrap();
    queue.fail(&first, "x", Failure::Retryable).await.unwrap();
    raw.update_one(
        doc! {"_id": retried},
        doc! {"$set": {"run_at": DateTime::now()}},
    )
    .await
    .unwrap();

    let claimed = queue.claim(&request("w", &["k"], 2, HOUR)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.attempt()).collect::<Vec<_>>(),
        [2, 1]
    );
    let stale = claim_one(&queue, "w", Duration::ZERO).await;
    assert_eq!(stale.lease.job_id, stale_id);
    queue.reap_expired().await.unwrap();

    let batch: Vec<&Claimed> = claimed.iter().chain([&stale]).collect();
    assert_eq!(
        queue.record_starts(&batch).await.unwrap(),
        [Commit::Committed, Commit::Committed, Commit::LeaseLost]
    );
    assert_eq!(stored_job(&queue, retried).await.attempts, 2);
    assert_eq!(stored_job(&queue, fresh).await.attempts, 1);
    assert_eq!(
        stored_job(&queue, stale_id).await.attempts,
        0,
        "a reaped holding spends nothing"
    );
}

/// A started job given back by its worker (the drain ran out of grace) is queued again at once
/// with its attempt refunded, and only by its current holder; one asked to cancel ends
/// `cancelled`. Kills `release_started` → `Ok(0)` / `Ok(1)`.
#[tokio::test]
async fn releasing_a_started_job_requeues_it_with_its_attempt_refunded() {
    let (_test, queue) = queue("mk_release_started").await;
    let id = queue.enqueue(job("k").max_attempts(1)).await.unwrap().id;
    let claimed = claim_one(&queue, "w", HOUR).await;
    queue.record_starts(&[&claimed]).await.unwrap();
    assert_eq!(stored_job(&queue, id).await.attempts, 1);

    assert_eq!(queue.release_started(&claimed).await.unwrap(), 1);
    let released = stored_job(&queue, id).await;
    assert_eq!((released.status, released.attempts), (JobStatus::Queued, 0));
    assert_eq!(
        queue.release_started(&claimed).await.unwrap(),
        0,
        "a second release by the old holding gives up nothing"
    );
    assert_eq!(stored_job(&queue, id).await, released);

    let again = claim_one(&queue, "w", HOUR).await;
    assert_eq!((again.lease.job_id, again.attempt()), (id, 1));
    queue.cancel(id).await.unwrap();
    assert_eq!(queue.release_started(&again).await.unwrap(), 1);
    assert_eq!(stored_job(&queue, id).await.status, JobStatus::Cancelled);
}

/// A server reporting a duplicate key together with a write concern error has not made the
/// enqueue durable: the error is the caller's, not a deduplication onto the job holding the key.
/// The stand never reports write concern errors, so a MongoDB-wire server of a few lines (see
/// [`fake_server`]) answers this one insert. Kills the write-concern guard → `true` in
/// `sv0_storage::duplicate_positions` (a failed write taken for a duplicate).
#[tokio::test]
async fn a_duplicate_reported_with_a_write_concern_error_is_an_error() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = mongodb::bson::oid::ObjectId::new();
    let server = tokio::spawn(fake_server(listener, holder));
    let mut options = mongodb::options::ClientOptions::parse(format!(
        "mongodb://{addr}/?directConnection=true&serverSelectionTimeoutMS=5000"
    ))
    .await
    .unwrap();
    options.app_name = Some("sv0-tests".into());
    let client = mongodb::Client::with_options(options).unwrap();
    let queue = Queue::new(&client.database("fake"));

    let result = queue.enqueue(job("k").dedup_key("key")).await;
    server.abort();
    let error = result.expect_err("a write concern failure is not a deduplication");
    assert!(
        error.to_string().to_lowercase().contains("replication"),
        "the server's write concern error is reported: {error}"
    );
}

/// Serves the MongoDB wire protocol (OP_MSG) just enough for one client: `hello` says a
/// standalone, every `insert` fails its first document with a duplicate key *and* carries a
/// write concern error, and `find` returns one job holding the key `key` (what a client that
/// took the failure for a duplicate would look up next); anything else is acknowledged.
async fn fake_server(listener: tokio::net::TcpListener, holder: mongodb::bson::oid::ObjectId) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(fake_connection(stream, holder));
    }
}

async fn fake_connection(mut stream: tokio::net::TcpStream, holder: mongodb::bson::oid::ObjectId) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const OP_MSG: i32 = 2013;
    let int = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    loop {
        let mut header = [0u8; 16];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let mut message = vec![0u8; int(&header[0..4]) as usize - 16];
        if stream.read_exact(&mut message).await.is_err() {
            return;
        }
        assert_eq!(
            int(&header[12..16]),
            OP_MSG,
            "the driver speaks OP_MSG only"
        );
        // Flags, then sections: kind 0 is the command, kind 1 a document sequence.
        let mut at = 4;
        let mut command = Document::new();
        while at < message.len() {
            let size = int(&message[at + 1..]) as usize;
            if message[at] == 0 {
                command = Document::from_reader(&message[at + 1..at + 1 + size]).unwrap();
            }
            at += 1 + size;
        }
        let name = command.keys().next().cloned().unwrap_or_default();
        let reply = match name.as_str() {
            "hello" | "isMaster" | "ismaster" => doc! {
                "ismaster": true, "isWritablePrimary": true, "helloOk": true,
                "maxWireVersion": 21, "minWireVersion": 0, "maxBsonObjectSize": 16_777_216,
                "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000, "ok": 1.0,
            },
            "insert" => doc! {
                "n": 0, "ok": 1.0,
                "writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}],
                "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"},
            },
            "find" => doc! {
                "cursor": {
                    "firstBatch": [{"_id": holder, "dedup_key": "key", "status": "queued"}],
                    "id": 0_i64, "ns": "fake.jobs",
                },
                "ok": 1.0,
            },
            _ => doc! {"ok": 1.0},
        };
        let mut body = Vec::new();
        reply.to_writer(&mut body).unwrap();
        let mut out = Vec::with_capacity(21 + body.len());
        out.extend_from_slice(&(21 + body.len() as i32).to_le_bytes());
        out.extend_from_slice(&0_i32.to_le_bytes()); // request id
        out.extend_from_slice(&header[4..8]); // in reply to
        out.extend_from_slice(&OP_MSG.to_le_bytes());
        out.extend_from_slice(&0_u32.to_le_bytes()); // flags
        out.push(0); // a kind 0 section: the reply
        out.extend_from_slice(&body);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A claim write that finds its candidates taken by another claim counts each of them as a
/// collision; the claim that won them counts none.
#[tokio::test]
async fn candidates_another_claim_took_count_as_collisions() {
    let (_test, queue) = queue("claim_collisions").await;
    let mut registry = prometheus_client::registry::Registry::default();
    queue.metrics().register(&mut registry);
    queue.enqueue_many(vec![job("k"), job("k")]).await.unwrap();
    let kinds = ["k".to_string()];
    let candidates: Vec<_> = queue
        .candidates(&kinds, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let ttl = Duration::from_secs(3600);
    let first = queue
        .claim_candidates(&request("a", &["k"], 2, ttl), &candidates)
        .await
        .unwrap();
    let collisions = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find(|l| l.starts_with("queue_claim_collisions_total "))
            .map(str::to_string)
    };
    assert_eq!(first.len(), 2);
    assert_eq!(
        collisions(&registry).as_deref(),
        Some("queue_claim_collisions_total 0")
    );

    let second = queue
        .claim_candidates(&request("b", &["k"], 2, ttl), &candidates)
        .await
        .unwrap();
    assert!(second.is_empty());
    assert_eq!(
        collisions(&registry).as_deref(),
        Some("queue_claim_collisions_total 2")
    );
}
