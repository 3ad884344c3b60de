//! The entry points that start and stop runs, for the admin API, the scheduler and the demo:
//! create a scan run, retry a run, ingest a normalized graph, rematerialize after a deploy; time
//! out or cancel a run. Each start writes the run first and then enqueues its first job with a
//! dedup key of `(run, kind)`, so a caller that retries after a lost reply never starts a run's
//! work twice. A creator that died between the two writes is repaired by the orphaned-run
//! reaper ([`crate::first_job`]).

use mongodb::bson::oid::ObjectId;
use sv0_domain::category::DRIVER;
use sv0_domain::{
    CategoryName, CategoryResult, ConnectorSync, DomainError, ForRun, Graph, InstanceStatus,
    Materializer, RunStatus, RunWriter, ScanRun, TenantStatus, Trigger,
};

use crate::first_job::first_job;
use crate::{Pipeline, Result};

/// A scan run asked for through the admin API.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub tenant_id: String,
    pub scope_id: ObjectId,
    /// Only `manual_api` and `iac_lifecycle`: retries, deploy-gate and scheduled runs have their
    /// own entry points.
    pub trigger: Trigger,
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
        self.require_active(tenant_id).await?;
        let scope = self.domain.scope(tenant_id, scope_id).await?;
        let instance = self.domain.instance(tenant_id, scope.instance_id).await?;
        if instance.status != InstanceStatus::Active {
            return Err(DomainError::Conflict(format!(
                "connector instance {} is disabled",
                instance.id
            ))
            .into());
        }
        let mut run = ScanRun::new(tenant_id, trigger, scope.budget);
        run.scope_id = Some(scope.id);
        run.instance_id = Some(instance.id);
        run.dedup_key = dedup_key;
        let (run, created) = self.domain.insert_run(&run).await?;
        // Enqueued even when the run existed: a caller that crashed between the two writes
        // comes back here, and the job's dedup key keeps it to one.
        self.enqueue_first_job(&run).await?;
        Ok((run, created))
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
