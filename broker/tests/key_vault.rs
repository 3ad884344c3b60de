//! The `azure_keyvault` provider, over HTTPS, against the fake vault in `sv0_testkit::fake_vault`
//! (see there for why a fake), driven by the official Azure SDK crates with only their transport
//! and retry options configured.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TestCredential;
use sv0_broker::naming::{Ref, TenantId, key_vault_prefix};
use sv0_broker::{
    BrokerError, CA_FILE_VAR, ConfigError, CredentialBroker, CredentialsRef, KeyVaultConfig,
    KeyVaultProvider, Provider, TransientError, VAULT_URL_VAR,
};
use sv0_testkit::fake_vault::{FakeVault, Fault, REAL_RESOURCE, TOKEN};

fn kv_ref(reference: &str) -> CredentialsRef {
    CredentialsRef {
        provider: Provider::AzureKeyvault,
        reference: reference.to_owned(),
    }
}

fn config(vault: &FakeVault) -> KeyVaultConfig {
    let mut config = KeyVaultConfig::new(&vault.url);
    config.timeout = Duration::from_secs(5);
    config.max_retries = 1;
    config
}

fn broker_with(
    vault: &FakeVault,
    config: KeyVaultConfig,
) -> (CredentialBroker, Arc<TestCredential>) {
    let credential = Arc::new(TestCredential::default());
    let provider =
        KeyVaultProvider::with_credential(config, credential.clone(), vault.client_options())
            .expect("provider");
    let broker = CredentialBroker::unobserved().with_key_vault(provider);
    (broker, credential)
}

fn broker(vault: &FakeVault) -> (CredentialBroker, Arc<TestCredential>) {
    broker_with(vault, config(vault))
}

#[tokio::test]
async fn bundle_is_every_secret_under_the_prefix_across_pages() {
    let vault = FakeVault::start().await;
    vault.set_page_size(2);
    vault.set_secret(
        "tenants-acme-connector-awsxuprimary-access-key-id",
        "AKIA-acme",
    );
    vault.set_secret(
        "tenants-acme-connector-awsxuprimary-secret-access-key",
        "old",
    );
    vault.set_secret(
        "tenants-acme-connector-awsxuprimary-secret-access-key",
        "new",
    );
    vault.set_secret("Tenants-Acme-Connector-AwsXuPrimary-Region", "eu-west-1");
    vault.set_secret("tenants-acme-connector-awsxuprimary-disabled", "never");
    vault.disable("tenants-acme-connector-awsxuprimary-disabled");
    vault.set_secret("tenants-acme-connector-awsxusecondary-key", "other-ref");
    vault.set_secret(
        "tenants-acme-connector-entraxudefault-client-id",
        "other-kind",
    );
    vault.set_secret("unrelated", "x");

    let (broker, credential) = broker(&vault);
    let bundle = broker
        .resolve("acme", &kv_ref("AWS_PRIMARY"))
        .await
        .unwrap();

    let got: Vec<(&str, &str)> = bundle.iter().map(|(k, v)| (k, v.expose())).collect();
    assert_eq!(
        got,
        [
            ("ACCESS_KEY_ID", "AKIA-acme"),
            ("REGION", "eu-west-1"),
            ("SECRET_ACCESS_KEY", "new"),
        ]
    );
    let requests = vault.requests();
    let list_pages = requests
        .iter()
        .filter(|r| r.starts_with("GET /secrets?"))
        .count();
    // 8 secrets, 2 a page: the first request is the anonymous challenge, then 4 pages.
    assert_eq!(list_pages, 5, "{requests:#?}");
    assert!(requests[0].ends_with("anonymous"), "{requests:#?}");
    assert!(requests[1].ends_with("bearer"), "{requests:#?}");
    assert_eq!(credential.scopes(), [format!("{REAL_RESOURCE}/.default")]);
}

#[tokio::test]
async fn bundles_are_cached_until_the_ttl() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v1");
    let mut config = config(&vault);
    config.cache_ttl = Duration::from_millis(300);
    let (broker, _) = broker_with(&vault, config);

    let first = broker.resolve("acme", &kv_ref("AWS")).await.unwrap();
    vault.set_secret("tenants-acme-connector-aws-key", "v2");
    let cached = broker.resolve("acme", &kv_ref("AWS")).await.unwrap();
    assert_eq!(first.get("KEY").unwrap().expose(), "v1");
    assert_eq!(cached.get("KEY").unwrap().expose(), "v1");

    tokio::time::sleep(Duration::from_millis(350)).await;
    let fresh = broker.resolve("acme", &kv_ref("AWS")).await.unwrap();
    assert_eq!(fresh.get("KEY").unwrap().expose(), "v2");
}

#[tokio::test]
async fn tenants_with_overlapping_names_never_see_each_others_secrets() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-corpxuxx-key", "acme-corp-x");
    vault.set_secret("tenants-acmexdcorp-connector-xx-key", "acme-corp's");
    vault.set_secret("tenants-axdb-connector-aws-key", "a-b's");
    vault.set_secret("tenants-axub-connector-aws-key", "a_b's");
    let (broker, _) = broker(&vault);

    let acme = broker.resolve("acme", &kv_ref("CORP_X")).await.unwrap();
    let acme_corp = broker.resolve("acme-corp", &kv_ref("X")).await.unwrap();
    assert_eq!(acme.get("KEY").unwrap().expose(), "acme-corp-x");
    assert_eq!(acme_corp.get("KEY").unwrap().expose(), "acme-corp's");
    assert_eq!((acme.len(), acme_corp.len()), (1, 1));

    let a_dash = broker.resolve("a-b", &kv_ref("AWS")).await.unwrap();
    let a_under = broker.resolve("a_b", &kv_ref("AWS")).await.unwrap();
    assert_eq!(a_dash.get("KEY").unwrap().expose(), "a-b's");
    assert_eq!(a_under.get("KEY").unwrap().expose(), "a_b's");
    assert_eq!((a_dash.len(), a_under.len()), (1, 1));

    // `acme` cannot reach `acme-corp`'s secret through any spelling of the ref.
    let err = broker.resolve("acme", &kv_ref("X")).await.unwrap_err();
    assert!(matches!(err, BrokerError::NotFound { .. }), "{err}");
}

/// Refs of one tenant must not read each other's secrets. Ref `AWS` used to list every
/// `tenants-acme-connector-aws-*` secret, ref `AWS_PRIMARY`'s included. The secrets are named by
/// `key_vault_prefix`, so the test holds for whatever the encoding spells.
#[tokio::test]
async fn refs_of_one_tenant_never_see_each_others_secrets() {
    let vault = FakeVault::start().await;
    let acme = TenantId::parse("acme").unwrap();
    let refs = ["AWS", "AWS_PRIMARY", "AWS_PRIMARY_2", "AWSX"];
    for reference in refs {
        let prefix = key_vault_prefix(&acme, &Ref::parse(reference).unwrap());
        vault.set_secret(&format!("{prefix}key"), reference);
    }
    let (broker, _) = broker(&vault);
    for reference in refs {
        let bundle = broker.resolve("acme", &kv_ref(reference)).await.unwrap();
        let got: Vec<(&str, &str)> = bundle.iter().map(|(k, v)| (k, v.expose())).collect();
        assert_eq!(got, [("KEY", reference)], "ref {reference}");
    }
}

/// A bundle must not be able to set `PATH`, `HOME`, `LD_PRELOAD` … A secret named `…-ld-preload`
/// used to become `LD_PRELOAD` for the connector; one named `…-https-proxy` or `…-node-options`
/// still became `HTTPS_PROXY` or `NODE_OPTIONS`. Now the resolve fails, naming the secret, and the
/// secret is refused from the listing: its value is never read.
#[tokio::test]
async fn a_secret_named_like_an_os_or_loader_variable_is_refused_unread() {
    let value = "hunter2-not-for-the-loader";
    let os = "the connector inherits it from the OS";
    let loader = "the dynamic loader acts on it";
    let proxy = "it routes the connector's traffic";
    let hook = "it makes the connector's runtime load code, trust or send secrets elsewhere";
    for (secret, name, why) in [
        (
            "tenants-acme-connector-aws-ld-preload",
            "LD_PRELOAD",
            loader,
        ),
        ("tenants-acme-connector-aws-path", "PATH", os),
        ("tenants-acme-connector-aws-home", "HOME", os),
        ("tenants-acme-connector-aws-lc-all", "LC_ALL", os),
        (
            "Tenants-Acme-Connector-Aws-Dyld-Insert-Libraries",
            "DYLD_INSERT_LIBRARIES",
            loader,
        ),
        (
            "tenants-acme-connector-aws-https-proxy",
            "HTTPS_PROXY",
            proxy,
        ),
        ("tenants-acme-connector-aws-no-proxy", "NO_PROXY", proxy),
        (
            "tenants-acme-connector-aws-node-options",
            "NODE_OPTIONS",
            hook,
        ),
        ("tenants-acme-connector-aws-pythonpath", "PYTHONPATH", hook),
        ("tenants-acme-connector-aws-bash-env", "BASH_ENV", hook),
        (
            "tenants-acme-connector-aws-java-tool-options",
            "JAVA_TOOL_OPTIONS",
            hook,
        ),
        (
            "tenants-acme-connector-aws--java-options",
            "_JAVA_OPTIONS",
            hook,
        ),
        (
            "tenants-acme-connector-aws-git-ssh-command",
            "GIT_SSH_COMMAND",
            hook,
        ),
    ] {
        let vault = FakeVault::start().await;
        vault.set_secret("tenants-acme-connector-aws-key", "fine");
        vault.set_secret(secret, value);
        let (broker, _) = broker(&vault);

        let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("secret `{secret}` refused: bundle name `{name}` is reserved: {why}")
        );
        assert!(!format!("{err:?}").contains(value), "{err:?}");
        let read = vault
            .requests()
            .into_iter()
            .find(|r| r.starts_with(&format!("GET /secrets/{secret}")));
        assert_eq!(read, None, "the reserved secret was read");
    }
}

#[tokio::test]
async fn no_secret_under_the_prefix_is_not_found() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-other-connector-aws-key", "v");
    let (broker, _) = broker(&vault);
    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "no credentials for tenant acme ref AWS (looked for tenants-acme-connector-aws-*)"
    );
}

#[tokio::test]
async fn a_secret_deleted_after_listing_is_a_permanent_not_found() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.inject("/secrets/tenants-acme-connector-aws-key", 1, Fault::Deleted);
    let (broker, _) = broker(&vault);
    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert_eq!(
        err.to_string(),
        "key vault refused secret `tenants-acme-connector-aws-key`: HTTP 404 SecretNotFound"
    );
}

#[tokio::test]
async fn forbidden_is_permanent_and_clear() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.forbid("tenants-acme-connector-aws-key");
    let (broker, _) = broker(&vault);
    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "key vault refused secret `tenants-acme-connector-aws-key`: HTTP 403 Forbidden"
    );
    let gets = vault
        .requests()
        .iter()
        .filter(|r| r.contains("/secrets/tenants"))
        .count();
    assert_eq!(gets, 1, "a 403 is not retried");
}

#[tokio::test]
async fn throttling_is_retried_then_transient() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.inject("/secrets?", 10, Fault::Throttle(1));
    let (broker, _) = broker(&vault);

    let started = Instant::now();
    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        matches!(
            err,
            BrokerError::Transient(TransientError::Throttled { .. })
        ),
        "{err}"
    );
    // max_retries = 1: the bearer request and one retry, the retry after Retry-After (1 s).
    let throttled = vault
        .requests()
        .iter()
        .filter(|r| r.ends_with("bearer"))
        .count();
    assert_eq!(throttled, 2, "{:#?}", vault.requests());
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn throttling_then_success_resolves() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.inject(
        "/secrets/tenants-acme-connector-aws-key",
        1,
        Fault::Throttle(0),
    );
    let (broker, _) = broker(&vault);
    let bundle = broker.resolve("acme", &kv_ref("AWS")).await.unwrap();
    assert_eq!(bundle.get("KEY").unwrap().expose(), "v");
}

#[tokio::test]
async fn service_unavailable_is_retried_then_transient() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.inject(
        "/secrets/tenants-acme-connector-aws-key",
        10,
        Fault::Unavailable,
    );
    let (broker, _) = broker(&vault);
    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Transient(TransientError::Server { status: 503, .. })
        ),
        "{err}"
    );
    let reads = vault
        .requests()
        .iter()
        .filter(|r| r.contains("/secrets/tenants"))
        .count();
    assert_eq!(reads, 2, "one read and one retry");
}

#[tokio::test]
async fn a_hanging_vault_times_out_as_transient() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.inject("/secrets/tenants-acme-connector-aws-key", 1, Fault::Hang);
    let mut config = config(&vault);
    config.timeout = Duration::from_millis(500);
    let (broker, _) = broker_with(&vault, config);

    let started = Instant::now();
    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::Transient(TransientError::Timeout { .. })),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_challenge_for_another_resource_is_refused_before_any_token() {
    let vault = FakeVault::start().await;
    vault.set_secret("tenants-acme-connector-aws-key", "v");
    vault.set_challenge_resource("https://vault.attacker.example");
    let (broker, credential) = broker(&vault);

    let err = broker.resolve("acme", &kv_ref("AWS")).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("doesn't match the requested domain"),
        "{err}"
    );
    assert!(credential.scopes().is_empty(), "no token was requested");
    assert!(vault.requests().iter().all(|r| r.ends_with("anonymous")));
}

#[tokio::test]
async fn fake_vault_requires_api_version_and_serves_versions() {
    let vault = FakeVault::start().await;
    vault.set_secret("name", "one");
    vault.set_secret("name", "two");
    let client = vault.http_client();

    let anonymous = client.get(format!("{}/secrets?api-version=2025-07-01", vault.url));
    let challenge = anonymous.send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.starts_with(r#"Bearer authorization="https://login.microsoftonline.com/"#));
    assert!(
        header.ends_with(r#"resource="https://vault.azure.net""#),
        "{header}"
    );

    let no_version = client
        .get(format!("{}/secrets", vault.url))
        .bearer_auth(TOKEN);
    let response = no_version.send().await.unwrap();
    assert_eq!(response.status(), 400);

    // The SDK's own version calls: list the versions, read the older one by id.
    let sdk = azure_security_keyvault_secrets::SecretClient::new(
        &vault.url,
        Arc::new(TestCredential::default()),
        Some(azure_security_keyvault_secrets::SecretClientOptions {
            client_options: vault.client_options(),
            ..Default::default()
        }),
    )
    .unwrap();
    use azure_security_keyvault_secrets::ResourceExt;
    use futures::TryStreamExt;
    let versions: Vec<_> = sdk
        .list_secret_properties_versions("name", None)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(versions.len(), 2);
    let first = versions[0].resource_id().unwrap().version.unwrap();
    let options = azure_security_keyvault_secrets::models::SecretClientGetSecretOptions {
        secret_version: Some(first),
        ..Default::default()
    };
    let old = sdk
        .get_secret("name", Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(old.value.as_deref(), Some("one"));
}

#[tokio::test]
async fn plain_http_vault_urls_are_refused() {
    let credential = Arc::new(TestCredential::default());
    let config = KeyVaultConfig::new("http://kv-sv0-dev.vault.azure.net");
    let err = KeyVaultProvider::with_credential(config, credential, Default::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("must be an https URL"), "{err}");
}

/// `SV0_KEYVAULT_CA_FILE` is read with the rest of the configuration and is optional.
#[test]
fn the_ca_file_is_configured_from_the_environment() {
    fn lookup(vars: &[(&str, &str)], name: &str) -> Option<String> {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    }
    let url = (VAULT_URL_VAR, "https://kv-sv0-dev.vault.azure.net");
    let with = [url, (CA_FILE_VAR, "/etc/sv0/proxy-ca.pem")];
    let config = KeyVaultConfig::from_env(|name| lookup(&with, name))
        .unwrap()
        .unwrap();
    assert_eq!(
        config.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/sv0/proxy-ca.pem"))
    );
    let config = KeyVaultConfig::from_env(|name| lookup(&[url], name))
        .unwrap()
        .unwrap();
    assert_eq!(config.ca_file, None);
}

/// A CA file that cannot be read or holds no certificate stops the start, naming the variable
/// and the file: a worker that silently trusted only the system's roots would fail every resolve.
#[test]
fn an_unusable_ca_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (path, reason) in [
        (dir.path().join("missing.pem"), "No such file"),
        (empty, "no PEM certificate"),
    ] {
        let mut config = KeyVaultConfig::new("https://kv-sv0-dev.vault.azure.net");
        config.ca_file = Some(path.clone());
        let err = KeyVaultProvider::connect(config).err().expect("refused");
        assert!(matches!(err, ConfigError::CaFile { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("`{CA_FILE_VAR}` ({})", path.display())),
            "{text}"
        );
        assert!(text.contains(reason), "{text}");
    }
}
