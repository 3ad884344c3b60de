//! Leasing ahead, across a real worker process: short jobs are leased beyond the free slots and
//! wait in line for one; long jobs are not; a draining worker gives the waiting ones back at once.

mod support;

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;
use nix::sys::signal::Signal;
use support::{Sv0Process, count, enqueue_ids, job, probes, setup, wait_count};
use sv0_queue::{NewJob, Queue};

/// Five quick jobs that teach a worker its jobs are short, then one long job (returned) that
/// takes a one-slot worker's only slot, then twenty quick jobs (returned) in line behind it.
async fn quick_long_quick(queue: &Queue) -> (ObjectId, Vec<ObjectId>) {
    let ranked = |n, sleep_ms, priority| -> Vec<NewJob> {
        probes(n, sleep_ms)
            .into_iter()
            .map(|job| job.priority(priority))
            .collect()
    };
    queue.enqueue_many(ranked(5, 0, 10)).await.unwrap();
    let long = enqueue_ids(queue, ranked(1, 8_000, 5)).await[0];
    (long, enqueue_ids(queue, ranked(20, 0, 1)).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn short_jobs_are_leased_ahead_and_given_back_at_once_on_sigterm() {
    let (test, queue) = setup("ahead_give_back").await;
    let (long, waiting) = quick_long_quick(&queue).await;
    let mut worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "1", "--grace-ms", "30000"],
    );
    wait_count(
        &test.db,
        "probe_runs",
        doc! {"job_id": long},
        1,
        Duration::from_secs(20),
    )
    .await;
    // The quick jobs' commits may still be on their way while the long job starts.
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        5,
        Duration::from_secs(5),
    )
    .await;

    // How many are leased ahead depends on how fast the quick jobs ran (on an idle machine, all
    // twenty); some must be.
    let leased_ahead = count(
        &test.db,
        "jobs",
        doc! {"_id": {"$in": &waiting}, "status": "running"},
    )
    .await;
    assert!(
        leased_ahead >= 1,
        "short jobs are leased ahead while the long one holds the only slot"
    );
    assert_eq!(
        count(&test.db, "probe_runs", doc! {}).await,
        6,
        "only the quick jobs and the long one ran: the rest wait for the one slot"
    );

    worker.signal(Signal::SIGTERM);
    let signalled = Instant::now();
    wait_count(
        &test.db,
        "jobs",
        doc! {"_id": {"$in": &waiting}, "status": "queued", "attempts": 0},
        20,
        Duration::from_secs(4),
    )
    .await;
    assert_eq!(
        job(&test.db, long).await.get_str("status").unwrap(),
        "running",
        "the waiting jobs came back {:?} after SIGTERM, while the long one still ran",
        signalled.elapsed()
    );
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let given_back = worker.events("draining")[0]["given_back"].as_u64().unwrap();
    assert!(
        (leased_ahead..=20).contains(&given_back),
        "{given_back} given back in one write by the draining worker, {leased_ahead} seen leased"
    );
    assert_eq!(
        job(&test.db, long).await.get_str("status").unwrap(),
        "succeeded",
        "the running job finished within the grace"
    );
    assert_eq!(
        count(&test.db, "probe_runs", doc! {"job_id": {"$in": &waiting}}).await,
        0,
        "jobs given back never ran here"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_jobs_run_long_leases_no_more_than_it_runs() {
    let (test, queue) = setup("ahead_long_jobs").await;
    queue.enqueue_many(probes(8, 700)).await.unwrap();
    let _worker = Sv0Process::worker(test.uri(), test.name(), &["--concurrency", "2"]);
    wait_count(&test.db, "probe_runs", doc! {}, 2, Duration::from_secs(20)).await;

    let mut most_held = 0;
    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        most_held = most_held.max(count(&test.db, "jobs", doc! {"status": "running"}).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two running, and at most two more whose commits are still on their way (the worker
    // claims again as soon as a handler returns); leasing ahead would show all eight.
    assert!(
        (2..=4).contains(&most_held),
        "{most_held} leased at once while jobs take 700 ms"
    );
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        8,
        Duration::from_secs(20),
    )
    .await;
}

/// Jobs leased ahead behind a job that turned out long are given back after four horizons (1 s)
/// and run by another worker, while the long job still holds the first worker's only slot: an
/// estimate gone wrong keeps no jobs from idle workers.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_leased_ahead_behind_a_long_job_are_given_back_to_an_idle_worker() {
    let (test, queue) = setup("ahead_stale").await;
    let (long, waiting) = quick_long_quick(&queue).await;
    let first = Sv0Process::worker(test.uri(), test.name(), &["--concurrency", "1"]);
    wait_count(
        &test.db,
        "probe_runs",
        doc! {"job_id": long},
        1,
        Duration::from_secs(20),
    )
    .await;
    let long_started = Instant::now();
    let _second = Sv0Process::worker(test.uri(), test.name(), &["--concurrency", "4"]);
    wait_count(
        &test.db,
        "jobs",
        doc! {"_id": {"$in": &waiting}, "status": "succeeded"},
        20,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        long_started.elapsed() < Duration::from_secs(7),
        "the waiting jobs ran elsewhere before the 8 s job ended ({:?})",
        long_started.elapsed()
    );
    assert_eq!(
        job(&test.db, long).await.get_str("status").unwrap(),
        "running"
    );
    assert!(
        first.metric("sv0_worker_leased_ahead_given_back_total") >= 1.0,
        "the first worker gave them back"
    );
}
