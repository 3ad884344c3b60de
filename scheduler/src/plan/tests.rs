//! Every catch-up and overlap policy, on a one-minute interval (slots on whole minutes).

use super::*;

fn at(minute: i64) -> DateTime {
    // Minute `m` of an arbitrary day: 2027-01-01T10:00Z + m minutes.
    DateTime::from_millis(1_798_797_600_000 + minute * 60_000)
}

fn minutely(run: CatchUpRun, overlap: Overlap) -> (Schedule, Slots) {
    let mut schedule = Schedule::every(60);
    schedule.catch_up.window_seconds = 600;
    schedule.catch_up.run = run;
    schedule.overlap = overlap;
    let slots = schedule.slots().unwrap();
    (schedule, slots)
}

fn state(next: i64, buffered: Option<i64>, previous_running: bool) -> ScopeState {
    ScopeState {
        next_run_at: Some(at(next)),
        buffered_slot: buffered.map(at),
        previous_running,
    }
}

fn skip(reason: SkipReason, first: i64, last: Option<i64>, count: u64) -> Skip {
    Skip {
        reason,
        first: at(first),
        last: last.map(at),
        count,
    }
}

#[test]
fn an_on_time_slot_runs_and_the_next_is_the_following_slot() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::Skip);
    // Woken a few milliseconds late for the slot at minute 5.
    let now = DateTime::from_millis(at(5).timestamp_millis() + 7);
    let plan = plan(&schedule, &slots, state(5, None, false), now);
    assert_eq!(plan.runs, [at(5)]);
    assert!(plan.skips.is_empty());
    assert_eq!(plan.next_run_at, Some(at(6)));
    assert_eq!(plan.buffered_slot, None);
}

#[test]
fn nothing_due_changes_nothing() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::Skip);
    let plan = plan(&schedule, &slots, state(5, None, false), at(4));
    assert_eq!(
        plan,
        Plan {
            next_run_at: Some(at(5)),
            ..Plan::default()
        }
    );
}

#[test]
fn anchoring_the_next_slot_follows_the_last_slot_not_the_tick() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::Allow);
    // A tick 50 seconds late for minute 5: the next slot is still minute 6, not 6:50.
    let now = DateTime::from_millis(at(5).timestamp_millis() + 50_000);
    let plan = plan(&schedule, &slots, state(5, None, false), now);
    assert_eq!(plan.runs, [at(5)]);
    assert_eq!(plan.next_run_at, Some(at(6)));
}

#[test]
fn catch_up_latest_runs_only_the_newest_slot_in_the_window() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::Skip);
    // Down from minute 5 to 30:20; the window is 10 minutes: 20:20 to 30:20.
    let now = DateTime::from_millis(at(30).timestamp_millis() + 20_000);
    let plan = plan(&schedule, &slots, state(5, None, false), now);
    assert_eq!(plan.runs, [at(30)]);
    assert_eq!(
        plan.skips,
        [
            // 5 … 20 are older than the window: missed.
            skip(SkipReason::CatchUpWindow, 5, None, 16),
            // 21 … 29 are inside it but superseded by 30.
            skip(SkipReason::CatchUpLatest, 21, Some(29), 9),
        ]
    );
    assert_eq!(plan.next_run_at, Some(at(31)));
}

#[test]
fn catch_up_all_runs_every_slot_in_the_window() {
    let (schedule, slots) = minutely(CatchUpRun::All, Overlap::Allow);
    let now = DateTime::from_millis(at(30).timestamp_millis() + 20_000);
    let plan = plan(&schedule, &slots, state(5, None, false), now);
    assert_eq!(plan.runs, (21..=30).map(at).collect::<Vec<_>>());
    assert_eq!(plan.skips, [skip(SkipReason::CatchUpWindow, 5, None, 16)]);
    assert_eq!(plan.next_run_at, Some(at(31)));
}

#[test]
fn catch_up_all_spreads_a_long_backlog_over_ticks() {
    let mut schedule = Schedule::every(5);
    schedule.catch_up.window_seconds = 24 * 3600;
    schedule.catch_up.run = CatchUpRun::All;
    schedule.overlap = Overlap::Allow;
    let slots = schedule.slots().unwrap();
    let now = DateTime::from_millis(at(60).timestamp_millis());
    let plan = plan(&schedule, &slots, state(0, None, false), now);
    assert_eq!(plan.runs.len(), MAX_RUNS_PER_TICK);
    assert_eq!(plan.runs[0], at(0));
    let last = plan.runs[MAX_RUNS_PER_TICK - 1];
    assert_eq!(
        plan.next_run_at,
        Some(DateTime::from_millis(last.timestamp_millis() + 5000)),
        "the next tick goes on after the last slot run, not from now"
    );
    assert!(plan.skips.is_empty());
}

#[test]
fn a_slot_older_than_the_window_is_missed_and_the_schedule_goes_on() {
    // A daily slot at 03:00, the scheduler back at 09:00, a window of an hour.
    let mut daily = Schedule::cron("0 3 * * *", "UTC");
    daily.catch_up.window_seconds = 3600;
    let slots = daily.slots().unwrap();
    let three = DateTime::parse_rfc3339_str("2027-01-01T03:00:00Z").unwrap();
    let nine = DateTime::parse_rfc3339_str("2027-01-01T09:00:00Z").unwrap();
    let state = ScopeState {
        next_run_at: Some(three),
        buffered_slot: None,
        previous_running: false,
    };
    let plan = plan(&daily, &slots, state, nine);
    assert!(plan.runs.is_empty());
    assert_eq!(
        plan.skips,
        [Skip {
            reason: SkipReason::CatchUpWindow,
            first: three,
            last: None,
            count: 1
        }]
    );
    assert_eq!(
        plan.next_run_at,
        Some(DateTime::parse_rfc3339_str("2027-01-02T03:00:00Z").unwrap())
    );
}

#[test]
fn overlap_skip_skips_the_slot_while_the_previous_run_is_running() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::Skip);
    let plan = plan(&schedule, &slots, state(5, None, true), at(5));
    assert!(plan.runs.is_empty());
    assert_eq!(plan.skips, [skip(SkipReason::Overlap, 5, Some(5), 1)]);
    assert_eq!(plan.next_run_at, Some(at(6)));
    assert_eq!(plan.buffered_slot, None);
}

#[test]
fn overlap_skip_with_catch_up_all_runs_the_first_and_skips_the_rest() {
    let (schedule, slots) = minutely(CatchUpRun::All, Overlap::Skip);
    let plan = plan(&schedule, &slots, state(5, None, false), at(7));
    assert_eq!(plan.runs, [at(5)]);
    assert_eq!(
        plan.skips,
        [
            skip(SkipReason::Overlap, 6, Some(6), 1),
            skip(SkipReason::Overlap, 7, Some(7), 1)
        ]
    );
}

#[test]
fn overlap_allow_runs_regardless() {
    let (schedule, slots) = minutely(CatchUpRun::All, Overlap::Allow);
    let plan = plan(&schedule, &slots, state(5, None, true), at(7));
    assert_eq!(plan.runs, [at(5), at(6), at(7)]);
    assert!(plan.skips.is_empty());
}

#[test]
fn overlap_buffer_one_holds_one_slot_until_the_previous_run_finishes() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::BufferOne);
    // Previous still running: slot 5 waits.
    let first = plan(&schedule, &slots, state(5, None, true), at(5));
    assert!(first.runs.is_empty());
    assert!(first.skips.is_empty());
    assert_eq!(first.buffered_slot, Some(at(5)));
    assert_eq!(first.next_run_at, Some(at(6)));
    // A re-check before slot 6, still running: nothing changes.
    let recheck = DateTime::from_millis(at(5).timestamp_millis() + 30_000);
    let second = plan(&schedule, &slots, state(6, Some(5), true), recheck);
    assert!(second.runs.is_empty());
    assert_eq!(second.buffered_slot, Some(at(5)));
    assert_eq!(second.next_run_at, Some(at(6)));
    // Slot 6 comes while it still runs: 6 displaces 5 (at most one waits), 5 is skipped.
    let third = plan(&schedule, &slots, state(6, Some(5), true), at(6));
    assert!(third.runs.is_empty());
    assert_eq!(third.buffered_slot, Some(at(6)));
    assert_eq!(third.skips, [skip(SkipReason::Overlap, 5, Some(5), 1)]);
    // The previous run finishes: the waiting slot runs, late, under its own slot time.
    let later = DateTime::from_millis(at(6).timestamp_millis() + 40_000);
    let fourth = plan(&schedule, &slots, state(7, Some(6), false), later);
    assert_eq!(fourth.runs, [at(6)]);
    assert_eq!(fourth.buffered_slot, None);
    assert!(fourth.skips.is_empty());
}

#[test]
fn buffer_one_runs_the_waiting_slot_then_buffers_the_new_one() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::BufferOne);
    // The previous run finished and slot 7 is due too: 6 runs, 7 waits for 6's run.
    let plan = plan(&schedule, &slots, state(7, Some(6), false), at(7));
    assert_eq!(plan.runs, [at(6)]);
    assert_eq!(plan.buffered_slot, Some(at(7)));
    assert_eq!(plan.next_run_at, Some(at(8)));
}

#[test]
fn a_scope_without_a_next_slot_does_nothing() {
    let (schedule, slots) = minutely(CatchUpRun::Latest, Overlap::Skip);
    let none = ScopeState {
        next_run_at: None,
        buffered_slot: None,
        previous_running: false,
    };
    assert_eq!(plan(&schedule, &slots, none, at(100)), Plan::default());
}
