//! The worker's own watch over its leases, on its own clock, so that it needs no database to act:
//!
//! - **Self-fencing**: a lease this worker has not renewed for `lease_ttl − self_fence_margin`
//!   (heartbeats failing: the worker is cut off from the database) is treated as lost, and its
//!   handler stopped, before any other worker's reaper can see the lease expire and hand the job
//!   on. Two runs of one job at once are then bounded by the clocks' skew, not by the partition.
//! - **Stale leases ahead**: a job leased ahead that has not started within four horizons is
//!   given back, so that an estimate gone wrong cannot keep jobs from idle workers, and its wait
//!   is recorded as a run of its kind, so that the worker does not lease them ahead again at
//!   once. (Four, not one: on a busy host jobs start later than their run times promise, and
//!   giving back jobs that were about to start only costs claims.)

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::{Inner, StopReason};

/// A job leased ahead is given back once it has waited this many horizons without starting.
const STALE_HORIZONS: u32 = 4;

/// How often the watchdog looks: four times within the self-fencing margin, so that a handler
/// is stopped at most a quarter of the margin after its limit, well before the lease expires;
/// twice per horizon, for the leases ahead; never more often than every 10 ms.
fn tick(self_fence_margin: Duration, horizon: Duration) -> Duration {
    (self_fence_margin / 4)
        .min(horizon / 2)
        .max(Duration::from_millis(10))
}

/// How long a job leased ahead may wait for a slot before it is given back.
fn stale_after(horizon: Duration) -> Duration {
    horizon * STALE_HORIZONS
}

/// A job is given back only while it waits for a slot (a started job is running, not stale),
/// and only once it has waited longer than `stale_after`: giving back sooner would undo every
/// lease ahead and pay a claim per job.
fn is_stale(waiting: bool, waited: Duration, stale_after: Duration) -> bool {
    waiting && waited > stale_after
}

impl Inner {
    pub(crate) async fn watchdog_loop(self: Arc<Self>, stop: CancellationToken) {
        let tick = tick(self.config.self_fence_margin, self.claim_ahead.horizon());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            self.fence_unrenewed();
            let stale_after = stale_after(self.claim_ahead.horizon());
            let given_back = self
                .give_back(|job| {
                    let waited = job.leased_at.elapsed();
                    let stale = is_stale(job.phase.waiting(), waited, stale_after);
                    if stale {
                        // The estimate was wrong: teach it how long this job waited, or the
                        // next claim would lease the same jobs ahead again at once, and no
                        // other worker would get them.
                        self.claim_ahead.record(&job.kind, waited);
                    }
                    stale
                })
                .await;
            if given_back > 0 {
                self.metrics.given_back(given_back);
                tracing::info!(
                    given_back,
                    "gave back jobs leased ahead that had not started"
                );
            }
        }
    }

    fn fence_unrenewed(&self) {
        let limit = self
            .config
            .lease_ttl
            .saturating_sub(self.config.self_fence_margin);
        for job in self.held().values() {
            let unrenewed = job.renewed_at.elapsed();
            if unrenewed > limit && job.stop(StopReason::LeaseLost) {
                self.metrics.self_fenced(&job.kind);
                tracing::warn!(
                    job_id = %job.lease.job_id,
                    kind = job.kind,
                    unrenewed_ms = unrenewed.as_millis() as u64,
                    "self-fenced: the lease was not renewed in time; handler stopped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZON: Duration = Duration::from_millis(250);

    #[test]
    fn the_watchdog_looks_four_times_within_the_margin_and_twice_per_horizon() {
        // A short lease: the margin decides, so a handler stops well inside it.
        assert_eq!(
            tick(Duration::from_millis(60), HORIZON),
            Duration::from_millis(15)
        );
        // The default lease (30 s, margin 6 s): the horizon decides.
        assert_eq!(
            tick(Duration::from_secs(6), HORIZON),
            Duration::from_millis(125)
        );
        // Never a busy loop.
        assert_eq!(
            tick(Duration::from_millis(20), HORIZON),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn a_job_leased_ahead_is_stale_after_four_horizons() {
        assert_eq!(stale_after(HORIZON), Duration::from_secs(1));
    }

    #[test]
    fn only_a_waiting_job_past_its_wait_is_stale() {
        let limit = Duration::from_secs(1);
        assert!(is_stale(true, Duration::from_millis(1001), limit));
        assert!(
            !is_stale(true, Duration::from_millis(999), limit),
            "within its wait"
        );
        assert!(
            !is_stale(false, Duration::from_secs(5), limit),
            "started: running, not stale"
        );
    }
}
