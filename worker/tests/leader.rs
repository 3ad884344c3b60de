//! The fleet's leader, across real worker processes: exactly one of them runs the fleet-wide
//! duties and reports their gauges; when it dies another takes over, and when it drains it drops
//! the gauges it reported.

mod support;

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use nix::sys::signal::Signal;
use support::{Sv0Process, eventually, http_get, probes, setup, wait_count};

/// Leases of 3 s: a heartbeat a second, so a leader is out of the running 2 s after its last
/// beat. The bounds asserted below are ten times what that needs.
const FLAGS: [&str; 6] = [
    "--lease-ttl-ms",
    "3000",
    "--concurrency",
    "1",
    "--claim-ahead",
    "0",
];

/// What a worker's /metrics says of leadership.
#[derive(Debug, PartialEq)]
struct Reported {
    leads: bool,
    /// It serves `sv0_queue_depth` series (the depth sampler's).
    depth: bool,
    /// It serves `sv0_worker_live_workers` (the registry's live count).
    live_count: bool,
}

fn reported(worker: &Sv0Process) -> Reported {
    let (_, text) = http_get(&worker.status_addr(), "/metrics");
    let has = |prefix: &str| text.lines().any(|line| line.starts_with(prefix));
    Reported {
        leads: text.lines().any(|line| line == "sv0_worker_leader 1"),
        depth: has("sv0_queue_depth{"),
        live_count: has("sv0_worker_live_workers "),
    }
}

const LEADS: Reported = Reported {
    leads: true,
    depth: true,
    live_count: true,
};
const FOLLOWS: Reported = Reported {
    leads: false,
    depth: false,
    live_count: false,
};

/// Waits until exactly one of `workers` leads with its gauges and the others report none;
/// returns the leader's index.
async fn one_leader(workers: &[&Sv0Process], within: Duration) -> usize {
    let mut leader = None;
    eventually(
        "exactly one worker leading, with its gauges",
        within,
        || {
            let seen: Vec<Reported> = workers.iter().map(|w| reported(w)).collect();
            let leaders: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == LEADS).collect();
            let followers = seen.iter().filter(|r| **r == FOLLOWS).count();
            leader = leaders.first().copied();
            let single = leaders.len() == 1 && followers == seen.len() - 1;
            async move { single }
        },
    )
    .await;
    leader.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_worker_leads_the_fleet_duties_and_another_takes_over_when_it_is_killed() {
    let (test, _queue) = setup("leader_killed").await;
    let mut workers: Vec<Sv0Process> = (0..3)
        .map(|_| Sv0Process::worker(test.uri(), test.name(), &FLAGS))
        .collect();
    let all: Vec<&Sv0Process> = workers.iter().collect();
    let first = one_leader(&all, Duration::from_secs(30)).await;

    let killed = workers.remove(first);
    killed.signal(Signal::SIGKILL);
    let died = Instant::now();
    let survivors: Vec<&Sv0Process> = workers.iter().collect();
    one_leader(&survivors, Duration::from_secs(30)).await;
    assert!(
        died.elapsed() < Duration::from_secs(30),
        "another worker led within 30 s of the leader's death ({:?})",
        died.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_leader_hands_over_and_drops_the_gauges_it_reported() {
    let (test, queue) = setup("leader_drains").await;
    // A job of 30 s for each worker keeps a draining one up long enough to be read.
    queue.enqueue_many(probes(3, 30_000)).await.unwrap();
    let mut flags = FLAGS.to_vec();
    flags.extend(["--grace-ms", "60000"]);
    let workers: Vec<Sv0Process> = (0..3)
        .map(|_| Sv0Process::worker(test.uri(), test.name(), &flags))
        .collect();
    wait_count(
        &test.db,
        "jobs",
        doc! {"status": "running"},
        3,
        Duration::from_secs(30),
    )
    .await;
    let all: Vec<&Sv0Process> = workers.iter().collect();
    let first = one_leader(&all, Duration::from_secs(30)).await;

    workers[first].signal(Signal::SIGTERM);
    workers[first].wait_for_event(
        "no longer leading the fleet-wide duties",
        Duration::from_secs(30),
    );
    eventually(
        "the draining worker to serve no leader's gauges",
        Duration::from_secs(30),
        || {
            let dropped = reported(&workers[first]) == FOLLOWS;
            async move { dropped }
        },
    )
    .await;
    let others: Vec<&Sv0Process> = (0..workers.len())
        .filter(|&i| i != first)
        .map(|i| &workers[i])
        .collect();
    one_leader(&others, Duration::from_secs(30)).await;
}
