//! Four worker processes × concurrency 8 drain 5,000 jobs: every job commits exactly once.
//! Each handler run records itself (`probe_runs`); each commit is logged by the worker that made
//! it. Runs may exceed jobs (at-least-once execution); commits may not.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::doc;
use support::{Sv0Process, count, setup, wait_count};
use sv0_queue::NewJob;

const JOBS: usize = 5_000;

#[tokio::test(flavor = "multi_thread")]
async fn four_workers_drain_5000_jobs_and_each_commits_exactly_once() {
    let (test, queue) = setup("worker_drain").await;
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| NewJob::new("probe", doc! {"n": n as i64}))
        .collect();
    let enqueued = queue.enqueue_many(jobs).await.unwrap();

    let mut workers: Vec<Sv0Process> = (0..4)
        .map(|_| Sv0Process::worker(test.uri(), test.name(), &["--concurrency", "8"]))
        .collect();
    let all_succeeded = doc! {"status": "succeeded"};
    wait_count(
        &test.db,
        "jobs",
        all_succeeded,
        JOBS as u64,
        Duration::from_secs(240),
    )
    .await;
    for worker in &mut workers {
        worker.stop();
    }

    let mut commits: HashMap<String, usize> = HashMap::new();
    let mut committers = 0;
    for worker in &workers {
        let events = worker.events("job committed");
        committers += usize::from(!events.is_empty());
        for event in events {
            *commits
                .entry(event["job_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(commits.len(), JOBS, "every job's commit was logged");
    let twice: Vec<_> = commits.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs committed more than once: {twice:?}");
    assert!(
        enqueued
            .iter()
            .all(|e| commits.contains_key(&e.id.to_hex()))
    );
    assert_eq!(committers, 4, "all four workers took part");

    let runs = count(&test.db, "probe_runs", doc! {}).await;
    assert!(
        runs >= JOBS as u64,
        "every job ran at least once ({runs} runs)"
    );
    assert_eq!(
        count(&test.db, "jobs", doc! {"status": {"$ne": "succeeded"}}).await,
        0
    );
}
