//! The state a worker's duties share: the jobs it holds (`Held`), where each stands (`Phase`),
//! why one was stopped (`StopReason`), and the worker's shared `Inner`.
//!
//! The claim loop, the job tasks, the heartbeat and the watchdog all read and stop held jobs, so
//! these types live apart from all of them; giving back jobs that wait for a slot is here too,
//! since both the drain and the watchdog do it. It must not use the modules that drive this state
//! (`runtime`, `job_task`, `candidates`, `heartbeat`, `watchdog`): they import it, and an import
//! back would close a circle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use sv0_queue::{LeaseRef, Queue};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::claim_ahead::ClaimAhead;
use crate::clock::Clock;
use crate::config::WorkerConfig;
use crate::slots::Slots;
use crate::{HandlerSet, Health, WorkerMetrics};

/// Why a running job's token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// A heartbeat found the lease gone, or the worker could not renew it in time (self-fenced).
    LeaseLost,
    CancelRequested,
    Shutdown,
    /// The worker released the lease itself, with others in one write: the task writes nothing.
    GivenBack,
    /// The attempt ran past its time bound.
    TimedOut,
}

/// Where a held job is: waiting for a slot, started, or given back unstarted. Starting and giving
/// back race (a slot frees as the drain gives waiting jobs back); exactly one of them wins, so a
/// job given back never has its handler polled.
#[derive(Debug, Default)]
pub(crate) struct Phase(AtomicU8);

impl Phase {
    const WAITING: u8 = 0;
    const STARTED: u8 = 1;
    const GIVEN_BACK: u8 = 2;

    fn move_from_waiting(&self, to: u8) -> bool {
        self.0
            .compare_exchange(Self::WAITING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// True when the job may run: it was still waiting, and is now started.
    pub(crate) fn start(&self) -> bool {
        self.move_from_waiting(Self::STARTED)
    }

    /// True when the job may be given back: it was still waiting, and will never start.
    pub(crate) fn give_back(&self) -> bool {
        self.move_from_waiting(Self::GIVEN_BACK)
    }

    pub(crate) fn waiting(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::WAITING
    }
}

/// A job this worker holds a lease on: running, waiting for a slot, or writing its outcome.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) lease: LeaseRef,
    pub(crate) kind: String,
    pub(crate) cancel: CancellationToken,
    pub(crate) stop: Arc<OnceLock<StopReason>>,
    pub(crate) phase: Arc<Phase>,
    /// When the claim that leased it was sent.
    pub(crate) leased_at: Instant,
    /// When the last write that extended the lease (the claim, then each heartbeat) was sent:
    /// the lease runs at least `lease_ttl` from then.
    pub(crate) renewed_at: Instant,
}

impl Held {
    /// Fires the job's token; the first reason given is the one that counts. Returns whether
    /// this one did.
    pub(crate) fn stop(&self, reason: StopReason) -> bool {
        let first = self.stop.set(reason).is_ok();
        self.cancel.cancel();
        first
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) id: String,
    pub(crate) queue: Queue,
    pub(crate) db: Database,
    pub(crate) handlers: HandlerSet,
    pub(crate) config: WorkerConfig,
    pub(crate) held: Mutex<HashMap<ObjectId, Held>>,
    pub(crate) slots: Slots,
    pub(crate) claim_ahead: ClaimAhead,
    pub(crate) wake: Arc<Notify>,
    pub(crate) health: Health,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) clock: Clock,
    /// Whether this worker leads the fleet-wide duties; decided at each registry heartbeat.
    pub(crate) leadership: tokio::sync::watch::Sender<bool>,
}

impl Inner {
    pub(crate) fn held(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Held>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives back, at once and in one write, the jobs leased ahead that have no slot yet and
    /// match `which`, so other workers can take them; returns how many were released. A job
    /// stopped for another reason first is left to its own task.
    pub(crate) async fn give_back(&self, which: impl Fn(&Held) -> bool) -> u64 {
        let mut leases = Vec::new();
        for job in self.held().values() {
            if which(job) && job.phase.give_back() && job.stop(StopReason::GivenBack) {
                leases.push(job.lease.clone());
            }
        }
        if leases.is_empty() {
            return 0;
        }
        let refs: Vec<&LeaseRef> = leases.iter().collect();
        match self.queue.release(&refs).await {
            Ok(released) => released,
            Err(error) => {
                tracing::warn!(%error, waiting = leases.len(), "giving back the waiting jobs failed; their leases will expire");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job given back while leased ahead used to be able to start anyway (its slot came free
    /// between the give-back's check and its stop), and its handler was polled. Starting and
    /// giving back are now one atomic step each: exactly one of them wins.
    #[test]
    fn a_job_either_starts_or_is_given_back_never_both() {
        for _ in 0..1_000 {
            let phase = Arc::new(Phase::default());
            let giver = {
                let phase = phase.clone();
                std::thread::spawn(move || phase.give_back())
            };
            let started = phase.start();
            let given_back = giver.join().unwrap();
            assert!(
                started != given_back,
                "started {started}, given back {given_back}"
            );
            assert!(!phase.waiting());
        }
    }
}
