//! Real worker processes when something goes wrong: a panicking handler, a worker killed holding
//! jobs it leased ahead, a cancel requested during a failing attempt, a partition from the
//! database, a run past its time bound, bad flags and limits for kinds the worker does not serve,
//! a job that crashes its worker at once, and a clock far off the database server's. Each test
//! names the scenario it pins; each failed on the code before its fix, or with the mutant it was
//! written to kill applied (docs/testing.md).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use nix::sys::signal::Signal;
use support::{Sv0Process, all, count, enqueue_ids, job, setup, wait_count, wait_status};
use sv0_queue::{CancelOutcome, NewJob};
use sv0_testkit::{FaultProxy, stand};

/// A panicking handler used to strand its job `running` for the worker's lifetime (its `held`
/// entry was never removed, so its lease was heartbeated forever), and under
/// `--kind-limit probe=1` no other probe was ever claimed. Now a panic is a failed attempt,
/// retried and then `dead` with the panic message; the worker carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_handler_fails_its_attempt_and_frees_its_slot() {
    let (test, queue) = setup("hardening_panic").await;
    let panicking = queue
        .enqueue(
            NewJob::new("probe", doc! {"outcome": "panic"})
                .max_attempts(2)
                .priority(1),
        )
        .await
        .unwrap()
        .id;
    let after = queue
        .enqueue(NewJob::new("probe", doc! {}))
        .await
        .unwrap()
        .id;
    let worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--kind-limit", "probe=1", "--retry-base-ms", "50"],
    );
    wait_count(
        &test.db,
        "jobs",
        doc! {"_id": {"$in": [panicking, after]}, "status": {"$in": ["dead", "succeeded"]}},
        2,
        Duration::from_secs(30),
    )
    .await;
    let dead = job(&test.db, panicking).await;
    assert_eq!(dead.get_str("status").unwrap(), "dead", "{dead}");
    assert_eq!(dead.get_i32("attempts").unwrap(), 2);
    let error = dead.get_str("last_error").unwrap();
    assert!(error.contains("probe asked for a panic"), "{error}");
    assert_eq!(
        job(&test.db, after).await.get_str("status").unwrap(),
        "succeeded",
        "the limited kind's slot was freed"
    );
    assert_eq!(worker.events("handler panicked").len(), 2);
    assert_eq!(
        worker.metric("sv0_worker_handler_panics_total{kind=\"probe\"}"),
        2.0
    );
}

/// A claim used to spend an attempt, so a worker killed while holding jobs it had leased ahead
/// cost each of them one: with `max_attempts 1` they became `dead` without ever running. Now an
/// attempt is spent when a job starts: the jobs the killed worker never started run exactly once,
/// on the next worker, to `succeeded`.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_leased_ahead_by_a_killed_worker_run_once_elsewhere() {
    let (test, queue) = setup("hardening_ahead_kill").await;
    let ttl = ["--lease-ttl-ms", "1500", "--concurrency", "2"];
    let first = Sv0Process::worker(test.uri(), test.name(), &ttl);
    let first_id = first.id();
    // Warm it up: probe runs take milliseconds, so it leases probes ahead.
    let warm: Vec<NewJob> = (0..20).map(|_| NewJob::new("probe", doc! {})).collect();
    let warm = enqueue_ids(&queue, warm).await;
    wait_count(
        &test.db,
        "jobs",
        doc! {"_id": {"$in": &warm}, "status": "succeeded"},
        20,
        Duration::from_secs(20),
    )
    .await;

    let jobs: Vec<NewJob> = (0..200)
        .map(|_| NewJob::new("probe", doc! {"sleep_ms": 100_i64}).max_attempts(1))
        .collect();
    let ids = enqueue_ids(&queue, jobs).await;
    let held = doc! {"_id": {"$in": &ids}, "status": "running", "lease.owner": &first_id};
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&test.db, "jobs", held.clone()).await < 10 {
        assert!(Instant::now() < deadline, "the worker never leased ahead");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.signal(Signal::SIGKILL);

    let _second = Sv0Process::worker(test.uri(), test.name(), &ttl);
    wait_count(
        &test.db,
        "jobs",
        doc! {"_id": {"$in": &ids}, "status": {"$in": ["succeeded", "dead"]}},
        ids.len() as u64,
        Duration::from_secs(60),
    )
    .await;
    let ran_on_first: HashSet<_> = all(&test.db, "probe_runs", doc! {"worker": &first_id})
        .await
        .iter()
        .map(|r| r.get_object_id("job_id").unwrap())
        .collect();
    let mut never_started_on_first = 0;
    for id in &ids {
        if ran_on_first.contains(id) {
            continue;
        }
        never_started_on_first += 1;
        let stored = job(&test.db, *id).await;
        assert_eq!(stored.get_str("status").unwrap(), "succeeded", "{stored}");
        assert_eq!(stored.get_i32("attempts").unwrap(), 1, "{stored}");
        let runs = count(&test.db, "probe_runs", doc! {"job_id": id}).await;
        assert_eq!(runs, 1, "ran exactly once: {stored}");
    }
    assert!(never_started_on_first > 0);
}

/// A job whose cancel was requested while its handler kept failing transiently used to be queued
/// again by the failure (the request still set) and run again. Now the failure ends it
/// `cancelled`: one attempt ran (its first run and `with_retry`'s three retries), no more.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_requested_during_a_failing_attempt_is_not_lost() {
    let (test, queue) = setup("hardening_cancel_fail").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"outcome": "transient"}))
        .await
        .unwrap()
        .id;
    // A long lease: no heartbeat comes before `with_retry` gives up (after 1 + 2 + 4 s).
    let _worker = Sv0Process::worker(
        test.uri(),
        test.name(),
        &["--lease-ttl-ms", "60000", "--retry-base-ms", "50"],
    );
    wait_count(&test.db, "probe_runs", doc! {}, 1, Duration::from_secs(20)).await;
    assert_eq!(queue.cancel(id).await.unwrap(), CancelOutcome::Requested);
    wait_status(&test.db, id, "cancelled", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&test.db, "probe_runs", doc! {"job_id": id}).await,
        4,
        "one attempt, never run again"
    );
}

/// A worker cut off from the database used to run its handlers on after their leases expired,
/// while another worker ran the same jobs: two runs at once for the whole partition. Now it stops
/// a handler whose lease it could not renew for the TTL less a margin (a fifth of it), before any
/// reaper may hand the job on: the two runs do not overlap.
#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_worker_stops_its_handler_before_another_worker_starts_the_job() {
    if sv0_testkit::on_real_mongodb() {
        return; // the proxy needs the stand's single address
    }
    let (test, queue) = setup("hardening_self_fence").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"sleep_ms": 20_000_i64}))
        .await
        .unwrap()
        .id;
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let ttl = ["--lease-ttl-ms", "1500"];
    let first = Sv0Process::worker(&stand().uri_via(proxy.addr()), test.name(), &ttl);
    let first_id = first.id();
    wait_count(&test.db, "probe_runs", doc! {}, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.black_hole();
    let _second = Sv0Process::worker(test.uri(), test.name(), &ttl);
    wait_count(
        &test.db,
        "probe_runs",
        doc! {"job_id": id, "worker": {"$ne": &first_id}},
        1,
        Duration::from_secs(20),
    )
    .await;
    let fenced = first.wait_for_event(
        "self-fenced: the lease was not renewed in time; handler stopped",
        Duration::from_secs(5),
    );
    let fenced_at = DateTime::parse_rfc3339_str(fenced["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let second_run = all(&test.db, "probe_runs", doc! {"worker": {"$ne": &first_id}}).await;
    let second_started = second_run[0].get_datetime("at").unwrap().timestamp_millis();
    assert!(
        fenced_at <= second_started,
        "the first worker stopped its handler {} ms after the second started the job",
        fenced_at - second_started
    );
    proxy.restore();
}

/// Nothing used to bound a run. Now `--kind-timeout` and a job's own timeout cancel the handler,
/// and the attempt fails as timed out.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_time_bound_is_cancelled_and_fails() {
    let (test, queue) = setup("hardening_timeout").await;
    let by_kind = queue
        .enqueue(NewJob::new("probe", doc! {"sleep_ms": 30_000_i64}).max_attempts(1))
        .await
        .unwrap()
        .id;
    let by_job = queue
        .enqueue(
            NewJob::new("probe", doc! {"sleep_ms": 30_000_i64})
                .max_attempts(1)
                .timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap()
        .id;
    let started = Instant::now();
    let worker = Sv0Process::worker(test.uri(), test.name(), &["--kind-timeout", "probe=1"]);
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "dead"},
        2,
        Duration::from_secs(20),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(15));
    let error = |stored: mongodb::bson::Document| stored.get_str("last_error").unwrap().to_string();
    assert_eq!(
        error(job(&test.db, by_kind).await),
        "timed out after 1000 ms"
    );
    assert_eq!(error(job(&test.db, by_job).await), "timed out after 300 ms");
    assert_eq!(
        worker.metric("sv0_worker_timeouts_total{kind=\"probe\"}"),
        2.0
    );
}

/// Bad flags used to be taken as given (a semaphore panic for a huge concurrency, a wrapped
/// retention that deletes every finished job, a zero poll that spins). Each is refused before
/// anything connects, with the flag named; `--help` never prints the connection string it would
/// read from the environment (it may hold a password).
#[test]
fn bad_worker_flags_are_refused_with_the_flag_named() {
    let refused = [
        (vec!["--poll-min-ms", "0"], "--poll-min-ms"),
        (vec!["--reap-every-ms", "0"], "--reap-every-ms"),
        (vec!["--concurrency", "100000000"], "--concurrency"),
        (vec!["--concurrency", "0"], "--concurrency"),
        (
            vec!["--retention-s", "18446744073709551615"],
            "--retention-s",
        ),
        (
            vec!["--lease-ttl-ms", "18446744073709551615"],
            "--lease-ttl-ms",
        ),
        (vec!["--keep-syncs-days", "0"], "--keep-syncs-days"),
        (vec!["--keep-audit-days", "36501"], "--keep-audit-days"),
        (vec!["--kind-limit", "probe=0"], "--kind-limit"),
        (vec!["--kind-timeout", "probe=0"], "--kind-timeout"),
        (
            vec!["--poll-min-ms", "50", "--poll-max-ms", "10"],
            "--poll-max-ms",
        ),
    ];
    for (flags, named) in refused {
        let output = std::process::Command::new(support::sv0())
            .args([
                "worker",
                "--diagnostics",
                "--mongodb-uri",
                "mongodb://127.0.0.1:9/",
            ])
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }

    let canary = "mongodb://user:canary-p4ssw0rd@db.example:27017/";
    let help = std::process::Command::new(support::sv0())
        .args(["worker", "--help"])
        .env("SV0_MONGODB_URI", canary)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("SV0_MONGODB_URI"), "{text}");
    assert!(!text.contains("canary-p4ssw0rd"), "{text}");
}

/// A `--kind-limit` or `--kind-timeout` for a kind the worker does not serve was silently ignored.
/// Now the worker refuses to start, naming the flag and the kind.
#[tokio::test(flavor = "multi_thread")]
async fn a_limit_for_a_kind_not_served_is_refused() {
    let (test, _queue) = setup("hardening_unserved_kind").await;
    for flag in ["--kind-limit", "--kind-timeout"] {
        let output = std::process::Command::new(support::sv0())
            .args(["worker", "--diagnostics", "--mongodb-uri", test.uri()])
            .args(["--database", test.name(), "--metrics-addr", "127.0.0.1:0"])
            .args([flag, "scan=1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{flag} for an unserved kind was accepted"
        );
        assert!(
            stderr.contains(flag) && stderr.contains("\"scan\""),
            "{stderr}"
        );
    }
}

/// The other side of charging an attempt at start: since a first run records its start only after
/// `start_linger` (100 ms) or with its outcome, a job that kills its worker at once is not charged
/// for that first run. A job that ran before records its start before its handler runs, so such a
/// poison job still reaches `dead`: after one uncharged run and `max_attempts` charged ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_crashes_its_worker_at_once_still_dies() {
    let (test, queue) = setup("hardening_poison").await;
    let id = queue
        .enqueue(NewJob::new("probe", doc! {"outcome": "abort"}).max_attempts(2))
        .await
        .unwrap()
        .id;
    let ttl = ["--lease-ttl-ms", "900"];
    let _reaper = Sv0Process::worker(test.uri(), test.name(), &["--kinds", "noop"]);
    for restart in 0.. {
        let status = job(&test.db, id).await;
        if status.get_str("status").unwrap() == "dead" {
            break;
        }
        assert!(restart < 8, "the poison job never died: {status}");
        let mut worker = Sv0Process::worker(test.uri(), test.name(), &ttl);
        let exited = worker.wait_exit(Duration::from_secs(20));
        assert!(!exited.success(), "the probe aborted the worker");
        // Its lease expires; the noop worker's reaper requeues the job, or kills it when spent.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    assert_eq!(
        count(&test.db, "probe_runs", doc! {"job_id": id}).await,
        3,
        "one uncharged first run, then two charged ones"
    );
}

/// libfaketime, which shifts a process's wall clock (Debian's `faketime`; `scripts/setup`
/// installs it).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A worker process whose wall clock runs `offset` (e.g. `+20s`) from this host's.
fn skewed_worker(uri: &str, database: &str, offset: &str) -> Sv0Process {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: run scripts/setup"
    );
    Sv0Process::worker_with_env(
        uri,
        database,
        &[],
        &[
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME", offset),
            // Only the wall clock is off; timers and elapsed times stay true.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
}

/// Lease expiry is written and compared with each host's clock, and a worker whose clock was off
/// used to claim as usual (its leases looking expired, or far from it, to everyone else). Now it
/// measures its skew against the database server: past a tenth of the lease TTL it warns, past
/// half it claims nothing; `sv0_worker_clock_skew_seconds` shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_clock_is_far_off_claims_nothing() {
    if sv0_testkit::on_real_mongodb() {
        return; // the shifted clock must be only the worker's, not the server's too
    }
    let (test, queue) = setup("hardening_skew").await;
    let id = queue
        .enqueue(NewJob::new("noop", doc! {}))
        .await
        .unwrap()
        .id;
    // The default lease TTL is 30 s: 20 s off is past half of it.
    let far = skewed_worker(test.uri(), test.name(), "+20s");
    far.wait_for_event("worker started", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        job(&test.db, id).await.get_str("status").unwrap(),
        "queued",
        "a worker 20 s off claims nothing"
    );
    let skew = far.metric("sv0_worker_clock_skew_seconds");
    assert!((19.0..21.0).contains(&skew), "measured skew {skew}");
    assert!(
        far.all_events()
            .iter()
            .any(|e| e["level"] == "ERROR" && e["skew_seconds"].as_f64().is_some()),
        "it says why it does not claim"
    );

    // 5 s off is past a tenth of the TTL: it warns, and claims.
    let near = skewed_worker(test.uri(), test.name(), "-5s");
    wait_status(&test.db, id, "succeeded", Duration::from_secs(20)).await;
    assert!(
        near.all_events()
            .iter()
            .any(|e| e["level"] == "WARN" && e["skew_seconds"].as_f64().is_some())
    );
}

/// The skew measurement takes the server's stamp as read at the middle of the round trip: over a
/// slow link (half a second each way, through the fault proxy) a worker on this host, whose clock
/// is the server's, measures a skew near zero, not the round trip or half of it.
#[tokio::test(flavor = "multi_thread")]
async fn clock_skew_is_measured_from_the_middle_of_the_round_trip() {
    if sv0_testkit::on_real_mongodb() {
        return; // the server's clock is another host's there
    }
    let (test, _queue) = setup("hardening_skew_rtt").await;
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let worker = Sv0Process::worker(
        &stand().uri_via(proxy.addr()),
        test.name(),
        &["--lease-ttl-ms", "3000"],
    );
    worker.wait_for_event("worker started", Duration::from_secs(20));
    proxy.set_latency(Duration::from_millis(500));
    // A few heartbeats (every second) over the slow link.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let skew = worker.metric("sv0_worker_clock_skew_seconds");
    assert!(
        skew.abs() < 0.3,
        "measured skew {skew} over a 1 s round trip"
    );
}
