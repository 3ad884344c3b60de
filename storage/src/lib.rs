//! What every sv0 crate that talks to MongoDB shares about it: the write concern of the writes
//! that leases, fences and audit entries depend on; where the reads that may lag may go; which
//! failures are transient, so that the queue and the domain classify their storage errors the
//! same way and a caller retries exactly those; which are a unique key already taken (how a dedup
//! key is found to be held); and the id range of a time, so that history is pruned by the `_id`
//! index alone.
//!
//! It owns no collection and no error type of its own: each crate keeps its own errors and asks
//! this one only how to sort a driver error.

use mongodb::Database;
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use mongodb::error::{Error, ErrorKind, WriteFailure};
use mongodb::options::{DatabaseOptions, ReadPreference, SelectionCriteria, WriteConcern};

/// `db` with every write acknowledged by a majority of the replica set: a claim, a fenced commit
/// or an audit entry that was acknowledged survives a failover (a write acknowledged by the old
/// primary alone may be rolled back). Set here, it holds whatever `w` a connection string asks
/// for; on a single server a majority is that server.
pub fn durable(db: &Database) -> Database {
    db.client().database_with_options(
        db.name(),
        DatabaseOptions::builder()
            .write_concern(WriteConcern::majority())
            .build(),
    )
}

/// `db` with its reads sent where `preference` says, for the reads that may lag behind the
/// primary: gauges and list pages, which a secondary may serve to take load off the primary.
/// Never for a read that decides a write (a claim's candidates, a fence check, a read-back): a
/// secondary's copy may be behind the write it would decide.
pub fn lag_tolerant(db: &Database, preference: ReadPreference) -> Database {
    db.client().database_with_options(
        db.name(),
        DatabaseOptions::builder()
            .selection_criteria(SelectionCriteria::ReadPreference(preference))
            .write_concern(WriteConcern::majority())
            .build(),
    )
}

/// The smallest id made at `at` (to the second): a document given its id when it is written was
/// written before `at` exactly when its id is below this one.
pub fn first_id_at(at: DateTime) -> ObjectId {
    let seconds = (at.timestamp_millis() / 1000).clamp(0, i64::from(u32::MAX)) as u32;
    let mut bytes = [0; 12];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    ObjectId::from_bytes(bytes)
}

/// Network failures, pool resets, server selection timeouts, and anything the server labels as
/// retryable: the same call may succeed later, elsewhere or after a failover.
pub fn is_transient(error: &Error) -> bool {
    const LABELS: [&str; 3] = [
        "RetryableWriteError",
        "TransientTransactionError",
        "ResetPool",
    ];
    if LABELS.iter().any(|label| error.contains_label(label)) {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        // Shutdown, not-primary and interrupted codes: the server asks for a retry elsewhere.
        ErrorKind::Command(e) => matches!(
            e.code,
            6 | 7 | 89 | 91 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436
        ),
        _ => false,
    }
}

/// The server's code for a write that would duplicate a unique index's key.
const DUPLICATE_KEY: i32 = 11000;

/// Whether a single write failed only because its unique key (a dedup key, an id) is taken.
pub fn is_duplicate(error: &Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY
    )
}

/// The positions, in the inserted batch, of the documents an unordered `insert_many` refused
/// because their unique key is taken; none when anything else went wrong (another write error,
/// or a write concern that was not met), which the caller must report as it is.
pub fn duplicate_positions(error: &Error) -> Option<Vec<usize>> {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => failure
            .write_errors
            .as_ref()?
            .iter()
            .map(|e| (e.code == DUPLICATE_KEY).then_some(e.index))
            .collect(),
        _ => None,
    }
}
