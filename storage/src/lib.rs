//! What every sv0 crate that talks to MongoDB shares about its failures: which ones are
//! transient, so that the queue and the domain classify their storage errors the same way and a
//! caller retries exactly those.
//!
//! It owns no collection and no error type of its own: each crate keeps its own errors and asks
//! this one only how to sort a driver error.

use mongodb::error::{Error, ErrorKind};

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
