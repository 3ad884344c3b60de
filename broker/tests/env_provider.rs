//! The `env` provider, the refused providers, and the bundle's trip into a real child process.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::process::Command;
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_broker::{
    BrokerError, BrokerMetrics, CredentialBroker, CredentialsRef, EnvProvider, OS_ENV_ALLOWLIST,
    Provider,
};

fn env_ref(reference: &str) -> CredentialsRef {
    CredentialsRef {
        provider: Provider::Env,
        reference: reference.to_owned(),
    }
}

fn broker(vars: &[(&str, &str)]) -> CredentialBroker {
    CredentialBroker::unobserved().with_env(EnvProvider::from_vars(vars.iter().copied()))
}

fn plain(bundle: &sv0_broker::SecretBundle) -> Vec<(String, String)> {
    bundle
        .iter()
        .map(|(k, v)| (k.to_owned(), v.expose().to_owned()))
        .collect()
}

#[tokio::test]
async fn prefix_is_stripped_and_nothing_else_is_taken() {
    let broker = broker(&[
        ("SV0_TENANT_ACME_AWSXUPRIMARY_ACCESS_KEY_ID", "id"),
        ("SV0_TENANT_ACME_AWSXUPRIMARY_SECRET_ACCESS_KEY", "key"),
        ("SV0_TENANT_ACME_AWSXUPRIMARY_", "no name: skipped"),
        (
            "SV0_TENANT_ACME_AWS_PRIMARY_KEY",
            "ref AWS's (name PRIMARY_KEY)",
        ),
        ("SV0_TENANT_ACME_AWSXUSECONDARY_KEY", "other ref"),
        (
            "SV0_TENANT_ACME_ENTRAXUDEFAULT_CLIENT_ID",
            "other connector",
        ),
        (
            "sv0_tenant_acme_awsxuprimary_lower",
            "names are case-sensitive",
        ),
        ("AWS_PRIMARY_ACCESS_KEY_ID", "not a tenant variable"),
    ]);
    let bundle = broker
        .resolve("acme", &env_ref("AWS_PRIMARY"))
        .await
        .unwrap();
    assert_eq!(
        plain(&bundle),
        [
            ("ACCESS_KEY_ID".to_owned(), "id".to_owned()),
            ("SECRET_ACCESS_KEY".to_owned(), "key".to_owned())
        ]
    );
}

#[tokio::test]
async fn overlapping_tenant_names_never_see_each_others_variables() {
    let broker = broker(&[
        ("SV0_TENANT_ACME_CORPXUXX_KEY", "acme, ref CORP_X"),
        ("SV0_TENANT_ACMEXDCORP_XX_KEY", "acme-corp, ref X"),
        ("SV0_TENANT_AXDB_AWS_KEY", "a-b"),
        ("SV0_TENANT_AXUB_AWS_KEY", "a_b"),
        // What a naive `-`/`_` → `_` slug would have produced for a-b and a_b: tenant a's, ref B's.
        ("SV0_TENANT_A_B_AWS_KEY", "a, ref B"),
    ]);
    let get = |bundle: &sv0_broker::SecretBundle| bundle.get("KEY").unwrap().expose().to_owned();
    let acme = broker.resolve("acme", &env_ref("CORP_X")).await.unwrap();
    let acme_corp = broker.resolve("acme-corp", &env_ref("X")).await.unwrap();
    assert_eq!((get(&acme), acme.len()), ("acme, ref CORP_X".to_owned(), 1));
    assert_eq!(
        (get(&acme_corp), acme_corp.len()),
        ("acme-corp, ref X".to_owned(), 1)
    );

    let a_dash = broker.resolve("a-b", &env_ref("AWS")).await.unwrap();
    let a_under = broker.resolve("a_b", &env_ref("AWS")).await.unwrap();
    assert_eq!((get(&a_dash), a_dash.len()), ("a-b".to_owned(), 1));
    assert_eq!((get(&a_under), a_under.len()), ("a_b".to_owned(), 1));

    let a = broker.resolve("a", &env_ref("B")).await.unwrap();
    assert_eq!(plain(&a), [("AWS_KEY".to_owned(), "a, ref B".to_owned())]);
}

/// Refs of one tenant must not read each other's secrets. Ref `AWS` used to match
/// `SV0_TENANT_ACME_AWS_*`, and so read ref `AWS_PRIMARY`'s variables too (as `PRIMARY_…`). The
/// variables are named by `env_prefix`, so the test holds for whatever the encoding spells.
#[tokio::test]
async fn refs_of_one_tenant_never_see_each_others_variables() {
    let acme = TenantId::parse("acme").unwrap();
    let var = |reference: &str, name: &str| {
        format!(
            "{}{name}",
            env_prefix(&acme, &Ref::parse(reference).unwrap())
        )
    };
    let vars = [
        (var("AWS", "KEY"), "aws"),
        (var("AWS_PRIMARY", "KEY"), "aws-primary"),
        (var("AWS_PRIMARY_2", "KEY"), "aws-primary-2"),
        (var("AWSX", "KEY"), "awsx"),
    ];
    let broker = broker(
        &vars
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
    );
    for (reference, value) in [
        ("AWS", "aws"),
        ("AWS_PRIMARY", "aws-primary"),
        ("AWS_PRIMARY_2", "aws-primary-2"),
        ("AWSX", "awsx"),
    ] {
        let bundle = broker.resolve("acme", &env_ref(reference)).await.unwrap();
        assert_eq!(
            plain(&bundle),
            [("KEY".to_owned(), value.to_owned())],
            "ref {reference}"
        );
    }
}

#[tokio::test]
async fn no_match_is_a_clear_not_found_without_values() {
    let broker = broker(&[("SV0_TENANT_OTHER_AWS_KEY", "hunter2")]);
    let err = broker.resolve("acme", &env_ref("AWS")).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "no credentials for tenant acme ref AWS (looked for SV0_TENANT_ACME_AWS_*)"
    );
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[tokio::test]
async fn aws_and_op_are_refused_with_their_reasons() {
    let mut registry = Registry::with_prefix("sv0");
    let broker = CredentialBroker::new(BrokerMetrics::new(&mut registry))
        .with_env(EnvProvider::from_vars([("SV0_TENANT_ACME_AWS_KEY", "v")]));
    let aws = CredentialsRef {
        provider: Provider::AwsSecretsmanager,
        reference: "AWS".into(),
    };
    let err = broker.resolve("acme", &aws).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `aws_secretsmanager` refused: reserved, not implemented"
    );
    let op = CredentialsRef {
        provider: Provider::Op,
        reference: "op://vault/item".into(),
    };
    let err = broker.resolve("acme", &op).await.unwrap_err();
    assert!(matches!(
        err,
        BrokerError::ProviderRefused {
            provider: Provider::Op,
            ..
        }
    ));
    assert!(
        err.to_string().contains("1Password is bootstrap-only"),
        "{err}"
    );

    let vault = CredentialsRef {
        provider: Provider::AzureKeyvault,
        reference: "AWS".into(),
    };
    let err = broker.resolve("acme", &vault).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `azure_keyvault` is not configured in this broker"
    );

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    for series in [
        r#"sv0_broker_resolves_total{provider="aws_secretsmanager",outcome="refused"} 1"#,
        r#"sv0_broker_resolves_total{provider="op",outcome="refused"} 1"#,
        r#"sv0_broker_resolves_total{provider="azure_keyvault",outcome="refused"} 1"#,
        r#"sv0_broker_resolve_duration_seconds_count{provider="op"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

#[test]
fn credentials_ref_uses_the_adr_wire_names() {
    let parsed: CredentialsRef =
        serde_json::from_str(r#"{"provider": "azure_keyvault", "ref": "ENTRA_DEFAULT"}"#).unwrap();
    assert_eq!(parsed.provider, Provider::AzureKeyvault);
    assert_eq!(parsed.reference, "ENTRA_DEFAULT");
    for (provider, name) in [
        (Provider::Env, "env"),
        (Provider::AzureKeyvault, "azure_keyvault"),
        (Provider::AwsSecretsmanager, "aws_secretsmanager"),
        (Provider::Op, "op"),
    ] {
        assert_eq!(serde_json::to_value(provider).unwrap(), name);
    }
    assert!(
        serde_json::from_str::<CredentialsRef>(r#"{"provider": "vault", "ref": "X"}"#).is_err()
    );
}

/// The broker's half of the connector launch: a real child gets the OS allowlist and the bundle,
/// and nothing else of this process's environment (which holds CARGO_*, RUST_* and more).
#[tokio::test]
async fn bundle_reaches_a_child_process_and_nothing_else_does() {
    let broker = broker(&[
        ("SV0_TENANT_ACME_AWS_ACCESS_KEY_ID", "AKIA-child"),
        (
            "SV0_TENANT_ACME_AWS_SECRET",
            "s3cr3t with spaces=and equals",
        ),
        ("SV0_TENANT_ACME_OTHER_SECRET", "not for this connector"),
    ]);
    let bundle = broker.resolve("acme", &env_ref("AWS")).await.unwrap();
    assert!(
        std::env::vars_os().count() > OS_ENV_ALLOWLIST.len(),
        "the parent has more to leak"
    );

    let mut command = Command::new("/usr/bin/env");
    bundle.apply_to_command(&mut command);
    let output = command.output().expect("run env");
    assert!(output.status.success());
    let child: BTreeMap<String, String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    let mut expected: BTreeMap<String, String> = OS_ENV_ALLOWLIST
        .iter()
        .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
        .collect();
    expected.insert("ACCESS_KEY_ID".into(), "AKIA-child".into());
    expected.insert("SECRET".into(), "s3cr3t with spaces=and equals".into());
    assert!(expected.contains_key("PATH"), "PATH is inherited");
    assert_eq!(child, expected);
}

/// A bundle must not be able to set `PATH`, `HOME`, `LD_PRELOAD` … A variable
/// `SV0_TENANT_ACME_AWS_LD_PRELOAD` used to reach the connector as `LD_PRELOAD`. Now the resolve
/// fails, naming the variable and never its value; names that merely contain a reserved one pass.
#[tokio::test]
async fn a_bundle_may_not_set_os_or_loader_variables() {
    let value = "hunter2-not-for-the-loader";
    for name in OS_ENV_ALLOWLIST.into_iter().chain([
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "DYLD_INSERT_LIBRARIES",
        "ld_preload",
        "Path",
    ]) {
        let var = format!("SV0_TENANT_ACME_AWS_{name}");
        let broker = broker(&[(&var, value), ("SV0_TENANT_ACME_AWS_KEY", "fine")]);
        let err = broker.resolve("acme", &env_ref("AWS")).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
        let upper = name.to_ascii_uppercase();
        let why = if upper.starts_with("LD_") || upper.starts_with("DYLD_") {
            "the dynamic loader acts on it"
        } else {
            "the connector inherits it from the OS"
        };
        assert_eq!(
            err.to_string(),
            format!("secret `{var}` refused: bundle name `{name}` is reserved: {why}")
        );
        assert!(!format!("{err:?}").contains(value), "{err:?}");
    }

    let broker = broker(&[
        ("SV0_TENANT_ACME_AWS_OLD_PATH", "a"),
        ("SV0_TENANT_ACME_AWS_MY_LD_PRELOAD", "b"),
        ("SV0_TENANT_ACME_AWS_PATHS", "c"),
        ("SV0_TENANT_ACME_AWS_LD", "d"),
        ("SV0_TENANT_ACME_AWS_LANGUAGE", "e"),
    ]);
    let bundle = broker.resolve("acme", &env_ref("AWS")).await.unwrap();
    assert_eq!(
        bundle.names().collect::<Vec<_>>(),
        ["LANGUAGE", "LD", "MY_LD_PRELOAD", "OLD_PATH", "PATHS"]
    );
}

/// A tenant's secret named like a proxy, or like a variable that makes an interpreter, libc, a
/// TLS library or git load code, trust or send elsewhere, used to reach the connector's
/// environment as such (`HTTPS_PROXY`, `NODE_OPTIONS`, `PYTHONPATH`, `BASH_ENV`,
/// `JAVA_TOOL_OPTIONS` …). Now the resolve fails naming the variable, and nothing is passed.
#[tokio::test]
async fn a_bundle_may_not_set_proxies_or_runtime_hooks() {
    let value = "http://attacker.example:3128";
    let proxies = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
    ];
    let hooks = [
        "NODE_OPTIONS",
        "PYTHONPATH",
        "BASH_ENV",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "PERL5OPT",
        "GCONV_PATH",
        "SSL_CERT_FILE",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_KEY_0",
        "node_options",
    ];
    let cases = proxies
        .into_iter()
        .map(|name| (name, "it routes the connector's traffic"))
        .chain(hooks.into_iter().map(|name| {
            (
                name,
                "it makes the connector's runtime load code, trust or send secrets elsewhere",
            )
        }));
    for (name, why) in cases {
        let var = format!("SV0_TENANT_ACME_AWS_{name}");
        let broker = broker(&[(&var, value), ("SV0_TENANT_ACME_AWS_KEY", "fine")]);
        let err = broker.resolve("acme", &env_ref("AWS")).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("secret `{var}` refused: bundle name `{name}` is reserved: {why}")
        );
        assert!(!format!("{err:?}").contains(value), "{err:?}");
    }
}
