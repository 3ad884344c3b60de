//! The broker's errors. None of them carries a secret value: they are built only from validated
//! names, status codes and the SDK's own messages, never from a response body or a variable value.

use crate::Provider;
use crate::naming::Refusal;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid `tenant_id`: {0}")]
    InvalidTenantId(Refusal),

    #[error("invalid `ref`: {0}")]
    InvalidRef(Refusal),

    #[error("provider `{provider}` refused: {reason}")]
    ProviderRefused {
        provider: Provider,
        reason: &'static str,
    },

    #[error("provider `{0}` is not configured in this broker")]
    NotConfigured(Provider),

    #[error("no credentials for tenant {tenant_id} ref {reference} (looked for {looked_for}*)")]
    NotFound {
        tenant_id: String,
        reference: String,
        looked_for: String,
    },

    /// The vault answered, and retrying will not change the answer (403, 404, 401 after
    /// authenticating, a refused authentication challenge, a malformed response).
    #[error("key vault refused {what}: {detail}")]
    Vault { what: String, detail: String },

    #[error(transparent)]
    Transient(#[from] TransientError),
}

impl BrokerError {
    /// True when the same resolve may succeed later: the caller should retry with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Transient(_))
    }
}

/// A failure that may go away by itself: throttling, a server error, a timeout, a lost connection.
#[derive(Debug, thiserror::Error)]
pub enum TransientError {
    #[error("key vault throttled {what} (HTTP 429) after the client's retries")]
    Throttled { what: String },

    #[error("key vault failed {what} (HTTP {status}) after the client's retries")]
    Server { what: String, status: u16 },

    #[error("key vault did not answer within {timeout:?}")]
    Timeout { timeout: Duration },

    #[error("key vault unreachable for {what}: {detail}")]
    Connection { what: String, detail: String },
}
