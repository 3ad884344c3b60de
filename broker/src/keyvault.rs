//! The `azure_keyvault` provider: a tenant's bundle is every enabled secret whose name starts with
//! `tenants-{tenant slug}-connector-{ref slug}-` (see [`crate::naming`]), read with the official
//! Azure SDK.

use crate::cache::BundleCache;
use crate::error::{BrokerError, TransientError};
use crate::naming::{Ref, TenantId, key_vault_bundle_name, key_vault_prefix};
use crate::secret::{BundleName, SecretBundle, SecretValue};
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport, Url};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use futures::TryStreamExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Names of the process variables [`KeyVaultConfig::from_env`] reads.
pub const VAULT_URL_VAR: &str = "SV0_KEYVAULT_URL";
pub const CREDENTIAL_VAR: &str = "SV0_KEYVAULT_CREDENTIAL";
pub const CA_FILE_VAR: &str = "SV0_KEYVAULT_CA_FILE";

/// The SDK's own transport settings (`azure_core`'s default `reqwest` client), kept when a CA
/// file makes us build the client ourselves.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How the broker authenticates to the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultCredential {
    /// Production: the managed identity of the VM, App Service or pod.
    ManagedIdentity,
    /// A developer's machine: the Azure CLI (`az login`) or Azure Developer CLI session.
    DeveloperTools,
}

#[derive(Debug, Clone)]
pub struct KeyVaultConfig {
    /// `https://<vault-name>.vault.azure.net`.
    pub vault_url: String,
    pub credential: VaultCredential,
    /// Bound on one whole resolve (listing, every read and the SDK's retries).
    pub timeout: Duration,
    /// Retries of the SDK's own policy for 408, 429 and 5xx, honouring `Retry-After`.
    pub max_retries: u32,
    pub cache_ttl: Duration,
    /// Most bundles kept at once (one per tenant and ref).
    pub cache_capacity: usize,
    /// A PEM file of root certificates trusted in addition to the system's: a TLS-inspecting
    /// egress proxy's, or a private CA's.
    pub ca_file: Option<PathBuf>,
}

impl KeyVaultConfig {
    /// Managed identity, 10 s timeout, 3 retries, bundles cached for 5 minutes, at most 256.
    pub fn new(vault_url: impl Into<String>) -> Self {
        KeyVaultConfig {
            vault_url: vault_url.into(),
            credential: VaultCredential::ManagedIdentity,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            cache_ttl: Duration::from_secs(300),
            cache_capacity: 256,
            ca_file: None,
        }
    }

    /// Reads [`VAULT_URL_VAR`] (unset: the provider is off, `Ok(None)`), [`CREDENTIAL_VAR`]
    /// (`managed_identity`, the default, or `developer`) and [`CA_FILE_VAR`] (optional) through
    /// `var`, e.g. `std::env::var(..).ok()`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(url) = var(VAULT_URL_VAR) else {
            return Ok(None);
        };
        let mut config = KeyVaultConfig::new(url);
        config.credential = match var(CREDENTIAL_VAR).as_deref() {
            None | Some("managed_identity") => VaultCredential::ManagedIdentity,
            Some("developer") => VaultCredential::DeveloperTools,
            Some(other) => return Err(ConfigError::Credential(other.to_owned())),
        };
        config.ca_file = var(CA_FILE_VAR).map(PathBuf::from);
        Ok(Some(config))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`{VAULT_URL_VAR}` must be an https URL, e.g. https://kv-sv0-prod.vault.azure.net")]
    VaultUrl,
    #[error("`{CREDENTIAL_VAR}` must be `managed_identity` or `developer`, not `{0}`")]
    Credential(String),
    #[error("`{CA_FILE_VAR}` ({}): {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("creating the Azure client failed: {0}")]
    Azure(#[from] azure_core::Error),
}

pub struct KeyVaultProvider {
    client: SecretClient,
    timeout: Duration,
    cache: Mutex<BundleCache>,
}

impl KeyVaultProvider {
    /// The production constructor: the credential named in `config`; the SDK's default transport,
    /// or, with `config.ca_file`, the same one also trusting that file's roots (for the vault and
    /// the managed identity's endpoint alike, as a proxy sees both).
    pub fn connect(config: KeyVaultConfig) -> Result<Self, ConfigError> {
        let client_options = match &config.ca_file {
            None => ClientOptions::default(),
            Some(path) => ClientOptions {
                transport: Some(Transport::new(Arc::new(client_trusting(path)?))),
                ..Default::default()
            },
        };
        let credential: Arc<dyn TokenCredential> = match config.credential {
            VaultCredential::ManagedIdentity => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    client_options: client_options.clone(),
                    ..Default::default()
                }))?
            }
            VaultCredential::DeveloperTools => DeveloperToolsCredential::new(None)?,
        };
        Self::with_credential(config, credential, client_options)
    }

    /// Any credential and client options (tests pass a test credential and a transport that
    /// trusts their fake vault). `config.credential` is ignored; retries come from `config`.
    pub fn with_credential(
        config: KeyVaultConfig,
        credential: Arc<dyn TokenCredential>,
        mut client_options: ClientOptions,
    ) -> Result<Self, ConfigError> {
        // Bearer tokens must never travel in clear text.
        let url = Url::parse(&config.vault_url).map_err(|_| ConfigError::VaultUrl)?;
        if url.scheme() != "https" || url.host_str().is_none() {
            return Err(ConfigError::VaultUrl);
        }
        client_options.retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: config.max_retries,
            max_total_elapsed: azure_core::time::Duration::try_from(config.timeout)
                .unwrap_or(azure_core::time::Duration::MAX),
            max_delay: azure_core::time::Duration::seconds(5),
        });
        let options = SecretClientOptions {
            client_options,
            ..Default::default()
        };
        let client = SecretClient::new(&config.vault_url, credential, Some(options))?;
        Ok(KeyVaultProvider {
            client,
            timeout: config.timeout,
            cache: Mutex::new(BundleCache::new(config.cache_ttl, config.cache_capacity)),
        })
    }

    pub async fn resolve(
        &self,
        tenant: &TenantId,
        reference: &Ref,
    ) -> Result<SecretBundle, BrokerError> {
        let prefix = key_vault_prefix(tenant, reference);
        if let Some(bundle) = self.cache().get(&prefix) {
            tracing::debug!(%tenant, %reference, "key vault bundle served from cache");
            return Ok(bundle);
        }
        let bundle = tokio::time::timeout(self.timeout, self.fetch(&prefix))
            .await
            .map_err(|_| TransientError::Timeout {
                timeout: self.timeout,
            })??;
        if bundle.is_empty() {
            return Err(BrokerError::NotFound {
                tenant_id: tenant.to_string(),
                reference: reference.to_string(),
                looked_for: prefix,
            });
        }
        self.cache().insert(prefix, bundle.clone());
        Ok(bundle)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BundleCache> {
        // The cache holds no invariant a panicking holder could break: keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists the vault (following `nextLink`), keeps the enabled secrets under `prefix`, then
    /// reads the current version of each. A reserved bundle name fails the resolve from the
    /// listing, before any value is read.
    async fn fetch(&self, prefix: &str) -> Result<SecretBundle, BrokerError> {
        let listing = "listing secrets";
        let mut pager = self
            .client
            .list_secret_properties(None)
            .map_err(|e| classify(e, listing))?;
        let mut wanted = Vec::new();
        while let Some(properties) = pager.try_next().await.map_err(|e| classify(e, listing))? {
            let enabled = properties
                .attributes
                .as_ref()
                .and_then(|a| a.enabled)
                .unwrap_or(true);
            let name = properties
                .resource_id()
                .map_err(|e| classify(e, listing))?
                .name;
            let Some(bundle_name) = key_vault_bundle_name(&name, prefix).filter(|_| enabled) else {
                continue;
            };
            let bundle_name =
                BundleName::parse(&bundle_name).map_err(|reason| BrokerError::ReservedName {
                    secret: name.clone(),
                    reason,
                })?;
            wanted.push((name, bundle_name));
        }
        tracing::debug!(prefix, secrets = wanted.len(), "key vault listing done");

        let mut bundle = SecretBundle::default();
        for (name, bundle_name) in wanted {
            let what = format!("secret `{name}`");
            let secret = self
                .client
                .get_secret(&name, None)
                .await
                .and_then(|response| response.into_model())
                .map_err(|e| classify(e, &what))?;
            let Some(value) = secret.value else {
                return Err(BrokerError::Vault {
                    what,
                    detail: "the response has no value".into(),
                });
            };
            bundle.insert(bundle_name, SecretValue::new(value));
        }
        Ok(bundle)
    }
}

/// The SDK's default HTTP client, also trusting the roots in the PEM file at `path`.
fn client_trusting(path: &Path) -> Result<reqwest::Client, ConfigError> {
    let failed = |reason: String| ConfigError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| failed(e.to_string()))?;
    if roots.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        // The SDK follows no redirect: a vault's answer is never one.
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_merge(roots)
        .build()
        .map_err(|e| failed(e.to_string()))
}

/// Sorts an SDK error into transient or permanent. Only status codes, service error codes and the
/// SDK's own messages are kept: response bodies never are, and data-conversion messages are
/// dropped because a JSON parser's message may quote the text it choked on.
fn classify(err: azure_core::Error, what: &str) -> BrokerError {
    let what = what.to_owned();
    match err.kind() {
        ErrorKind::Credential => classify_token_failure(&err, what),
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            match status {
                429 => TransientError::Throttled { what }.into(),
                408 | 500..=599 => TransientError::Server { what, status }.into(),
                _ => BrokerError::Vault {
                    what,
                    detail: format!(
                        "HTTP {status} {}",
                        error_code.as_deref().unwrap_or("(no error code)")
                    ),
                },
            }
        }
        ErrorKind::Connection | ErrorKind::Io => TransientError::Connection {
            what,
            detail: message_chain(&err),
        }
        .into(),
        ErrorKind::DataConversion => BrokerError::Vault {
            what,
            detail: "malformed response or authentication challenge".into(),
        },
        _ => BrokerError::Vault {
            what,
            detail: message_chain(&err),
        },
    }
}

/// Sorts a credential's failure (no token, so no request reached the vault) by its cause: the
/// outermost SDK error below it that is an HTTP status, a transport failure or unreadable data.
/// Transient unless the cause is clearly permanent:
/// - the token endpoint answered 400 (IMDS: this identity is not on this machine), 401 or 403;
/// - there is no such cause: the credential gave up before asking any endpoint (no managed
///   identity configured, `az` missing or logged out); its own message is kept.
///
/// For an HTTP cause only the status and error code are kept: the SDK quotes the token endpoint's
/// response body in its messages (IMDS' `The request failed: {body}`), and bodies are never kept.
fn classify_token_failure(err: &azure_core::Error, what: String) -> BrokerError {
    let cause = sdk_chain(err).find(|e| {
        matches!(
            e.kind(),
            ErrorKind::HttpResponse { .. }
                | ErrorKind::Io
                | ErrorKind::Connection
                | ErrorKind::DataConversion
        )
    });
    let Some(cause) = cause else {
        // The innermost error: the credential's own words, without the wrappers' repeats.
        let detail = sdk_chain(err).last().unwrap_or(err).to_string();
        return BrokerError::Credential { what, detail };
    };
    let detail = match cause.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            let status = u16::from(*status);
            let code = error_code.as_deref().map(|c| format!(" {c}"));
            let detail = format!(
                "the token endpoint answered HTTP {status}{}",
                code.unwrap_or_default()
            );
            if matches!(status, 400 | 401 | 403) {
                return BrokerError::Credential { what, detail };
            }
            detail
        }
        ErrorKind::DataConversion => "the token endpoint's answer is malformed".to_owned(),
        // Io or Connection: no response was received, so no body can be in the transport's words.
        _ => format!(
            "the token endpoint is unreachable: {}",
            message_chain(cause)
        ),
    };
    TransientError::Token { what, detail }.into()
}

/// `err` and the SDK errors it wraps, outermost first (the chain stops at the first source that
/// is not an SDK error, e.g. the HTTP client's own).
fn sdk_chain(err: &azure_core::Error) -> impl Iterator<Item = &azure_core::Error> {
    std::iter::successors(Some(err), |e| {
        std::error::Error::source(*e)?.downcast_ref::<azure_core::Error>()
    })
}

/// The error's message and its sources' (the SDK's retry policy wraps the cause, e.g. a refused
/// authentication challenge, in a generic message of its own).
fn message_chain(err: &azure_core::Error) -> String {
    let mut messages = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages.join(": ")
}
