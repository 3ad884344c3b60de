//! Worker behaviour through real `sv0 worker` and `sv0 enqueue` processes: retries, failures,
//! cancellation, dedup across processes, order, delay, drain on SIGTERM, and wake-ups.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use nix::sys::signal::Signal;
use support::{
    Sv0Process, all, count, enqueue_ids, http_get, job, probes, setup, setup_on, start_latency_ms,
    sv0, wait_count, wait_status,
};
use sv0_queue::{CancelOutcome, NewJob};
use sv0_testkit::{TestDb, oplog_stand};

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_in_place_and_the_job_succeeds_on_its_first_attempt() {
    let (test, queue) = setup("behaviour_with_retry").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"fail_runs": 2}))
        .await
        .unwrap()
        .id;
    let _worker = Sv0Process::worker(test.uri(), test.name(), &[]);
    wait_status(&test.db, id, "succeeded", Duration::from_secs(30)).await;
    let runs = all(&test.db, "probe_runs", doc! {"job_id": id}).await;
    assert_eq!(runs.len(), 3, "two transient failures, then success");
    let at: Vec<i64> = runs
        .iter()
        .map(|r| r.get_datetime("at").unwrap().timestamp_millis())
        .collect();
    assert!(
        at[1] - at[0] >= 1_000 && at[2] - at[1] >= 2_000,
        "1 s then 2 s apart: {at:?}"
    );
    assert_eq!(job(&test.db, id).await.get_i32("attempts").unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_keeps_failing_transiently_is_dead_after_max_attempts() {
    let (test, queue) = setup("behaviour_dead").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"outcome": "transient"}).max_attempts(2))
        .await
        .unwrap()
        .id;
    let _worker = Sv0Process::worker(test.uri(), test.name(), &["--retry-base-ms", "300"]);
    wait_status(&test.db, id, "dead", Duration::from_secs(60)).await;
    let stored = job(&test.db, id).await;
    assert_eq!(stored.get_i32("attempts").unwrap(), 2);
    assert!(stored.get_str("last_error").unwrap().contains("transient"));
    assert_eq!(
        count(&test.db, "probe_runs", doc! {"job_id": id}).await,
        8,
        "4 runs per attempt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_fails_the_job_at_once_without_retries() {
    let (test, queue) = setup("behaviour_permanent").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"outcome": "permanent"}).max_attempts(5))
        .await
        .unwrap()
        .id;
    let _worker = Sv0Process::worker(test.uri(), test.name(), &[]);
    wait_status(&test.db, id, "failed", Duration::from_secs(20)).await;
    assert_eq!(count(&test.db, "probe_runs", doc! {"job_id": id}).await, 1);
    assert_eq!(job(&test.db, id).await.get_i32("attempts").unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_cancelled_is_stopped_by_its_worker_at_the_next_heartbeat() {
    let (test, queue) = setup("behaviour_cancel").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"sleep_ms": 60_000_i64}))
        .await
        .unwrap()
        .id;
    let worker = Sv0Process::worker(test.uri(), test.name(), &["--lease-ttl-ms", "1500"]);
    wait_count(&test.db, "probe_runs", doc! {}, 1, Duration::from_secs(20)).await;
    assert_eq!(queue.cancel(id).await.unwrap(), CancelOutcome::Requested);
    wait_status(&test.db, id, "cancelled", Duration::from_secs(5)).await;
    worker.wait_for_event("job cancelled on request", Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_enqueues_from_four_processes_with_the_same_keys_create_each_job_once() {
    let (test, _queue) = setup("behaviour_dedup").await;
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(sv0())
                .args([
                    "enqueue",
                    "--mongodb-uri",
                    test.uri(),
                    "--database",
                    test.name(),
                ])
                .args(["--kind", "noop", "--dedup-key", "slot", "--count", "50"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reported: Vec<Vec<String>> = Vec::new();
    let mut created = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        created += lines.iter().filter(|l| l["created"] == true).count();
        reported.push(
            lines
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string())
                .collect(),
        );
    }
    assert_eq!(count(&test.db, "jobs", doc! {}).await, 50);
    assert_eq!(created, 50, "each key was created by exactly one process");
    assert!(
        reported.iter().all(|ids| ids == &reported[0]),
        "every process got the same job per key"
    );
    assert_eq!(reported[0].iter().collect::<HashSet<_>>().len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_runs_due_jobs_in_priority_order_and_delayed_jobs_only_when_due() {
    let (test, queue) = setup("behaviour_order").await;
    let mut by_priority = Vec::new();
    for priority in [1, 5, 3, 4, 2] {
        let id = queue
            .enqueue(NewJob::new("probe", doc! {}).priority(priority))
            .await
            .unwrap()
            .id;
        by_priority.push((priority, id));
    }
    let delayed = queue
        .enqueue(
            NewJob::new("probe", doc! {})
                .priority(9)
                .delay(Duration::from_millis(1_500)),
        )
        .await
        .unwrap()
        .id;
    let _worker = Sv0Process::worker(test.uri(), test.name(), &["--concurrency", "1"]);
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        6,
        Duration::from_secs(30),
    )
    .await;

    let mut runs = all(&test.db, "probe_runs", doc! {}).await;
    runs.sort_by_key(|r| r.get_datetime("at").unwrap().timestamp_millis());
    let ran: Vec<_> = runs
        .iter()
        .map(|r| r.get_object_id("job_id").unwrap())
        .collect();
    by_priority.sort_by_key(|(p, _)| -p);
    let expected: Vec<_> = by_priority.iter().map(|(_, id)| *id).collect();
    assert_eq!(&ran[..5], &expected[..], "highest priority first");
    assert_eq!(ran[5], delayed, "the delayed job, though highest, ran last");
    let stored = job(&test.db, delayed).await;
    let waited = stored
        .get_datetime("started_at")
        .unwrap()
        .timestamp_millis()
        - stored
            .get_datetime("created_at")
            .unwrap()
            .timestamp_millis();
    assert!(waited >= 1_500, "started {waited} ms after enqueue");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_finishes_short_jobs_and_releases_long_ones() {
    let (test, queue) = setup("behaviour_drain").await;
    let short: Vec<_> = (0..3)
        .map(|_| NewJob::new("probe", doc! {"sleep_ms": 500_i64}).priority(1))
        .collect();
    let long: Vec<_> = probes(3, 60_000_i64);
    queue.enqueue_many(short).await.unwrap();
    let long_ids = enqueue_ids(&queue, long).await;
    let mut worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "6", "--grace-ms", "2000"],
    );
    wait_count(&test.db, "probe_runs", doc! {}, 6, Duration::from_secs(20)).await;

    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert_eq!(
        count(&test.db, "jobs", doc! {"status": "running"}).await,
        0,
        "nothing left running"
    );
    assert_eq!(
        count(&test.db, "jobs", doc! {"status": "succeeded"}).await,
        3,
        "short jobs finished in the grace"
    );
    for id in long_ids {
        let stored: Document = job(&test.db, id).await;
        assert_eq!(
            stored.get_str("status").unwrap(),
            "queued",
            "released, claimable at once"
        );
        assert_eq!(
            stored.get_i32("attempts").unwrap(),
            0,
            "a release spends no attempt"
        );
        assert!(
            stored
                .get_document("lease")
                .unwrap()
                .get("expires_at")
                .is_none()
        );
    }
    let record = all(&test.db, "workers", doc! {}).await;
    assert_eq!(record[0].get_str("state").unwrap(), "stopped");
}

/// With the idle poll capped at 10 s, only a change stream can start a job within a second.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_worker_wakes_on_the_change_stream() {
    let (test, queue) = setup_on(oplog_stand(), "behaviour_change_stream").await;
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--change-streams", "auto", "--poll-max-ms", "10000"],
    );
    worker.wait_for_event(
        "waking on a change stream of new jobs",
        Duration::from_secs(20),
    );
    tokio::time::sleep(Duration::from_secs(12)).await; // the poll has backed off to its cap
    let id = queue
        .enqueue(NewJob::new("noop", doc! {}))
        .await
        .unwrap()
        .id;
    wait_status(&test.db, id, "succeeded", Duration::from_secs(20)).await;
    let latency = start_latency_ms(&test.db, id).await;
    assert!(
        latency < 1_000,
        "woken by the change stream, not the 10 s poll: {latency} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_change_stream_the_worker_falls_back_to_polling() {
    let (test, queue) = setup("behaviour_polling").await;
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--change-streams", "auto", "--poll-max-ms", "300"],
    );
    worker.wait_for_event(
        "no change stream on this server; polling only",
        Duration::from_secs(20),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = queue
        .enqueue(NewJob::new("noop", doc! {}))
        .await
        .unwrap()
        .id;
    wait_status(&test.db, id, "succeeded", Duration::from_secs(10)).await;
    let latency = start_latency_ms(&test.db, id).await;
    assert!(
        latency < 2_000,
        "picked up by the 300 ms poll: {latency} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_serves_its_metrics_and_health() {
    let (test, queue) = setup("behaviour_status").await;
    queue
        .enqueue_many((0..3).map(|_| NewJob::new("noop", doc! {})).collect())
        .await
        .unwrap();
    let worker = Sv0Process::worker(test.uri(), test.name(), &[]);
    let serving = worker.wait_for_event("serving /metrics and /healthz", Duration::from_secs(20));
    let addr = serving["addr"].as_str().unwrap().to_string();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        3,
        Duration::from_secs(20),
    )
    .await;

    let (status, health) = http_get(&addr, "/healthz");
    assert_eq!((status, health.trim()), (200, "running"));
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    for series in [
        "sv0_queue_jobs_claimed_total{kind=\"noop\"} 3",
        "sv0_queue_jobs_finished_total{kind=\"noop\",outcome=\"succeeded\"} 3",
        "sv0_queue_job_duration_seconds_count{kind=\"noop\"} 3",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    let (status, _) = http_get(&addr, "/nowhere");
    assert_eq!(status, 404);
}

/// A worker's id, which is every lease's owner and its `workers` record, names the machine and
/// the process (`host-pid-…`, unique per start), so that an operator looking at a stuck lease
/// knows where to look.
#[tokio::test(flavor = "multi_thread")]
async fn a_workers_id_names_its_host_and_process() {
    let test = TestDb::new("behaviour_worker_id").await;
    let worker = Sv0Process::worker(test.uri(), test.name(), &[]);
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let id = worker.id();
    assert!(
        id.starts_with(&format!("{host}-{}-", worker.pid())),
        "{id} names host {host} and pid {}",
        worker.pid()
    );
}

/// A worker works through a list of claim candidates, but refreshes it at least every quarter
/// second (`prefetch_max_age`): a job of higher priority enqueued meanwhile is started within
/// that, not after the rest of an old list. Here one slot works through 60 jobs of 100 ms; a
/// priority-10 job enqueued mid-way starts before at most a few more of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_higher_priority_job_is_not_passed_over_for_an_old_candidate_list() {
    let test = TestDb::new("behaviour_priority_refresh").await;
    let queue = sv0_queue::Queue::new(&test.db);
    queue.ensure_indexes().await.unwrap();
    let low: Vec<NewJob> = probes(60, 100_i64);
    queue.enqueue_many(low).await.unwrap();
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--concurrency", "1", "--claim-ahead", "0"],
    );
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "succeeded"},
        3,
        Duration::from_secs(30),
    )
    .await;
    let urgent = queue
        .enqueue(NewJob::new("probe", doc! {}).priority(10))
        .await
        .unwrap()
        .id;
    wait_status(&test.db, urgent, "succeeded", Duration::from_secs(30)).await;
    let started = support::job(&test.db, urgent)
        .await
        .get_datetime("started_at")
        .copied()
        .unwrap();
    let before = count(
        &test.db,
        "jobs",
        doc! {"priority": 0, "started_at": {"$lt": started}},
    )
    .await;
    assert!(
        before <= 20,
        "{before} of the 60 low-priority jobs started before the urgent one"
    );
    drop(worker);
}

/// Every line the worker logs about a job, here its commit, carries the job's id, kind, tenant and
/// group (for a pipeline stage, its run) as fields of the line's `span`.
#[tokio::test(flavor = "multi_thread")]
async fn every_line_about_a_job_names_its_id_kind_tenant_and_group() {
    let (test, queue) = setup("behaviour_job_span").await;
    let id = queue
        .enqueue(
            NewJob::new("probe", doc! {})
                .tenant_id("acme")
                .group_id("run-1"),
        )
        .await
        .unwrap()
        .id;
    let worker = Sv0Process::worker(test.uri(), test.name(), &[]);
    wait_status(&test.db, id, "succeeded", Duration::from_secs(30)).await;
    let committed = worker.wait_for_event("job committed", Duration::from_secs(10));
    let span = &committed["span"];
    assert_eq!(span["job_id"], id.to_hex(), "{committed}");
    assert_eq!(span["kind"], "probe", "{committed}");
    assert_eq!(span["tenant_id"], "acme", "{committed}");
    assert_eq!(span["group_id"], "run-1", "{committed}");
}
