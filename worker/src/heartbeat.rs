//! The heartbeat duty: every `heartbeat_every`, one fenced write extends every lease this worker
//! holds and tells which were lost or asked to cancel; their handlers' tokens fire. The worker's
//! registry record is touched in the same beat.

use std::sync::Arc;

use sv0_queue::{LeaseRef, LeaseState};
use tokio_util::sync::CancellationToken;

use crate::registry::WorkerRecord;
use crate::runtime::{Inner, StopReason};

impl Inner {
    pub(crate) async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.heartbeat_every) => {}
            }
            self.beat().await;
            if let Err(error) = WorkerRecord::touch(&self.db, &self.id, self.health.state()).await {
                tracing::warn!(%error, "worker registry heartbeat failed");
            }
        }
    }

    async fn beat(&self) {
        let leases: Vec<LeaseRef> = self.held().values().map(|h| h.lease.clone()).collect();
        if leases.is_empty() {
            return;
        }
        let refs: Vec<&LeaseRef> = leases.iter().collect();
        let states = match self.queue.heartbeat(&refs, self.config.lease_ttl).await {
            Ok(states) => states,
            Err(error) => {
                // Handlers keep running: their commits are fenced, so a lease that expired while
                // the database was away costs a rerun elsewhere, never a double commit.
                tracing::warn!(%error, held = leases.len(), "lease heartbeat failed");
                return;
            }
        };
        let held = self.held();
        for (lease, state) in leases.iter().zip(states) {
            let job = held.get(&lease.job_id);
            match state {
                // Logged even when the job already left `held`: its outcome write may still be
                // on its way, and will be fenced out too.
                LeaseState::Lost => {
                    tracing::warn!(job_id = %lease.job_id, during = "heartbeat", "lease lost");
                    if let Some(job) = job {
                        job.stop(StopReason::LeaseLost);
                    }
                }
                LeaseState::Held {
                    cancel_requested: true,
                } => {
                    if let Some(job) = job {
                        tracing::info!(job_id = %lease.job_id, kind = job.kind, "cancel requested");
                        job.stop(StopReason::CancelRequested);
                    }
                }
                LeaseState::Held { .. } => {}
            }
        }
    }
}
