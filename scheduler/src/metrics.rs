//! The scheduler's metrics. Labels are bounded: a trigger type, a skip reason; never a scope or
//! a tenant (those are in the log lines, one per slot decision).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    pub ticks: Counter,
    pub tick_failures: Counter,
    pub tick_duration: Histogram,
    pub scopes_claimed: Counter,
    /// Settlements that did not land: the claim expired and another replica took the scope.
    pub claims_lost: Counter,
    pub runs_created: Family<TriggerLabel, Counter>,
    /// Slots not run, by reason (`catch_up_window` ones are the missed slots).
    pub slots_skipped: Family<ReasonLabel, Counter>,
    /// Run creation time minus slot time.
    pub schedule_lag: Histogram,
    pub runs_timed_out: Counter,
    /// Queued runs whose first job was missing (their creator lost the database between the
    /// two writes), enqueued by the orphaned-run reaper.
    pub first_jobs_restored: Counter,
}

impl Default for SchedulerMetrics {
    /// Every skip reason's counter starts at 0: a series born at its first count would hide
    /// that count from `increase()`, and missed slots often come all at once, after an outage.
    fn default() -> SchedulerMetrics {
        let metrics = SchedulerMetrics {
            ticks: Counter::default(),
            tick_failures: Counter::default(),
            // 1 ms to about 65 s.
            tick_duration: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            scopes_claimed: Counter::default(),
            claims_lost: Counter::default(),
            runs_created: Family::default(),
            slots_skipped: Family::default(),
            // 1 ms to about 9 hours: a buffered slot can wait as long as a run takes.
            schedule_lag: Histogram::new(exponential_buckets(0.001, 2.0, 25)),
            runs_timed_out: Counter::default(),
            first_jobs_restored: Counter::default(),
        };
        for reason in crate::plan::SkipReason::ALL {
            let _ = metrics.slots_skipped.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        metrics
    }
}

impl SchedulerMetrics {
    /// Registers under `registry`'s prefix (`sv0_` in the binary): `sv0_scheduler_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("scheduler");
        r.register("ticks", "Scheduler ticks run", self.ticks.clone());
        r.register(
            "tick_failures",
            "Scheduler ticks that failed (the database away; the scopes are retried)",
            self.tick_failures.clone(),
        );
        r.register(
            "tick_duration_seconds",
            "How long a tick took",
            self.tick_duration.clone(),
        );
        r.register(
            "scopes_claimed",
            "Due scopes claimed by this replica",
            self.scopes_claimed.clone(),
        );
        r.register(
            "claims_lost",
            "Scope decisions that did not land because the claim had expired",
            self.claims_lost.clone(),
        );
        r.register(
            "runs_created",
            "Scan runs created, by trigger",
            self.runs_created.clone(),
        );
        r.register(
            "slots_skipped",
            "Schedule slots not run, by reason (catch_up_window: missed)",
            self.slots_skipped.clone(),
        );
        r.register(
            "schedule_lag_seconds",
            "Run creation time minus its slot time",
            self.schedule_lag.clone(),
        );
        r.register(
            "runs_timed_out",
            "Runs the orphaned-run reaper timed out",
            self.runs_timed_out.clone(),
        );
        r.register(
            "first_jobs_restored",
            "Queued runs whose first job was missing, enqueued by the orphaned-run reaper",
            self.first_jobs_restored.clone(),
        );
    }
}
