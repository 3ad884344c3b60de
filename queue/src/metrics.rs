//! The queue's Prometheus metrics. Recorded by the queue calls themselves, so every process that
//! uses a queue reports the same series; depth and age are sampled by `maintenance::DepthSampler`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Claimed;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReapLabel {
    outcome: &'static str,
}

fn job_duration_histogram() -> Histogram {
    // 5 ms to ~3 h: no-op jobs through connector scans.
    Histogram::new(exponential_buckets(0.005, 3.0, 14))
}

/// Every series the queue reports. Cloning shares the series.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    enqueued: Family<KindLabel, Counter>,
    claimed: Family<KindLabel, Counter>,
    finished: Family<OutcomeLabels, Counter>,
    retried: Family<KindLabel, Counter>,
    reaped: Family<ReapLabel, Counter>,
    lease_lost: Family<KindLabel, Counter>,
    claim_queries: Counter,
    claim_collisions: Counter,
    malformed: Counter,
    duration: Family<KindLabel, Histogram, fn() -> Histogram>,
    depth: Family<KindLabel, Gauge>,
    oldest_age: Family<KindLabel, Gauge<f64, AtomicU64>>,
}

/// The `outcome` values of `sv0_queue_jobs_finished_total` and of `sv0_queue_jobs_reaped_total`.
const FINISH_OUTCOMES: [&str; 5] = ["succeeded", "retrying", "dead", "failed", "cancelled"];
const REAP_OUTCOMES: [&str; 3] = ["requeued", "dead", "cancelled"];

impl Default for QueueMetrics {
    fn default() -> Self {
        let metrics = QueueMetrics {
            enqueued: Family::default(),
            claimed: Family::default(),
            finished: Family::default(),
            retried: Family::default(),
            reaped: Family::default(),
            lease_lost: Family::default(),
            claim_queries: Counter::default(),
            claim_collisions: Counter::default(),
            malformed: Counter::default(),
            duration: Family::new_with_constructor(job_duration_histogram),
            depth: Family::default(),
            oldest_age: Family::default(),
        };
        for outcome in REAP_OUTCOMES {
            let _ = metrics.reaped.get_or_create(&ReapLabel { outcome });
        }
        metrics
    }
}

fn kind(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

impl QueueMetrics {
    /// Adds every series to `registry` (names are prefixed `queue_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("queue");
        r.register(
            "jobs_enqueued",
            "Jobs enqueued, by kind",
            self.enqueued.clone(),
        );
        r.register(
            "jobs_claimed",
            "Jobs claimed by a worker, by kind",
            self.claimed.clone(),
        );
        r.register(
            "jobs_finished",
            "Attempts ended, by kind and outcome (succeeded, retrying, dead, failed, cancelled)",
            self.finished.clone(),
        );
        r.register(
            "jobs_retried",
            "Failed attempts queued again, by kind",
            self.retried.clone(),
        );
        r.register(
            "jobs_reaped",
            "Expired leases reaped, by outcome (requeued, dead, cancelled)",
            self.reaped.clone(),
        );
        r.register(
            "lease_lost",
            "Fenced writes rejected because the lease was gone, by kind",
            self.lease_lost.clone(),
        );
        r.register(
            "claim_queries",
            "Queries a claim made (candidate look-ups and claim writes); bounded while idle",
            self.claim_queries.clone(),
        );
        r.register(
            "claim_collisions",
            "Candidates a claim write tried to take and did not: another worker took them first, \
             or they stopped being due",
            self.claim_collisions.clone(),
        );
        r.register(
            "jobs_malformed",
            "Claimed jobs that did not read back into the job type, failed on their own",
            self.malformed.clone(),
        );
        r.register(
            "job_duration_seconds",
            "From claim to the end of the attempt, by kind",
            self.duration.clone(),
        );
        r.register(
            "depth",
            "Queued jobs, by kind (sampled)",
            self.depth.clone(),
        );
        r.register(
            "oldest_queued_age_seconds",
            "How long the oldest due queued job has waited, by kind (sampled)",
            self.oldest_age.clone(),
        );
    }

    /// Starts every counter of `kinds` at 0: a series born at its first count hides that count
    /// from `increase()`, and an alert on "the first lease lost" or "enqueued, never claimed"
    /// would not see it. Call once at start with the kinds the process enqueues or runs.
    pub fn start_kinds<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) {
        for k in kinds {
            for family in [
                &self.enqueued,
                &self.claimed,
                &self.retried,
                &self.lease_lost,
            ] {
                let _ = family.get_or_create(&kind(k));
            }
            for outcome in FINISH_OUTCOMES {
                let _ = self.finished.get_or_create(&OutcomeLabels {
                    kind: k.to_string(),
                    outcome,
                });
            }
        }
    }

    pub(crate) fn enqueued(&self, k: &str) {
        self.enqueued.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn claimed(&self, k: &str) {
        self.claimed.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn retried(&self, k: &str) {
        self.retried.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn claim_query(&self) {
        self.claim_queries.inc();
    }

    pub(crate) fn claim_collisions(&self, missed: u64) {
        self.claim_collisions.inc_by(missed);
    }

    pub(crate) fn malformed(&self) {
        self.malformed.inc();
    }

    pub(crate) fn lease_lost(&self, k: &str) {
        self.lease_lost.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn reaped(&self, outcome: &'static str, count: u64) {
        self.reaped
            .get_or_create(&ReapLabel { outcome })
            .inc_by(count);
    }

    pub(crate) fn finished(&self, job: &Claimed, outcome: &'static str) {
        self.finished
            .get_or_create(&OutcomeLabels {
                kind: job.kind().to_string(),
                outcome,
            })
            .inc();
        self.duration
            .get_or_create(&kind(job.kind()))
            .observe(job.claimed_at.elapsed().as_secs_f64());
    }

    /// Drops every depth series: a process that stops sampling must not leave its last figure
    /// beside the one that samples now (dashboards and alerts read the `max`).
    pub fn forget_depths(&self) {
        self.depth.clear();
        self.oldest_age.clear();
    }

    pub(crate) fn set_depth(&self, k: &str, depth: i64, oldest_age_seconds: f64) {
        self.depth.get_or_create(&kind(k)).set(depth);
        self.oldest_age
            .get_or_create(&kind(k))
            .set(oldest_age_seconds);
    }
}
