//! The worker: claims jobs of its kinds within its concurrency limits, runs each under a lease,
//! and writes the outcome through the queue's fenced calls.
//!
//! The claim loop claims again at once after work; when a claim finds nothing it waits on a
//! wake-up (change stream) or a timer that stays short while work was recent and then doubles up
//! to `poll_max`. It may lease a few jobs ahead of its free slots (`claim_ahead`); those wait for
//! a slot in claim order (`slots`). On shutdown it stops claiming, gives back the jobs still
//! waiting, lets running jobs finish within `grace`, then cancels the rest and releases their
//! leases so other workers take them at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document};
use sv0_queue::{Candidate, ClaimRequest, Claimed, LeaseRef, Queue};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::claim_ahead::ClaimAhead;
use crate::completions::Completions;
use crate::registry::WorkerRecord;
use crate::slots::Slots;
use crate::{HandlerSet, Health};

/// How a worker runs. `WorkerConfig::new` gives production defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once, over all kinds.
    pub concurrency: usize,
    /// Tighter limits for some kinds.
    pub kind_limits: HashMap<String, usize>,
    /// A lease's time to live; heartbeats renew it every `heartbeat_every`.
    pub lease_ttl: Duration,
    pub heartbeat_every: Duration,
    /// The idle poll starts at `poll_min`, stays there for `busy_window` after the last claimed
    /// job, then doubles up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub busy_window: Duration,
    /// Watch the jobs collection for wake-ups where the server offers change streams.
    pub change_streams: bool,
    /// Candidates fetched per sorted query, claimed over several claims while younger than
    /// `prefetch_max_age` (which bounds how long a newer, higher-priority job can be passed over).
    pub prefetch: usize,
    pub prefetch_max_age: Duration,
    /// At most this many jobs leased beyond the running ones, and only as many as the worker
    /// expects to start within `claim_ahead_horizon` (see `claim_ahead`); 0 turns it off.
    pub claim_ahead_max: usize,
    pub claim_ahead_horizon: Duration,
    /// How long a draining worker lets running jobs finish before it cancels them.
    pub grace: Duration,
}

impl WorkerConfig {
    pub fn new(concurrency: usize) -> WorkerConfig {
        let lease_ttl = Duration::from_secs(30);
        let claim_ahead_max = 256;
        WorkerConfig {
            concurrency,
            kind_limits: HashMap::new(),
            lease_ttl,
            heartbeat_every: lease_ttl / 3,
            poll_min: Duration::from_millis(5),
            poll_max: Duration::from_secs(1),
            busy_window: Duration::from_secs(1),
            change_streams: true,
            prefetch: ((concurrency + claim_ahead_max) * 2).clamp(32, 1024),
            prefetch_max_age: Duration::from_millis(250),
            claim_ahead_max,
            claim_ahead_horizon: Duration::from_millis(250),
            grace: Duration::from_secs(30),
        }
    }
}

/// Why a running job's token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    LeaseLost,
    CancelRequested,
    Shutdown,
    /// The worker released the lease itself, with others in one write: the task writes nothing.
    GivenBack,
}

/// A job this worker holds a lease on: running, waiting for a slot, or writing its outcome.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) lease: LeaseRef,
    pub(crate) kind: String,
    pub(crate) cancel: CancellationToken,
    pub(crate) stop: Arc<OnceLock<StopReason>>,
    /// Set once the job has a slot and its handler runs.
    pub(crate) started: Arc<AtomicBool>,
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
}

impl Inner {
    pub(crate) fn held(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Held>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker process's runtime.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl Worker {
    /// A worker serving every kind in `handlers`, under a fresh worker id
    /// (`host-pid-nonce`, unique to this process's lifetime).
    pub fn new(queue: Queue, db: Database, handlers: HandlerSet, config: WorkerConfig) -> Worker {
        let host = host_name();
        let id = format!("{host}-{}-{}", std::process::id(), ObjectId::new().to_hex());
        Worker {
            inner: Arc::new(Inner {
                id,
                queue,
                db,
                handlers,
                held: Mutex::new(HashMap::new()),
                slots: Slots::new(config.concurrency),
                claim_ahead: ClaimAhead::new(config.claim_ahead_max, config.claim_ahead_horizon),
                config,
                wake: Arc::new(Notify::new()),
                health: Health::default(),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The worker's health, for the status server.
    pub fn health(&self) -> Health {
        self.inner.health.clone()
    }

    /// Runs until `shutdown` fires, then drains. Returns once every job it held has finished or
    /// been released.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let inner = self.inner.clone();
        anyhow::ensure!(
            !inner.handlers.kinds().is_empty(),
            "the worker has no job kinds to serve"
        );
        anyhow::ensure!(
            inner.config.concurrency > 0,
            "concurrency must be at least 1"
        );
        let record = WorkerRecord {
            id: inner.id.clone(),
            host: host_name(),
            pid: std::process::id(),
            kinds: inner.handlers.kinds(),
            concurrency: inner.config.concurrency as i64,
            state: "running".into(),
            started_at: DateTime::now(),
            last_seen_at: DateTime::now(),
        };
        record.save(&inner.db).await?;
        tracing::info!(worker = %inner.id, kinds = ?record.kinds, concurrency = inner.config.concurrency, "worker started");

        let background = CancellationToken::new();
        tokio::spawn(inner.clone().heartbeat_loop(background.clone()));
        if inner.config.change_streams {
            tokio::spawn(crate::wakeup::watch_jobs(
                inner.queue_collection(),
                inner.wake.clone(),
                background.clone(),
            ));
        }
        let completions = Completions::start(inner.queue.clone());
        let mut tasks = JoinSet::new();
        inner.claim_loop(&completions, &mut tasks, &shutdown).await;

        inner.health.set_state("draining");
        let _ = WorkerRecord::touch(&inner.db, &inner.id, "draining").await;
        let given_back = inner.give_back_waiting().await;
        tracing::info!(worker = %inner.id, held = inner.held().len(), given_back, "draining");
        if tokio::time::timeout(inner.config.grace, drain(&mut tasks))
            .await
            .is_err()
        {
            let held = inner.held();
            tracing::warn!(
                cancelled = held.len(),
                "grace period over; cancelling and releasing the rest"
            );
            for job in held.values() {
                job.stop(StopReason::Shutdown);
            }
        }
        drain(&mut tasks).await;
        background.cancel();
        inner.health.set_state("stopped");
        let _ = WorkerRecord::touch(&inner.db, &inner.id, "stopped").await;
        tracing::info!(worker = %inner.id, "worker stopped");
        Ok(())
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

impl Inner {
    fn queue_collection(&self) -> mongodb::Collection<Document> {
        self.queue.collection()
    }

    async fn claim_loop(
        self: &Arc<Self>,
        completions: &Completions,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        let mut idle_delay = self.config.poll_min;
        let mut last_work: Option<Instant> = None;
        let mut candidates = Candidates::default();
        while !shutdown.is_cancelled() {
            self.health.beat();
            while tasks.try_join_next().is_some() {}
            let Some((kinds, limit)) = self.free_slots() else {
                tokio::select! {
                    _ = self.slots.one_left() => {}
                    _ = shutdown.cancelled() => {}
                    // A lost notification must not stall the loop.
                    _ = tokio::time::sleep(self.config.poll_max) => {}
                }
                continue;
            };
            if candidates.stale(self.config.prefetch_max_age) {
                match self
                    .queue
                    .candidates(&self.handlers.kinds(), self.config.prefetch)
                    .await
                {
                    Ok(ids) => candidates.refill(ids),
                    Err(error) => {
                        tracing::warn!(%error, "fetching claim candidates failed");
                        idle_delay = self.config.poll_max;
                    }
                }
            }
            let batch = candidates.take(limit, fastrand::usize(..));
            if !batch.is_empty() {
                let request = ClaimRequest {
                    owner: self.id.clone(),
                    kinds,
                    limit,
                    lease_ttl: self.config.lease_ttl,
                };
                match self.queue.claim_candidates(&request, &batch).await {
                    Ok(claimed) => {
                        if !claimed.is_empty() {
                            last_work = Some(Instant::now());
                            idle_delay = self.config.poll_min;
                        }
                        for job in claimed {
                            self.start(job, completions, tasks);
                        }
                        // Candidates may remain, or others took these: look again at once.
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "claim failed");
                        idle_delay = self.config.poll_max;
                    }
                }
            }
            let recently_busy = last_work.is_some_and(|at| at.elapsed() < self.config.busy_window);
            let wait = if recently_busy {
                self.config.poll_min
            } else {
                idle_delay = (idle_delay * 2).min(self.config.poll_max);
                idle_delay
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// The kinds with room and how many jobs to claim, or `None` when the worker should wait for
    /// more of its jobs to finish. Room is the slots plus the jobs to lease ahead, less the jobs
    /// in line or running; kinds with a limit of their own get no lease ahead, and count every job
    /// of theirs the worker holds. A busy worker claims only once half its room is
    /// free: each claim scans the queue, so claiming one job per freed slot would pay a scan per
    /// job (on the stand, a scan of the whole collection).
    fn free_slots(&self) -> Option<(Vec<String>, usize)> {
        let held = self.held();
        let room = self.config.concurrency + self.claim_ahead.jobs(self.config.concurrency);
        let occupied = self.slots.occupied();
        let free = room.saturating_sub(occupied);
        let threshold = room.div_ceil(2);
        if free == 0 || (occupied > 0 && free < threshold) {
            return None;
        }
        let mut limit = free;
        let mut kinds = Vec::new();
        for kind in self.handlers.kinds() {
            match self.config.kind_limits.get(&kind) {
                Some(&max) => {
                    let running = held.values().filter(|h| h.kind == kind).count();
                    if running < max {
                        limit = limit.min(max - running);
                        kinds.push(kind);
                    }
                }
                None => kinds.push(kind),
            }
        }
        (!kinds.is_empty()).then_some((kinds, limit))
    }

    /// Gives back the jobs leased ahead that have no slot yet, at once and in one write, so other
    /// workers can take them; returns how many were released. A job stopped for another reason
    /// first is left to its own task.
    async fn give_back_waiting(&self) -> u64 {
        let mut leases = Vec::new();
        for job in self.held().values() {
            if !job.started.load(Ordering::Acquire) && job.stop(StopReason::GivenBack) {
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

    /// Lines the job up for a slot and spawns its task; call in claim order.
    fn start(self: &Arc<Self>, job: Claimed, completions: &Completions, tasks: &mut JoinSet<()>) {
        let cancel = CancellationToken::new();
        let stop = Arc::new(OnceLock::new());
        let started = Arc::new(AtomicBool::new(false));
        self.held().insert(
            job.lease.job_id,
            Held {
                lease: job.lease.clone(),
                kind: job.kind().to_string(),
                cancel: cancel.clone(),
                stop: stop.clone(),
                started: started.clone(),
            },
        );
        let place = self.slots.line_up();
        let inner = self.clone();
        let completions = completions.clone();
        tasks.spawn(async move {
            let id = job.lease.job_id;
            let run = crate::job_task::Run {
                job,
                place,
                cancel,
                stop,
                started,
            };
            inner.run_job(run, completions).await;
            inner.held().remove(&id);
            inner.slots.wake_claimer();
        });
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Claim candidates from one sorted query.
#[derive(Debug, Default)]
struct Candidates {
    list: VecDeque<Candidate>,
    fetched_at: Option<Instant>,
}

impl Candidates {
    fn stale(&self, max_age: Duration) -> bool {
        self.list.is_empty() || self.fetched_at.is_none_or(|at| at.elapsed() > max_age)
    }

    fn refill(&mut self, list: Vec<Candidate>) {
        self.list = list.into();
        self.fetched_at = Some(Instant::now());
    }

    /// Takes up to `n` candidates for one claim: a whole batch of `n` from the run of candidates
    /// that share the head's priority, the `pick`-th batch modulo their number. Workers fetch the
    /// same sorted list; taking from its front, they would race for the same jobs in lockstep,
    /// and each lost race costs a claim. A random pick spreads them apart while priority order
    /// still holds between priorities (within one, order between workers is loose anyway).
    fn take(&mut self, n: usize, pick: usize) -> Vec<ObjectId> {
        let Some(head) = self.list.front().map(|c| c.priority) else {
            return Vec::new();
        };
        let n = n.max(1);
        let same_priority = self.list.iter().take_while(|c| c.priority == head).count();
        let batches = (same_priority / n).max(1);
        let start = (pick % batches) * n;
        let end = (start + n).min(self.list.len());
        self.list.drain(start..end).map(|c| c.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(priorities: &[i32]) -> (Candidates, Vec<ObjectId>) {
        let list: Vec<Candidate> = priorities
            .iter()
            .map(|&priority| Candidate {
                id: ObjectId::new(),
                priority,
            })
            .collect();
        let ids = list.iter().map(|c| c.id).collect();
        let mut candidates = Candidates::default();
        candidates.refill(list);
        (candidates, ids)
    }

    #[test]
    fn a_take_stays_within_the_head_priority() {
        let (mut candidates, ids) = list(&[9, 5, 5, 5, 5, 1]);
        assert_eq!(
            candidates.take(1, 7),
            ids[..1],
            "the 9 alone heads the list"
        );
        assert_eq!(candidates.take(2, 1), ids[3..5], "second batch of the 5s");
        assert_eq!(candidates.take(2, 0), ids[1..3], "first batch of the 5s");
        assert_eq!(candidates.take(2, 3), ids[5..], "the 1 is all that is left");
        assert!(candidates.take(2, 0).is_empty());
    }

    #[test]
    fn different_picks_take_disjoint_batches() {
        let (mut a, ids) = list(&[0; 64]);
        let mut b = Candidates::default();
        b.refill(a.list.iter().copied().collect());
        let first = a.take(16, 0);
        let second = b.take(16, 1);
        assert_eq!(first, ids[..16]);
        assert_eq!(second, ids[16..32]);
    }
}
