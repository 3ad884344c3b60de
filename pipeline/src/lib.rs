//! sv0 pipeline's stages (docs/design.md, "Runs, stage cells and stages"): the connector driver,
//! the `execute_scan` job and every stage after it, `rematerialize`, and the entry points that
//! start runs.
//!
//! It owns the pipeline's job kinds and what each does; the connector driver (the only code that
//! starts a connector, with a cleared environment plus the broker's bundle); the finding rules,
//! chain assembly and stitching. It must not write the domain's collections except through
//! `sv0-domain`, nor the queue's except through `sv0-queue`, and it never logs, stores or returns a
//! secret value.

pub mod chains;
pub mod driver;
mod entry;
mod error;
mod first_job;
mod metrics;
mod redact;
pub mod registry;
mod rematerialize;
pub mod rules;
pub mod sandbox;
mod scan;
mod stage_runner;
mod stages;

use std::sync::Arc;

use mongodb::bson::oid::ObjectId;
use sv0_broker::CredentialBroker;
use sv0_domain::{Domain, RunStatus, RunWriter, ScanRun};
use sv0_queue::Queue;
use sv0_worker::{HandlerError, HandlerSet};

pub use entry::{Deploy, RunRequest, ScanStart};
pub use error::{PipelineError, Result};
pub use first_job::FirstJob;
pub use metrics::PipelineMetrics;
pub use registry::{ConnectorKind, ConnectorLimits, ConnectorRegistry, RegistryError, UnknownKind};
pub use sandbox::{Sandbox, SandboxError, SandboxSettings};
pub use stage_runner::{Stage, Worked};

/// The pipeline's job kinds, in pipeline order, then the deploy gate's.
pub mod kinds {
    pub const EXECUTE_SCAN: &str = "execute_scan";
    pub const SYNC_INGESTION: &str = "sync_ingestion";
    pub const EVALUATE_FINDINGS: &str = "evaluate_findings";
    pub const ASSEMBLE_CHAINS: &str = "assemble_chains";
    pub const STITCH_PATHS: &str = "stitch_paths";
    pub const BUILD_EVIDENCE_PACK: &str = "build_evidence_pack";
    pub const REMATERIALIZE: &str = "rematerialize";
    pub const ALL: [&str; 7] = [
        EXECUTE_SCAN,
        SYNC_INGESTION,
        EVALUATE_FINDINGS,
        ASSEMBLE_CHAINS,
        STITCH_PATHS,
        BUILD_EVIDENCE_PACK,
        REMATERIALIZE,
    ];
}

/// What the stages and the entry points share: the domain's collections, the queue, the
/// credential broker and the connector registry and sandbox (used by `execute_scan` only) and
/// the pipeline's metrics.
pub struct Pipeline {
    domain: Domain,
    queue: Queue,
    broker: CredentialBroker,
    connectors: ConnectorRegistry,
    sandbox: Option<Sandbox>,
    metrics: PipelineMetrics,
}

impl Pipeline {
    /// The domain's collections the pipeline writes.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The queue the pipeline's jobs are on.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// A pipeline with an empty connector registry and no sandbox: it can start runs and
    /// run every stage but `execute_scan`.
    pub fn new(domain: Domain, queue: Queue, broker: CredentialBroker) -> Pipeline {
        Pipeline {
            domain,
            queue,
            broker,
            connectors: ConnectorRegistry::default(),
            sandbox: None,
            metrics: PipelineMetrics::default(),
        }
    }

    /// The deployment's connector registry: what instances may name, and what runs for them.
    pub fn with_connectors(mut self, registry: ConnectorRegistry) -> Pipeline {
        self.connectors = registry;
        self
    }

    /// How connectors are confined: without one, `execute_scan` runs no connector.
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Pipeline {
        self.sandbox = Some(sandbox);
        self
    }

    pub fn connectors(&self) -> &ConnectorRegistry {
        &self.connectors
    }

    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// The runs' and stages' series, to register with the process's registry.
    pub fn metrics(&self) -> &PipelineMetrics {
        &self.metrics
    }

    /// Finishes `run` with `status`; when this call's write is the one that finished it, counts
    /// the run's end. Returns whether it did.
    pub(crate) async fn finish_run(
        &self,
        writer: RunWriter,
        run: &ScanRun,
        status: RunStatus,
        error: Option<String>,
    ) -> sv0_domain::Result<bool> {
        self.finish_run_from(
            writer,
            run,
            &[RunStatus::Queued, RunStatus::Running],
            status,
            error,
        )
        .await
    }

    /// [`Pipeline::finish_run`], only if the run is in one of the statuses `from`.
    pub(crate) async fn finish_run_from(
        &self,
        writer: RunWriter,
        run: &ScanRun,
        from: &[RunStatus],
        status: RunStatus,
        error: Option<String>,
    ) -> sv0_domain::Result<bool> {
        let finished = self
            .domain
            .finish_run_from(&run.tenant_id, run.id, writer, from, status, error)
            .await?;
        if finished {
            self.metrics.run_finished(run, status);
        }
        Ok(finished)
    }

    /// Finishes `run` with the status its cells add up to; returns the run as it is now.
    pub(crate) async fn complete_run(
        &self,
        writer: RunWriter,
        tenant_id: &str,
        run_id: ObjectId,
    ) -> sv0_domain::Result<ScanRun> {
        let run = self.domain.run(tenant_id, run_id).await?;
        let (status, error) = run.outcome();
        self.finish_run(writer, &run, status, error).await?;
        self.domain.run(tenant_id, run_id).await
    }

    /// Enqueues stage `kind` of a run, once: a replay finds the first enqueue's job.
    pub(crate) async fn enqueue_stage(
        &self,
        tenant_id: &str,
        run_id: ObjectId,
        kind: &str,
    ) -> Result<(), HandlerError> {
        self.queue
            .enqueue(stage_runner::stage_job(tenant_id, run_id, kind))
            .await?;
        Ok(())
    }
}

/// Every pipeline kind's handler, sharing `pipeline`.
pub fn handlers(pipeline: Arc<Pipeline>) -> HandlerSet {
    use stage_runner::StageHandler;
    let mut set = HandlerSet::new();
    set.register(
        kinds::EXECUTE_SCAN,
        scan::ExecuteScan {
            pipeline: pipeline.clone(),
        },
    )
    .register(
        kinds::SYNC_INGESTION,
        StageHandler {
            pipeline: pipeline.clone(),
            stage: stages::SyncIngestion,
        },
    )
    .register(
        kinds::EVALUATE_FINDINGS,
        StageHandler {
            pipeline: pipeline.clone(),
            stage: stages::EvaluateFindings,
        },
    )
    .register(
        kinds::ASSEMBLE_CHAINS,
        StageHandler {
            pipeline: pipeline.clone(),
            stage: stages::AssembleChains,
        },
    )
    .register(
        kinds::STITCH_PATHS,
        StageHandler {
            pipeline: pipeline.clone(),
            stage: stages::StitchPaths,
        },
    )
    .register(
        kinds::BUILD_EVIDENCE_PACK,
        StageHandler {
            pipeline: pipeline.clone(),
            stage: stages::BuildEvidencePack,
        },
    )
    .register(
        kinds::REMATERIALIZE,
        rematerialize::Rematerialize { pipeline },
    );
    set
}
