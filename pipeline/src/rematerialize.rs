//! `rematerialize` (the deploy gate): for one tenant's `deploy_gate` run, rebuild the chains
//! and/or the stitched paths from the entities as they are, stamp `__chain` / `__stitch`, and
//! finish the run. Both upsert by content hash, so on an unchanged graph nothing changes but
//! `last_seen_at`.

use std::sync::Arc;

use mongodb::bson::DateTime;
use sv0_domain::category::{CHAIN, STITCH};
use sv0_domain::{CategoryName, CellStatus, Materializer};
use sv0_worker::{HandlerError, JobContext, JobHandler, with_retry};

use crate::metrics::StageOutcome;
use crate::stage_runner::{count_fenced, fail_stage, holder, into_handler, running, take_up};
use crate::stages::{materialize_chains, materialize_stitched};
use crate::{Pipeline, kinds};

pub struct Rematerialize {
    pub pipeline: Arc<Pipeline>,
}

#[async_trait::async_trait]
impl JobHandler for Rematerialize {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError> {
        let outcome = self.rematerialize(job).await;
        count_fenced(&self.pipeline, job, outcome)
    }
}

impl Rematerialize {
    async fn rematerialize(&self, job: &JobContext) -> Result<(), HandlerError> {
        let pipeline = &self.pipeline;
        let Some(run) = take_up(pipeline, job).await? else {
            return Ok(());
        };
        let (tenant_id, run_id) = (run.tenant_id.clone(), run.id);
        let domain = &pipeline.domain;
        let writer = holder(job);
        let Some(stages) = &run.rematerialize else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "run {run_id} ({}) names nothing to rematerialize",
                run.trigger.type_name()
            )));
        };
        // Chains first: stitching reads them.
        for materializer in [Materializer::Chains, Materializer::StitchedPaths] {
            if !stages.contains(&materializer) {
                continue;
            }
            let name = match materializer {
                Materializer::Chains => CHAIN,
                Materializer::StitchedPaths => STITCH,
            };
            if run
                .cell(name)
                .is_some_and(|c| c.status == CellStatus::Succeeded)
            {
                // Done by an earlier holder, which lost its lease before completing the job.
                continue;
            }
            let cell = CategoryName::parse(name).expect("a stage cell");
            let started = DateTime::now();
            domain
                .stamp_cell(&tenant_id, run_id, writer, &cell, &running(started))
                .await
                .map_err(into_handler)?;
            let outcome = with_retry(&job.cancel, || async {
                match materializer {
                    Materializer::Chains => materialize_chains(pipeline, &run).await,
                    Materializer::StitchedPaths => materialize_stitched(pipeline, &run)
                        .await
                        .map(|(worked, _)| worked),
                }
            })
            .await;
            match outcome {
                Ok(worked) => {
                    domain
                        .stamp_cell(&tenant_id, run_id, writer, &cell, &worked.cell(started))
                        .await
                        .map_err(into_handler)?;
                    pipeline.metrics().stage_ended(
                        kinds::REMATERIALIZE,
                        StageOutcome::Succeeded,
                        started,
                    );
                }
                Err(error) => {
                    let stage = (kinds::REMATERIALIZE, &cell);
                    fail_stage(pipeline, job, &run, stage, started, &error).await?;
                    return Err(error);
                }
            }
        }
        let run = pipeline
            .complete_run(writer, &tenant_id, run_id)
            .await
            .map_err(into_handler)?;
        tracing::info!(%run_id, tenant_id, status = run.status.as_str(), "rematerialized");
        Ok(())
    }
}
