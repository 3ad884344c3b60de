//! The credential broker (docs/design.md, "Credentials: the broker"): the only code that turns a
//! connector's `CredentialsRef` into raw secret values, as a [`SecretBundle`] of environment
//! variables for that connector's process.
//!
//! It owns: validating tenant ids and refs before any lookup; computing every lookup path from the
//! tenant id (never from the ref, see [`naming`]); the `env` and `azure_keyvault` providers; refusing
//! `aws_secretsmanager` (reserved) and `op` (1Password is bootstrap-only); its metrics.
//!
//! It must not: log, print, serialize or put into an error any secret value (values live in
//! [`SecretValue`], which always formats as [`REDACTED`]); write anything to MongoDB; let a ref
//! name a tenant, or reach another ref's secrets; let a bundle set the connector's OS variables
//! or the loader's, route its traffic or hook its runtime (see [`BundleName`]); touch the queue,
//! the workers or the scheduler.

mod cache;
mod env;
mod error;
mod keyvault;
mod metrics;
pub mod naming;
mod secret;

pub use env::EnvProvider;
pub use error::{BrokerError, TransientError};
pub use keyvault::{
    CA_FILE_VAR, CREDENTIAL_VAR, ConfigError, KeyVaultConfig, KeyVaultProvider, VAULT_URL_VAR,
    VaultCredential,
};
pub use metrics::BrokerMetrics;
pub use secret::{
    BundleName, HOOK_ENV_NAMES, HOOK_ENV_PREFIXES, LOADER_PREFIXES, OS_ENV_ALLOWLIST,
    PROXY_ENV_NAMES, REDACTED, ReservedName, SecretBundle, SecretValue,
};

use naming::{Ref, TenantId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Instant;

/// Where a connector instance's credentials live (`ConnectorInstance.credentials_ref`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsRef {
    pub provider: Provider,
    /// The connector-specific suffix, e.g. `AWS_PRIMARY`: never a path, never a tenant.
    #[serde(rename = "ref")]
    pub reference: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Env,
    AzureKeyvault,
    AwsSecretsmanager,
    Op,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Env,
        Provider::AzureKeyvault,
        Provider::AwsSecretsmanager,
        Provider::Op,
    ];

    /// The wire name, also used as the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Env => "env",
            Provider::AzureKeyvault => "azure_keyvault",
            Provider::AwsSecretsmanager => "aws_secretsmanager",
            Provider::Op => "op",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One per process; dispatches each resolve to the provider its ref names.
pub struct CredentialBroker {
    env: Option<EnvProvider>,
    key_vault: Option<KeyVaultProvider>,
    metrics: BrokerMetrics,
}

impl CredentialBroker {
    /// A broker with no provider configured: add them with [`Self::with_env`] and
    /// [`Self::with_key_vault`]. A ref naming an unconfigured provider gets
    /// [`BrokerError::NotConfigured`].
    pub fn new(metrics: BrokerMetrics) -> Self {
        CredentialBroker {
            env: None,
            key_vault: None,
            metrics,
        }
    }

    /// [`Self::new`] with metrics that no registry exports: for tests and tools, which have no
    /// `/metrics` to serve.
    pub fn unobserved() -> Self {
        CredentialBroker::new(BrokerMetrics::new(&mut Default::default()))
    }

    pub fn with_env(mut self, env: EnvProvider) -> Self {
        self.env = Some(env);
        self
    }

    pub fn with_key_vault(mut self, key_vault: KeyVaultProvider) -> Self {
        self.key_vault = Some(key_vault);
        self
    }

    /// Resolves `credentials` for `tenant_id`. The tenant id and the ref are validated before a
    /// provider looks anything up; `aws_secretsmanager` and `op` are refused outright.
    pub async fn resolve(
        &self,
        tenant_id: &str,
        credentials: &CredentialsRef,
    ) -> Result<SecretBundle, BrokerError> {
        let started = Instant::now();
        let result = self.dispatch(tenant_id, credentials).await;
        self.metrics
            .observe(credentials.provider, &result, started.elapsed());
        // Only validated names reach these events; the error texts carry no values by construction.
        match &result {
            Ok(bundle) => tracing::info!(
                tenant_id,
                provider = %credentials.provider,
                reference = %credentials.reference,
                names = ?bundle.names().collect::<Vec<_>>(),
                "credentials resolved"
            ),
            Err(err) => tracing::warn!(
                provider = %credentials.provider,
                transient = err.is_transient(),
                error = %err,
                "credentials not resolved"
            ),
        }
        result
    }

    async fn dispatch(
        &self,
        tenant_id: &str,
        credentials: &CredentialsRef,
    ) -> Result<SecretBundle, BrokerError> {
        let provider = credentials.provider;
        match provider {
            Provider::Env => {
                let (tenant, reference) = validate(tenant_id, &credentials.reference)?;
                let env = self
                    .env
                    .as_ref()
                    .ok_or(BrokerError::NotConfigured(provider))?;
                env.resolve(&tenant, &reference)
            }
            Provider::AzureKeyvault => {
                let (tenant, reference) = validate(tenant_id, &credentials.reference)?;
                let key_vault = self.key_vault.as_ref();
                let key_vault = key_vault.ok_or(BrokerError::NotConfigured(provider))?;
                key_vault.resolve(&tenant, &reference).await
            }
            Provider::AwsSecretsmanager => Err(BrokerError::ProviderRefused {
                provider,
                reason: "reserved, not implemented",
            }),
            Provider::Op => Err(BrokerError::ProviderRefused {
                provider,
                reason: "1Password is bootstrap-only; it never serves credentials at run time",
            }),
        }
    }
}

fn validate(tenant_id: &str, reference: &str) -> Result<(TenantId, Ref), BrokerError> {
    let tenant = TenantId::parse(tenant_id).map_err(BrokerError::InvalidTenantId)?;
    let reference = Ref::parse(reference).map_err(BrokerError::InvalidRef)?;
    Ok((tenant, reference))
}
