//! The heartbeat duty: every `heartbeat_every`, one fenced write extends every lease this worker
//! holds and tells which were lost or asked to cancel; their handlers' tokens fire. The worker's
//! registry record is touched in the same beat, which also measures the clock skew and decides
//! which worker leads the fleet (`leader`).

use std::sync::Arc;
use std::time::Instant;

use mongodb::bson::DateTime;
use sv0_queue::{LeaseRef, LeaseState};
use tokio_util::sync::CancellationToken;

use crate::clock::SkewVerdict;
use crate::registry::WorkerRecord;
use crate::state::{Inner, StopReason};

impl Inner {
    pub(crate) async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.heartbeat_every) => {}
            }
            self.beat().await;
            self.registry_beat(self.health.state()).await;
        }
    }

    async fn beat(&self) {
        let leases: Vec<LeaseRef> = self.held().values().map(|h| h.lease.clone()).collect();
        if leases.is_empty() {
            return;
        }
        let refs: Vec<&LeaseRef> = leases.iter().collect();
        let sent = Instant::now();
        let states = match self.queue.heartbeat(&refs, self.config.lease_ttl).await {
            Ok(states) => states,
            Err(error) => {
                // The leases are not renewed: the watchdog stops their handlers before they
                // could expire (self-fencing), and their commits are fenced in any case.
                tracing::warn!(%error, held = leases.len(), "lease heartbeat failed");
                return;
            }
        };
        let mut held = self.held();
        for (lease, state) in leases.iter().zip(states) {
            let job = held.get_mut(&lease.job_id).filter(|h| h.lease == *lease);
            match state {
                // Logged even when the job already left `held`: its outcome write may still be
                // on its way, and will be fenced out too.
                LeaseState::Lost => {
                    tracing::warn!(job_id = %lease.job_id, during = "heartbeat", "lease lost");
                    if let Some(job) = job {
                        job.stop(StopReason::LeaseLost);
                    }
                }
                LeaseState::Held { cancel_requested } => {
                    let Some(job) = job else { continue };
                    job.renewed_at = sent;
                    if cancel_requested {
                        tracing::info!(job_id = %lease.job_id, kind = job.kind, "cancel requested");
                        job.stop(StopReason::CancelRequested);
                    }
                }
            }
        }
    }

    /// Touches this worker's registry record and measures the clock skew from the server's stamp;
    /// returns that stamp.
    pub(crate) async fn touch_registry(&self, state: &str) -> Option<DateTime> {
        let before = DateTime::now().timestamp_millis();
        match WorkerRecord::touch(&self.db, &self.id, state).await {
            Ok(Some(server)) => {
                let after = DateTime::now().timestamp_millis();
                let local = before + (after - before) / 2;
                let (skew, verdict) = self.clock.measured(local, server.timestamp_millis());
                self.metrics.set_clock_skew(skew);
                let ttl_secs = self.config.lease_ttl.as_secs_f64();
                match verdict {
                    SkewVerdict::Fine => {}
                    SkewVerdict::Warn => tracing::warn!(
                        skew_seconds = skew,
                        lease_ttl_seconds = ttl_secs,
                        "this host's clock is off the database server's by more than a tenth of the lease TTL"
                    ),
                    SkewVerdict::RefuseClaims => tracing::error!(
                        skew_seconds = skew,
                        lease_ttl_seconds = ttl_secs,
                        "this host's clock is off the database server's by more than half the lease TTL; not claiming until it is fixed"
                    ),
                }
                return Some(server);
            }
            Ok(None) => tracing::warn!("this worker's registry record is missing"),
            Err(error) => tracing::warn!(%error, "worker registry heartbeat failed"),
        }
        None
    }
}
