//! `rematerialize` (the deploy gate): for one tenant's `deploy_gate` run, rebuild the chains
//! and/or the stitched paths from the entities as they are, stamp `__chain` / `__stitch`, and
//! finish the run. Both write by content hash, so on an unchanged graph no chain or path is
//! written; only each set's head records that they were seen again.

use std::sync::Arc;

use sv0_domain::category::{CHAIN, STITCH};
use sv0_domain::{CategoryName, Materializer, ScanRun};
use sv0_worker::{HandlerError, JobContext, JobHandler};

use crate::stage_runner::{cell_succeeded, holder, into_handler, with_taken_up_run, work_in_cell};
use crate::stages::{materialize_chains, materialize_stitched};
use crate::{Pipeline, kinds};

pub struct Rematerialize {
    pub pipeline: Arc<Pipeline>,
}

#[async_trait::async_trait]
impl JobHandler for Rematerialize {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError> {
        with_taken_up_run(&self.pipeline, job, |run| self.rematerialize(job, run)).await
    }
}

impl Rematerialize {
    async fn rematerialize(&self, job: &JobContext, run: ScanRun) -> Result<(), HandlerError> {
        let pipeline = &self.pipeline;
        let (tenant_id, run_id) = (run.tenant_id.clone(), run.id);
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
            if cell_succeeded(&run, name) {
                // Done by an earlier holder, which lost its lease before completing the job.
                continue;
            }
            let cell = CategoryName::parse(name).expect("a stage cell");
            let stage = (kinds::REMATERIALIZE, &cell);
            work_in_cell(pipeline, job, &run, stage, || async {
                match materializer {
                    Materializer::Chains => materialize_chains(pipeline, &run).await,
                    Materializer::StitchedPaths => materialize_stitched(pipeline, &run)
                        .await
                        .map(|(worked, _)| worked),
                }
            })
            .await?;
        }
        let run = pipeline
            .complete_run(writer, &tenant_id, run_id)
            .await
            .map_err(into_handler)?;
        tracing::info!(%run_id, tenant_id, status = run.status.as_str(), "rematerialized");
        Ok(())
    }
}
