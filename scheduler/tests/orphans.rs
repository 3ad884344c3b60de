//! The orphaned-run reaper on the stand, at injected times.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use support::{Stand, plus};
use sv0_domain::{CellStatus, RunStatus, Schedule};
use sv0_scheduler::{OrphanReaper, SchedulerMetrics};

/// A reaper keeping slot outcomes for `retention`.
fn reaper_keeping(stand: &Stand, retention: Duration) -> OrphanReaper {
    OrphanReaper::new(
        stand.pipeline.clone(),
        stand.slot_log.clone(),
        SchedulerMetrics::default(),
        Duration::from_secs(300),
        retention,
    )
}

fn reaper(stand: &Stand) -> OrphanReaper {
    reaper_keeping(stand, Duration::from_secs(30 * 24 * 3600))
}

/// A running run whose worker vanished becomes `timeout` once its budget has passed since a
/// stage last took it up; its `__driver__` cell says why and its jobs are cancelled. A run
/// inside its budget, and a queued one, are untouched.
#[tokio::test]
async fn a_run_idle_past_its_budget_times_out_and_its_jobs_are_cancelled() {
    let stand = Stand::new("sched_orphans").await;
    let scope = stand.scope("acme", Schedule::every(60)).await;
    let controls = stand.controls(&SchedulerMetrics::default());
    let orphan = controls.trigger_now("acme", scope.id, None).await.unwrap();
    let healthy = controls.trigger_now("acme", scope.id, None).await.unwrap();
    let queued = controls.trigger_now("acme", scope.id, None).await.unwrap();
    // A worker took up the first two (their execute_scan started) and then vanished.
    let orphan = stand.domain.start_run("acme", orphan.id).await.unwrap();
    let healthy = stand.domain.start_run("acme", healthy.id).await.unwrap();
    let budget_ms = orphan.budget.max_runtime_seconds * 1000;
    let claimed = orphan.last_claimed_at.unwrap();

    // Just inside the budget: nothing happens.
    assert_eq!(
        reaper(&stand)
            .pass(plus(claimed, budget_ms - 1_000))
            .await
            .unwrap(),
        0
    );

    // The healthy run is taken up again by a stage later on: its clock restarts.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let healthy = stand.domain.start_run("acme", healthy.id).await.unwrap();
    let now = plus(claimed, budget_ms + 500);
    assert!(now < plus(healthy.last_claimed_at.unwrap(), budget_ms));
    assert_eq!(reaper(&stand).pass(now).await.unwrap(), 1);

    let timed_out = stand.domain.run("acme", orphan.id).await.unwrap();
    assert_eq!(timed_out.status, RunStatus::Timeout);
    let driver = timed_out
        .category_results
        .iter()
        .find(|(name, _)| name.as_str() == "__driver__")
        .map(|(_, cell)| cell.clone())
        .expect("a __driver__ cell");
    assert_eq!(driver.status, CellStatus::Failed);
    assert!(
        driver.errors[0].contains("past its budget of 3600 s"),
        "{:?}",
        driver.errors
    );
    assert!(timed_out.error.unwrap().starts_with("__driver__ timed out"));
    let jobs = stand.jobs(doc! { "group_id": orphan.id.to_hex() }).await;
    assert!(!jobs.is_empty());
    for job in jobs {
        assert_eq!(job.get_str("status").unwrap(), "cancelled", "{job:?}");
    }

    for untouched in [healthy.id, queued.id] {
        let run = stand.domain.run("acme", untouched).await.unwrap();
        assert!(!run.status.is_finished(), "{untouched}: {:?}", run.status);
        let jobs = stand.jobs(doc! { "group_id": untouched.to_hex() }).await;
        assert!(
            jobs.iter()
                .all(|j| j.get_str("status").unwrap() == "queued")
        );
    }
    // A second pass finds nothing more to do.
    assert_eq!(reaper(&stand).pass(now).await.unwrap(), 0);
}

/// The same pass prunes slot outcomes past their retention.
#[tokio::test]
async fn old_slot_outcomes_are_pruned() {
    let stand = Stand::new("sched_outcome_prune").await;
    let scope = stand.scope("acme", Schedule::every(60)).await;
    stand
        .replica("a")
        .tick(plus(scope.next_run_at.unwrap(), 1))
        .await
        .unwrap();
    assert_eq!(
        stand
            .slot_log
            .for_scope("acme", scope.id, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let reaper = reaper_keeping(&stand, Duration::from_secs(60));
    reaper.pass(DateTime::now()).await.unwrap();
    assert_eq!(
        stand
            .slot_log
            .for_scope("acme", scope.id, 10)
            .await
            .unwrap()
            .len(),
        1,
        "kept inside its retention"
    );
    reaper.pass(plus(DateTime::now(), 61_000)).await.unwrap();
    assert!(
        stand
            .slot_log
            .for_scope("acme", scope.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
