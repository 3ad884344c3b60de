//! The orphaned-run reaper on the stand, at injected times.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use support::{Fixture, plus};
use sv0_domain::{
    Budget, CellStatus, Materializer, RunFence, RunStatus, ScanRun, ScanScope, Schedule, Trigger,
};
use sv0_pipeline::Deploy;
use sv0_queue::JobFilter;
use sv0_scheduler::{OrphanReaper, SchedulerMetrics};

/// A reaper keeping slot outcomes for `retention`.
fn reaper_keeping(fixture: &Fixture, retention: Duration) -> OrphanReaper {
    OrphanReaper::new(
        fixture.pipeline.clone(),
        fixture.slot_log.clone(),
        SchedulerMetrics::default(),
        Duration::from_secs(300),
        retention,
    )
}

fn reaper(fixture: &Fixture) -> OrphanReaper {
    reaper_keeping(fixture, Duration::from_secs(30 * 24 * 3600))
}

/// A fixture whose tenant `acme` has a scope on a one-minute schedule, and `N` runs of it
/// triggered by hand: queued, each with its first job.
async fn with_manual_runs<const N: usize>(label: &str) -> (Fixture, [ScanRun; N]) {
    let fixture = Fixture::new(label).await;
    let scope = fixture.scope("acme", Schedule::every(60)).await;
    let controls = fixture.controls(&SchedulerMetrics::default());
    let mut runs = Vec::new();
    for _ in 0..N {
        runs.push(controls.trigger_now("acme", scope.id, None).await.unwrap());
    }
    (fixture, runs.try_into().unwrap())
}

/// `run` taken up by the holder of pipeline stage `stage` (lease token 1), as a worker does.
async fn take_up(fixture: &Fixture, run: &ScanRun, stage: u8) -> ScanRun {
    fixture
        .domain
        .start_run("acme", run.id, RunFence::new(stage, 1))
        .await
        .unwrap()
}

/// Cancels `run`'s jobs on their own, leaving the run as it is.
async fn cancel_jobs_of(fixture: &Fixture, run: &ScanRun) {
    fixture
        .pipeline
        .queue()
        .cancel_matching(&JobFilter {
            group_id: Some(run.id.to_hex()),
            ..JobFilter::default()
        })
        .await
        .unwrap();
}

/// `run` as it is now, which must be `status`.
async fn run_in_status(fixture: &Fixture, run: &ScanRun, status: RunStatus) -> ScanRun {
    let now = fixture.domain.run("acme", run.id).await.unwrap();
    assert_eq!(now.status, status);
    now
}

/// A running run whose worker vanished becomes `timeout` once its budget has passed since a
/// stage last took it up; its `__driver__` cell says why and its jobs are cancelled. A run
/// inside its budget, and a queued one, are untouched.
#[tokio::test]
async fn a_run_idle_past_its_budget_times_out_and_its_jobs_are_cancelled() {
    let (fixture, [orphan, healthy, queued]) = with_manual_runs("sched_orphans").await;
    // A worker took up the first two (their execute_scan started) and then vanished.
    let orphan = take_up(&fixture, &orphan, 0).await;
    let healthy = take_up(&fixture, &healthy, 0).await;
    let budget_ms = orphan.budget.max_runtime_seconds * 1000;
    let claimed = orphan.last_claimed_at.unwrap();

    // Just inside the budget: nothing happens.
    assert_eq!(
        reaper(&fixture)
            .pass(plus(claimed, budget_ms - 1_000))
            .await
            .unwrap(),
        0
    );

    // The healthy run is taken up again by a stage later on: its clock restarts.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let healthy = take_up(&fixture, &healthy, 1).await;
    let now = plus(claimed, budget_ms + 500);
    assert!(now < plus(healthy.last_claimed_at.unwrap(), budget_ms));
    assert_eq!(reaper(&fixture).pass(now).await.unwrap(), 1);

    let timed_out = run_in_status(&fixture, &orphan, RunStatus::Timeout).await;
    let driver = timed_out
        .category_results
        .iter()
        .find(|(name, _)| name.as_str() == "__driver__")
        .map(|(_, cell)| cell.clone())
        .expect("a __driver__ cell");
    assert_eq!(driver.status, CellStatus::Failed);
    assert!(
        driver.errors[0].contains("no stage took the run up for 3600 s, past its budget of 3600 s"),
        "{:?}",
        driver.errors
    );
    assert!(timed_out.error.unwrap().starts_with("__driver__ timed out"));
    let jobs = fixture.jobs(doc! { "group_id": orphan.id.to_hex() }).await;
    assert!(!jobs.is_empty());
    for job in jobs {
        assert_eq!(job.get_str("status").unwrap(), "cancelled", "{job:?}");
    }

    for untouched in [healthy.id, queued.id] {
        let run = fixture.domain.run("acme", untouched).await.unwrap();
        assert!(!run.status.is_finished(), "{untouched}: {:?}", run.status);
        let jobs = fixture.jobs(doc! { "group_id": untouched.to_hex() }).await;
        assert!(
            jobs.iter()
                .all(|j| j.get_str("status").unwrap() == "queued")
        );
    }
    // A second pass finds nothing more to do.
    assert_eq!(reaper(&fixture).pass(now).await.unwrap(), 0);
}

/// The same pass prunes slot outcomes past their retention.
#[tokio::test]
async fn old_slot_outcomes_are_pruned() {
    let fixture = Fixture::new("sched_outcome_prune").await;
    let scope = fixture.scope("acme", Schedule::every(60)).await;
    fixture
        .replica("a")
        .tick(plus(scope.next_run_at.unwrap(), 1))
        .await
        .unwrap();
    assert_eq!(fixture.slot_outcomes(&scope, 10).await.len(), 1);
    let reaper = reaper_keeping(&fixture, Duration::from_secs(60));
    reaper.pass(DateTime::now()).await.unwrap();
    assert_eq!(
        fixture.slot_outcomes(&scope, 10).await.len(),
        1,
        "kept inside its retention"
    );
    reaper.pass(plus(DateTime::now(), 61_000)).await.unwrap();
    assert!(fixture.slot_outcomes(&scope, 10).await.is_empty());
}

/// The runs a caller created and then lost the database before enqueuing their first job (a
/// killed API, a cut link): each is a queued run with nothing in its group.
async fn runs_without_their_first_job(fixture: &Fixture, scope: &ScanScope) -> [ScanRun; 3] {
    let mut deploy_gate = ScanRun::new(
        "acme",
        Trigger::DeployGate {
            deploy_id: "d-1".into(),
            commit: None,
        },
        Budget::default(),
    );
    deploy_gate.rematerialize = Some(vec![Materializer::Chains]);
    deploy_gate.dedup_key = Some("deploy_gate:d-1:acme".into());
    let slot = scope.next_run_at.unwrap();
    let mut scheduled = ScanRun::new(
        "acme",
        Trigger::Scheduled {
            scope_id: scope.id,
            slot,
        },
        scope.budget,
    );
    scheduled.scope_id = Some(scope.id);
    scheduled.instance_id = Some(scope.instance_id);
    scheduled.dedup_key = Some(format!(
        "scheduled:{}:{}",
        scope.id.to_hex(),
        slot.timestamp_millis()
    ));
    let mut manual = ScanRun::new(
        "acme",
        Trigger::ManualApi { requested_by: None },
        scope.budget,
    );
    manual.scope_id = Some(scope.id);
    manual.instance_id = Some(scope.instance_id);
    for run in [&deploy_gate, &scheduled, &manual] {
        fixture.domain.insert_run(run).await.unwrap();
    }
    [deploy_gate, scheduled, manual]
}

/// A queued run whose first job was never enqueued gets it from the reaper, under the key its
/// creator would have used (so a creator that comes back late adds nothing), once the run is a
/// minute old; a young one is left to its creator. Found by the chaos run's long profile: two
/// deploy-gate runs stayed queued for good.
#[tokio::test]
async fn a_queued_run_left_without_its_first_job_gets_it() {
    let fixture = Fixture::new("sched_orphans_first_job").await;
    let scope = fixture.scope("acme", Schedule::every(60)).await;
    let [deploy_gate, scheduled, manual] = runs_without_their_first_job(&fixture, &scope).await;

    assert_eq!(reaper(&fixture).pass(DateTime::now()).await.unwrap(), 0);
    assert!(
        fixture.jobs(doc! {}).await.is_empty(),
        "young runs are their creator's"
    );

    let later = plus(DateTime::now(), 2 * 60_000);
    reaper(&fixture).pass(later).await.unwrap();
    let expected = [
        (
            &deploy_gate,
            "rematerialize",
            format!("scan_run:{}:rematerialize", deploy_gate.id),
        ),
        (
            &scheduled,
            "execute_scan",
            scheduled.dedup_key.clone().unwrap(),
        ),
        (
            &manual,
            "execute_scan",
            format!("scan_run:{}:execute_scan", manual.id),
        ),
    ];
    for (run, kind, key) in &expected {
        let jobs = fixture.jobs(doc! { "group_id": run.id.to_hex() }).await;
        assert_eq!(jobs.len(), 1, "{kind}: {jobs:?}");
        assert_eq!(jobs[0].get_str("kind").unwrap(), *kind);
        assert_eq!(jobs[0].get_str("dedup_key").unwrap(), key);
        assert_eq!(jobs[0].get_str("status").unwrap(), "queued");
        assert_eq!(jobs[0].get_str("tenant_id").unwrap(), "acme");
        if *kind == "execute_scan" {
            // As its creator enqueues it: the run's budget and a minute of bookkeeping.
            let budget_ms = run.budget.max_runtime_seconds * 1000;
            assert_eq!(jobs[0].get_i64("timeout_ms").unwrap(), budget_ms + 60_000);
        }
        run_in_status(&fixture, run, RunStatus::Queued).await;
    }
    // A second pass, and the creator retrying, add nothing.
    reaper(&fixture).pass(later).await.unwrap();
    fixture
        .pipeline
        .rematerialize(
            &[Materializer::Chains],
            Some(&["acme".to_string()]),
            &Deploy {
                id: "d-1".into(),
                commit: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(fixture.jobs(doc! {}).await.len(), 3);
}

/// A queued run whose first job ended without taking it up (dead, or cancelled on its own) can
/// never start: it times out, saying so. A queued run whose job is still waiting is untouched.
#[tokio::test]
async fn a_queued_run_whose_first_job_ended_times_out() {
    let (fixture, [stuck, waiting]) = with_manual_runs("sched_orphans_job_ended").await;
    cancel_jobs_of(&fixture, &stuck).await;

    reaper(&fixture)
        .pass(plus(DateTime::now(), 2 * 60_000))
        .await
        .unwrap();
    let stuck = run_in_status(&fixture, &stuck, RunStatus::Timeout).await;
    let error = stuck.error.unwrap();
    assert!(
        error.contains("its first job (execute_scan) ended cancelled"),
        "{error}"
    );
    let waiting = run_in_status(&fixture, &waiting, RunStatus::Queued).await;
    let jobs = fixture.jobs(doc! { "group_id": waiting.id.to_hex() }).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].get_str("status").unwrap(), "queued");
}

/// An ingest whose graph was never recorded (its request lost the database after writing the
/// run) has nothing to start from: it times out, saying so, rather than wait for ever.
#[tokio::test]
async fn a_queued_ingest_without_its_graph_times_out() {
    let fixture = Fixture::new("sched_orphans_no_graph").await;
    fixture.scope("acme", Schedule::every(60)).await;
    let ingest = ScanRun::new(
        "acme",
        Trigger::ManualApi { requested_by: None },
        Budget::default(),
    );
    fixture.domain.insert_run(&ingest).await.unwrap();

    assert_eq!(
        reaper(&fixture)
            .pass(plus(DateTime::now(), 2 * 60_000))
            .await
            .unwrap(),
        1
    );
    let ingest = run_in_status(&fixture, &ingest, RunStatus::Timeout).await;
    assert!(
        ingest.error.unwrap().contains("nothing to start from"),
        "its reason"
    );
    assert!(fixture.jobs(doc! {}).await.is_empty());
}

/// A run whose first job was seen waiting is not checked on every pass (a backlog of waiting
/// runs would cost a round trip each, each pass), but an hour later it is: a job cancelled on
/// its own in between is found then, and the run times out.
#[tokio::test]
async fn a_waiting_run_is_checked_again_an_hour_later() {
    let (fixture, [run]) = with_manual_runs("sched_orphans_recheck").await;
    let first = plus(DateTime::now(), 2 * 60_000);
    assert_eq!(reaper(&fixture).pass(first).await.unwrap(), 0);
    cancel_jobs_of(&fixture, &run).await;

    assert_eq!(
        reaper(&fixture)
            .pass(plus(first, 30 * 60_000))
            .await
            .unwrap(),
        0,
        "checked a half hour ago"
    );
    run_in_status(&fixture, &run, RunStatus::Queued).await;
    assert_eq!(
        reaper(&fixture)
            .pass(plus(first, 61 * 60_000))
            .await
            .unwrap(),
        1
    );
    run_in_status(&fixture, &run, RunStatus::Timeout).await;
}

/// The time-out of an unstarted run holds only while the run is queued: a stage that took the
/// run up after the reaper read it keeps it running.
#[tokio::test]
async fn a_run_taken_up_after_it_was_read_is_not_timed_out_as_unstarted() {
    let (fixture, [read]) = with_manual_runs("sched_orphans_taken_up").await;
    take_up(&fixture, &read, 0).await;

    assert!(
        !fixture
            .pipeline
            .time_out_unstarted_run(&read, "test")
            .await
            .unwrap()
    );
    run_in_status(&fixture, &read, RunStatus::Running).await;
    let jobs = fixture.jobs(doc! { "group_id": read.id.to_hex() }).await;
    assert_eq!(
        jobs[0].get_str("status").unwrap(),
        "queued",
        "not cancelled"
    );
}
