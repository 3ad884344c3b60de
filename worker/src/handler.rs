//! What a job handler is, what it is given, and how it fails.

use std::collections::HashMap;
use std::sync::Arc;

use mongodb::bson::Document;
use mongodb::bson::oid::ObjectId;
use sv0_queue::{Claimed, QueueError};
use tokio_util::sync::CancellationToken;

/// A failure that may pass by itself (storage or network trouble): `with_retry` retries exactly
/// these, and the queue gives the job another attempt after its backoff. A distinct type, so
/// nothing is retried by accident.
#[derive(Debug, thiserror::Error)]
#[error("transient: {0:#}")]
pub struct TransientError(pub anyhow::Error);

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Transient(#[from] TransientError),
    /// Retrying would fail the same way: the job is `failed` at once.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    pub fn transient(error: impl Into<anyhow::Error>) -> HandlerError {
        HandlerError::Transient(TransientError(error.into()))
    }

    pub fn permanent(error: impl Into<anyhow::Error>) -> HandlerError {
        HandlerError::Permanent(error.into())
    }
}

/// Storage errors map by the queue's own classification.
impl From<QueueError> for HandlerError {
    fn from(error: QueueError) -> HandlerError {
        if error.is_transient() {
            HandlerError::transient(error)
        } else {
            HandlerError::permanent(error)
        }
    }
}

impl From<mongodb::error::Error> for HandlerError {
    fn from(error: mongodb::error::Error) -> HandlerError {
        QueueError::from(error).into()
    }
}

/// What a handler is given: the job, and a token that fires when its work must be abandoned
/// (lease lost, cancel requested, or the drain's grace period over).
#[derive(Debug, Clone)]
pub struct JobContext {
    pub job: Claimed,
    pub cancel: CancellationToken,
    pub worker_id: String,
}

impl JobContext {
    pub fn job_id(&self) -> ObjectId {
        self.job.lease.job_id
    }

    pub fn kind(&self) -> &str {
        self.job.kind()
    }

    pub fn payload(&self) -> &Document {
        &self.job.job.payload
    }

    pub fn attempt(&self) -> i32 {
        self.job.attempt()
    }

    pub fn tenant_id(&self) -> Option<&str> {
        self.job.job.tenant_id.as_deref()
    }

    pub fn group_id(&self) -> Option<&str> {
        self.job.job.group_id.as_deref()
    }
}

/// A job handler. It should watch `job.cancel` at its await points; the runtime also stops
/// polling it once the token fires.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &JobContext) -> Result<(), HandlerError>;
}

/// The handlers a worker serves, by kind.
#[derive(Clone, Default)]
pub struct HandlerSet {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl std::fmt::Debug for HandlerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

impl HandlerSet {
    pub fn new() -> HandlerSet {
        HandlerSet::default()
    }

    pub fn register(&mut self, kind: impl Into<String>, handler: impl JobHandler) -> &mut Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Adds every handler of `other`; a kind both have gets `other`'s.
    pub fn extend(&mut self, other: HandlerSet) -> &mut Self {
        self.handlers.extend(other.handlers);
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    /// Keeps only `kinds`; a kind with no handler is an error naming it.
    pub fn only(mut self, kinds: &[String]) -> anyhow::Result<HandlerSet> {
        for kind in kinds {
            anyhow::ensure!(
                self.handlers.contains_key(kind),
                "no handler for job kind {kind:?}; known kinds: {:?}",
                self.kinds()
            );
        }
        self.handlers.retain(|kind, _| kinds.contains(kind));
        Ok(self)
    }
}
