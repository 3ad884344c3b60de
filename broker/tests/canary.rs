//! A canary secret, resolved through both providers, never shows in tracing output (ours and the
//! Azure SDK's, at TRACE), in `Debug`/`Display`/JSON of anything that carried it, in errors, or
//! in the metrics.

mod support;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use support::{TestCredential, capture_tracing};
use sv0_broker::{
    BrokerMetrics, CredentialBroker, CredentialsRef, EnvProvider, KeyVaultConfig, KeyVaultProvider,
    Provider, REDACTED,
};
use sv0_testkit::fake_vault::FakeVault;

const CANARY: &str = "CANARY-7f3a9c1e-do-not-leak";

#[tokio::test]
async fn canary_never_leaks() {
    let (logs, _guard) = capture_tracing();
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-canary", CANARY);
    vault.set_secret("tenants-acme-connector-broken-canary", CANARY);
    vault.set_secret("tenants-acme-connector-broken-denied", "x");
    vault.forbid("tenants-acme-connector-broken-denied");
    vault.set_secret("tenants-acme-connector-preload-ld-preload", CANARY);

    let mut registry = Registry::default();
    let key_vault = KeyVaultProvider::with_credential(
        KeyVaultConfig::new(&vault.url),
        Arc::new(TestCredential::default()),
        vault.client_options(),
    )
    .unwrap();
    let broker = CredentialBroker::new(BrokerMetrics::new(&mut registry))
        .with_env(EnvProvider::from_vars([
            ("SV0_TENANT_ACME_AWS_CANARY", CANARY),
            ("SV0_TENANT_ACME_PRELOAD_LD_PRELOAD", CANARY),
        ]))
        .with_key_vault(key_vault);
    let reference = |provider, reference: &str| CredentialsRef {
        provider,
        reference: reference.to_owned(),
    };

    let mut seen = Vec::new();
    for provider in [Provider::Env, Provider::AzureKeyvault] {
        let bundle = broker
            .resolve("acme", &reference(provider, "AWS"))
            .await
            .unwrap();
        let value = bundle.get("CANARY").unwrap();
        assert_eq!(value.expose(), CANARY, "the canary did go through");
        assert_eq!(format!("{value:?}"), REDACTED);
        assert_eq!(format!("{value}"), REDACTED);
        seen.push(format!("{bundle:?} {bundle:#?} {value:?} {value}"));
        seen.push(serde_json::to_string(&bundle).unwrap());
        seen.push(serde_json::to_string(value).unwrap());
    }
    // An error after the canary was read in the same resolve (its sibling is forbidden).
    let err = broker
        .resolve("acme", &reference(Provider::AzureKeyvault, "BROKEN"))
        .await
        .unwrap_err();
    seen.push(format!("{err} {err:?}"));
    // The canary under a reserved bundle name (`LD_PRELOAD`), in both providers: refused by the
    // secret's name, the value never shown.
    for provider in [Provider::Env, Provider::AzureKeyvault] {
        let err = broker
            .resolve("acme", &reference(provider, "PRELOAD"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("LD_PRELOAD"), "{err}");
        seen.push(format!("{err} {err:?}"));
    }
    // A ref holding the canary itself is refused without echoing it.
    let pasted = format!("AWS/{CANARY}");
    let err = broker
        .resolve("acme", &reference(Provider::Env, &pasted))
        .await
        .unwrap_err();
    seen.push(format!("{err} {err:?}"));

    let mut metrics = String::new();
    encode(&mut metrics, &registry).unwrap();
    assert!(
        metrics.contains(r#"{provider="env",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"{provider="azure_keyvault",outcome="ok"} 1"#),
        "{metrics}"
    );
    seen.push(metrics);

    let logs = logs.text();
    assert!(
        logs.contains("credentials resolved"),
        "tracing was captured: {logs}"
    );
    assert!(logs.contains("CANARY"), "names are logged, values are not");
    seen.push(logs);

    for text in seen {
        assert!(!text.contains(CANARY), "canary leaked into: {text}");
    }
}
