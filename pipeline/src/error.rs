//! The error of the pipeline's entry points (create, start, cancel, retry, time out, ingest,
//! rematerialize a run; restore a run's first job): they write the domain's documents and the
//! queue's jobs, so either may fail. Transient failures of either stay transient, so a caller
//! retries exactly those.

use sv0_domain::DomainError;
use sv0_queue::QueueError;

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Enqueueing a run's job failed (the run is written; enqueueing again is safe).
    #[error("enqueueing the run's job: {0}")]
    Queue(#[from] QueueError),
}

impl PipelineError {
    /// Storage or network trouble that may pass by itself: worth another attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Domain(error) => error.is_transient(),
            PipelineError::Queue(error) => error.is_transient(),
        }
    }
}

impl From<mongodb::error::Error> for PipelineError {
    fn from(error: mongodb::error::Error) -> PipelineError {
        PipelineError::Domain(error.into())
    }
}
