//! The worker's own Prometheus series (the queue's are `sv0_queue_*`): what went wrong inside
//! handlers and leases, how far this host's clock is from the database server's, how busy its run
//! slots are, and how many workers the registry counts live.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// Every series the worker reports. Cloning shares the series.
#[derive(Debug, Clone, Default)]
pub struct WorkerMetrics {
    panics: Family<KindLabel, Counter>,
    timeouts: Family<KindLabel, Counter>,
    self_fenced: Family<KindLabel, Counter>,
    given_back: Counter,
    clock_skew: Gauge<f64, AtomicU64>,
    slots_busy: Gauge,
    slots_capacity: Gauge,
    /// No labels; a family so that a worker that stops leading can drop the series.
    live_workers: Family<Vec<(String, String)>, Gauge>,
    leader: Gauge,
}

fn kind(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

impl WorkerMetrics {
    /// Adds every series to `registry` (names are prefixed `worker_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("worker");
        r.register(
            "handler_panics",
            "Handler runs that panicked (each a failed attempt), by kind",
            self.panics.clone(),
        );
        r.register(
            "timeouts",
            "Handler runs stopped at their time bound (each a failed attempt), by kind",
            self.timeouts.clone(),
        );
        r.register(
            "self_fenced",
            "Handlers this worker stopped because it could not renew their lease in time, by kind",
            self.self_fenced.clone(),
        );
        r.register(
            "leased_ahead_given_back",
            "Jobs leased ahead that had not started within the horizon and were given back",
            self.given_back.clone(),
        );
        r.register(
            "clock_skew_seconds",
            "This host's clock minus the database server's, as last measured",
            self.clock_skew.clone(),
        );
        r.register(
            "slots_busy",
            "Run slots running a job now",
            self.slots_busy.clone(),
        );
        r.register(
            "slots_capacity",
            "Run slots (--concurrency)",
            self.slots_capacity.clone(),
        );
        r.register(
            "live_workers",
            "Workers heartbeating in the workers registry, as the fleet's leader last counted them (aggregate with max)",
            self.live_workers.clone(),
        );
        r.register(
            "leader",
            "1 while this worker leads the fleet-wide duties (depth sample, pruner, registry sweep and live count), else 0",
            self.leader.clone(),
        );
    }

    /// Starts the per-kind counters of `kinds` at 0, so that `increase()` sees their first
    /// event (a series born at 1 never grew, to Prometheus).
    pub(crate) fn start_kinds<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) {
        for k in kinds {
            for family in [&self.panics, &self.timeouts, &self.self_fenced] {
                let _ = family.get_or_create(&kind(k));
            }
        }
    }

    pub(crate) fn panicked(&self, k: &str) {
        self.panics.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn timed_out(&self, k: &str) {
        self.timeouts.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn self_fenced(&self, k: &str) {
        self.self_fenced.get_or_create(&kind(k)).inc();
    }

    pub(crate) fn given_back(&self, n: u64) {
        self.given_back.inc_by(n);
    }

    pub(crate) fn set_clock_skew(&self, seconds: f64) {
        self.clock_skew.set(seconds);
    }

    /// The busy-slot gauge, moved by the slots themselves.
    pub(crate) fn slots_busy(&self) -> Gauge {
        self.slots_busy.clone()
    }

    pub(crate) fn set_slots_capacity(&self, slots: usize) {
        self.slots_capacity.set(slots as i64);
    }

    pub(crate) fn set_live_workers(&self, workers: u64) {
        self.live_workers
            .get_or_create(&Vec::new())
            .set(workers as i64);
    }

    pub(crate) fn forget_live_workers(&self) {
        self.live_workers.clear();
    }

    pub(crate) fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }
}
