//! The tick: claim the due scopes in batches, decide each one's due slots ([`crate::plan`]),
//! start the runs, record why each slot ran or not, and write each scope's new state back under
//! its claim. Between ticks the scheduler sleeps until the earliest scope is due, at most a tick
//! period.
//!
//! Order makes it safe to crash anywhere: runs are started before the scope's state moves on,
//! and a run's dedup key is its slot, so a tick replayed after a crash (or by another replica
//! once the claim expired) finds the runs already there instead of starting them again; and the
//! slots it recorded as decided stay decided (`keep_decisions`), so a replay that would now
//! decide a slot otherwise does not record it twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use sv0_domain::{Domain, ScanRun, ScanScope, ScopeSettlement, Trigger};
use sv0_pipeline::{Pipeline, PipelineError, Result, ScanStart};
use tokio_util::sync::CancellationToken;

use crate::metrics::{ReasonLabel, TriggerLabel};
use crate::plan::{self, ScopeState, Skip, SkipReason};
use crate::{SchedulerMetrics, SlotLog, SlotOutcome, slot_key};

/// A bound on claim rounds in one tick, against a database that keeps handing out candidates it
/// then refuses to claim.
const MAX_ROUNDS_PER_TICK: usize = 10_000;

/// The skipped ranges at most this long are checked slot by slot for a run an earlier tick
/// started and failed to record (one look-up each); a longer one (a scope far behind) is
/// recorded as planned.
const SKIPPED_SLOTS_CHECKED: u64 = 16;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Who holds the claims (host and process): shown on a claimed scope.
    pub owner: String,
    /// The longest sleep between ticks.
    pub tick: Duration,
    /// How long a claim holds a scope; a replica that dies holding one delays its scopes by
    /// this much at most.
    pub claim_lease: Duration,
    /// Scopes claimed per round trip.
    pub batch: usize,
    /// The shortest sleep between ticks (scopes held by another replica look due).
    pub min_sleep: Duration,
    /// How often a scope with a slot waiting for its previous run (`buffer_one`) is looked at.
    pub buffer_recheck: Duration,
}

impl SchedulerConfig {
    pub fn new(owner: impl Into<String>) -> SchedulerConfig {
        SchedulerConfig {
            owner: owner.into(),
            tick: Duration::from_secs(30),
            claim_lease: Duration::from_secs(60),
            batch: 500,
            min_sleep: Duration::from_millis(200),
            buffer_recheck: Duration::from_secs(5),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub scopes: u64,
    pub runs_created: u64,
    pub slots_skipped: u64,
    /// Scopes whose decision did not land (their claim had expired).
    pub claims_lost: u64,
    /// Scopes left for the next tick after a transient error.
    pub deferred: u64,
    /// Scopes whose stored schedule cannot be followed, taken out of the claims until edited.
    pub parked: u64,
}

pub struct Scheduler {
    pipeline: Arc<Pipeline>,
    slot_log: SlotLog,
    metrics: SchedulerMetrics,
    config: SchedulerConfig,
}

impl Scheduler {
    pub fn new(
        pipeline: Arc<Pipeline>,
        slot_log: SlotLog,
        metrics: SchedulerMetrics,
        config: SchedulerConfig,
    ) -> Scheduler {
        Scheduler {
            pipeline,
            slot_log,
            metrics,
            config,
        }
    }

    fn domain(&self) -> &Domain {
        self.pipeline.domain()
    }

    /// Ticks until `shutdown`, calling `beat` after every tick (the process's health). A failed
    /// tick is logged and counted; the next one retries its scopes (their claims are given
    /// back, or expire).
    pub async fn run(&self, shutdown: CancellationToken, beat: impl Fn()) {
        loop {
            let started = Instant::now();
            match self.tick(DateTime::now()).await {
                Ok(report) => {
                    if report.scopes > 0 {
                        tracing::debug!(?report, "tick");
                    }
                }
                Err(error) => {
                    self.metrics.tick_failures.inc();
                    tracing::warn!(%error, "scheduler tick failed");
                }
            }
            self.metrics.ticks.inc();
            beat();
            self.metrics
                .tick_duration
                .observe(started.elapsed().as_secs_f64());
            let sleep = self.sleep_until_due().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// How long to sleep: until the earliest scope is due, between `min_sleep` and `tick`.
    async fn sleep_until_due(&self) -> Duration {
        let next = match self.domain().suspended_tenants().await {
            Ok(suspended) => self.domain().next_due_at(&suspended).await.ok().flatten(),
            Err(_) => None,
        };
        let until = next.map_or(self.config.tick, |at| {
            let millis = at.timestamp_millis() - DateTime::now().timestamp_millis();
            Duration::from_millis(millis.max(0) as u64)
        });
        until.clamp(self.config.min_sleep, self.config.tick)
    }

    /// One tick at `now`: every due scope, in batches, until none is left unclaimed. Replicas
    /// ticking at once share the scopes: a round whose candidates another replica won goes on
    /// to the next ones.
    pub async fn tick(&self, now: DateTime) -> Result<TickReport> {
        let suspended = self.domain().suspended_tenants().await?;
        let mut report = TickReport::default();
        for _ in 0..MAX_ROUNDS_PER_TICK {
            let claimed = self
                .domain()
                .claim_due_scopes(
                    &self.config.owner,
                    now,
                    self.config.claim_lease,
                    self.config.batch,
                    &suspended,
                )
                .await?;
            if claimed.candidates == 0 {
                break;
            }
            let scopes = claimed.scopes;
            let Some(nonce) = scopes
                .first()
                .and_then(|s| s.claim.as_ref())
                .map(|c| c.nonce)
            else {
                // Every candidate went to another replica: on to the next ones.
                continue;
            };
            let count = scopes.len() as u64;
            report.scopes += count;
            self.metrics.scopes_claimed.inc_by(count);
            let deferred_before = report.deferred;
            let settlements = match self.decide_all(scopes, now, &mut report).await {
                Ok(settlements) => settlements,
                Err(error) => {
                    // Undecided scopes go back at once rather than after the lease.
                    if let Err(release) = self.domain().release_scopes(nonce).await {
                        tracing::warn!(%release, "giving claimed scopes back failed");
                    }
                    return Err(error);
                }
            };
            let landed = self.domain().settle_scopes(&settlements).await?;
            let lost = settlements.len() as u64 - landed.min(settlements.len() as u64);
            if lost > 0 {
                report.claims_lost += lost;
                self.metrics.claims_lost.inc_by(lost);
                tracing::warn!(
                    lost,
                    "scope decisions did not land: their claims expired mid-tick (another \
                     replica decides them again; their runs are not duplicated)"
                );
            }
            if report.deferred - deferred_before == count {
                // Nothing in this round could be decided (the database is struggling): the
                // deferred scopes are due again at once, so the next tick retries them.
                break;
            }
        }
        Ok(report)
    }

    /// Decides a round's claimed scopes: plans each one, starts every run the plans ask for
    /// together ([`Pipeline::start_scans`]: a few round trips for the whole round, not several
    /// per scope), records why each slot ran or not, and returns each scope's new state.
    async fn decide_all(
        &self,
        scopes: Vec<ScanScope>,
        now: DateTime,
        report: &mut TickReport,
    ) -> Result<Vec<ScopeSettlement>> {
        let pending: Vec<(String, ObjectId, DateTime)> = scopes
            .iter()
            .filter_map(|s| Some((s.tenant_id.clone(), s.id, s.next_run_at?)))
            .collect();
        let mut ahead = self.slot_log.decided_ahead(&pending).await?;
        let mut scopes = scopes;
        for scope in &mut scopes {
            if let Some(decided) = ahead.remove(&scope.id) {
                keep_decisions(scope, &decided)?;
            }
        }
        let previous: Vec<ObjectId> = scopes.iter().filter_map(|s| s.last_run_id).collect();
        let statuses = self.domain().run_statuses(&previous).await?;
        let mut settlements = Vec::with_capacity(scopes.len());
        let mut decisions = Vec::with_capacity(scopes.len());
        for scope in &scopes {
            let previous_running = scope
                .last_run_id
                .and_then(|id| statuses.get(&id))
                .is_some_and(|status| !status.is_finished());
            match self.plan_scope(scope, previous_running, now).await {
                Ok(decision) => decisions.push(decision),
                Err(error) if error.is_transient() => {
                    // Left as it was: due again at the next tick.
                    report.deferred += 1;
                    tracing::warn!(scope_id = %scope.id, tenant_id = %scope.tenant_id, %error,
                        "scope deferred to the next tick");
                    settlements.push(unchanged(scope));
                }
                Err(error) => {
                    // A stored schedule that no longer validates (written by hand, or by another
                    // version): parked until it is edited, so it cannot fail every tick.
                    report.parked += 1;
                    tracing::error!(scope_id = %scope.id, tenant_id = %scope.tenant_id, %error,
                        "the scope's schedule cannot be followed; parked until it is edited");
                    settlements.push(ScopeSettlement {
                        due_at: None,
                        ..unchanged(scope)
                    });
                }
            }
        }
        let starts = decisions
            .iter()
            .flat_map(|d| {
                d.starts.iter().map(|&(slot, _)| ScanStart {
                    scope: d.scope,
                    trigger: Trigger::Scheduled {
                        scope_id: d.scope.id,
                        slot,
                    },
                    dedup_key: Some(slot_key(d.scope.id, slot)),
                })
            })
            .collect();
        // A failure of the whole batch fails the tick: its scopes are given back, and the runs
        // it wrote are found again by their slots' keys.
        let mut started = self.pipeline.start_scans(starts).await?.into_iter();
        let mut outcomes = Vec::new();
        for decision in decisions {
            let results = started.by_ref().take(decision.starts.len()).collect();
            match self.settle(decision, results, now, &mut outcomes, report) {
                Ok(settlement) => settlements.push(settlement),
                Err((scope, error)) => {
                    report.deferred += 1;
                    tracing::warn!(scope_id = %scope.id, tenant_id = %scope.tenant_id, %error,
                        "scope deferred to the next tick");
                    settlements.push(unchanged(scope));
                }
            }
        }
        self.slot_log.record(&outcomes).await?;
        Ok(settlements)
    }

    /// Plans one claimed scope: which of its due slots to start, and which to skip and why.
    /// Nothing is started here.
    async fn plan_scope<'a>(
        &self,
        scope: &'a ScanScope,
        previous_running: bool,
        now: DateTime,
    ) -> Result<Decision<'a>> {
        let mut decision = Decision {
            scope,
            starts: Vec::new(),
            skips: Vec::new(),
            ran_before: Vec::new(),
            last_run_id: scope.last_run_id,
            next_run_at: None,
            buffered_slot: None,
        };
        let Some(schedule) = &scope.schedule else {
            // Unscheduled since it was found due: nothing is due any more.
            return Ok(decision);
        };
        let slots = schedule.slots()?;
        let state = ScopeState {
            next_run_at: scope.next_run_at,
            buffered_slot: scope.buffered_slot,
            previous_running,
        };
        let plan = plan::plan(schedule, &slots, state, now);
        for skip in &plan.skips {
            // A slot an earlier tick ran, whose record and settlement did not land: this tick
            // would skip it (for overlap, seeing the run before it as the previous one; or for
            // catch-up, with a newer slot due now). It ran; record it so, and skip the rest.
            let checked = skip.last.filter(|_| skip.count <= SKIPPED_SLOTS_CHECKED);
            let Some(last) = checked else {
                decision.skips.push(skip.clone());
                continue;
            };
            let mut not_run = Vec::new();
            for slot in slots.between(skip.first, last, SKIPPED_SLOTS_CHECKED as usize) {
                let Some(run) = self
                    .domain()
                    .run_by_dedup_key(&slot_key(scope.id, slot))
                    .await?
                else {
                    not_run.push(slot);
                    continue;
                };
                decision
                    .skips
                    .extend(stretch(skip.reason, &std::mem::take(&mut not_run)));
                decision.last_run_id = Some(run.id);
                decision.ran_before.push((slot, run.id));
            }
            decision.skips.extend(stretch(skip.reason, &not_run));
        }
        decision.starts = plan
            .runs
            .iter()
            .map(|&slot| {
                let reason = if Some(slot) == scope.buffered_slot {
                    "buffered"
                } else {
                    "schedule"
                };
                (slot, reason)
            })
            .collect();
        decision.next_run_at = plan.next_run_at;
        decision.buffered_slot = plan.buffered_slot;
        Ok(decision)
    }

    /// Settles one planned scope once its runs were started (`started`: one result per start,
    /// in order): records each slot's outcome and returns the scope's new state. A start that
    /// failed for a reason that may pass (the database) leaves the whole scope as it was, due
    /// again at the next tick.
    fn settle<'a>(
        &self,
        decision: Decision<'a>,
        started: Vec<Result<(ScanRun, bool)>>,
        now: DateTime,
        outcomes: &mut Vec<SlotOutcome>,
        report: &mut TickReport,
    ) -> std::result::Result<ScopeSettlement, (&'a ScanScope, PipelineError)> {
        let scope = decision.scope;
        let mut last_run_id = decision.last_run_id;
        let mut skips = decision.skips;
        let mut mine = Vec::new();
        for (slot, run_id) in decision.ran_before {
            mine.push(SlotOutcome::ran(
                &scope.tenant_id,
                scope.id,
                slot,
                run_id,
                "schedule",
            ));
            tracing::info!(scope_id = %scope.id, tenant_id = %scope.tenant_id,
                slot = %slot, run_id = %run_id, created = false, "slot ran");
        }
        let mut created_lags = Vec::new();
        for (&(slot, reason), result) in decision.starts.iter().zip(started) {
            match result {
                Ok((run, created)) => {
                    last_run_id = Some(run.id);
                    mine.push(SlotOutcome::ran(
                        &scope.tenant_id,
                        scope.id,
                        slot,
                        run.id,
                        reason,
                    ));
                    if created {
                        created_lags
                            .push((now.timestamp_millis() - slot.timestamp_millis()).max(0));
                    }
                    tracing::info!(scope_id = %scope.id, tenant_id = %scope.tenant_id,
                        slot = %slot, run_id = %run.id, created, reason, "slot ran");
                }
                Err(error) if error.is_transient() => return Err((scope, error)),
                Err(error) => {
                    // The tenant was suspended or the instance disabled after the claim: the
                    // slot is not runnable, and says why.
                    tracing::warn!(scope_id = %scope.id, tenant_id = %scope.tenant_id,
                        slot = %slot, %error, "slot not runnable");
                    skips.push(Skip {
                        reason: SkipReason::NotRunnable,
                        first: slot,
                        last: Some(slot),
                        count: 1,
                    });
                }
            }
        }
        for lag in created_lags {
            report.runs_created += 1;
            self.metrics.schedule_lag.observe(lag as f64 / 1000.0);
            self.metrics
                .runs_created
                .get_or_create(&TriggerLabel {
                    trigger: "scheduled",
                })
                .inc();
        }
        for skip in &skips {
            report.slots_skipped += skip.count;
            self.metrics
                .slots_skipped
                .get_or_create(&ReasonLabel {
                    reason: skip.reason.as_str(),
                })
                .inc_by(skip.count);
            tracing::info!(scope_id = %scope.id, tenant_id = %scope.tenant_id,
                slot = %skip.first, count = skip.count, reason = skip.reason.as_str(),
                "slots not run");
            mine.push(SlotOutcome::skipped(&scope.tenant_id, scope.id, skip));
        }
        outcomes.extend(mine);
        let due_at = match decision.buffered_slot {
            Some(_) => {
                let recheck = DateTime::from_millis(
                    now.timestamp_millis() + self.config.buffer_recheck.as_millis() as i64,
                );
                Some(
                    decision
                        .next_run_at
                        .map_or(recheck, |next| next.min(recheck)),
                )
            }
            None => decision.next_run_at,
        };
        Ok(ScopeSettlement {
            scope_id: scope.id,
            nonce: scope
                .claim
                .as_ref()
                .expect("a claimed scope carries its claim")
                .nonce,
            next_run_at: decision.next_run_at,
            due_at,
            buffered_slot: decision.buffered_slot,
            last_run_id,
        })
    }
}

/// A claimed scope's plan for this tick, before its runs are started.
struct Decision<'a> {
    scope: &'a ScanScope,
    /// The slots to start, each with why it runs now (`schedule`, or `buffered` behind the
    /// previous run).
    starts: Vec<(DateTime, &'static str)>,
    skips: Vec<Skip>,
    /// Slots an earlier tick started without recording them, with their runs.
    ran_before: Vec<(DateTime, ObjectId)>,
    last_run_id: Option<ObjectId>,
    next_run_at: Option<DateTime>,
    buffered_slot: Option<DateTime>,
}

/// Moves a claimed scope past the slots an earlier tick already decided for it (`decided`: the
/// outcomes it recorded at or after the scope's `next_run_at`, whose settlement did not land), so
/// that this tick decides only the slots after them: deciding one again could decide it
/// otherwise (an overlap skip, then a run once the previous run has finished) and record the
/// slot twice. A run such a tick started is the scope's previous run now.
fn keep_decisions(scope: &mut ScanScope, decided: &[SlotOutcome]) -> Result<()> {
    let Some(schedule) = &scope.schedule else {
        return Ok(());
    };
    let slots = schedule.slots()?;
    // A range of missed slots recorded by its count alone (no last slot) starts at
    // `next_run_at`: deciding it again gives it the same id, so it is recorded once anyway.
    let last = decided.iter().filter_map(|o| o.last_slot).max();
    if let Some(last) = last {
        scope.next_run_at = slots.next_after(last);
    }
    if let Some(ran) = decided
        .iter()
        .filter(|o| o.run_id.is_some())
        .max_by_key(|o| o.first_slot)
    {
        scope.last_run_id = ran.run_id;
    }
    Ok(())
}

/// The scope's state as it was: settling it only gives the claim back.
fn unchanged(scope: &ScanScope) -> ScopeSettlement {
    ScopeSettlement {
        scope_id: scope.id,
        nonce: scope.claim.as_ref().map(|c| c.nonce).unwrap_or_default(),
        next_run_at: scope.next_run_at,
        due_at: scope.due_at,
        buffered_slot: scope.buffered_slot,
        last_run_id: scope.last_run_id,
    }
}

/// The slots `not_run` (consecutive, in order) as one skip for `reason`; none if empty.
fn stretch(reason: SkipReason, not_run: &[DateTime]) -> Option<Skip> {
    Some(Skip {
        reason,
        first: *not_run.first()?,
        last: not_run.last().copied(),
        count: not_run.len() as u64,
    })
}
