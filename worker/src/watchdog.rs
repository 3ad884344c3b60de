//! The worker's own watch over its leases, on its own clock, so that it needs no database to act:
//!
//! - **Self-fencing**: a lease this worker has not renewed for `lease_ttl − self_fence_margin`
//!   (heartbeats failing: the worker is cut off from the database) is treated as lost, and its
//!   handler stopped, before any other worker's reaper can see the lease expire and hand the job
//!   on. Two runs of one job at once are then bounded by the clocks' skew, not by the partition.
//! - **Stale leases ahead**: a job leased ahead that has not started within four horizons is
//!   given back, so that an estimate gone wrong cannot keep jobs from idle workers. (Four, not
//!   one: on a busy host jobs start later than their run times promise, and giving back jobs
//!   that were about to start only costs claims.)

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::runtime::{Inner, StopReason};

/// A job leased ahead is given back once it has waited this many horizons without starting.
const STALE_HORIZONS: u32 = 4;

impl Inner {
    pub(crate) async fn watchdog_loop(self: Arc<Self>, stop: CancellationToken) {
        let tick = (self.config.self_fence_margin / 4)
            .min(self.claim_ahead.horizon() / 2)
            .max(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            self.fence_unrenewed();
            let stale_after = self.claim_ahead.horizon() * STALE_HORIZONS;
            let given_back = self
                .give_back(|job| job.phase.waiting() && job.leased_at.elapsed() > stale_after)
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
