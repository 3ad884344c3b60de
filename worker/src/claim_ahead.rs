//! How many jobs of each kind a worker leases beyond the ones it can run now.
//!
//! Every claim costs the server a look at the queue (on the stand, a scan of the whole
//! collection), so claiming a few jobs per freed slot pays that cost per job. Leasing some jobs
//! ahead spreads it over more. But a job leased ahead waits in this worker for a slot while no
//! other worker may take it, so the worker leases ahead only as many jobs of a kind as it expects
//! to start within `horizon`, judged by how long that kind's recent jobs ran: up to `max` for
//! jobs that take milliseconds, none for minute-long scans, and none of a kind before its first
//! job here has finished. The estimate is per kind: one mean over all kinds would let fast kinds
//! pull it down to milliseconds, and the worker would then hoard slow jobs behind them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The weight of the newest run time in the running mean.
const WEIGHT: f64 = 0.2;

#[derive(Debug)]
pub(crate) struct ClaimAhead {
    max: usize,
    horizon: Duration,
    mean_run_secs: Mutex<HashMap<String, f64>>,
}

impl ClaimAhead {
    pub(crate) fn new(max: usize, horizon: Duration) -> ClaimAhead {
        ClaimAhead {
            max,
            horizon,
            mean_run_secs: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn horizon(&self) -> Duration {
        self.horizon
    }

    fn means(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.mean_run_secs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records how long a handler of `kind` held its slot.
    pub(crate) fn record(&self, kind: &str, ran: Duration) {
        let ran = ran.as_secs_f64();
        self.means()
            .entry(kind.to_string())
            .and_modify(|mean| *mean += WEIGHT * (ran - *mean))
            .or_insert(ran);
    }

    /// How many jobs of `kind` to lease beyond `concurrency`: the starts expected within the
    /// horizon when `concurrency` slots each free up once per mean run time of that kind.
    pub(crate) fn jobs(&self, kind: &str, concurrency: usize) -> usize {
        let Some(&mean) = self.means().get(kind) else {
            return 0;
        };
        // Below a microsecond the mean is noise; the cap decides anyway.
        let starts = concurrency as f64 * self.horizon.as_secs_f64() / mean.max(1e-6);
        (starts.floor() as usize).min(self.max)
    }

    /// The most jobs leased ahead for any kind: the room a claim may ask for beyond free slots.
    pub(crate) fn most(&self, concurrency: usize) -> usize {
        let kinds: Vec<String> = self.means().keys().cloned().collect();
        kinds
            .iter()
            .map(|kind| self.jobs(kind, concurrency))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZON: Duration = Duration::from_millis(250);

    #[test]
    fn nothing_ahead_before_the_kinds_first_job_finished() {
        let ahead = ClaimAhead::new(256, HORIZON);
        assert_eq!(ahead.jobs("k", 16), 0);
        assert_eq!(ahead.most(16), 0);
    }

    #[test]
    fn short_jobs_are_leased_ahead_up_to_the_cap() {
        let ahead = ClaimAhead::new(256, HORIZON);
        ahead.record("fast", Duration::from_millis(1));
        assert_eq!(ahead.jobs("fast", 16), 256);
        assert_eq!(ahead.most(16), 256);
        let off = ClaimAhead::new(0, HORIZON);
        off.record("fast", Duration::from_millis(1));
        assert_eq!(off.jobs("fast", 16), 0, "a cap of 0 turns it off");
    }

    #[test]
    fn long_jobs_are_not_leased_ahead() {
        let ahead = ClaimAhead::new(256, HORIZON);
        ahead.record("slow", Duration::from_secs(60));
        assert_eq!(ahead.jobs("slow", 16), 0);
    }

    #[test]
    fn the_lease_ahead_follows_the_run_times_seen() {
        let ahead = ClaimAhead::new(256, HORIZON);
        ahead.record("k", Duration::from_millis(100));
        // 4 slots, each freeing every 100 ms: 10 starts within 250 ms.
        assert_eq!(ahead.jobs("k", 4), 10);
        for _ in 0..50 {
            ahead.record("k", Duration::from_secs(10));
        }
        assert_eq!(ahead.jobs("k", 4), 0, "jobs grew long: stop leasing ahead");
    }

    /// One mean for all kinds used to let fast jobs make the worker lease slow ones ahead.
    #[test]
    fn fast_kinds_do_not_make_slow_kinds_leased_ahead() {
        let ahead = ClaimAhead::new(256, HORIZON);
        for _ in 0..50 {
            ahead.record("noop", Duration::from_micros(100));
        }
        ahead.record("probe", Duration::from_secs(1));
        assert_eq!(ahead.jobs("noop", 1), 256);
        assert_eq!(ahead.jobs("probe", 1), 0);
        assert_eq!(ahead.jobs("never-seen", 1), 0);
    }
}
