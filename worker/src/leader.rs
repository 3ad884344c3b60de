//! The fleet's leader: the one worker that runs the duties whose result is the same whoever runs
//! them (the queue's depth sample, the pruner, the registry's sweep and live count), so that a
//! fleet of a thousand workers pays for them once instead of a thousand times.
//!
//! The leader is the running worker with the smallest id among those whose registry record the
//! database server stamped within two heartbeats. Every worker decides it at each heartbeat from
//! one indexed read, right after touching its own record, and compares server stamps only, so
//! hosts' clocks play no part. There is no lease and no extra write: the duties are idempotent,
//! so two leaders for a moment (a handover seen at different beats) cost a repeated pass and
//! nothing else. A leader that dies or starts draining is out of the running one stale window
//! later, and the next worker takes over at its following beat: within three heartbeats (the
//! lease TTL, 30 s by default).

use std::future::Future;
use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{DateTime, doc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::registry::{COLLECTION, WorkerRecord, count_live_workers};
use crate::state::Inner;

/// Whether this worker leads the fleet, as decided at its last heartbeat.
pub type Leadership = watch::Receiver<bool>;

/// How many heartbeats a leader may miss before another worker takes over.
pub(crate) const BEATS_TO_STALE: u32 = 2;

/// The id of the worker that leads, as the server saw the registry at `server_now`: the smallest
/// id among running workers stamped within `stale_after`.
pub(crate) async fn leader(
    db: &Database,
    server_now: DateTime,
    stale_after: Duration,
) -> mongodb::error::Result<Option<String>> {
    let since = DateTime::from_millis(
        server_now
            .timestamp_millis()
            .saturating_sub(stale_after.as_millis().min(i64::MAX as u128) as i64),
    );
    let leader = db
        .collection::<WorkerRecord>(COLLECTION)
        .find_one(doc! {"state": "running", "server_seen_at": {"$gte": since}})
        .sort(doc! {"state": 1, "_id": 1})
        .await?;
    Ok(leader.map(|record| record.id))
}

impl Inner {
    /// Touches this worker's registry record, decides whether it leads the fleet, and if it
    /// does, runs the registry's own fleet-wide duties: the sweep and the live count.
    pub(crate) async fn registry_beat(&self, state: &str) {
        let server_now = self.touch_registry(state).await;
        if !self.decide_leadership(server_now).await {
            return;
        }
        if let Err(error) = WorkerRecord::sweep(
            &self.db,
            self.config.registry_stale_after,
            self.config.registry_retention,
        )
        .await
        {
            tracing::warn!(%error, "sweeping the worker registry failed");
        }
        match count_live_workers(&self.db, self.config.registry_stale_after).await {
            Ok(live) => self.metrics.set_live_workers(live),
            Err(error) => tracing::warn!(%error, "counting live workers failed"),
        }
    }

    /// Whether this worker leads, from the registry as the server saw it at `server_now` (none
    /// when this worker's own touch failed: it then steps back rather than lead blind).
    async fn decide_leadership(&self, server_now: Option<DateTime>) -> bool {
        let leads = match server_now {
            None => false,
            Some(now) => {
                let stale_after = self.config.heartbeat_every * BEATS_TO_STALE;
                match leader(&self.db, now, stale_after).await {
                    Ok(leader) => leader.as_deref() == Some(self.id.as_str()),
                    Err(error) => {
                        tracing::warn!(%error, "reading the fleet's leader failed");
                        false
                    }
                }
            }
        };
        let changed = self.leadership.send_if_modified(|current| {
            let changed = *current != leads;
            *current = leads;
            changed
        });
        self.metrics.set_leader(leads);
        if changed && leads {
            tracing::info!(worker = %self.id, "leading the fleet-wide duties");
        } else if changed {
            tracing::info!(worker = %self.id, "no longer leading the fleet-wide duties");
            self.metrics.forget_live_workers();
        }
        leads
    }
}

/// Runs `duty` while `leadership` says this worker leads, until `shutdown`: started on gaining
/// leadership, cancelled on losing it, and then `on_lost` runs, so that what the duty reported
/// (a gauge) does not outlive it and stand beside the new leader's figure.
pub async fn while_leading<D, F>(
    mut leadership: Leadership,
    shutdown: CancellationToken,
    duty: D,
    on_lost: impl Fn(),
) where
    D: Fn(CancellationToken) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        if leadership.wait_for(|leads| *leads).await.is_err() {
            return;
        }
        let term = shutdown.child_token();
        let running = tokio::spawn(duty(term.clone()));
        tokio::select! {
            _ = shutdown.cancelled() => {
                term.cancel();
                let _ = running.await;
                return;
            }
            closed = async { leadership.wait_for(|leads| !*leads).await.is_err() } => {
                term.cancel();
                let _ = running.await;
                on_lost();
                if closed {
                    return;
                }
            }
        }
    }
}
