//! `execute_scan`: the connector driver's job. Resolves the instance's credentials through the
//! broker, runs the connector under the run's budget, writes the connector's categories into the
//! run, records the `connector_sync` (the graph included), links it from the run, and hands over
//! to `sync_ingestion`.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Bson, DateTime};
use sv0_domain::category::DRIVER;
use sv0_domain::{
    CategoryName, CategoryResult, ConnectorSync, ForRun, InstanceStatus, RunStatus, RunWriter,
    ScanRun,
};
use sv0_worker::{HandlerError, JobContext, JobHandler};

use crate::driver::{ConnectorRun, DriverError, run_connector};
use crate::metrics::StageOutcome;
use crate::stage_runner::{holder, into_handler, with_taken_up_run};
use crate::{Pipeline, kinds};

pub struct ExecuteScan {
    pub pipeline: Arc<Pipeline>,
}

#[async_trait::async_trait]
impl JobHandler for ExecuteScan {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError> {
        with_taken_up_run(&self.pipeline, job, |run| self.execute(job, run)).await
    }
}

impl ExecuteScan {
    async fn execute(&self, job: &JobContext, run: ScanRun) -> Result<(), HandlerError> {
        let pipeline = &self.pipeline;
        let (tenant_id, run_id) = (run.tenant_id.clone(), run.id);
        let domain = &pipeline.domain;
        let writer = holder(job);
        // A replay after the sync was recorded: the connector's work is done, hand over again.
        if run.sync_id.is_some() {
            return pipeline
                .enqueue_stage(&tenant_id, run_id, kinds::SYNC_INGESTION)
                .await;
        }
        let started = DateTime::now();
        match self.scan(job, writer, &run).await {
            Ok(()) => {
                pipeline.metrics().stage_ended(
                    kinds::EXECUTE_SCAN,
                    StageOutcome::Succeeded,
                    started,
                );
                pipeline
                    .enqueue_stage(&tenant_id, run_id, kinds::SYNC_INGESTION)
                    .await
            }
            Err(failure) => {
                let last_attempt = job.attempt() >= job.job.job.max_attempts;
                if failure.transient && !last_attempt {
                    return Err(HandlerError::transient(anyhow::anyhow!(failure.message)));
                }
                let cell = CategoryName::parse(DRIVER).expect("the driver cell follows the rule");
                let mut result = CategoryResult::failed(&failure.message, started);
                if let Some(stderr) = failure.stderr_tail.filter(|s| !s.is_empty()) {
                    result.errors.push(format!(
                        "connector stderr (last part, secrets redacted):\n{stderr}"
                    ));
                }
                domain
                    .stamp_cell(&tenant_id, run_id, writer, &cell, &result)
                    .await
                    .map_err(into_handler)?;
                pipeline
                    .metrics()
                    .stage_ended(kinds::EXECUTE_SCAN, StageOutcome::Failed, started);
                pipeline
                    .finish_run(
                        writer,
                        &run,
                        failure.status,
                        Some(format!("{DRIVER} failed: {}", failure.message)),
                    )
                    .await
                    .map_err(into_handler)?;
                tracing::warn!(%run_id, tenant_id, error = %failure.message, "scan failed");
                Err(HandlerError::permanent(anyhow::anyhow!(failure.message)))
            }
        }
    }
}

/// Why a scan failed, ready for the `__driver__` cell.
struct ScanFailure {
    message: String,
    transient: bool,
    status: RunStatus,
    stderr_tail: Option<String>,
}

impl ScanFailure {
    fn permanent(message: impl Into<String>) -> ScanFailure {
        ScanFailure {
            message: message.into(),
            transient: false,
            status: RunStatus::Failed,
            stderr_tail: None,
        }
    }
}

impl From<sv0_domain::DomainError> for ScanFailure {
    fn from(error: sv0_domain::DomainError) -> ScanFailure {
        ScanFailure {
            transient: error.is_transient(),
            ..ScanFailure::permanent(error.to_string())
        }
    }
}

impl ExecuteScan {
    async fn scan(
        &self,
        job: &JobContext,
        writer: RunWriter,
        run: &ScanRun,
    ) -> Result<(), ScanFailure> {
        let domain = &self.pipeline.domain;
        let tenant_id = &run.tenant_id;
        let scope_id = run
            .scope_id
            .ok_or_else(|| ScanFailure::permanent("the run names no scan scope"))?;
        let scope = domain.scope(tenant_id, scope_id).await?;
        let instance = domain.instance(tenant_id, scope.instance_id).await?;
        if instance.status != InstanceStatus::Active {
            return Err(ScanFailure::permanent(format!(
                "connector instance {} is disabled",
                instance.id
            )));
        }
        let Some(sandbox) = self.pipeline.sandbox() else {
            return Err(ScanFailure::permanent(
                "this process was started without a connector sandbox and runs no connector",
            ));
        };
        // Another worker may have the kind (a registry being rolled out): the attempt is given
        // back, and once the job's attempts are spent the run fails saying so.
        let kind = self
            .pipeline
            .connectors()
            .kind(&instance.kind)
            .map_err(|unknown| ScanFailure {
                transient: true,
                ..ScanFailure::permanent(format!("{unknown} on this worker"))
            })?;
        let bundle = self
            .pipeline
            .broker
            .resolve(tenant_id, &instance.credentials_ref)
            .await
            .map_err(|e| ScanFailure {
                transient: e.is_transient(),
                ..ScanFailure::permanent(format!("credentials: {e}"))
            })?;

        let time_limit = remaining(run);
        let scope_json = Bson::Document(scope.scope.clone()).into_relaxed_extjson();
        let output = run_connector(ConnectorRun {
            kind_name: &instance.kind,
            kind,
            sandbox,
            scope: &scope_json,
            bundle: &bundle,
            time_limit,
            cancel: job.cancel.clone(),
        })
        .await
        .map_err(|e| ScanFailure {
            // A cancelled token means the lease was lost or the job cancelled: the runtime ends
            // the attempt either way, and the run is not this worker's to fail.
            transient: matches!(e, DriverError::Cancelled),
            status: if matches!(e, DriverError::Timeout { .. }) {
                RunStatus::Timeout
            } else {
                RunStatus::Failed
            },
            stderr_tail: e.stderr_tail().map(str::to_string),
            message: e.to_string(),
        })?;
        drop(bundle);
        tracing::info!(
            run_id = %run.id,
            tenant_id,
            categories = output.categories.len(),
            entities = output.graph.entities.len(),
            elapsed_ms = output.elapsed.as_millis() as u64,
            "connector finished"
        );

        domain
            .stamp_cells(tenant_id, run.id, writer, &output.categories)
            .await?;
        let sync = domain
            .record_sync(
                &ConnectorSync::new(
                    tenant_id,
                    run.id,
                    instance.id.to_hex(),
                    Some(instance.id),
                    output.graph,
                ),
                ForRun {
                    run_id: run.id,
                    writer,
                },
            )
            .await?;
        domain
            .set_run_sync(tenant_id, run.id, writer, sync.id)
            .await?;
        Ok(())
    }
}

/// What is left of the run's budget, counted from when it started (at least a second, so a
/// run taken up at its very end still gets a clear timeout rather than none).
fn remaining(run: &ScanRun) -> Duration {
    let budget = Duration::from_secs(run.budget.max_runtime_seconds.max(1) as u64);
    let started = run.started_at.unwrap_or_else(DateTime::now);
    let spent = DateTime::now()
        .checked_duration_since(started)
        .unwrap_or_default();
    budget.saturating_sub(spent).max(Duration::from_secs(1))
}
