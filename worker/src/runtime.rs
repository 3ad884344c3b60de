//! The worker: claims jobs of its kinds within its concurrency limits, runs each under a lease,
//! and writes the outcome through the queue's fenced calls.
//!
//! The claim loop claims again at once after work; when a claim finds nothing, or wins nothing, it
//! waits on a wake-up (change stream) or a timer that stays short while work was recent and then
//! doubles up to `poll_max`. It asks only for kinds with room under their limits, so a kind at its
//! limit can neither make it spin nor hide other kinds' jobs. It may lease a few jobs ahead of its
//! free slots (`claim_ahead`); those wait for a slot in claim order (`slots`), and are given back
//! if they have not started within four horizons (`watchdog`). On shutdown it stops claiming,
//! gives back the jobs still waiting, lets running jobs finish within `grace`, then cancels the
//! rest and releases their leases so other workers take them at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document};
use sv0_queue::{Candidate, ClaimRequest, Claimed, LeaseRef, Queue};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batcher::Batcher;
use crate::claim_ahead::ClaimAhead;
use crate::clock::Clock;
use crate::registry::WorkerRecord;
use crate::slots::Slots;
use crate::{HandlerSet, Health, WorkerMetrics};

/// The most jobs one worker runs at once; beyond it, a typo rather than a plan.
pub const MAX_CONCURRENCY: usize = 10_000;

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
    /// The longest one attempt of a kind may run before it is cancelled and fails as timed out;
    /// a job's own `timeout` takes precedence.
    pub kind_timeouts: HashMap<String, Duration>,
    /// A lease this worker has not renewed for `lease_ttl − self_fence_margin` is treated as
    /// lost and its handler stopped, before any reaper can hand the job to another worker.
    pub self_fence_margin: Duration,
    /// A first run records its start (spending its attempt) once it has run this long, or with
    /// its outcome if it ends sooner: short jobs pay no write of their own for it. A job that
    /// ran before records its start before its handler runs.
    pub start_linger: Duration,
    /// How long the completion batcher, when idle, waits for more completions before writing.
    pub completion_linger: Duration,
    /// A `workers` record not seen for this long is marked `gone`; stopped and gone records are
    /// deleted `registry_retention` after they were last seen.
    pub registry_stale_after: Duration,
    pub registry_retention: Duration,
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
            poll_max: Duration::from_millis(100),
            busy_window: Duration::from_secs(1),
            change_streams: true,
            prefetch: ((concurrency + claim_ahead_max) * 2).clamp(32, 1024),
            prefetch_max_age: Duration::from_millis(250),
            claim_ahead_max,
            claim_ahead_horizon: Duration::from_millis(250),
            grace: Duration::from_secs(30),
            kind_timeouts: HashMap::new(),
            self_fence_margin: lease_ttl / 5,
            start_linger: Duration::from_millis(100),
            completion_linger: Duration::from_millis(1),
            registry_stale_after: Duration::from_secs(300),
            registry_retention: Duration::from_secs(24 * 3600),
        }
    }

    /// Checks the settings against each other; the message names the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.concurrency),
            "concurrency must be 1 to {MAX_CONCURRENCY}, got {}",
            self.concurrency
        );
        anyhow::ensure!(
            self.heartbeat_every < self.lease_ttl.saturating_sub(self.self_fence_margin),
            "the heartbeat ({:?}) must come well inside the lease TTL ({:?}) less the self-fence margin ({:?})",
            self.heartbeat_every,
            self.lease_ttl,
            self.self_fence_margin
        );
        anyhow::ensure!(
            !self.poll_min.is_zero(),
            "the idle poll floor must be above 0"
        );
        anyhow::ensure!(
            self.poll_max >= self.poll_min,
            "the idle poll cap must be at least its floor"
        );
        for (kind, &limit) in &self.kind_limits {
            anyhow::ensure!(limit > 0, "the limit for kind {kind:?} must be above 0");
        }
        for (kind, timeout) in &self.kind_timeouts {
            anyhow::ensure!(
                !timeout.is_zero(),
                "the timeout for kind {kind:?} must be above 0"
            );
        }
        Ok(())
    }
}

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
        let metrics = WorkerMetrics::default();
        metrics.set_slots_capacity(config.concurrency);
        metrics.start_kinds(handlers.kinds().iter().map(String::as_str));
        queue
            .metrics()
            .start_kinds(handlers.kinds().iter().map(String::as_str));
        Worker {
            inner: Arc::new(Inner {
                id,
                queue,
                db,
                handlers,
                held: Mutex::new(HashMap::new()),
                slots: Slots::new(config.concurrency, metrics.slots_busy()),
                claim_ahead: ClaimAhead::new(config.claim_ahead_max, config.claim_ahead_horizon),
                clock: Clock::new(config.lease_ttl),
                config,
                wake: Arc::new(Notify::new()),
                health: Health::default(),
                metrics,
            }),
        }
    }

    /// The worker's own series; register them once per process.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.inner.metrics
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
        inner.config.validate()?;
        let kinds = inner.handlers.kinds();
        for limited in inner
            .config
            .kind_limits
            .keys()
            .chain(inner.config.kind_timeouts.keys())
        {
            anyhow::ensure!(
                kinds.contains(limited),
                "a limit or timeout is set for kind {limited:?}, which this worker does not serve (it serves {kinds:?})"
            );
        }
        let record = WorkerRecord {
            id: inner.id.clone(),
            host: host_name(),
            pid: std::process::id(),
            kinds: inner.handlers.kinds(),
            concurrency: inner.config.concurrency as i64,
            state: "running".into(),
            started_at: DateTime::now(),
            last_seen_at: DateTime::now(),
            server_seen_at: None,
        };
        record.save(&inner.db).await?;
        inner.touch_registry("running").await;
        tracing::info!(worker = %inner.id, kinds = ?record.kinds, concurrency = inner.config.concurrency, "worker started");

        let background = CancellationToken::new();
        tokio::spawn(inner.clone().heartbeat_loop(background.clone()));
        tokio::spawn(inner.clone().watchdog_loop(background.clone()));
        if inner.config.change_streams {
            tokio::spawn(crate::wakeup::watch_jobs(
                inner.queue_collection(),
                inner.wake.clone(),
                background.clone(),
            ));
        }
        let writes = Writes::start(&inner);
        let mut tasks = JoinSet::new();
        inner.claim_loop(&writes, &mut tasks, &shutdown).await;

        inner.health.set_state("draining");
        inner.touch_registry("draining").await;
        let given_back = inner.give_back(|_| true).await;
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
        inner.touch_registry("stopped").await;
        tracing::info!(worker = %inner.id, "worker stopped");
        Ok(())
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while let Some(joined) = tasks.join_next().await {
        log_task_panic(joined);
    }
}

/// A job task catches its handler's panic; one that still panics is a bug in the runtime, and
/// its guard has already let the job go.
fn log_task_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(%error, "a job task panicked outside its handler");
    }
}

/// The batched holder writes a worker's job tasks share.
#[derive(Debug, Clone)]
pub(crate) struct Writes {
    pub(crate) completions: Batcher,
    pub(crate) starts: Batcher,
}

impl Writes {
    fn start(inner: &Inner) -> Writes {
        let queue = inner.queue.clone();
        let completions = Batcher::start(inner.config.completion_linger, move |jobs| {
            let queue = queue.clone();
            async move { queue.complete_many(&jobs.iter().collect::<Vec<_>>()).await }
        });
        let queue = inner.queue.clone();
        let starts = Batcher::start(Duration::ZERO, move |jobs| {
            let queue = queue.clone();
            async move { queue.record_starts(&jobs.iter().collect::<Vec<_>>()).await }
        });
        Writes {
            completions,
            starts,
        }
    }
}

/// Lets a job go when its task ends, however it ends (a panic unwinding included): the job leaves
/// `held`, so its lease is no longer heartbeated, and the claimer is woken for the freed room.
struct Release {
    inner: Arc<Inner>,
    id: ObjectId,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.inner.held().remove(&self.id);
        self.inner.slots.wake_claimer();
    }
}

impl Inner {
    fn queue_collection(&self) -> mongodb::Collection<Document> {
        self.queue.collection()
    }

    async fn claim_loop(
        self: &Arc<Self>,
        writes: &Writes,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        let mut idle_delay = self.config.poll_min;
        let mut last_work: Option<Instant> = None;
        let mut last_look = Instant::now();
        let mut candidates = Candidates::default();
        while !shutdown.is_cancelled() {
            self.health.beat();
            while let Some(joined) = tasks.try_join_next() {
                log_task_panic(joined);
            }
            let room = if self.clock.refuses_claims() {
                None
            } else {
                self.room(last_look.elapsed() >= self.config.poll_max)
            };
            let Some(room) = room else {
                tokio::select! {
                    _ = self.slots.one_left() => {}
                    _ = shutdown.cancelled() => {}
                    // A lost notification must not stall the loop.
                    _ = tokio::time::sleep(self.config.poll_max) => {}
                }
                continue;
            };
            last_look = Instant::now();
            if candidates.stale(self.config.prefetch_max_age, &room.kinds) {
                match self
                    .queue
                    .candidates(&room.kinds, self.config.prefetch)
                    .await
                {
                    Ok(list) => candidates.refill(list, &room.kinds),
                    Err(error) => {
                        tracing::warn!(%error, "fetching claim candidates failed");
                        idle_delay = self.config.poll_max;
                    }
                }
            }
            let ahead = |kind: &str| {
                if self.config.kind_limits.contains_key(kind) {
                    0
                } else {
                    self.claim_ahead.jobs(kind, self.config.concurrency)
                }
            };
            let batch = candidates.take(room.now, room.limit, ahead, fastrand::usize(..));
            if !batch.is_empty() {
                let request = ClaimRequest {
                    owner: self.id.clone(),
                    kinds: room.kinds,
                    limit: room.limit,
                    lease_ttl: self.config.lease_ttl,
                };
                let sent = Instant::now();
                match self.queue.claim_candidates(&request, &batch).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        last_work = Some(Instant::now());
                        idle_delay = self.config.poll_min;
                        for job in claimed {
                            self.start(job, sent, writes, tasks);
                        }
                        // Candidates may remain: claim again at once.
                        continue;
                    }
                    // Other workers took these: the list is stale. Look again after a pause,
                    // never at once, so that nothing can make this loop spin.
                    Ok(_) => candidates = Candidates::default(),
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

    /// What the worker may claim now, or `None` when it should wait for more of its jobs to
    /// finish. Room is the slots plus the most jobs any kind may lease ahead, less the jobs in
    /// line or running; a kind with a limit of its own counts every job of it the worker holds,
    /// and a kind at its limit is not asked for at all. A busy worker claims once half its room
    /// is free, or, when a run slot has no job even in line for it, once it has not looked for
    /// a poll cap (`patient`): each claim scans the queue, so claiming one job per freed slot of
    /// fast jobs would pay a scan per job (on the stand, a scan of the whole collection), while
    /// waiting for half the room would leave slots idle for as long as long jobs run in the
    /// others.
    fn room(&self, patient: bool) -> Option<Room> {
        let held = self.held();
        let concurrency = self.config.concurrency;
        let room = concurrency + self.claim_ahead.most(concurrency);
        let occupied = self.slots.occupied();
        let free = room.saturating_sub(occupied);
        let threshold = room.div_ceil(2);
        // A slot with no job in line for it has waited long enough once the worker is patient;
        // jobs leased ahead and waiting for slots are work already in hand.
        let idle_slot = occupied < concurrency;
        if free == 0 || (occupied > 0 && free < threshold && !(patient && idle_slot)) {
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
        (!kinds.is_empty()).then_some(Room {
            kinds,
            now: concurrency.saturating_sub(occupied),
            limit,
        })
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

    /// Lines the job up for a slot and spawns its task; call in claim order. `sent` is when the
    /// claim that leased it was sent.
    fn start(
        self: &Arc<Self>,
        job: Claimed,
        sent: Instant,
        writes: &Writes,
        tasks: &mut JoinSet<()>,
    ) {
        let cancel = CancellationToken::new();
        let stop = Arc::new(OnceLock::new());
        let phase = Arc::new(Phase::default());
        let id = job.lease.job_id;
        self.held().insert(
            id,
            Held {
                lease: job.lease.clone(),
                kind: job.kind().to_string(),
                cancel: cancel.clone(),
                stop: stop.clone(),
                phase: phase.clone(),
                leased_at: sent,
                renewed_at: sent,
            },
        );
        let place = self.slots.line_up();
        let release = Release {
            inner: self.clone(),
            id,
        };
        let writes = writes.clone();
        // Every line logged about this job, by the runtime or its handler, carries these (for a
        // pipeline stage, the group is its run).
        let span = tracing::info_span!(
            "job",
            job_id = %id,
            kind = job.kind(),
            tenant_id = job.job.tenant_id.as_deref(),
            group_id = job.job.group_id.as_deref(),
        );
        tasks.spawn(
            async move {
                let run = crate::job_task::Run {
                    job,
                    place,
                    cancel,
                    stop,
                    phase,
                };
                release.inner.run_job(run, writes).await;
                drop(release);
            }
            .instrument(span),
        );
    }
}

/// What one claim may take.
#[derive(Debug)]
struct Room {
    /// Kinds with room under their limits.
    kinds: Vec<String>,
    /// Free slots: jobs that start as soon as they are claimed.
    now: usize,
    /// The most jobs to claim, those leased ahead included.
    limit: usize,
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
    /// The kinds the query asked for.
    kinds: Vec<String>,
    fetched_at: Option<Instant>,
}

impl Candidates {
    /// True when the list must be fetched again: old, used up, or fetched for other kinds than
    /// `kinds` (a kind that regained room would be missing from it).
    fn stale(&mut self, max_age: Duration, kinds: &[String]) -> bool {
        if kinds.iter().any(|k| !self.kinds.contains(k)) {
            return true;
        }
        // Kinds at their limit now: their candidates wait in the queue, not in this list.
        self.list.retain(|c| kinds.contains(&c.kind));
        self.list.is_empty() || self.fetched_at.is_none_or(|at| at.elapsed() > max_age)
    }

    fn refill(&mut self, list: Vec<Candidate>, kinds: &[String]) {
        self.list = list.into();
        self.kinds = kinds.to_vec();
        self.fetched_at = Some(Instant::now());
    }

    /// Takes up to `limit` candidates for one claim: the first `now` as they come (they start at
    /// once), then only those whose kind may still be leased ahead (`ahead(kind)` of each kind).
    /// It starts at the `pick`-th batch of the run of candidates that share the head's priority,
    /// modulo their number. Workers fetch the same sorted list; taking from its front, they would
    /// race for the same jobs in lockstep, and each lost race costs a claim. A random pick spreads
    /// them apart while priority order still holds between priorities (within one, order between
    /// workers is loose anyway).
    fn take(
        &mut self,
        now: usize,
        limit: usize,
        ahead: impl Fn(&str) -> usize,
        pick: usize,
    ) -> Vec<ObjectId> {
        let Some(head) = self.list.front().map(|c| c.priority) else {
            return Vec::new();
        };
        let n = limit.max(1);
        let same_priority = self.list.iter().take_while(|c| c.priority == head).count();
        let batches = (same_priority / n).max(1);
        let start = (pick % batches) * n;
        let mut budgets: HashMap<String, usize> = HashMap::new();
        let mut now_left = now;
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.list.len());
        for (i, candidate) in self.list.drain(..).enumerate() {
            let mut take = || {
                if i < start || taken.len() == n {
                    return false;
                }
                if now_left > 0 {
                    now_left -= 1;
                    return true;
                }
                let budget = budgets
                    .entry(candidate.kind.clone())
                    .or_insert_with(|| ahead(&candidate.kind));
                let fits = *budget > 0;
                *budget = budget.saturating_sub(1);
                fits
            };
            if take() {
                taken.push(candidate.id);
            } else {
                kept.push_back(candidate);
            }
        }
        self.list = kept;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(kinds_and_priorities: &[(&str, i32)]) -> (Candidates, Vec<ObjectId>) {
        let list: Vec<Candidate> = kinds_and_priorities
            .iter()
            .map(|&(kind, priority)| Candidate {
                id: ObjectId::new(),
                kind: kind.to_string(),
                priority,
            })
            .collect();
        let ids = list.iter().map(|c| c.id).collect();
        let mut candidates = Candidates::default();
        candidates.refill(list, &["k".to_string(), "slow".to_string()]);
        (candidates, ids)
    }

    fn all(ahead: usize) -> impl Fn(&str) -> usize {
        move |_| ahead
    }

    /// Each rule of `validate`, at its boundary: the last accepted value passes, the first
    /// refused one fails naming its setting.
    #[test]
    fn a_config_is_refused_past_each_bound_naming_the_setting() {
        let refused = |change: &dyn Fn(&mut WorkerConfig), names: &str| {
            let mut config = WorkerConfig::new(8);
            change(&mut config);
            let error = config.validate().expect_err(names).to_string();
            assert!(error.contains(names), "{error:?} names {names:?}");
        };
        let accepted = |change: &dyn Fn(&mut WorkerConfig)| {
            let mut config = WorkerConfig::new(8);
            change(&mut config);
            config.validate().unwrap();
        };
        accepted(&|_| {});
        accepted(&|c| c.concurrency = 1);
        accepted(&|c| c.concurrency = MAX_CONCURRENCY);
        refused(&|c| c.concurrency = 0, "concurrency");
        refused(&|c| c.concurrency = MAX_CONCURRENCY + 1, "concurrency");
        // The heartbeat must come strictly before the lease TTL less the margin.
        accepted(&|c| {
            c.lease_ttl = Duration::from_secs(10);
            c.self_fence_margin = Duration::from_secs(2);
            c.heartbeat_every = Duration::from_millis(7_999);
        });
        refused(
            &|c| {
                c.lease_ttl = Duration::from_secs(10);
                c.self_fence_margin = Duration::from_secs(2);
                c.heartbeat_every = Duration::from_secs(8);
            },
            "heartbeat",
        );
        refused(&|c| c.poll_min = Duration::ZERO, "poll floor");
        accepted(&|c| {
            c.poll_min = Duration::from_millis(50);
            c.poll_max = Duration::from_millis(50);
        });
        refused(
            &|c| {
                c.poll_min = Duration::from_millis(50);
                c.poll_max = Duration::from_millis(49);
            },
            "poll cap",
        );
        accepted(&|c| {
            c.kind_limits.insert("k".into(), 1);
        });
        refused(
            &|c| {
                c.kind_limits.insert("k".into(), 0);
            },
            "limit for kind",
        );
        accepted(&|c| {
            c.kind_timeouts.insert("k".into(), Duration::from_millis(1));
        });
        refused(
            &|c| {
                c.kind_timeouts.insert("k".into(), Duration::ZERO);
            },
            "timeout for kind",
        );
    }

    #[test]
    fn a_take_stays_within_the_head_priority() {
        let (mut candidates, ids) =
            list(&[("k", 9), ("k", 5), ("k", 5), ("k", 5), ("k", 5), ("k", 1)]);
        assert_eq!(
            candidates.take(1, 1, all(0), 7),
            ids[..1],
            "the 9 alone heads the list"
        );
        assert_eq!(
            candidates.take(2, 2, all(0), 1),
            ids[3..5],
            "second batch of the 5s"
        );
        assert_eq!(
            candidates.take(2, 2, all(0), 0),
            ids[1..3],
            "first batch of the 5s"
        );
        assert_eq!(
            candidates.take(2, 2, all(0), 3),
            ids[5..],
            "the 1 is all that is left"
        );
        assert!(candidates.take(2, 2, all(0), 0).is_empty());
    }

    #[test]
    fn different_picks_take_disjoint_batches() {
        let (mut a, ids) = list(&[("k", 0); 64]);
        let mut b = Candidates::default();
        b.refill(a.list.iter().cloned().collect(), &a.kinds.clone());
        let first = a.take(16, 16, all(0), 0);
        let second = b.take(16, 16, all(0), 1);
        assert_eq!(first, ids[..16]);
        assert_eq!(second, ids[16..32]);
    }

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

    /// Beyond the free slots, only kinds that may be leased ahead are taken.
    #[test]
    fn jobs_leased_ahead_are_only_of_kinds_that_may_be() {
        let (mut candidates, ids) = list(&[("k", 0), ("slow", 0), ("k", 0), ("slow", 0), ("k", 0)]);
        let ahead = |kind: &str| if kind == "k" { 1 } else { 0 };
        let taken = candidates.take(1, 5, ahead, 0);
        assert_eq!(
            taken,
            vec![ids[0], ids[2]],
            "one to run now, one fast one ahead"
        );
        assert_eq!(candidates.list.len(), 3, "the rest stay candidates");
    }

    /// Candidates of a kind that reached its limit are dropped, and a kind that regained room
    /// makes the list stale.
    #[test]
    fn the_list_follows_the_kinds_with_room() {
        let (mut candidates, ids) = list(&[("slow", 0), ("k", 0)]);
        assert!(!candidates.stale(Duration::from_secs(60), &["k".to_string()]));
        assert_eq!(candidates.take(1, 1, all(0), 0), vec![ids[1]]);
        assert!(
            candidates.stale(Duration::from_secs(60), &["k".to_string()]),
            "only the limited kind's candidates were left: look again"
        );
        assert!(candidates.stale(Duration::from_secs(60), &["other".to_string()]));
    }
}
