//! What a tick does with a scope's due slots: a pure function of the schedule, the scope's
//! state and the time, so every policy is tested without a database or a clock.
//!
//! In order: slots older than the catch-up window are missed; of the rest, `latest` keeps only
//! the newest (the others are superseded) and `all` keeps each; a slot waiting under
//! `buffer_one` goes first once the previous run has finished; then each kept slot meets the
//! overlap policy against the run before it (the previous run, or one this plan starts).

use mongodb::bson::DateTime;
use sv0_domain::{CatchUpRun, Overlap, Schedule, Slots};

/// The most slots one tick enumerates for a scope: a schedule far behind (a 5-second interval
/// after a day's outage is 17,280 slots) is caught up over several ticks.
pub const MAX_SLOTS_ENUMERATED: usize = 20_000;
/// The most runs one tick starts for a scope under `catch_up.run = all`; the rest wait for the
/// next tick.
pub const MAX_RUNS_PER_TICK: usize = 100;
/// Slots not run are counted up to this many at once (an interval's exactly).
pub(crate) const MISSED_COUNT_CAP: u64 = 1_000_000;

/// The scope's state that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct ScopeState {
    pub next_run_at: Option<DateTime>,
    pub buffered_slot: Option<DateTime>,
    /// The scope's previous run has not finished (queued or running).
    pub previous_running: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Slots to start runs for, in order.
    pub runs: Vec<DateTime>,
    pub skips: Vec<Skip>,
    /// The first slot not decided yet.
    pub next_run_at: Option<DateTime>,
    pub buffered_slot: Option<DateTime>,
}

/// Slots not run, and why: `first` to `last` (inclusive), `count` of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    pub reason: SkipReason,
    pub first: DateTime,
    pub last: Option<DateTime>,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Older than the catch-up window: missed.
    CatchUpWindow,
    /// Inside the window, but a newer due slot ran instead (`catch_up.run = latest`).
    CatchUpLatest,
    /// The previous run was still going (`overlap = skip`, or a buffered slot displaced by a
    /// newer one under `buffer_one`).
    Overlap,
    /// The scope was paused.
    Paused,
    /// The run could not be started: the tenant suspended, the instance disabled.
    NotRunnable,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::CatchUpWindow,
        SkipReason::CatchUpLatest,
        SkipReason::Overlap,
        SkipReason::Paused,
        SkipReason::NotRunnable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::CatchUpWindow => "catch_up_window",
            SkipReason::CatchUpLatest => "catch_up_latest",
            SkipReason::Overlap => "overlap",
            SkipReason::Paused => "paused",
            SkipReason::NotRunnable => "not_runnable",
        }
    }
}

/// Decides the scope's slots due at `now`.
pub fn plan(schedule: &Schedule, slots: &Slots, state: ScopeState, now: DateTime) -> Plan {
    let mut plan = Plan {
        next_run_at: state.next_run_at,
        buffered_slot: state.buffered_slot,
        ..Plan::default()
    };
    let mut kept = Vec::new();
    if let Some(next) = state.next_run_at.filter(|next| *next <= now) {
        let window_start =
            DateTime::from_millis(now.timestamp_millis() - schedule.catch_up.window_seconds * 1000);
        let mut from = next;
        if next < window_start {
            let missed = slots.count_between(next, window_start, MISSED_COUNT_CAP);
            let before_window = DateTime::from_millis(window_start.timestamp_millis() - 1);
            from = slots.next_after(before_window).unwrap_or(window_start);
            if missed > 0 {
                plan.skips.push(Skip {
                    reason: SkipReason::CatchUpWindow,
                    first: next,
                    last: None,
                    count: missed,
                });
            }
        }
        let due = slots.between(from, now, MAX_SLOTS_ENUMERATED);
        kept = match schedule.catch_up.run {
            CatchUpRun::Latest => {
                if due.len() > 1 {
                    plan.skips.push(Skip {
                        reason: SkipReason::CatchUpLatest,
                        first: due[0],
                        last: Some(due[due.len() - 2]),
                        count: due.len() as u64 - 1,
                    });
                }
                due.last().copied().into_iter().collect()
            }
            CatchUpRun::All => due.into_iter().take(MAX_RUNS_PER_TICK).collect(),
        };
        plan.next_run_at = match kept.last() {
            Some(last) => slots.next_after(*last),
            None => Some(from),
        };
    }

    let mut running = state.previous_running;
    if let Some(buffered) = plan.buffered_slot
        && !running
    {
        plan.runs.push(buffered);
        plan.buffered_slot = None;
        running = true;
    }
    for slot in kept {
        if !running || schedule.overlap == Overlap::Allow {
            plan.runs.push(slot);
            running = true;
            continue;
        }
        let displaced = match schedule.overlap {
            Overlap::BufferOne => plan.buffered_slot.replace(slot),
            _ => Some(slot),
        };
        if let Some(skipped) = displaced {
            plan.skips.push(Skip {
                reason: SkipReason::Overlap,
                first: skipped,
                last: Some(skipped),
                count: 1,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests;
