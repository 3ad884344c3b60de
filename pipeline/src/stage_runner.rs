//! What every platform stage does around its own work: take up the run, mark its cell running, do
//! the work (with `with_retry` for transient trouble), stamp the cell, and hand over to the next
//! stage with a dedup key of `(scan_run_id, stage)`, so a stage that crashed after enqueueing the
//! next and before completing replays without running the next one twice.

use std::sync::Arc;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use sv0_domain::{
    CategoryName, CategoryResult, CellStatus, DomainError, RunFence, RunStatus, RunWriter, ScanRun,
};
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
    /// The stage's work for `run`.
    async fn work(&self, pipeline: &Pipeline, run: &ScanRun) -> Result<Worked, HandlerError>;
}

/// What a stage's work came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worked {
    /// What its cell's `items_scanned` counts.
    pub items: u64,
    /// What the work left out on purpose (an enumeration stopped at its cap), in the `errors` of
    /// a cell that still succeeded: what was kept is right, a retry would leave out the same,
    /// and failing the run would hold back the stages after it.
    pub notes: Vec<String>,
}

impl From<u64> for Worked {
    fn from(items: u64) -> Worked {
        Worked {
            items,
            notes: Vec::new(),
        }
    }
}

impl Worked {
    /// The succeeded cell it stamps.
    pub(crate) fn cell(&self, started: DateTime) -> CategoryResult {
        CategoryResult {
            errors: self.notes.clone(),
            ..CategoryResult::succeeded(self.items, started)
        }
    }
}

/// Runs a [`Stage`] as a job handler.
pub struct StageHandler<S> {
    pub pipeline: Arc<Pipeline>,
    pub stage: S,
}

#[async_trait::async_trait]
impl<S: Stage> JobHandler for StageHandler<S> {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError> {
        with_taken_up_run(&self.pipeline, job, |run| self.run_stage(job, run)).await
    }
}

impl<S: Stage> StageHandler<S> {
    async fn run_stage(&self, job: &JobContext, run: ScanRun) -> Result<(), HandlerError> {
        let (tenant_id, run_id) = (run.tenant_id.clone(), run.id);
        let writer = holder(job);
        let cell = CategoryName::parse(self.stage.cell()).expect("stage cells follow the rule");
        if cell_succeeded(&run, self.stage.cell()) {
            // An earlier holder's success landed before this one took the run up (it lost its
            // lease before completing the job): the work is done, so hand over again.
            return self.hand_over(writer, &tenant_id, run_id).await;
        }
        let stage = (self.stage.kind(), &cell);
        let worked = work_in_cell(&self.pipeline, job, &run, stage, || {
            self.stage.work(&self.pipeline, &run)
        })
        .await?;
        tracing::info!(%run_id, tenant_id, stage = self.stage.kind(), items = worked.items,
            notes = ?worked.notes, "stage succeeded");
        self.hand_over(writer, &tenant_id, run_id).await
    }

    /// After the stage succeeded: enqueue the next stage, or finish the run after the last.
    async fn hand_over(
        &self,
        writer: RunWriter,
        tenant_id: &str,
        run_id: ObjectId,
    ) -> Result<(), HandlerError> {
        match self.stage.next() {
            Some(next) => self.pipeline.enqueue_stage(tenant_id, run_id, next).await,
            None => {
                let run = self
                    .pipeline
                    .complete_run(writer, tenant_id, run_id)
                    .await
                    .map_err(into_handler)?;
                tracing::info!(%run_id, tenant_id, status = run.status.as_str(), "run finished");
                Ok(())
            }
        }
    }
}

/// Runs `work` on the run a pipeline job is for once [`take_up`] has it (a job with nothing to do
/// succeeds at once), then [`count_fenced`]s the outcome.
pub(crate) async fn with_taken_up_run<F, Fut>(
    pipeline: &Pipeline,
    job: &JobContext,
    work: F,
) -> Result<(), HandlerError>
where
    F: FnOnce(ScanRun) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let outcome = match take_up(pipeline, job).await {
        Ok(Some(run)) => work(run).await,
        Ok(None) => Ok(()),
        Err(error) => Err(error),
    };
    count_fenced(pipeline, job, outcome)
}

/// Whether `run`'s stage cell `cell` has succeeded already: an earlier holder's work that landed
/// before its lease was lost.
pub(crate) fn cell_succeeded(run: &ScanRun, cell: &str) -> bool {
    run.cell(cell)
        .is_some_and(|c| c.status == CellStatus::Succeeded)
}

/// Does a stage's `work` in its stage cell: marks the cell running, does the work (with
/// `with_retry` for transient trouble), and stamps the cell with what it came to and counts the
/// stage succeeded; or, on failure, [`fail_stage`]s and returns the error. `stage` is the stage's
/// job kind and the cell it stamps.
pub(crate) async fn work_in_cell<F, Fut>(
    pipeline: &Pipeline,
    job: &JobContext,
    run: &ScanRun,
    stage: (&'static str, &CategoryName),
    work: F,
) -> Result<Worked, HandlerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Worked, HandlerError>>,
{
    let (kind, cell) = stage;
    let (tenant_id, run_id) = (run.tenant_id.as_str(), run.id);
    let domain = &pipeline.domain;
    let writer = holder(job);
    let started = DateTime::now();
    domain
        .stamp_cell(tenant_id, run_id, writer, cell, &running(started))
        .await
        .map_err(into_handler)?;
    match with_retry(&job.cancel, work).await {
        Ok(worked) => {
            domain
                .stamp_cell(tenant_id, run_id, writer, cell, &worked.cell(started))
                .await
                .map_err(into_handler)?;
            pipeline
                .metrics()
                .stage_ended(kind, StageOutcome::Succeeded, started);
            Ok(worked)
        }
        Err(error) => {
            fail_stage(pipeline, job, run, stage, started, &error).await?;
            Err(error)
        }
    }
}

/// Counts and logs a holder that its run's fence refused, and passes the outcome on: the job's
/// own outcome is the queue's to refuse in turn, as the lease is gone.
fn count_fenced(
    pipeline: &Pipeline,
    job: &JobContext,
    outcome: Result<(), HandlerError>,
) -> Result<(), HandlerError> {
    if let Err(HandlerError::Permanent(error)) = &outcome
        && let Some(DomainError::FencedOut(why)) = error.downcast_ref::<DomainError>()
    {
        pipeline.metrics().holder_fenced(job.kind());
        tracing::warn!(job_id = %job.job_id(), kind = job.kind(), reason = %why,
            "stage write refused by the run's fence");
    }
    outcome
}

/// Records a stage's failure on the run when it is final: a permanent error, or a transient one
/// on the job's last attempt. A transient failure with attempts left only leaves the cell
/// running: the next attempt takes it up again. `stage` is the stage's job kind and the cell it
/// stamps.
async fn fail_stage(
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
    let writer = holder(job);
    domain
        .stamp_cell(
            tenant_id,
            run_id,
            writer,
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
            writer,
            run,
            RunStatus::Failed,
            Some(format!("{cell} failed: {message}")),
        )
        .await
        .map_err(into_handler)?;
    tracing::warn!(%run_id, tenant_id, cell = %cell, error = %message, "stage failed; the run is failed");
    Ok(())
}

fn running(started: DateTime) -> CategoryResult {
    CategoryResult {
        status: CellStatus::Running,
        items_scanned: 0,
        started_at: started,
        ended_at: None,
        errors: Vec::new(),
    }
}

/// The writer a pipeline job's holder is to its run: fenced by the job kind's place in the
/// pipeline and the holder's lease token (`sv0_domain::run_fence`).
pub(crate) fn holder(job: &JobContext) -> RunWriter {
    RunWriter::Holder(fence_of(job))
}

fn fence_of(job: &JobContext) -> RunFence {
    let stage = crate::kinds::ALL
        .iter()
        .position(|kind| *kind == job.kind())
        .unwrap_or(crate::kinds::ALL.len());
    RunFence::new(stage as u8, job.job.lease.token)
}

/// Takes up the run a pipeline job is for under the holder's fence (`last_claimed_at` stamped, a
/// queued run started). `None` when the job has nothing to do: the run is finished already
/// (cancelled or timed out meanwhile, or finished by an earlier try of this job), or a newer
/// holder of this job, or a later stage, has taken it up (this holder's lease was reaped).
async fn take_up(pipeline: &Pipeline, job: &JobContext) -> Result<Option<ScanRun>, HandlerError> {
    let (tenant_id, run_id) = run_of(job)?;
    let fence = fence_of(job);
    let run = pipeline
        .domain
        .start_run(&tenant_id, run_id, fence)
        .await
        .map_err(into_handler)?;
    if run.status.is_finished() {
        tracing::info!(%run_id, status = run.status.as_str(), kind = job.kind(), "run is finished; job skipped");
        return Ok(None);
    }
    if run.fence != Some(fence) {
        pipeline.metrics().holder_fenced(job.kind());
        tracing::warn!(%run_id, kind = job.kind(), %fence, held_by = ?run.fence.map(|f| f.to_string()),
            "a newer holder has the run; job skipped");
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
