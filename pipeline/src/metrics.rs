//! The pipeline's series, the operator's first questions: how runs end, by trigger, and how each
//! stage fares (`docs/metrics.md`). Labels are a trigger type, a run status, a stage (a job kind)
//! and a cell status: closed sets. Never a tenant, a run or a scope: those are in the log lines.
//!
//! A run's end is counted by the one call whose write finished it, so a run is counted once
//! however many processes race to end it. A stage's outcome is counted when its cell is
//! stamped final; a stage replayed after a crash between stamping and completing its job is
//! counted again, which is rare and errs towards showing work.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sv0_domain::{RunStatus, ScanRun, Trigger};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    trigger: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellLabels {
    stage: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// A stage's final state, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    Succeeded,
    Failed,
}

/// Every pipeline series. Cloning shares them.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    runs_finished: Family<RunLabels, Counter>,
    run_duration: Family<TriggerLabel, Histogram>,
    stage_cells: Family<CellLabels, Counter>,
    stage_duration: Family<StageLabel, Histogram>,
    holders_fenced: Family<StageLabel, Counter>,
}

/// 10 ms to about 23 hours: a stage takes milliseconds, a scan up to its budget (a day at most).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 24))
}

impl Default for PipelineMetrics {
    /// Every counter's label set starts at 0, so that a rate or an increase sees its first
    /// event: a series born at 1 is, to Prometheus, a series that never grew.
    fn default() -> PipelineMetrics {
        let metrics = PipelineMetrics {
            runs_finished: Family::default(),
            run_duration: Family::new_with_constructor(duration_histogram),
            stage_cells: Family::default(),
            stage_duration: Family::new_with_constructor(duration_histogram),
            holders_fenced: Family::default(),
        };
        for trigger in Trigger::TYPE_NAMES {
            for status in RunStatus::FINAL {
                let _ = metrics.runs_finished.get_or_create(&RunLabels {
                    trigger,
                    status: status.as_str(),
                });
            }
        }
        for stage in crate::kinds::ALL {
            let _ = metrics.holders_fenced.get_or_create(&StageLabel { stage });
            for status in ["succeeded", "failed"] {
                let _ = metrics
                    .stage_cells
                    .get_or_create(&CellLabels { stage, status });
            }
        }
        metrics
    }
}

impl PipelineMetrics {
    /// Registers at `registry`'s own prefix (`sv0_` in the binary): `sv0_runs_finished_total`, ….
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "runs_finished",
            "Scan runs that reached a final status, by trigger type and status",
            self.runs_finished.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "From a run's creation to its final status, by trigger type",
            self.run_duration.clone(),
        );
        registry.register(
            "stage_cells",
            "Stages of runs that reached a final state, by stage and status",
            self.stage_cells.clone(),
        );
        registry.register(
            "stage_duration_seconds",
            "From a stage's start to its final state, by stage",
            self.stage_duration.clone(),
        );
        registry.register(
            "stage_holders_fenced",
            "Stage holders refused by their run's fence (a holder whose lease was reaped, or \
             whose stage the run has moved past), by stage",
            self.holders_fenced.clone(),
        );
    }

    /// A holder of stage `stage` (a job kind) was refused by its run's fence.
    pub(crate) fn holder_fenced(&self, stage: &str) {
        if let Some(stage) = crate::kinds::ALL.into_iter().find(|k| *k == stage) {
            self.holders_fenced
                .get_or_create(&StageLabel { stage })
                .inc();
        }
    }

    /// `run` has just been finished, with `status`, by this process's write.
    pub(crate) fn run_finished(&self, run: &ScanRun, status: RunStatus) {
        let trigger = run.trigger.type_name();
        self.runs_finished
            .get_or_create(&RunLabels {
                trigger,
                status: status.as_str(),
            })
            .inc();
        let seconds = (mongodb::bson::DateTime::now().timestamp_millis()
            - run.created_at.timestamp_millis())
        .max(0) as f64
            / 1000.0;
        self.run_duration
            .get_or_create(&TriggerLabel { trigger })
            .observe(seconds);
    }

    /// Stage `stage` (a job kind) ended `outcome`, having started at `started`.
    pub(crate) fn stage_ended(
        &self,
        stage: &'static str,
        outcome: StageOutcome,
        started: mongodb::bson::DateTime,
    ) {
        let status = match outcome {
            StageOutcome::Succeeded => "succeeded",
            StageOutcome::Failed => "failed",
        };
        self.stage_cells
            .get_or_create(&CellLabels { stage, status })
            .inc();
        let seconds = (mongodb::bson::DateTime::now().timestamp_millis()
            - started.timestamp_millis())
        .max(0) as f64
            / 1000.0;
        self.stage_duration
            .get_or_create(&StageLabel { stage })
            .observe(seconds);
    }
}
