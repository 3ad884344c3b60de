//! The broker's errors. None of them carries a secret value: they are built only from validated
//! names, status codes and the SDK's own messages, never from a response body or a variable value.

use crate::Provider;
use crate::naming::Refusal;
use crate::secret::ReservedName;
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

    /// A secret (an env variable or a Key Vault secret, named here) maps to a bundle name the
    /// connector's own environment reserves: `PATH`, `LD_PRELOAD` and the like.
    #[error("secret `{secret}` refused: {reason}")]
    ReservedName {
        secret: String,
        reason: ReservedName,
    },

    /// The vault answered, and retrying will not change the answer (403, 404, 401 after
    /// authenticating, a refused authentication challenge, a malformed response).
    #[error("key vault refused {what}: {detail}")]
    Vault { what: String, detail: String },

    /// The credential got no token, and retrying will not change that: the token endpoint
    /// answered 400 (for IMDS: no such identity here), 401 or 403, or the credential gave up
    /// before asking any endpoint (no identity or developer login configured).
    #[error("the credential refused a token for {what}: {detail}")]
    Credential { what: String, detail: String },

    #[error(transparent)]
    Transient(#[from] TransientError),
}

impl BrokerError {
    /// True when the same resolve may succeed later: the caller should retry with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Transient(_))
    }
}

/// A failure that may go away by itself: throttling, a server error, a timeout, a lost connection,
/// a token the credential could not get yet.
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

    /// The credential got no token, for a reason that may pass (a managed-identity outage): the
    /// token endpoint failed with another status after the credential's own retries, could not
    /// be reached, or answered something unreadable.
    #[error("no access token for {what} yet: {detail}")]
    Token { what: String, detail: String },
}
