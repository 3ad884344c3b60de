//! The queue's errors. A storage failure that may pass by itself (network, timeouts, a server
//! stepping down) is `Transient`, so callers can retry exactly those.

use mongodb::error::Error as MongoError;
use sv0_storage::is_transient;

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database could not be reached or asked to retry; the same call may succeed later.
    #[error("transient storage error: {0}")]
    Transient(#[source] MongoError),
    /// The database refused the operation; retrying it unchanged will not help.
    #[error("storage error: {0}")]
    Storage(#[source] MongoError),
    /// A job or a request is not acceptable; the message names the field.
    #[error("invalid job: {0}")]
    Invalid(String),
    /// An operator's filter or page is not acceptable; `field` names the part (`ids`, `limit`,
    /// `payload.<path>`), for an API to answer with.
    #[error("invalid {field}: {reason}")]
    InvalidFilter { field: String, reason: String },
    /// A stored job could not be read back into its type.
    #[error("malformed job document {id}: {reason}")]
    Malformed { id: String, reason: String },
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Transient(_))
    }
}

impl From<MongoError> for QueueError {
    fn from(error: MongoError) -> Self {
        if is_transient(&error) {
            QueueError::Transient(error)
        } else {
            QueueError::Storage(error)
        }
    }
}
