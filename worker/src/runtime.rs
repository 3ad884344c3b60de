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
//!
//! This file owns the `Worker`, its claim loop and its drain. What to claim is `candidates`'s,
//! the settings are `config`'s, one job's run is `job_task`'s, and the state they share is
//! `state`'s: those must not use this module, so that dependencies point one way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document};
use sv0_queue::{ClaimRequest, Claimed, Queue};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::candidates::Candidates;
use crate::claim_ahead::ClaimAhead;
use crate::clock::Clock;
use crate::config::WorkerConfig;
use crate::job_task::Writes;
use crate::registry::WorkerRecord;
use crate::slots::Slots;
use crate::state::{Held, Inner, Phase, StopReason};
use crate::{HandlerSet, Health, WorkerMetrics};

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
                leadership: tokio::sync::watch::Sender::new(false),
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

    /// Whether this worker leads the fleet-wide duties, kept current by its heartbeat: hand it to
    /// [`crate::while_leading`] with each such duty.
    pub fn leadership(&self) -> crate::Leadership {
        self.inner.leadership.subscribe()
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
        inner.registry_beat("running").await;
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
        inner.registry_beat("draining").await;
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

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}
