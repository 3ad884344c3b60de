//! How many jobs a worker leases beyond the ones it can run now.
//!
//! Every claim costs the server a look at the queue (on the stand, a scan of the whole
//! collection), so claiming a few jobs per freed slot pays that cost per job. Leasing some jobs
//! ahead spreads it over more. But a job leased ahead waits in this worker for a slot while no
//! other worker may take it, so the worker leases ahead only as many jobs as it expects to start
//! within `horizon`, judged by how long its recent jobs ran: up to `max` for jobs that take
//! milliseconds, none for minute-long scans, and none before its first job has finished.

use std::sync::Mutex;
use std::time::Duration;

/// The weight of the newest run time in the running mean.
const WEIGHT: f64 = 0.2;

#[derive(Debug)]
pub(crate) struct ClaimAhead {
    max: usize,
    horizon: Duration,
    mean_run_secs: Mutex<Option<f64>>,
}

impl ClaimAhead {
    pub(crate) fn new(max: usize, horizon: Duration) -> ClaimAhead {
        ClaimAhead {
            max,
            horizon,
            mean_run_secs: Mutex::new(None),
        }
    }

    /// Records how long a handler held its slot.
    pub(crate) fn record(&self, ran: Duration) {
        let mut mean = self
            .mean_run_secs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let ran = ran.as_secs_f64();
        *mean = Some(match *mean {
            Some(mean) => mean + WEIGHT * (ran - mean),
            None => ran,
        });
    }

    /// How many jobs to lease beyond `concurrency`: the starts expected within the horizon when
    /// `concurrency` slots each free up once per mean run time.
    pub(crate) fn jobs(&self, concurrency: usize) -> usize {
        let mean = *self
            .mean_run_secs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(mean) = mean else {
            return 0;
        };
        // Below a microsecond the mean is noise; the cap decides anyway.
        let starts = concurrency as f64 * self.horizon.as_secs_f64() / mean.max(1e-6);
        (starts.floor() as usize).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZON: Duration = Duration::from_millis(250);

    #[test]
    fn nothing_ahead_before_the_first_job_finished() {
        assert_eq!(ClaimAhead::new(256, HORIZON).jobs(16), 0);
    }

    #[test]
    fn short_jobs_are_leased_ahead_up_to_the_cap() {
        let ahead = ClaimAhead::new(256, HORIZON);
        ahead.record(Duration::from_millis(1));
        assert_eq!(ahead.jobs(16), 256);
        assert_eq!(
            ClaimAhead::new(0, HORIZON).jobs(16),
            0,
            "a cap of 0 turns it off"
        );
    }

    #[test]
    fn long_jobs_are_not_leased_ahead() {
        let ahead = ClaimAhead::new(256, HORIZON);
        ahead.record(Duration::from_secs(60));
        assert_eq!(ahead.jobs(16), 0);
    }

    #[test]
    fn the_lease_ahead_follows_the_run_times_seen() {
        let ahead = ClaimAhead::new(256, HORIZON);
        ahead.record(Duration::from_millis(100));
        // 4 slots, each freeing every 100 ms: 10 starts within 250 ms.
        assert_eq!(ahead.jobs(4), 10);
        for _ in 0..50 {
            ahead.record(Duration::from_secs(10));
        }
        assert_eq!(ahead.jobs(4), 0, "jobs grew long: stop leasing ahead");
    }
}
