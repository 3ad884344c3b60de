//! A brief managed-identity outage must not fail jobs for good. Token failures are classed by
//! their cause: transient unless the cause is clearly permanent, and never with a response body in
//! the message.
//!
//! The credential is the official `ManagedIdentityCredential` (the one `KeyVaultProvider::connect`
//! builds in production, IMDS flavour), configured through its public options to reach the fake
//! IMDS in `sv0_testkit::fake_identity`; see there for how, and for why the SDK's sleeps are cut
//! short in this test binary. The vault is the fake in `sv0_testkit::fake_vault`.

use azure_core::credentials::TokenCredential;
use azure_identity::{DeveloperToolsCredential, DeveloperToolsCredentialOptions, Executor};
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};
use std::sync::Arc;
use std::time::Duration;
use sv0_broker::{
    BrokerError, CredentialBroker, CredentialsRef, KeyVaultConfig, KeyVaultProvider, Provider,
};
use sv0_testkit::fake_identity::{
    Answer, BODY_CANARY, FakeIdentity, fast_sdk_sleeps, unreachable_imds_credential,
};
use sv0_testkit::fake_vault::FakeVault;

fn kv_ref() -> CredentialsRef {
    CredentialsRef {
        provider: Provider::AzureKeyvault,
        reference: "AWS".to_owned(),
    }
}

/// A broker on `vault` with `credential`. The timeout is far above the credential's own retry
/// schedule (72 s at full length, 72 ms here), so what is tested is how its final error is
/// classed, not our timeout.
async fn broker(vault: &FakeVault, credential: Arc<dyn TokenCredential>) -> CredentialBroker {
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    let mut config = KeyVaultConfig::new(&vault.url);
    config.timeout = Duration::from_secs(30);
    let provider = KeyVaultProvider::with_credential(config, credential, vault.client_options())
        .expect("provider");
    CredentialBroker::unobserved().with_key_vault(provider)
}

/// IMDS answering 5xx or 429 (after the credential's own retries) is a transient failure, and the
/// IMDS response body stays out of the message. Before the fix, every one of these was a permanent
/// `Vault` error quoting the body.
#[tokio::test]
async fn imds_server_errors_and_throttling_are_transient() {
    fast_sdk_sleeps();
    for status in [500, 503, 429] {
        let (vault, identity) = (FakeVault::start().await, FakeIdentity::start().await);
        identity.answer(Answer::Status(status));
        let broker = broker(&vault, identity.credential()).await;

        let err = broker.resolve("acme", &kv_ref()).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(err.is_transient(), "HTTP {status}: {err}");
        assert_eq!(
            err.to_string(),
            format!(
                "no access token for listing secrets yet: the token endpoint answered HTTP {status}"
            )
        );
        assert!(!text.contains(BODY_CANARY), "a body leaked: {text}");
        assert!(identity.requests() > 1, "the credential retried first");
    }
}

/// An IMDS that refuses connections (the endpoint is down) is transient.
#[tokio::test]
async fn an_unreachable_identity_endpoint_is_transient() {
    fast_sdk_sleeps();
    let vault = FakeVault::start().await;
    let broker = broker(&vault, unreachable_imds_credential().await).await;

    let err = broker.resolve("acme", &kv_ref()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().starts_with(
            "no access token for listing secrets yet: the token endpoint is unreachable: "
        ),
        "{err}"
    );
}

/// The outage is brief: once IMDS answers again, the next resolve of the same broker succeeds (a
/// retried job runs), with nothing stuck in a cache.
#[tokio::test]
async fn a_brief_outage_heals_on_the_next_resolve() {
    fast_sdk_sleeps();
    let (vault, identity) = (FakeVault::start().await, FakeIdentity::start().await);
    identity.answer(Answer::Status(503));
    let broker = broker(&vault, identity.credential()).await;

    let err = broker.resolve("acme", &kv_ref()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");

    identity.answer(Answer::Token);
    let bundle = broker.resolve("acme", &kv_ref()).await.unwrap();
    assert_eq!(bundle.get("KEY").unwrap().expose(), "v");
}

/// A clear refusal from the identity endpoint (400: no such identity on this machine; 401, 403) is
/// permanent, names the status, and keeps the body out. Before the fix the 401 and 403 messages
/// quoted the IMDS body.
#[tokio::test]
async fn identity_endpoint_refusals_are_permanent_without_the_body() {
    fast_sdk_sleeps();
    for status in [400, 401, 403] {
        let (vault, identity) = (FakeVault::start().await, FakeIdentity::start().await);
        identity.answer(Answer::Status(status));
        let broker = broker(&vault, identity.credential()).await;

        let err = broker.resolve("acme", &kv_ref()).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!err.is_transient(), "HTTP {status}: {err}");
        assert!(matches!(err, BrokerError::Credential { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "the credential refused a token for listing secrets: the token endpoint answered HTTP {status}"
            )
        );
        assert!(!text.contains(BODY_CANARY), "a body leaked: {text}");
        assert_eq!(identity.requests(), 1, "a refusal is not retried");
    }
}

/// A machine on which neither `az` nor `azd` is installed: the shell answers 127.
#[derive(Debug)]
struct NoDeveloperTools;

#[async_trait::async_trait]
impl Executor for NoDeveloperTools {
    async fn run(&self, _program: &OsStr, _args: &[&OsStr]) -> std::io::Result<Output> {
        Ok(Output {
            status: ExitStatus::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: b"/bin/sh: 1: az: not found\n".to_vec(),
        })
    }
}

/// An unconfigured credential (the SDK's `DeveloperToolsCredential` on a machine without `az` or
/// `azd`, through its public `executor` option) is permanent: it failed before asking anyone for a
/// token, and retrying will not install the tools.
#[tokio::test]
async fn an_unconfigured_credential_is_permanent() {
    fast_sdk_sleeps();
    let vault = FakeVault::start().await;
    let credential = DeveloperToolsCredential::new(Some(DeveloperToolsCredentialOptions {
        executor: Some(Arc::new(NoDeveloperTools)),
    }))
    .unwrap();
    let broker = broker(&vault, credential).await;

    let err = broker.resolve("acme", &kv_ref()).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(matches!(err, BrokerError::Credential { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("the credential refused a token for listing secrets: "),
        "{text}"
    );
    assert!(text.contains("az not found on PATH"), "{text}");
}
