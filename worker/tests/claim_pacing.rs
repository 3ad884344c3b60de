//! When a real worker process claims, and how much: a kind at its `--kind-limit` neither hides
//! other kinds nor makes the worker spin; a claim that wins nothing is followed by a pause; a free
//! slot beside long jobs is not left idle, while a busy worker of fast jobs claims in batches, not
//! per freed slot; a kind's limit counts the jobs already running; leasing ahead does not hoard
//! slow jobs behind fast ones. Each test names the rule it pins; each failed on the code before
//! its fix, or with the mutant it was written to kill applied (docs/testing.md).

mod support;

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use support::{
    Sv0Process, count, enqueue_ids, probes, setup, setup_on, start_latency_ms, wait_count,
    wait_status,
};
use sv0_queue::NewJob;
use sv0_testkit::oplog_stand;

/// With a kind at its `--kind-limit`, candidates used to be fetched for every kind and the claim
/// (which filters the limited kind out) won nothing, so the loop went round at once: the worker
/// hit the database as fast as it could, and with enough limited jobs at the head of the queue the
/// other kinds were never fetched at all. Now only kinds with room are fetched, and a claim that
/// wins nothing is followed by a pause.
#[tokio::test(flavor = "multi_thread")]
async fn a_kind_at_its_limit_neither_hides_other_kinds_nor_makes_the_worker_spin() {
    let (test, queue) = setup("hardening_spin").await;
    let long: Vec<NewJob> = probes(600, 60_000_i64);
    queue.enqueue_many(long).await.unwrap();
    let noop = queue
        .enqueue(NewJob::new("noop", doc! {}))
        .await
        .unwrap()
        .id;
    let worker = Sv0Process::worker(test.uri(), test.name(), &["--kind-limit", "probe=1"]);
    wait_status(&test.db, noop, "succeeded", Duration::from_secs(10)).await;

    // Idle now but for its one long probe: count its claim queries over two seconds.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let series = "sv0_queue_claim_queries_total";
    let before = worker.metric(series);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queries = worker.metric(series) - before;
    assert!(
        queries <= 100.0,
        "{queries} claim queries in 2 s while idle (the poll cap is 200 ms)"
    );
    assert_eq!(
        count(&test.db, "jobs", doc! {"status": "running"}).await,
        1,
        "still only one probe at a time"
    );
}

/// A claim that wins nothing (every candidate taken meanwhile, or, as here, a queued job marked
/// for cancelling, which the candidate query lists and the claim's re-check refuses) is followed
/// by a pause and a fresh candidate list, never by another round at once: the worker's query
/// rate stays at its idle poll. (Mutation testing found the pause unpinned: a loop that went
/// round at once after an empty claim passed every other test.)
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_that_wins_nothing_is_followed_by_a_pause() {
    let (test, queue) = setup("hardening_empty_claim").await;
    // Due in 4 s: marked before then, after the worker's reaper made its first pass (which
    // finishes marked jobs, as it should: the canceller that died between its two writes left
    // the job so). The reaper then waits an hour.
    let due = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 4_000,
    );
    let marked = queue
        .enqueue(NewJob::new("noop", doc! {}).run_at(due))
        .await
        .unwrap()
        .id;
    let worker = Sv0Process::worker(test.uri(), test.name(), &["--reap-every-ms", "3600000"]);
    worker.wait_for_event("worker started", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    test.db
        .collection::<mongodb::bson::Document>("jobs")
        .update_one(
            doc! {"_id": marked},
            doc! {"$set": {"cancel_requested": true}},
        )
        .await
        .unwrap();
    let wait = due.timestamp_millis() - mongodb::bson::DateTime::now().timestamp_millis() + 1_000;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let series = "sv0_queue_claim_queries_total";
    let before = worker.metric(series);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queries = worker.metric(series) - before;
    assert!(
        (1.0..=60.0).contains(&queries),
        "{queries} claim queries in 2 s against a job no claim can win (the poll cap is 200 ms)"
    );
    assert_eq!(
        count(&test.db, "jobs", doc! {"_id": marked, "status": "queued"}).await,
        1,
        "the marked job was never claimed"
    );
}

/// A busy worker claims in batches, once half its room is free, so that fast jobs do not cost a
/// queue scan each; but it used to wait for half its room whatever the jobs: with 3 of 4 slots
/// on long jobs, the fourth stayed idle, with work queued, for as long as they ran (minutes,
/// for scans). Now a free slot waits at most a poll cap before the worker looks for work.
#[tokio::test(flavor = "multi_thread")]
async fn a_free_slot_beside_long_jobs_is_not_left_idle() {
    let (test, queue) = setup("hardening_idle_slot").await;
    let mut jobs: Vec<NewJob> = probes(3, 30_000_i64);
    jobs.push(NewJob::new("probe", doc! {"sleep_ms": 200_i64}));
    let ids = enqueue_ids(&queue, jobs).await;
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "4", "--claim-ahead", "0"],
    );
    wait_status(&test.db, ids[3], "succeeded", Duration::from_secs(20)).await;
    assert_eq!(count(&test.db, "jobs", doc! {"status": "running"}).await, 3);
    let next = queue
        .enqueue(NewJob::new("noop", doc! {}))
        .await
        .unwrap()
        .id;
    wait_status(&test.db, next, "succeeded", Duration::from_secs(5)).await;
    drop(worker);
}

/// The rule's other side: a worker with at least half its room free claims at once, busy or
/// not. One long job in four slots leaves three free; a job enqueued then starts on the change
/// stream's wake-up, not after the 10 s poll cap. (Mutation testing found this unpinned: a worker
/// that waited whenever *more* than half its room was free passed every other test, since a
/// patient worker claims anyway after a poll cap.)
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_half_its_room_free_claims_at_once_while_busy() {
    let (test, queue) = setup_on(oplog_stand(), "hardening_half_free").await;
    let long = queue
        .enqueue(NewJob::new("probe", doc! {"sleep_ms": 30_000_i64}))
        .await
        .unwrap()
        .id;
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &[
            "--concurrency",
            "4",
            "--claim-ahead",
            "0",
            "--change-streams",
            "auto",
            "--poll-max-ms",
            "10000",
        ],
    );
    worker.wait_for_event(
        "waking on a change stream of new jobs",
        Duration::from_secs(20),
    );
    wait_status(&test.db, long, "running", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = queue
        .enqueue(NewJob::new("noop", doc! {}))
        .await
        .unwrap()
        .id;
    wait_status(&test.db, next, "succeeded", Duration::from_secs(20)).await;
    let latency = start_latency_ms(&test.db, next).await;
    assert!(
        latency < 2_000,
        "three of four slots free: claimed on the wake-up, not after the 10 s poll cap ({latency} ms)"
    );
}

/// The other half of the rule above: a busy worker of fast jobs claims in batches, once half its
/// room is free, not once per freed slot, because every claim costs a scan of the queue. Counted:
/// 400 jobs of 20 ms through 8 slots (no leasing ahead) cost at most a claim per four jobs (100),
/// and a candidate look-up now and then: 111 to 113 queries measured, against 163 to 219 with
/// the rule taken out.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_worker_claims_in_batches_not_per_freed_slot() {
    let (test, queue) = setup("hardening_batches").await;
    let jobs: Vec<NewJob> = probes(400, 20_i64);
    queue.enqueue_many(jobs).await.unwrap();
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "8", "--claim-ahead", "0"],
    );
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        400,
        Duration::from_secs(60),
    )
    .await;
    let queries = worker.metric("sv0_queue_claim_queries_total");
    assert!(
        queries <= 140.0,
        "{queries} claim queries for 400 jobs through 8 slots"
    );
}

/// A kind's limit holds when the kind already runs: a worker with `--kind-limit probe=2` running
/// one probe claims at most one more, however many wait. (Mutation testing found the room left
/// under a limit unpinned: a worker that added the running jobs instead of taking them away
/// passed every test, since the other limit tests use a limit of one.)
#[tokio::test(flavor = "multi_thread")]
async fn a_kind_limit_above_one_counts_the_jobs_already_running() {
    let (test, queue) = setup("hardening_limit_two").await;
    queue
        .enqueue(NewJob::new("probe", doc! {"sleep_ms": 30_000_i64}))
        .await
        .unwrap();
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--kind-limit", "probe=2", "--concurrency", "8"],
    );
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "running"},
        1,
        Duration::from_secs(20),
    )
    .await;
    let more: Vec<NewJob> = probes(5, 30_000_i64);
    queue.enqueue_many(more).await.unwrap();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "running"},
        2,
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&test.db, "jobs", doc! {"status": "running"}).await,
        2,
        "two probes at a time, never more"
    );
    drop(worker);
}

/// One running mean of run time for all kinds let 50 fast `noop`s pull it to milliseconds, and a
/// worker then leased a pile of 300 ms probes ahead while the other worker idled. Per-kind
/// estimates keep the drain as fast as with leasing ahead turned off.
#[tokio::test(flavor = "multi_thread")]
async fn leasing_ahead_does_not_hoard_slow_jobs_behind_fast_ones() {
    async fn drain(label: &str, extra: &[&str]) -> Duration {
        let (test, queue) = setup(label).await;
        let mut jobs: Vec<NewJob> = (0..50).map(|_| NewJob::new("noop", doc! {})).collect();
        jobs.extend((0..60).map(|_| NewJob::new("probe", doc! {"sleep_ms": 300_i64})));
        queue.enqueue_many(jobs).await.unwrap();
        let mut args = vec!["--concurrency", "1"];
        args.extend_from_slice(extra);
        let workers: Vec<_> = (0..2)
            .map(|_| Sv0Process::worker(test.uri(), test.name(), &args))
            .collect();
        for worker in &workers {
            worker.id();
        }
        let started = Instant::now();
        wait_count(
            &test.db,
            "jobs",
            doc! {"status": "succeeded"},
            110,
            Duration::from_secs(60),
        )
        .await;
        started.elapsed()
    }
    let ahead = drain("hardening_hoard_ahead", &[]).await;
    let without = drain("hardening_hoard_off", &["--claim-ahead", "0"]).await;
    assert!(
        ahead.as_secs_f64() <= without.as_secs_f64() * 1.3,
        "leasing ahead: {ahead:?}; without: {without:?}"
    );
}
