//! What every platform stage does around its own work: take up the run, mark its cell running,
//! do the work (with the ADR's `with_retry` for transient trouble), stamp the cell, and hand over
//! to the next stage with a dedup key of `(scan_run_id, stage)`, so a stage that crashed after
//! enqueueing the next and before completing replays without running the next one twice.

use std::sync::Arc;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use sv0_domain::{CategoryName, CategoryResult, CellStatus, DomainError, RunStatus, ScanRun};
use sv0_queue::NewJob;
use sv0_worker::{HandlerError, JobContext, JobHandler, with_retry};

use crate::Pipeline;
use crate::metrics::StageOutcome;

/// One platform stage: a job kind that writes one cell of the run.
#[async_trait::async_trait]
pub trait Stage: Send + Sync + 'static {
    /// The job kind.
    fn kind(&self) -> &'static str;
    /// The cell it stamps (`__sync`, …).
    fn cell(&self) -> &'static str;
    /// The kind enqueued after it succeeds; `None` for the last stage, which completes the run.
    fn next(&self) -> Option<&'static str>;
    /// The stage's work for `run`; returns what its cell's `items_scanned` counts.
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<u64, HandlerError>;
}

/// Runs a [`Stage`] as a job handler.
pub struct StageHandler<S> {
    pub pipeline: Arc<Pipeline>,
    pub stage: S,
}

#[async_trait::async_trait]
impl<S: Stage> JobHandler for StageHandler<S> {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError> {
        let Some(run) = take_up(&self.pipeline, job).await? else {
            return Ok(());
        };
        let (tenant_id, run_id) = (run.tenant_id.clone(), run.id);
        let domain = &self.pipeline.domain;
        let cell = CategoryName::parse(self.stage.cell()).expect("stage cells follow the rule");
        let started = DateTime::now();
        domain
            .stamp_cell(&tenant_id, run_id, &cell, &running(started))
            .await
            .map_err(into_handler)?;

        let outcome = with_retry(&job.cancel, || self.stage.work(&self.pipeline, &run)).await;
        match outcome {
            Ok(items) => {
                domain
                    .stamp_cell(
                        &tenant_id,
                        run_id,
                        &cell,
                        &CategoryResult::succeeded(items, started),
                    )
                    .await
                    .map_err(into_handler)?;
                self.pipeline.metrics().stage_ended(
                    self.stage.kind(),
                    StageOutcome::Succeeded,
                    started,
                );
                tracing::info!(%run_id, tenant_id, stage = self.stage.kind(), items, "stage succeeded");
                match self.stage.next() {
                    Some(next) => self.pipeline.enqueue_stage(&tenant_id, run_id, next).await,
                    None => {
                        let run = self
                            .pipeline
                            .complete_run(&tenant_id, run_id)
                            .await
                            .map_err(into_handler)?;
                        tracing::info!(%run_id, tenant_id, status = run.status.as_str(), "run finished");
                        Ok(())
                    }
                }
            }
            Err(error) => {
                fail_stage(
                    &self.pipeline,
                    job,
                    &run,
                    (self.stage.kind(), &cell),
                    started,
                    &error,
                )
                .await?;
                Err(error)
            }
        }
    }
}

/// Records a stage's failure on the run when it is final: a permanent error, or a transient one
/// on the job's last attempt. A transient failure with attempts left only leaves the cell
/// running: the next attempt takes it up again. `stage` is the stage's job kind and the cell it
/// stamps.
pub(crate) async fn fail_stage(
    pipeline: &Pipeline,
    job: &JobContext,
    run: &ScanRun,
    stage: (&'static str, &CategoryName),
    started: DateTime,
    error: &HandlerError,
) -> Result<(), HandlerError> {
    let (kind, cell) = stage;
    let (tenant_id, run_id) = (run.tenant_id.as_str(), run.id);
    let last_attempt = job.attempt() >= job.job.job.max_attempts;
    if matches!(error, HandlerError::Transient(_)) && !last_attempt {
        return Ok(());
    }
    let message = error.to_string();
    let domain = &pipeline.domain;
    domain
        .stamp_cell(
            tenant_id,
            run_id,
            cell,
            &CategoryResult::failed(&message, started),
        )
        .await
        .map_err(into_handler)?;
    pipeline
        .metrics()
        .stage_ended(kind, StageOutcome::Failed, started);
    pipeline
        .finish_run(
            run,
            RunStatus::Failed,
            Some(format!("{cell} failed: {message}")),
        )
        .await
        .map_err(into_handler)?;
    tracing::warn!(%run_id, tenant_id, cell = %cell, error = %message, "stage failed; the run is failed");
    Ok(())
}

pub(crate) fn running(started: DateTime) -> CategoryResult {
    CategoryResult {
        status: CellStatus::Running,
        items_scanned: 0,
        started_at: started,
        ended_at: None,
        errors: Vec::new(),
    }
}

/// Takes up the run a pipeline job is for (`last_claimed_at` stamped, a queued run started).
/// `None` when the run is finished already (cancelled or timed out meanwhile, or finished by an
/// earlier try of this job): the job then has nothing to do.
pub(crate) async fn take_up(
    pipeline: &Pipeline,
    job: &JobContext,
) -> Result<Option<ScanRun>, HandlerError> {
    let (tenant_id, run_id) = run_of(job)?;
    let run = pipeline
        .domain
        .start_run(&tenant_id, run_id)
        .await
        .map_err(into_handler)?;
    if run.status.is_finished() {
        tracing::info!(%run_id, status = run.status.as_str(), kind = job.kind(), "run is finished; job skipped");
        return Ok(None);
    }
    Ok(Some(run))
}

/// The run a stage job is for: its tenant (the job's `tenant_id`) and `payload.scan_run_id`.
fn run_of(job: &JobContext) -> Result<(String, ObjectId), HandlerError> {
    let tenant_id = job
        .tenant_id()
        .ok_or_else(|| HandlerError::permanent(anyhow::anyhow!("job has no tenant_id")))?
        .to_string();
    let run_id = job.payload().get_object_id("scan_run_id").map_err(|_| {
        HandlerError::permanent(anyhow::anyhow!(
            "payload.scan_run_id: missing or not an ObjectId"
        ))
    })?;
    Ok((tenant_id, run_id))
}

/// The domain's storage trouble is transient for the job too; anything else is not.
pub(crate) fn into_handler(error: DomainError) -> HandlerError {
    if error.is_transient() {
        HandlerError::transient(error)
    } else {
        HandlerError::permanent(error)
    }
}

/// The job for stage `kind` of a run, deduplicated on `(run, kind)`.
pub(crate) fn stage_job(tenant_id: &str, run_id: ObjectId, kind: &str) -> NewJob {
    NewJob::new(kind, doc! { "scan_run_id": run_id })
        .tenant_id(tenant_id)
        .group_id(run_id.to_hex())
        .dedup_key(format!("scan_run:{run_id}:{kind}"))
}
