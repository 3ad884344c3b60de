//! The entry points that start and stop runs, for the admin API, the scheduler and the demo:
//! create a scan run, retry a run, ingest a normalized graph, rematerialize after a deploy; time
//! out or cancel a run. Each start writes the run first and then enqueues its first job with a
//! dedup key of `(run, kind)`, so a caller that retries after a lost reply never starts a run's
//! work twice. A creator that died between the two writes is repaired by the orphaned-run
//! reaper ([`crate::first_job`]).

use std::collections::HashMap;

use mongodb::bson::oid::ObjectId;
use sv0_domain::category::DRIVER;
use sv0_domain::{
    CategoryName, CategoryResult, ConnectorInstance, ConnectorSync, DomainError, ForRun, Graph,
    InstanceStatus, Materializer, RunStatus, RunWriter, ScanRun, ScanScope, Tenant, TenantStatus,
    Trigger,
};

use crate::first_job::first_job;
use crate::{Pipeline, Result, kinds};

/// A scan run asked for through the admin API.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub tenant_id: String,
    pub scope_id: ObjectId,
    /// Only `manual_api` and `iac_lifecycle`: retries, deploy-gate and scheduled runs have their
    /// own entry points.
    pub trigger: Trigger,
}

/// One scan to start with [`Pipeline::start_scans`].
#[derive(Debug, Clone)]
pub struct ScanStart<'a> {
    pub scope: &'a ScanScope,
    pub trigger: Trigger,
    /// The scheduler's `(scope, slot)`: a second start under it finds the first run.
    pub dedup_key: Option<String>,
}

/// The deploy a rematerialization is for: runs are idempotent per `(deploy id, tenant)`.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub id: String,
    pub commit: Option<String>,
}

impl Pipeline {
    /// Creates a `manual_api` or `iac_lifecycle` run of a scope and enqueues its scan.
    pub async fn create_run(&self, request: RunRequest) -> Result<ScanRun> {
        match request.trigger {
            Trigger::ManualApi { .. } | Trigger::IacLifecycle { .. } => {}
            other => {
                return Err(DomainError::invalid(
                    "trigger.type",
                    format!(
                        "{:?} runs are not created here: only manual_api and iac_lifecycle are \
                         (retries go through the run's retry, deploy_gate runs through rematerialize, \
                         scheduled runs through the scheduler)",
                        other.type_name()
                    ),
                ).into());
            }
        }
        self.start_scan(&request.tenant_id, request.scope_id, request.trigger, None)
            .await
            .map(|(run, _)| run)
    }

    /// Creates a run of `scope_id` with `trigger` and enqueues its `execute_scan`. With a
    /// `dedup_key` (the scheduler's `(scope, slot)`), a second call returns the first run and
    /// `false`. The tenant must be active and the scope's instance enabled.
    pub async fn start_scan(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        trigger: Trigger,
        dedup_key: Option<String>,
    ) -> Result<(ScanRun, bool)> {
        let scope = self.domain.scope(tenant_id, scope_id).await?;
        let start = ScanStart {
            scope: &scope,
            trigger,
            dedup_key,
        };
        self.start_scans(vec![start]).await?.remove(0)
    }

    /// Starts many scans as [`Pipeline::start_scan`] starts one, in a fixed number of round
    /// trips whatever their number: their tenants read at once, their instances at once, their
    /// runs by one insert and their first jobs by one enqueue. Each scope is taken as given
    /// (the scheduler has just read it under its claim). For each start, in order: its run and
    /// whether it was created, or why it cannot start (its tenant suspended or gone, its
    /// instance disabled or gone, its dedup key another tenant's). The outer error is the
    /// batch's (the database failed): some runs may have been written, and the same starts
    /// again find them by their dedup keys.
    pub async fn start_scans(
        &self,
        starts: Vec<ScanStart<'_>>,
    ) -> Result<Vec<Result<(ScanRun, bool)>>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let mut tenant_ids: Vec<&str> = starts.iter().map(|s| s.scope.tenant_id.as_str()).collect();
        tenant_ids.sort_unstable();
        tenant_ids.dedup();
        let tenants = self.domain.tenants_by_id(&tenant_ids).await?;
        let mut instance_ids: Vec<ObjectId> = starts.iter().map(|s| s.scope.instance_id).collect();
        instance_ids.sort_unstable();
        instance_ids.dedup();
        let instances = self.domain.instances_by_id(&instance_ids).await?;

        let mut results: Vec<Option<Result<(ScanRun, bool)>>> = Vec::with_capacity(starts.len());
        let mut runs = Vec::new();
        for start in starts {
            let scope = start.scope;
            let runnable = startable(scope, &tenants, &instances);
            if let Err(error) = runnable {
                results.push(Some(Err(error.into())));
                continue;
            }
            let mut run = ScanRun::new(&scope.tenant_id, start.trigger, scope.budget);
            run.scope_id = Some(scope.id);
            run.instance_id = Some(scope.instance_id);
            run.dedup_key = start.dedup_key;
            runs.push(run);
            results.push(None);
        }
        let mut inserted = self.domain.insert_runs(&runs).await?.into_iter();
        // Enqueued even for a run that existed: a caller that crashed between the two writes
        // comes back here, and the job's dedup key keeps it to one.
        let mut jobs = Vec::new();
        for result in results.iter_mut().filter(|r| r.is_none()) {
            let decided = match inserted.next().expect("one insert result per run") {
                Ok((run, created)) => match first_job(&run) {
                    Some((kind, job)) if kind == kinds::EXECUTE_SCAN => {
                        jobs.push(job);
                        Ok((run, created))
                    }
                    // The key is held by a run of another kind (written by hand): not ours.
                    _ => Err(DomainError::Conflict(format!(
                        "dedup key {:?} belongs to run {}, which is not a scan",
                        run.dedup_key, run.id
                    ))
                    .into()),
                },
                Err(error) => Err(error.into()),
            };
            *result = Some(decided);
        }
        self.queue.enqueue_many(jobs).await?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("every start decided"))
            .collect())
    }

    /// Enqueues `run`'s first job ([`first_job`]); a second call finds the first one's job.
    async fn enqueue_first_job(&self, run: &ScanRun) -> Result<()> {
        let (_, job) = first_job(run).ok_or_else(|| {
            DomainError::Race(format!("run {} has nothing to start from", run.id))
        })?;
        self.queue.enqueue(job).await?;
        Ok(())
    }

    /// Times out a run that no stage has taken up within its budget (the orphaned-run reaper):
    /// the run becomes `timeout` with `reason` in its `__driver__` cell and its error, and its
    /// queued and running jobs are cancelled (running ones through the queue's cancel, which
    /// their workers see at the next heartbeat). Returns false if the run had finished already.
    pub async fn time_out_run(&self, run: &ScanRun, reason: &str) -> Result<bool> {
        self.stop_run(
            run,
            &[RunStatus::Queued, RunStatus::Running],
            RunStatus::Timeout,
            &format!("timed out: {reason}"),
        )
        .await
    }

    /// Cancels a queued or running run: the run becomes `cancelled`, saying so in its
    /// `__driver__` cell and its error, and its queued and running jobs are cancelled as
    /// [`Pipeline::time_out_run`] does. Returns the run as it is now. A finished run is a
    /// conflict naming its status, and is left as it is.
    pub async fn cancel_run(&self, tenant_id: &str, run_id: ObjectId) -> Result<ScanRun> {
        let run = self.domain.run(tenant_id, run_id).await?;
        if !self
            .stop_run(
                &run,
                &[RunStatus::Queued, RunStatus::Running],
                RunStatus::Cancelled,
                "cancelled on request",
            )
            .await?
        {
            // Read again: the run may have finished since it was read above.
            let run = self.domain.run(tenant_id, run_id).await?;
            return Err(DomainError::Conflict(format!(
                "run {run_id} is {}; only a queued or running run can be cancelled",
                run.status.as_str()
            ))
            .into());
        }
        Ok(self.domain.run(tenant_id, run_id).await?)
    }

    /// Finishes a run that is in one of the statuses `from` early with `status`, `outcome`
    /// saying why in its `__driver__` cell and its error, and cancels its jobs. Returns false,
    /// changing nothing, if the run had moved on. The run is finished first, as the one write
    /// that decides whether this call stops it: should a later write fail, a job left behind
    /// skips the finished run.
    pub(crate) async fn stop_run(
        &self,
        run: &ScanRun,
        from: &[RunStatus],
        status: RunStatus,
        outcome: &str,
    ) -> Result<bool> {
        let domain = &self.domain;
        let error = Some(format!("{DRIVER} {outcome}"));
        if !self
            .finish_run_from(RunWriter::Outside, run, from, status, error)
            .await?
        {
            return Ok(false);
        }
        let started = run.started_at.unwrap_or(run.created_at);
        let driver = CategoryName::parse(DRIVER).expect("the driver cell's name is valid");
        domain
            .stamp_cell(
                &run.tenant_id,
                run.id,
                RunWriter::Outside,
                &driver,
                &CategoryResult::failed(outcome, started),
            )
            .await?;
        self.queue.cancel_group(&run.id.to_hex()).await?;
        Ok(true)
    }

    /// A new run doing what `run_id` did (`trigger.type = retry`, `retry_of`). The run must be
    /// finished.
    pub async fn retry_run(&self, tenant_id: &str, run_id: ObjectId) -> Result<ScanRun> {
        let original = self.domain.run(tenant_id, run_id).await?;
        if !original.status.is_finished() {
            return Err(DomainError::Conflict(format!(
                "run {run_id} is {}; only a finished run can be retried",
                original.status.as_str()
            ))
            .into());
        }
        let trigger = Trigger::Retry { retry_of: run_id };
        if let Some(scope_id) = original.scope_id {
            return self
                .start_scan(tenant_id, scope_id, trigger, None)
                .await
                .map(|(run, _)| run);
        }
        if let Some(stages) = original.rematerialize {
            let run = ScanRun::new(tenant_id, trigger, original.budget);
            return self.start_rematerialize(run, &stages).await;
        }
        // An ingest: the same graph again, under a new run.
        let sync = self.domain.sync_of_run(tenant_id, run_id).await?;
        self.start_ingest(tenant_id, trigger, sync.source, sync.graph)
            .await
    }

    /// Ingests a normalized graph as `source`'s full state: a synthesised `manual_api` run whose
    /// pipeline starts at `sync_ingestion`.
    pub async fn ingest_graph(
        &self,
        tenant_id: &str,
        source: &str,
        graph: Graph,
    ) -> Result<ScanRun> {
        if source.is_empty()
            || source.len() > 64
            || !source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(DomainError::invalid(
                "source",
                "must be 1 to 64 letters, digits, `_`, `-` or `.`",
            )
            .into());
        }
        graph.validate()?;
        let trigger = Trigger::ManualApi { requested_by: None };
        self.start_ingest(tenant_id, trigger, format!("ingest:{source}"), graph)
            .await
    }

    async fn start_ingest(
        &self,
        tenant_id: &str,
        trigger: Trigger,
        source: String,
        graph: Graph,
    ) -> Result<ScanRun> {
        self.require_active(tenant_id).await?;
        let run = ScanRun::new(tenant_id, trigger, Default::default());
        let (run, _) = self.domain.insert_run(&run).await?;
        let sync = self
            .domain
            .record_sync(
                &ConnectorSync::new(tenant_id, run.id, source, None, graph),
                ForRun::outside(run.id),
            )
            .await?;
        self.domain
            .set_run_sync(tenant_id, run.id, RunWriter::Outside, sync.id)
            .await?;
        let run = self.domain.run(tenant_id, run.id).await?;
        self.enqueue_first_job(&run).await?;
        Ok(run)
    }

    /// One `deploy_gate` run per tenant (default: every active tenant) rebuilding `stages`.
    /// Idempotent per `(deploy id, tenant)`: called again for the same deploy, it creates nothing
    /// and returns the same runs.
    pub async fn rematerialize(
        &self,
        stages: &[Materializer],
        tenants: Option<&[String]>,
        deploy: &Deploy,
    ) -> Result<Vec<ScanRun>> {
        if stages.is_empty() {
            return Err(DomainError::invalid(
                "stages",
                "name at least one of chains, stitched_paths",
            )
            .into());
        }
        if deploy.id.is_empty() || deploy.id.len() > 200 {
            return Err(DomainError::invalid("deploy.id", "must be 1 to 200 characters").into());
        }
        let tenant_ids = match tenants {
            Some(ids) => ids.to_vec(),
            None => self
                .domain
                .active_tenants()
                .await?
                .into_iter()
                .map(|t| t.id)
                .collect(),
        };
        // Every tenant is checked before any run is created: a request naming one unknown or
        // suspended tenant creates nothing.
        for tenant_id in &tenant_ids {
            self.require_active(tenant_id).await?;
        }
        let mut runs = Vec::with_capacity(tenant_ids.len());
        for tenant_id in tenant_ids {
            let trigger = Trigger::DeployGate {
                deploy_id: deploy.id.clone(),
                commit: deploy.commit.clone(),
            };
            let mut run = ScanRun::new(&tenant_id, trigger, Default::default());
            run.dedup_key = Some(format!("deploy_gate:{}:{tenant_id}", deploy.id));
            runs.push(self.start_rematerialize(run, stages).await?);
        }
        Ok(runs)
    }

    /// Inserts `run` with the stages it rebuilds and enqueues its `rematerialize` job.
    async fn start_rematerialize(
        &self,
        mut run: ScanRun,
        stages: &[Materializer],
    ) -> Result<ScanRun> {
        run.rematerialize = Some(stages.to_vec());
        let (run, _) = self.domain.insert_run(&run).await?;
        self.enqueue_first_job(&run).await?;
        Ok(run)
    }

    async fn require_active(&self, tenant_id: &str) -> Result<()> {
        let tenant = self.domain.tenant(tenant_id).await?;
        if tenant.status != TenantStatus::Active {
            return Err(DomainError::Conflict(format!("tenant {tenant_id:?} is suspended")).into());
        }
        Ok(())
    }
}

/// Why `scope` cannot start a run now, if it cannot: its tenant must be active and its instance
/// enabled, both as just read.
fn startable(
    scope: &ScanScope,
    tenants: &HashMap<String, Tenant>,
    instances: &HashMap<ObjectId, ConnectorInstance>,
) -> std::result::Result<(), DomainError> {
    let tenant_id = &scope.tenant_id;
    let tenant = tenants
        .get(tenant_id)
        .ok_or_else(|| DomainError::not_found("tenant", tenant_id, tenant_id))?;
    if tenant.status != TenantStatus::Active {
        return Err(DomainError::Conflict(format!(
            "tenant {tenant_id:?} is suspended"
        )));
    }
    let instance = instances
        .get(&scope.instance_id)
        .filter(|i| &i.tenant_id == tenant_id)
        .ok_or_else(|| {
            DomainError::not_found("connector instance", scope.instance_id, tenant_id)
        })?;
    if instance.status != InstanceStatus::Active {
        return Err(DomainError::Conflict(format!(
            "connector instance {} is disabled",
            instance.id
        )));
    }
    Ok(())
}
