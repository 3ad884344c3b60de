//! What can go wrong in the domain layer: bad input the caller can fix, things that are not
//! there, and storage trouble (transient or not, as the queue classifies it).

use mongodb::bson::oid::ObjectId;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input the caller can correct: the message names the field and the rule.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{what} {id} not found for tenant {tenant_id:?}")]
    NotFound {
        what: &'static str,
        id: String,
        tenant_id: String,
    },
    /// The request conflicts with the current state (retrying a run that is still running).
    #[error("{0}")]
    Conflict(String),
    /// A stored document that does not read back as its type (written by hand or by another
    /// version).
    #[error("stored {what} {id} is malformed: {reason}")]
    Malformed {
        what: &'static str,
        id: String,
        reason: String,
    },
    /// A stage holder's write to a run matched nothing: a newer holder, or a later stage, has
    /// taken the run up (this holder's lease was reaped), or the run is gone.
    #[error("{0}")]
    FencedOut(String),
    /// A batch write lost a race (two upserts of one key) or its write concern: sending the
    /// same writes again is safe and may succeed.
    #[error("transient write error: {0}")]
    Race(String),
    /// A batch write the server refused.
    #[error("write error: {0}")]
    Write(String),
    /// The database could not be reached or asked to retry; the same call may succeed later.
    #[error("transient storage error: {0}")]
    Transient(#[source] mongodb::error::Error),
    /// The database refused the operation; retrying it unchanged will not help.
    #[error("storage error: {0}")]
    Storage(#[source] mongodb::error::Error),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> DomainError {
        DomainError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl ToString, tenant_id: &str) -> DomainError {
        DomainError::NotFound {
            what,
            id: id.to_string(),
            tenant_id: tenant_id.to_string(),
        }
    }

    pub fn malformed(what: &'static str, id: ObjectId, reason: impl ToString) -> DomainError {
        DomainError::Malformed {
            what,
            id: id.to_hex(),
            reason: reason.to_string(),
        }
    }

    /// Storage or network trouble that may pass by itself: worth another attempt.
    pub fn is_transient(&self) -> bool {
        matches!(self, DomainError::Transient(_) | DomainError::Race(_))
    }
}

impl From<mongodb::error::Error> for DomainError {
    fn from(error: mongodb::error::Error) -> DomainError {
        if sv0_storage::is_transient(&error) {
            DomainError::Transient(error)
        } else {
            DomainError::Storage(error)
        }
    }
}

impl From<mongodb::bson::ser::Error> for DomainError {
    fn from(error: mongodb::bson::ser::Error) -> DomainError {
        DomainError::invalid("document", error.to_string())
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;
