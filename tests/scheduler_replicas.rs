//! `sv0 scheduler` processes on the real clock: several replicas against one database create
//! exactly one run per scope slot and miss none; a replica SIGKILLed while it holds a scope
//! claim is taken over once the claim expires, without a duplicate run; and scheduled scans run
//! end to end through real worker processes.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mongodb::bson::{DateTime, doc};
use nix::sys::signal::Signal;
use support::Sv0Process;
use support::pipeline::{DEMO_KIND, Fixture};
use sv0_domain::{Overlap, RunStatus, ScanRun, ScanScope, Schedule, Trigger};
use sv0_testkit::{FaultProxy, stand};

fn slot_of(run: &ScanRun) -> DateTime {
    match run.trigger {
        sv0_domain::Trigger::Scheduled { slot, .. } => slot,
        ref other => panic!("not a scheduled run: {other:?}"),
    }
}

async fn runs_of(fixture: &Fixture, scope: &ScanScope) -> Vec<ScanRun> {
    use futures::TryStreamExt;
    fixture
        .db()
        .collection::<ScanRun>("scan_runs")
        .find(doc! { "scope_id": scope.id })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// The fixture's database, as the processes a test starts are pointed at it: the stand's URI and
/// the database's name.
fn database_of(fixture: &Fixture) -> (String, String) {
    (
        fixture.tdb.uri().to_string(),
        fixture.tdb.name().to_string(),
    )
}

/// Acme's scope of the demo connector over a small aws graph, with a minute's budget.
async fn small_aws_scope(fixture: &Fixture) -> ScanScope {
    fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! { "clouds": ["aws"], "size": 10, "seed": 1 },
            60,
        )
        .await
}

/// A scope every 5 seconds, every slot allowed to run (no workers: runs stay queued).
async fn scope_every_5s(fixture: &Fixture, tenant: &str) -> ScanScope {
    let scope = fixture.provision(tenant, DEMO_KIND, doc! {}, 60).await;
    let mut schedule = Schedule::every(5);
    schedule.overlap = Overlap::Allow;
    fixture
        .domain
        .set_schedule(tenant, scope.id, Some(schedule), DateTime::now())
        .await
        .unwrap()
}

#[tokio::test]
async fn three_replicas_run_every_slot_of_every_scope_exactly_once() {
    let fixture = Fixture::new("sched_e2e_replicas").await;
    let mut scopes = Vec::new();
    for tenant in ["acme", "globex"] {
        for _ in 0..2 {
            scopes.push(scope_every_5s(&fixture, tenant).await);
        }
    }
    let (uri, name) = database_of(&fixture);
    let mut replicas: Vec<Sv0Process> = (0..3)
        .map(|_| Sv0Process::scheduler(&uri, &name, &["--claim-lease-ms", "2000"]))
        .collect();
    // Four slots or more of each scope.
    tokio::time::sleep(Duration::from_secs(21)).await;
    // What the replicas did, as their /metrics and /healthz tell it.
    let mut created = 0.0;
    for replica in &replicas {
        assert_eq!(support::http_get(&replica.status_addr(), "/healthz").0, 200);
        created += replica.metric("sv0_scheduler_runs_created_total{trigger=\"scheduled\"}");
        assert!(replica.metric("sv0_scheduler_ticks_total") > 0.0);
    }
    let stopped_at = DateTime::now();
    for replica in &mut replicas {
        replica.stop();
    }
    let mut claimed_by = HashMap::new();
    for replica in &replicas {
        let claimed = replica.events("slot ran").len();
        claimed_by.insert(replica.pid(), claimed);
    }
    for scope in &scopes {
        let runs = runs_of(&fixture, scope).await;
        let mut slots: Vec<DateTime> = runs.iter().map(slot_of).collect();
        slots.sort();
        let unique = {
            let mut u = slots.clone();
            u.dedup();
            u
        };
        assert_eq!(slots, unique, "a slot with two runs: {slots:?}");
        // Every slot of the schedule from the first up to a second before the stop.
        let schedule = scope.schedule.as_ref().unwrap().slots().unwrap();
        let first = scope.next_run_at.unwrap();
        let until = DateTime::from_millis(stopped_at.timestamp_millis() - 1_000);
        let expected = schedule.between(first, until, 100);
        assert!(expected.len() >= 3, "{expected:?}");
        for slot in &expected {
            assert!(slots.contains(slot), "slot {slot} missed: ran {slots:?}");
        }
        for slot in &slots {
            assert_eq!(
                schedule.next_after(DateTime::from_millis(slot.timestamp_millis() - 1)),
                Some(*slot),
                "{slot} is not a slot"
            );
        }
    }
    assert!(
        claimed_by.values().sum::<usize>() >= scopes.len() * 3,
        "the replicas logged each slot they ran: {claimed_by:?}"
    );
    let runs = support::count(fixture.db(), "scan_runs", doc! {}).await as f64;
    assert!(
        created > 0.0 && created <= runs,
        "the replicas' runs_created ({created}, read before the stop) against {runs} runs"
    );
}

#[tokio::test]
async fn a_replica_killed_holding_a_claim_is_taken_over_after_the_lease_without_a_duplicate() {
    let fixture = Fixture::new("sched_e2e_kill").await;
    let scope = scope_every_5s(&fixture, "acme").await;
    let (uri, name) = database_of(&fixture);
    // Replica A talks to the database through a slow link, so it holds its claim for seconds.
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    proxy.set_latency(Duration::from_millis(400));
    let slow_uri = stand().uri_via(proxy.addr());
    let mut a = Sv0Process::scheduler(&slow_uri, &name, &["--claim-lease-ms", "4000"]);
    let owner = format!(":{}", a.pid());
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let current = fixture.domain.scope("acme", scope.id).await.unwrap();
        if let Some(claim) = current.claim.filter(|c| c.owner.ends_with(&owner)) {
            break claim;
        }
        assert!(
            Instant::now() < deadline,
            "replica A never claimed the scope"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.signal(Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(10));

    let b = Sv0Process::scheduler(&uri, &name, &["--claim-lease-ms", "4000"]);
    // Until A's claim expires, the scope stays A's.
    tokio::time::sleep(Duration::from_millis(
        (held.expires_at.timestamp_millis() - DateTime::now().timestamp_millis() - 500).max(0)
            as u64,
    ))
    .await;
    let still = fixture.domain.scope("acme", scope.id).await.unwrap();
    assert_eq!(
        still.claim.as_ref(),
        Some(&held),
        "taken before A's claim expired"
    );
    // Then B runs the scope's slots: two more at least.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let by_b = runs_of(&fixture, &scope)
            .await
            .into_iter()
            .filter(|r| r.created_at > held.expires_at)
            .count();
        if by_b >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "B never took the scope over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(b);
    let mut slots: Vec<DateTime> = runs_of(&fixture, &scope)
        .await
        .iter()
        .map(slot_of)
        .collect();
    let count = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), count, "a slot ran twice: {slots:?}");
}

/// The scheduler and two workers on the real clock: scheduled scans of the demo connector run
/// every stage and succeed, one slot after another.
#[tokio::test]
async fn scheduled_scans_run_end_to_end_through_real_workers() {
    let fixture = Fixture::new("sched_e2e_scans").await;
    let scope = small_aws_scope(&fixture).await;
    let scope = fixture
        .domain
        .set_schedule("acme", scope.id, Some(Schedule::every(5)), DateTime::now())
        .await
        .unwrap();
    let _workers = [
        fixture.worker(&["acme"], &[]),
        fixture.worker(&["acme"], &[]),
    ];
    let (uri, name) = database_of(&fixture);
    let _scheduler = Sv0Process::scheduler(&uri, &name, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let succeeded = loop {
        let runs = runs_of(&fixture, &scope).await;
        let done: Vec<ScanRun> = runs
            .into_iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .collect();
        if done.len() >= 2 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "two scheduled scans never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for run in &succeeded {
        assert_eq!(run.trigger.type_name(), "scheduled");
        for stage in sv0_domain::category::STAGE_CELLS {
            assert!(run.cell(stage).is_some(), "{stage} missing from {run:#?}");
        }
    }
    let slots: Vec<DateTime> = succeeded.iter().map(slot_of).collect();
    assert_ne!(slots[0], slots[1], "two different slots");

    // `sv0 runs` lists them, with their slots.
    let out = std::process::Command::new(support::sv0())
        .args([
            "runs",
            "--mongodb-uri",
            &uri,
            "--database",
            &name,
            "--tenant",
            "acme",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    for run in &succeeded {
        let line = listing
            .lines()
            .find(|l| l.starts_with(&run.id.to_hex()))
            .unwrap_or_else(|| panic!("run {} not listed:\n{listing}", run.id));
        assert!(
            line.contains("scheduled") && line.contains("succeeded"),
            "{line}"
        );
        assert!(
            line.contains(&slot_of(run).try_to_rfc3339_string().unwrap()),
            "{line}"
        );
    }
}

/// A run whose creator lost the database before enqueuing its first job (the chaos run's long
/// profile found two) is repaired by a real `sv0 scheduler`'s orphaned-run reaper once the
/// first-job grace has passed, and a real worker then scans it to `succeeded`; the reaper says
/// so in its log and its metrics.
#[tokio::test]
async fn a_run_whose_first_job_was_lost_is_repaired_and_runs_to_success() {
    let fixture = Fixture::new("sched_first_job").await;
    let scope = small_aws_scope(&fixture).await;
    let mut run = ScanRun::new(
        "acme",
        Trigger::ManualApi { requested_by: None },
        scope.budget,
    );
    run.scope_id = Some(scope.id);
    run.instance_id = Some(scope.instance_id);
    fixture.domain.insert_run(&run).await.unwrap();
    let _worker = fixture.worker(&["acme"], &[]);
    let (uri, name) = database_of(&fixture);
    let scheduler = Sv0Process::scheduler(
        &uri,
        &name,
        &["--orphans-every-s", "1", "--first-job-grace-s", "2"],
    );

    let run = fixture
        .finished("acme", run.id, Duration::from_secs(60))
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let repaired = scheduler.events(
        "queued run had no first job (its creator lost the database between the two writes); \
         enqueued it",
    );
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    assert_eq!(
        scheduler.metric("sv0_scheduler_first_jobs_restored_total"),
        1.0
    );
}

/// Flags out of range are refused before anything starts, naming the flag.
#[test]
fn bad_scheduler_flags_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--tick-ms", "0"),
        ("--tick-ms", "60001"),
        ("--claim-lease-ms", "10"),
        ("--batch", "0"),
        ("--orphans-every-s", "0"),
        ("--first-job-grace-s", "0"),
        ("--first-job-grace-s", "3601"),
        ("--slot-log-days", "0"),
    ] {
        let out = std::process::Command::new(support::sv0())
            .args(["scheduler", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}
