//! The tick on the fixture, with injected times: slot identity across replicas, claims and their
//! fence, the policies through the database, the controls, suspended tenants.

mod support;

use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use support::{Fixture, plus, slot_of};
use sv0_domain::{CatchUpRun, Overlap, RunStatus, ScanScope, Schedule};
use sv0_scheduler::{ReasonLabel, SchedulerMetrics, SlotOutcome, TriggerLabel};

fn every_minute(overlap: Overlap) -> Schedule {
    let mut schedule = Schedule::every(60);
    schedule.overlap = overlap;
    schedule
}

/// Settles `scope` under `held`'s claim, which is no longer the scope's, deciding `next` as its
/// next and due slot: the fence lets it match nothing.
async fn assert_stale_settlement_lands_nowhere(
    fixture: &Fixture,
    scope: &ScanScope,
    held: &ScanScope,
    next: Option<DateTime>,
) {
    let stale = sv0_domain::ScopeSettlement {
        scope_id: scope.id,
        nonce: held.claim.as_ref().unwrap().nonce,
        next_run_at: next,
        due_at: next,
        buffered_slot: None,
        last_run_id: None,
    };
    assert_eq!(fixture.domain.settle_scopes(&[stale]).await.unwrap(), 0);
}

/// Two replicas ticking at once, and ticks repeated, create one run per scope slot.
#[tokio::test]
async fn replicas_and_repeated_ticks_create_one_run_per_slot() {
    let fixture = Fixture::new("sched_one_run_per_slot").await;
    let mut scopes = Vec::new();
    for tenant in ["acme", "globex", "initech"] {
        scopes.push(fixture.scope(tenant, every_minute(Overlap::Allow)).await);
    }
    let first_slot = scopes[0].next_run_at.unwrap();
    let (a, b) = (fixture.replica("a"), fixture.replica("b"));
    for minute in 0..3 {
        let now = plus(first_slot, minute * 60_000 + 5);
        let (ra, rb) = tokio::join!(a.tick(now), b.tick(now));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            ra.runs_created + rb.runs_created,
            3,
            "minute {minute}: one run per scope, whichever replica made it ({ra:?}, {rb:?})"
        );
        // The same tick again (a retried tick): nothing more.
        assert_eq!(a.tick(now).await.unwrap().runs_created, 0);
    }
    for scope in &scopes {
        let slots = fixture.run_slots(scope).await;
        let expected: Vec<DateTime> = (0..3).map(|m| plus(first_slot, m * 60_000)).collect();
        assert_eq!(slots, expected, "scope {}", scope.tenant_id);
        // Each run's execute_scan job carries the slot's dedup key.
        for run in fixture.runs(scope).await {
            let key = sv0_scheduler::slot_key(scope.id, slot_of(&run).unwrap());
            assert_eq!(run.dedup_key.as_deref(), Some(key.as_str()));
            let jobs = fixture.jobs(doc! { "dedup_key": &key }).await;
            assert_eq!(jobs.len(), 1, "one execute_scan job per slot");
            assert_eq!(jobs[0].get_str("kind").unwrap(), "execute_scan");
        }
    }
}

/// Replicas ticking at once share the due scopes: one that lost the race for a batch goes on to
/// the next batch instead of ending its tick.
#[tokio::test]
async fn replicas_ticking_at_once_share_the_due_scopes() {
    let fixture = Fixture::new("sched_share").await;
    for n in 0..60 {
        fixture
            .scope(&format!("t{}", n % 3), every_minute(Overlap::Allow))
            .await;
    }
    let now = plus(
        fixture
            .domain
            .next_due_at(&[])
            .await
            .unwrap()
            .expect("a due scope"),
        1,
    );
    let mut replicas = Vec::new();
    for owner in ["a", "b"] {
        let mut config = sv0_scheduler::SchedulerConfig::new(owner);
        config.batch = 5;
        replicas.push(sv0_scheduler::Scheduler::new(
            fixture.pipeline.clone(),
            fixture.slot_log.clone(),
            sv0_scheduler::SchedulerMetrics::default(),
            config,
        ));
    }
    let (a, b) = tokio::join!(replicas[0].tick(now), replicas[1].tick(now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.runs_created + b.runs_created, 60, "{a:?} {b:?}");
    assert!(
        a.runs_created > 0 && b.runs_created > 0,
        "both replicas took part: {a:?} {b:?}"
    );
}

/// A tick starts its due scopes together: it sends as many commands to the database for forty
/// scopes as for four (their tenants and instances read at once, their runs inserted at once,
/// their first jobs enqueued at once), and each scope still gets one run and one job.
#[tokio::test]
async fn a_tick_sends_as_many_commands_for_forty_scopes_as_for_four() {
    let mut commands = Vec::new();
    for scopes in [4, 40] {
        let fixture = Fixture::new(&format!("sched_batch_{scopes}")).await;
        for n in 0..scopes {
            fixture
                .scope(&format!("t{}", n % 4), every_minute(Overlap::Allow))
                .await;
        }
        let due = fixture.domain.next_due_at(&[]).await.unwrap().unwrap();
        let (replica, sent) = fixture.recorded_replica("a").await;
        let report = replica.tick(plus(due, 1)).await.unwrap();
        assert_eq!(report.runs_created, scopes, "{report:?}");
        let jobs = fixture.jobs(doc! { "kind": "execute_scan" }).await;
        assert_eq!(jobs.len() as u64, scopes);
        commands.push(sent.count());
    }
    assert_eq!(
        commands[0], commands[1],
        "commands sent by a tick of 4 scopes and of 40"
    );
}

/// Each run a tick creates observes how late its slot started (`schedule_lag_seconds`): the
/// tick's time minus the slot's.
#[tokio::test]
async fn a_created_run_observes_how_late_its_slot_started() {
    let fixture = Fixture::new("sched_lag").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Allow)).await;
    let metrics = SchedulerMetrics::default();
    let replica = sv0_scheduler::Scheduler::new(
        fixture.pipeline.clone(),
        fixture.slot_log.clone(),
        metrics.clone(),
        sv0_scheduler::SchedulerConfig::new("a"),
    );
    let report = replica
        .tick(plus(scope.next_run_at.unwrap(), 2_500))
        .await
        .unwrap();
    assert_eq!(report.runs_created, 1);
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "schedule_lag_seconds_sum 2.5",
        "schedule_lag_seconds_count 1",
    ] {
        assert!(
            text.lines().any(|l| l.ends_with(line)),
            "missing {line} in\n{text}"
        );
    }
}

/// A replica that claimed a scope and died holds it until the claim expires; then another
/// replica takes it, and the slot still runs once. The dead replica's late decision does not
/// land (the fence).
#[tokio::test]
async fn an_expired_claim_is_taken_over_and_the_old_holder_is_fenced_out() {
    let fixture = Fixture::new("sched_claim_takeover").await;
    // Every five minutes: the takeover, a lease (a minute) later, is still inside the slot.
    let scope = fixture.scope("acme", Schedule::every(300)).await;
    let slot = scope.next_run_at.unwrap();
    let now = plus(slot, 10);
    // Replica "dead" claims the scope and never settles.
    let held = fixture.claim("dead", now, Duration::from_secs(60)).await;
    assert_eq!(held.len(), 1);
    let live = fixture.replica("live");
    assert_eq!(live.tick(now).await.unwrap().scopes, 0, "held by the claim");
    assert_eq!(
        live.tick(plus(now, 59_000)).await.unwrap().scopes,
        0,
        "still held just before expiry"
    );
    let report = live.tick(plus(now, 60_001)).await.unwrap();
    assert_eq!((report.scopes, report.runs_created), (1, 1));
    // The dead replica comes back and writes its stale decision: it matches nothing.
    assert_stale_settlement_lands_nowhere(&fixture, &scope, &held[0], Some(slot)).await;
    let after = fixture.scope_now(&scope).await;
    assert_eq!(after.next_run_at, Some(plus(slot, 300_000)));
    assert!(after.claim.is_none());
    assert_eq!(fixture.run_slots(&scope).await, [slot]);
}

/// A replica too slow for its lease: its decision does not land over the new holder's claim.
#[tokio::test]
async fn a_decision_under_a_claim_taken_over_does_not_land() {
    let fixture = Fixture::new("sched_claim_lost").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Allow)).await;
    let slot = scope.next_run_at.unwrap();
    let held = fixture
        .claim("slow", plus(slot, 1), Duration::from_secs(1))
        .await;
    // Another replica takes it after the slow one's lease.
    let other = fixture
        .claim("other", plus(slot, 2_000), Duration::from_secs(60))
        .await;
    assert_eq!(other.len(), 1);
    assert_ne!(other[0].claim, held[0].claim);
    assert_stale_settlement_lands_nowhere(&fixture, &scope, &held[0], None).await;
    assert_eq!(
        fixture.scope_now(&scope).await.claim,
        other[0].claim,
        "the current holder keeps the scope"
    );
}

#[tokio::test]
async fn catch_up_after_downtime_runs_the_latest_and_records_the_missed() {
    let fixture = Fixture::new("sched_catch_up").await;
    let mut schedule = every_minute(Overlap::Skip);
    schedule.catch_up.window_seconds = 600;
    let scope = fixture.scope("acme", schedule).await;
    let first = scope.next_run_at.unwrap();
    // Back 30 minutes and 20 seconds after the first slot.
    let now = plus(first, 30 * 60_000 + 20_000);
    let report = fixture.replica("a").tick(now).await.unwrap();
    assert_eq!(report.runs_created, 1);
    assert_eq!(fixture.run_slots(&scope).await, [plus(first, 30 * 60_000)]);
    let outcomes = fixture.slot_outcomes(&scope, 10).await;
    let summary: Vec<(String, String, i64)> = outcomes
        .iter()
        .map(|o| (o.outcome.clone(), o.reason.clone(), o.count))
        .collect();
    assert_eq!(
        summary,
        [
            ("ran".to_string(), "schedule".to_string(), 1),
            ("skipped".to_string(), "catch_up_latest".to_string(), 9),
            ("missed".to_string(), "catch_up_window".to_string(), 21),
        ]
    );
    assert_eq!(
        fixture.scope_now(&scope).await.next_run_at,
        Some(plus(first, 31 * 60_000))
    );
}

#[tokio::test]
async fn catch_up_all_runs_each_slot_in_the_window() {
    let fixture = Fixture::new("sched_catch_up_all").await;
    let mut schedule = every_minute(Overlap::Allow);
    schedule.catch_up.window_seconds = 300;
    schedule.catch_up.run = CatchUpRun::All;
    let scope = fixture.scope("acme", schedule).await;
    let first = scope.next_run_at.unwrap();
    let now = plus(first, 10 * 60_000 + 1);
    fixture.replica("a").tick(now).await.unwrap();
    let expected: Vec<DateTime> = (6..=10).map(|m| plus(first, m * 60_000)).collect();
    assert_eq!(fixture.run_slots(&scope).await, expected);
}

/// `skip`: a slot whose previous run is still going is skipped; once it has finished, the
/// next slot runs.
#[tokio::test]
async fn overlap_skip_through_the_database() {
    let fixture = Fixture::new("sched_overlap_skip").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Skip)).await;
    let first = scope.next_run_at.unwrap();
    let replica = fixture.replica("a");
    replica.tick(plus(first, 1)).await.unwrap();
    let runs = fixture.runs(&scope).await;
    assert_eq!(runs.len(), 1);
    // Still queued at the next slot: skipped.
    let report = replica.tick(plus(first, 60_001)).await.unwrap();
    assert_eq!((report.runs_created, report.slots_skipped), (0, 1));
    // Finished before the third slot: it runs.
    fixture
        .finish_run(&scope, runs[0].id, RunStatus::Succeeded, None)
        .await;
    let report = replica.tick(plus(first, 120_001)).await.unwrap();
    assert_eq!(report.runs_created, 1);
    assert_eq!(
        fixture.run_slots(&scope).await,
        [first, plus(first, 120_000)]
    );
}

/// A tick that recorded its decisions and then failed before its settlement landed (a cut
/// connection: found by the long chaos run): the scope is decided again, later, when the previous
/// run has finished. The slot it skipped stays skipped, recorded once, and is not run.
#[tokio::test]
async fn a_decision_recorded_by_a_tick_that_failed_to_settle_is_kept() {
    let fixture = Fixture::new("sched_decision_kept").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Skip)).await;
    let first = scope.next_run_at.unwrap();
    let second = plus(first, 60_000);
    fixture.replica("a").tick(plus(first, 1)).await.unwrap();
    let runs = fixture.runs(&scope).await;
    // The failed tick: claims the scope at the second slot, records the overlap skip (the first
    // run is still queued), and never settles; its claim lapses after a second.
    let held = fixture
        .claim("failed", plus(second, 1), Duration::from_secs(1))
        .await;
    assert_eq!(held.len(), 1);
    let skip = sv0_scheduler::plan::Skip {
        reason: sv0_scheduler::plan::SkipReason::Overlap,
        first: second,
        last: Some(second),
        count: 1,
    };
    fixture
        .slot_log
        .record(&[SlotOutcome::skipped("acme", scope.id, &skip)])
        .await
        .unwrap();
    fixture
        .finish_run(&scope, runs[0].id, RunStatus::Succeeded, None)
        .await;

    let report = fixture
        .replica("b")
        .tick(plus(second, 2_000))
        .await
        .unwrap();
    assert_eq!((report.scopes, report.runs_created), (1, 0));
    assert_eq!(fixture.run_slots(&scope).await, [first]);
    let outcomes = fixture.slot_outcomes(&scope, 10).await;
    let for_second: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.first_slot == second)
        .map(|o| o.outcome.as_str())
        .collect();
    assert_eq!(for_second, ["skipped"], "{outcomes:#?}");
    let after = fixture.scope_now(&scope).await;
    assert_eq!(after.next_run_at, Some(plus(second, 60_000)));
    // The next slot is decided as usual: the previous run has finished, so it runs.
    let report = fixture
        .replica("b")
        .tick(plus(second, 60_001))
        .await
        .unwrap();
    assert_eq!(report.runs_created, 1);
    assert_eq!(
        fixture.run_slots(&scope).await,
        [first, plus(second, 60_000)]
    );
}

/// The other half: a tick that started a slot's run and then failed before its record landed.
/// The next tick, which still sees the run before it as the scope's previous run, would skip the
/// slot for overlap; it records the slot as run, by the run that exists.
#[tokio::test]
async fn a_run_started_by_a_tick_that_failed_to_record_it_is_recorded_as_run() {
    let fixture = Fixture::new("sched_run_kept").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Skip)).await;
    let first = scope.next_run_at.unwrap();
    let second = plus(first, 60_000);
    fixture.replica("a").tick(plus(first, 1)).await.unwrap();
    // The failed tick started the second slot's run (the first run still queued: `allow` would
    // have, and a replica whose view of it was older could have) and recorded nothing.
    let started = fixture.start_slot_run(&scope, second).await;

    let report = fixture.replica("b").tick(plus(second, 1)).await.unwrap();
    assert_eq!((report.runs_created, report.slots_skipped), (0, 0));
    let outcomes = fixture.slot_outcomes(&scope, 10).await;
    let for_second: Vec<(&str, Option<mongodb::bson::oid::ObjectId>)> = outcomes
        .iter()
        .filter(|o| o.first_slot == second)
        .map(|o| (o.outcome.as_str(), o.run_id))
        .collect();
    assert_eq!(for_second, [("ran", Some(started.id))]);
    assert_eq!(
        fixture.scope_now(&scope).await.last_run_id,
        Some(started.id)
    );
}

/// The same for catch-up: a tick started a slot's run and failed before its record landed; the
/// next tick finds that slot and a newer one due and would skip the older for `catch_up.run =
/// latest`. It records the slot as run by the run that exists, and skips only the slots around it.
#[tokio::test]
async fn a_run_started_by_a_lost_tick_is_not_skipped_for_catch_up() {
    let fixture = Fixture::new("sched_run_kept_catch_up").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Allow)).await;
    let first = scope.next_run_at.unwrap();
    let (second, third, fourth) = (
        plus(first, 60_000),
        plus(first, 120_000),
        plus(first, 180_000),
    );
    fixture.replica("a").tick(plus(first, 1)).await.unwrap();
    let started = fixture.start_slot_run(&scope, third).await;

    let report = fixture.replica("b").tick(plus(fourth, 1)).await.unwrap();
    assert_eq!((report.runs_created, report.slots_skipped), (1, 1));
    let outcomes = fixture.slot_outcomes(&scope, 10).await;
    let mut after_first: Vec<(DateTime, &str, &str, i64)> = outcomes
        .iter()
        .filter(|o| o.first_slot > first)
        .map(|o| (o.first_slot, o.outcome.as_str(), o.reason.as_str(), o.count))
        .collect();
    after_first.sort();
    assert_eq!(
        after_first,
        [
            (second, "skipped", "catch_up_latest", 1),
            (third, "ran", "schedule", 1),
            (fourth, "ran", "schedule", 1),
        ]
    );
    let ran_third = outcomes.iter().find(|o| o.first_slot == third).unwrap();
    assert_eq!(ran_third.run_id, Some(started.id));
    assert_eq!(fixture.run_slots(&scope).await, [first, third, fourth]);
}

/// `buffer_one`: the slot waits while the previous run goes on, and runs (under its own slot
/// time) at the first tick after it finished.
#[tokio::test]
async fn overlap_buffer_one_through_the_database() {
    let fixture = Fixture::new("sched_overlap_buffer").await;
    let scope = fixture
        .scope("acme", every_minute(Overlap::BufferOne))
        .await;
    let first = scope.next_run_at.unwrap();
    let replica = fixture.replica("a");
    replica.tick(plus(first, 1)).await.unwrap();
    let report = replica.tick(plus(first, 60_001)).await.unwrap();
    assert_eq!(report.runs_created, 0);
    let waiting = fixture.scope_now(&scope).await;
    assert_eq!(waiting.buffered_slot, Some(plus(first, 60_000)));
    // Looked at again a re-check (5 s) after this tick, well before the next slot.
    assert_eq!(waiting.due_at, Some(plus(first, 65_001)));
    let previous = fixture.runs(&scope).await[0].id;
    fixture
        .finish_run(&scope, previous, RunStatus::Failed, Some("x".into()))
        .await;
    let report = replica.tick(waiting.due_at.unwrap()).await.unwrap();
    assert_eq!(report.runs_created, 1);
    assert_eq!(
        fixture.run_slots(&scope).await,
        [first, plus(first, 60_000)]
    );
    assert_eq!(fixture.scope_now(&scope).await.buffered_slot, None);
}

#[tokio::test]
async fn a_paused_scope_does_not_run_and_its_resume_counts_the_skipped_slots() {
    let fixture = Fixture::new("sched_pause").await;
    let metrics = SchedulerMetrics::default();
    let controls = fixture.controls(&metrics);
    let scope = fixture.scope("acme", Schedule::every(5)).await;
    let paused = controls
        .pause(
            "acme",
            scope.id,
            Some("provider maintenance".into()),
            Some("ops@acme".into()),
        )
        .await
        .unwrap();
    let pause = paused.pause.as_ref().unwrap();
    assert_eq!(pause.note.as_deref(), Some("provider maintenance"));
    assert_eq!(pause.by.as_deref(), Some("ops@acme"));
    let replica = fixture.replica("a");
    let due = scope.next_run_at.unwrap();
    assert_eq!(replica.tick(plus(due, 1)).await.unwrap().scopes, 0);
    // Let three slots pass on the real clock, then resume.
    tokio::time::sleep(Duration::from_millis(
        (due.timestamp_millis() - DateTime::now().timestamp_millis()).max(0) as u64 + 10_100,
    ))
    .await;
    let (resumed, skipped) = controls.resume("acme", scope.id).await.unwrap();
    assert!(!resumed.paused && resumed.pause.is_none());
    assert!(
        (3..=4).contains(&skipped),
        "slots {due} onwards, over ≥ 10 s of a 5 s schedule: {skipped}"
    );
    assert!(resumed.next_run_at.unwrap() > plus(DateTime::now(), -1));
    let outcomes = fixture.slot_outcomes(&scope, 5).await;
    assert_eq!(outcomes[0].reason, "paused");
    assert_eq!(outcomes[0].count as u64, skipped);
    let counted = metrics
        .slots_skipped
        .get_or_create(&ReasonLabel { reason: "paused" })
        .get();
    assert_eq!(
        counted, skipped,
        "sv0_scheduler_slots_skipped_total{{reason=paused}}"
    );
    assert!(fixture.runs(&scope).await.is_empty());
    // Resuming again changes nothing.
    let (_, again) = controls.resume("acme", scope.id).await.unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn trigger_now_runs_at_once_and_the_schedule_sees_it_as_the_previous_run() {
    let fixture = Fixture::new("sched_trigger_now").await;
    let metrics = SchedulerMetrics::default();
    let controls = fixture.controls(&metrics);
    let scope = fixture.scope("acme", every_minute(Overlap::Skip)).await;
    let run = controls
        .trigger_now("acme", scope.id, Some("ops".into()))
        .await
        .unwrap();
    assert_eq!(run.trigger.type_name(), "manual_api");
    assert_eq!(fixture.scope_now(&scope).await.last_run_id, Some(run.id));
    let trigger = TriggerLabel {
        trigger: "manual_api",
    };
    assert_eq!(metrics.runs_created.get_or_create(&trigger).get(), 1);
    // The next slot comes while it is still queued: skipped as overlapping.
    let report = fixture
        .replica("a")
        .tick(plus(scope.next_run_at.unwrap(), 1))
        .await
        .unwrap();
    assert_eq!((report.runs_created, report.slots_skipped), (0, 1));
}

#[tokio::test]
async fn backfill_runs_each_past_slot_once() {
    let fixture = Fixture::new("sched_backfill").await;
    let metrics = SchedulerMetrics::default();
    let controls = fixture.controls(&metrics);
    let scope = fixture.scope("acme", every_minute(Overlap::Skip)).await;
    let next = scope.next_run_at.unwrap();
    let from = plus(next, -5 * 60_000);
    let to = plus(next, -60_000);
    let first = controls.backfill("acme", scope.id, from, to).await.unwrap();
    let slots: Vec<DateTime> = first.iter().map(|b| b.slot).collect();
    let expected: Vec<DateTime> = (1..=5).rev().map(|m| plus(next, -m * 60_000)).collect();
    assert_eq!(slots, expected);
    assert!(first.iter().all(|b| b.created));
    // Again, over a range that overlaps it: only the new slot is created.
    let second = controls
        .backfill("acme", scope.id, plus(from, -60_000), to)
        .await
        .unwrap();
    assert_eq!(second.iter().filter(|b| b.created).count(), 1);
    for (old, again) in first.iter().zip(&second[1..]) {
        assert_eq!(old.run.id, again.run.id, "slot {} ran once", old.slot);
    }
    assert_eq!(fixture.runs(&scope).await.len(), 6);
    let trigger = TriggerLabel {
        trigger: "scheduled",
    };
    assert_eq!(metrics.runs_created.get_or_create(&trigger).get(), 6);
    // Refusals name the field.
    let future = controls
        .backfill("acme", scope.id, from, plus(DateTime::now(), 3_600_000))
        .await
        .unwrap_err();
    assert!(future.to_string().starts_with("to:"), "{future}");
    let huge = controls
        .backfill("acme", scope.id, plus(next, -2_000 * 60_000), to)
        .await
        .unwrap_err();
    assert!(huge.to_string().contains("1000 slots"), "{huge}");
}

#[tokio::test]
async fn a_suspended_tenants_scopes_are_not_claimed() {
    let fixture = Fixture::new("sched_suspended").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Allow)).await;
    let mut tenant = fixture.domain.tenant("acme").await.unwrap();
    tenant.status = sv0_domain::TenantStatus::Suspended;
    fixture.domain.put_tenant(&tenant).await.unwrap();
    let now = plus(scope.next_run_at.unwrap(), 1);
    assert_eq!(fixture.replica("a").tick(now).await.unwrap().scopes, 0);
    assert!(fixture.runs(&scope).await.is_empty());
}

#[tokio::test]
async fn a_disabled_instance_skips_its_slot_as_not_runnable() {
    let fixture = Fixture::new("sched_disabled").await;
    let scope = fixture.scope("acme", every_minute(Overlap::Allow)).await;
    fixture
        .tdb
        .db
        .collection::<mongodb::bson::Document>("connector_instances")
        .update_one(
            doc! { "_id": scope.instance_id },
            doc! { "$set": { "status": "disabled" } },
        )
        .await
        .unwrap();
    let slot = scope.next_run_at.unwrap();
    let report = fixture.replica("a").tick(plus(slot, 1)).await.unwrap();
    assert_eq!((report.runs_created, report.slots_skipped), (0, 1));
    let outcomes = fixture.slot_outcomes(&scope, 5).await;
    assert_eq!(outcomes[0].reason, "not_runnable");
    assert_eq!(
        fixture.scope_now(&scope).await.next_run_at,
        Some(plus(slot, 60_000)),
        "the schedule goes on"
    );
}

#[tokio::test]
async fn a_bad_schedule_is_refused_with_the_field_and_nothing_is_written() {
    let fixture = Fixture::new("sched_refusal").await;
    let metrics = SchedulerMetrics::default();
    let controls = fixture.controls(&metrics);
    let scope = fixture.scope("acme", every_minute(Overlap::Skip)).await;
    let before = fixture.scope_now(&scope).await;
    for (schedule, field) in [
        (Schedule::every(1), "schedule.cadence.every_seconds"),
        (
            Schedule::cron("0 3 * * *", "Europe/Bonn"),
            "schedule.cadence.time_zone",
        ),
        (
            Schedule::cron("0 3 L * *", "UTC"),
            "schedule.cadence.expression",
        ),
    ] {
        let error = controls
            .set_schedule("acme", scope.id, Some(schedule))
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with(field), "{error}");
    }
    assert_eq!(fixture.scope_now(&scope).await, before);
}

/// Replicas racing for the same due scopes, each on its own connection: each scope is handed
/// to exactly one of them. (The claim's write repeats the due condition; without it, a replica
/// that read the candidates before another claimed them would take them over after the other had
/// read them back, and both would decide them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claims_hand_each_scope_to_one_replica() {
    let fixture = Fixture::new("sched_claim_race").await;
    let mut all = Vec::new();
    for n in 0..120 {
        let tenant = format!("t{}", n % 6);
        all.push(fixture.scope(&tenant, Schedule::every(300)).await.id);
    }
    all.sort();
    let mut domains = Vec::new();
    for _ in 0..6 {
        let client = mongodb::Client::with_uri_str(fixture.tdb.uri())
            .await
            .unwrap();
        domains.push(sv0_domain::Domain::new(
            &client.database(fixture.tdb.name()),
        ));
    }
    // Three rounds, each after the previous round's claims expired: the race is a matter of
    // interleaving, so one round may miss it.
    for round in 0..3 {
        let now = plus(DateTime::now(), 301_000 + round * 10_000);
        let mut replicas = Vec::new();
        for (n, domain) in domains.iter().enumerate() {
            let domain = domain.clone();
            replicas.push(tokio::spawn(async move {
                let owner = format!("replica-{n}");
                let mut mine = Vec::new();
                loop {
                    let got = domain
                        .claim_due_scopes(&owner, now, Duration::from_secs(5), 3, &[])
                        .await
                        .unwrap();
                    if got.candidates == 0 {
                        return mine;
                    }
                    mine.extend(got.scopes.into_iter().map(|s| s.id));
                }
            }));
        }
        let mut handed = Vec::new();
        for replica in replicas {
            handed.extend(replica.await.unwrap());
        }
        let total = handed.len();
        handed.sort();
        handed.dedup();
        assert_eq!(
            total,
            handed.len(),
            "round {round}: a scope was handed to two replicas"
        );
        assert_eq!(handed, all, "round {round}: every due scope was claimed");
    }
}

/// A scope inserted with its schedule already set starts at the schedule's next slot, and a bad
/// schedule is refused at insertion, naming the field.
#[tokio::test]
async fn a_scope_inserted_with_a_schedule_is_due_at_its_first_slot() {
    let fixture = Fixture::new("sched_insert_scheduled").await;
    let template = fixture.scope("acme", Schedule::every(60)).await;
    let instance = fixture
        .domain
        .instance("acme", template.instance_id)
        .await
        .unwrap();
    let mut scope =
        sv0_domain::ScanScope::new(&instance, "inserted", doc! {}, Default::default()).unwrap();
    scope.schedule = Some(Schedule::every(60));
    let before = DateTime::now();
    fixture.domain.insert_scope(&scope).await.unwrap();
    let stored = fixture.scope_now(&scope).await;
    let next = stored.next_run_at.expect("a first slot");
    assert!(
        next > before && next.timestamp_millis() % 60_000 == 0,
        "{next}"
    );
    assert_eq!(stored.due_at, Some(next));

    let mut bad =
        sv0_domain::ScanScope::new(&instance, "bad", doc! {}, Default::default()).unwrap();
    bad.schedule = Some(Schedule::cron("0 3 * * *", "Atlantis/Capital"));
    let error = fixture.domain.insert_scope(&bad).await.unwrap_err();
    assert!(
        error.to_string().starts_with("schedule.cadence.time_zone"),
        "{error}"
    );
    assert!(
        fixture.domain.scope("acme", bad.id).await.is_err(),
        "nothing written"
    );
}

/// A scope whose stored schedule no longer validates, and one whose document does not read as a
/// scope at all (both written by hand), are parked on their own: the other scopes of the batch
/// run, and later ticks do not trip over them again. An edit brings a parked scope back.
#[tokio::test]
async fn unreadable_scopes_are_parked_and_the_others_run() {
    let fixture = Fixture::new("sched_parked").await;
    let metrics = SchedulerMetrics::default();
    let controls = fixture.controls(&metrics);
    let good = fixture.scope("acme", every_minute(Overlap::Allow)).await;
    let bad_schedule = fixture.scope("acme", Schedule::every(60)).await;
    let malformed = fixture.scope("acme", Schedule::every(60)).await;
    let scopes = fixture
        .tdb
        .db
        .collection::<mongodb::bson::Document>("scan_scopes");
    scopes
        .update_one(
            doc! { "_id": bad_schedule.id },
            doc! { "$set": { "schedule.cadence.every_seconds": 1 } },
        )
        .await
        .unwrap();
    scopes
        .update_one(
            doc! { "_id": malformed.id },
            doc! { "$set": { "budget": "an hour" } },
        )
        .await
        .unwrap();
    let slot = good.next_run_at.unwrap();
    let replica = fixture.replica("a");
    let report = replica.tick(plus(slot, 1)).await.unwrap();
    assert_eq!((report.runs_created, report.parked), (1, 1), "{report:?}");
    assert_eq!(fixture.run_slots(&good).await, [slot]);
    for parked in [&bad_schedule, &malformed] {
        let raw = scopes
            .find_one(doc! { "_id": parked.id })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            raw.get("due_at"),
            Some(&mongodb::bson::Bson::Null),
            "{raw:?}"
        );
        assert!(raw.get("claim").is_none());
    }
    // The next slot: only the good scope is claimed.
    let report = replica.tick(plus(slot, 60_001)).await.unwrap();
    assert_eq!((report.scopes, report.runs_created), (1, 1));
    // An edit brings the parked one back.
    controls
        .set_schedule("acme", bad_schedule.id, Some(Schedule::every(60)))
        .await
        .unwrap();
    let report = replica.tick(plus(slot, 120_001)).await.unwrap();
    assert_eq!((report.scopes, report.runs_created), (2, 2));
}
