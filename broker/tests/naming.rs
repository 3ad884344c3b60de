//! The naming rules: what is refused, what is accepted, and proofs that no accepted input can
//! leave its tenant's namespace.

use proptest::prelude::*;
use sv0_broker::naming::{
    Ref, Refusal, TenantId, env_prefix, key_vault_bundle_name, key_vault_prefix,
};
use sv0_broker::{BrokerError, CredentialBroker, CredentialsRef, EnvProvider, Provider};

#[test]
fn refused_refs() {
    let long = "A".repeat(65);
    let table: &[(&str, Refusal)] = &[
        ("", Refusal::Empty),
        (&long, Refusal::TooLong { max: 64 }),
        ("AWS/PRIMARY", Refusal::PathSeparator),
        ("/AWS", Refusal::PathSeparator),
        ("AWS\\PRIMARY", Refusal::PathSeparator),
        ("..", Refusal::DotDot),
        ("AWS..PRIMARY", Refusal::DotDot),
        ("TENANT", Refusal::ContainsTenant),
        ("OTHER_TENANT_AWS", Refusal::ContainsTenant),
        ("tenant", Refusal::ContainsTenant),
        ("TeNaNt_X", Refusal::ContainsTenant),
        ("_AWS", Refusal::BadFirstChar),
        ("aws_primary", Refusal::BadFirstChar),
        ("AWS-PRIMARY", Refusal::BadChar),
        ("AWS PRIMARY", Refusal::BadChar),
        ("AWS.PRIMARY", Refusal::BadChar),
        ("AWS_Primary", Refusal::BadChar),
        ("AWS=X", Refusal::BadChar),
        ("AWS\0", Refusal::BadChar),
        ("AWS\n", Refusal::BadChar),
        ("ÄWS", Refusal::BadFirstChar),
        ("AWS_É", Refusal::BadChar),
        ("*", Refusal::BadFirstChar),
    ];
    for (reference, refusal) in table {
        assert_eq!(Ref::parse(reference), Err(*refusal), "ref {reference:?}");
    }
}

#[test]
fn accepted_refs() {
    let max = "A".repeat(64);
    for reference in [
        "AWS_PRIMARY",
        "ENTRA_DEFAULT",
        "A",
        "9",
        "GCP_2",
        "AWS__X",
        "X_",
        &max,
    ] {
        assert_eq!(Ref::parse(reference).unwrap().as_str(), reference);
    }
}

#[test]
fn tenant_id_edge_cases() {
    let max = "a".repeat(63);
    let table: &[(&str, Result<&str, Refusal>)] = &[
        ("acme", Ok("acme")),
        ("acme-corp", Ok("acmexdcorp")),
        ("a_b", Ok("axub")),
        ("a-b", Ok("axdb")),
        ("x", Ok("xx")),
        ("xd", Ok("xxd")),
        ("0", Ok("0")),
        ("acme-", Ok("acmexd")),
        ("a--b", Ok("axdxdb")),
        (&max, Ok(&max)),
        ("", Err(Refusal::Empty)),
        (&"a".repeat(64), Err(Refusal::TooLong { max: 63 })),
        // Case is refused, not folded: folding would give `Acme` and `acme` one namespace.
        ("Acme", Err(Refusal::BadFirstChar)),
        ("acME", Err(Refusal::BadChar)),
        ("-acme", Err(Refusal::BadFirstChar)),
        ("_acme", Err(Refusal::BadFirstChar)),
        ("acmé", Err(Refusal::BadChar)),
        ("ａcme", Err(Refusal::BadFirstChar)),
        ("acme corp", Err(Refusal::BadChar)),
        ("acme/corp", Err(Refusal::BadChar)),
        ("acme.corp", Err(Refusal::BadChar)),
    ];
    for (tenant, expected) in table {
        let got = TenantId::parse(tenant).map(|t| t.slug());
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            *expected,
            "tenant {tenant:?}"
        );
    }
}

/// The ref is escaped like the tenant (`_` → `XU`, `X` → `XX`), so its segment ends at the
/// separator after it, as the tenant's does.
#[test]
fn lookup_names_follow_the_documented_mapping() {
    let names = |tenant: &str, reference: &str| {
        let (t, r) = (
            TenantId::parse(tenant).unwrap(),
            Ref::parse(reference).unwrap(),
        );
        (env_prefix(&t, &r), key_vault_prefix(&t, &r))
    };
    let table = [
        (
            "acme",
            "AWS",
            "SV0_TENANT_ACME_AWS_",
            "tenants-acme-connector-aws-",
        ),
        (
            "acme-corp",
            "AWS_PRIMARY",
            "SV0_TENANT_ACMEXDCORP_AWSXUPRIMARY_",
            "tenants-acmexdcorp-connector-awsxuprimary-",
        ),
        (
            "acme",
            "XBOX_2",
            "SV0_TENANT_ACME_XXBOXXXU2_",
            "tenants-acme-connector-xxboxxxu2-",
        ),
    ];
    for (tenant, reference, env, key_vault) in table {
        assert_eq!(
            names(tenant, reference),
            (env.to_owned(), key_vault.to_owned())
        );
    }
}

#[tokio::test]
async fn refusals_name_the_field_and_never_echo_the_input() {
    let broker = CredentialBroker::unobserved()
        .with_env(EnvProvider::from_vars([("SV0_TENANT_ACME_AWS_KEY", "v")]));
    let env = |reference: &str| CredentialsRef {
        provider: Provider::Env,
        reference: reference.to_owned(),
    };
    let err = broker
        .resolve("acme", &env("s3cr3t/value"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `ref`: contains a path separator (`/` or `\\`)"
    );
    let err = broker.resolve("Hunter2", &env("AWS")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `tenant_id`: must start with a letter or digit"
    );
    assert!(matches!(err, BrokerError::InvalidTenantId(_)));
}

/// Decodes a slug (the inverse of [`TenantId::slug`]), to show the slug names exactly one tenant.
fn unslug(slug: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = slug.chars();
    while let Some(c) = chars.next() {
        match c {
            'x' => out.push(match chars.next()? {
                'x' => 'x',
                'd' => '-',
                'u' => '_',
                _ => return None,
            }),
            c => out.push(c),
        }
    }
    Some(out)
}

fn tenant_ids() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9_-]{0,62}",
        // Short ids over a tiny alphabet collide in spelling as often as possible.
        "[ax][ax_-]{0,5}",
        any::<String>(),
    ]
}

fn refs() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z0-9][A-Z0-9_]{0,63}",
        "[AX][AX_]{0,6}",
        "[A-Za-z0-9_./\\\\-]{0,12}",
        any::<String>(),
    ]
}

/// Two refs, often one of them the other extended (`AWS` and `AWS_PRIMARY`): the pairs that
/// collide under a plain prefix.
fn ref_pairs() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (refs(), refs()),
        (refs(), "[_X][AX_]{0,6}").prop_map(|(r, tail)| (r.clone(), r + &tail)),
    ]
}

proptest! {
    /// For any tenant id and any accepted ref, both lookup prefixes sit inside the tenant's own
    /// namespace: the segment after the fixed head decodes back to that tenant id, and the next
    /// one back to the ref (the ref's segment ends where the ref does).
    #[test]
    fn accepted_refs_stay_in_their_tenant(tenant in tenant_ids(), reference in refs()) {
        let (Ok(tenant), Ok(reference)) = (TenantId::parse(&tenant), Ref::parse(&reference)) else {
            return Ok(());
        };
        let unslug_ref = |segment: &str| unslug(&segment.to_ascii_lowercase()).map(|r| r.to_ascii_uppercase());
        let env = env_prefix(&tenant, &reference);
        prop_assert!(env.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        let segments: Vec<&str> = env.strip_prefix("SV0_TENANT_").unwrap().split('_').collect();
        prop_assert_eq!(segments.len(), 3, "{}", env);
        prop_assert_eq!(unslug(&segments[0].to_ascii_lowercase()), Some(tenant.to_string()));
        prop_assert_eq!(unslug_ref(segments[1]), Some(reference.to_string()));

        let kv = key_vault_prefix(&tenant, &reference);
        prop_assert!(kv.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        let segments: Vec<&str> = kv.strip_prefix("tenants-").unwrap().split('-').collect();
        prop_assert_eq!(segments.len(), 4, "{}", kv);
        prop_assert_eq!(unslug(segments[0]), Some(tenant.to_string()));
        prop_assert_eq!(segments[1], "connector");
        prop_assert_eq!(unslug_ref(segments[2]), Some(reference.to_string()));
    }

    /// Refs of one tenant must not read each other's secrets. For one tenant and two different
    /// refs, no variable or secret name is matched by both: neither lookup prefix is a prefix of
    /// the other, and a name under one ref is found by neither the env provider nor the Key Vault
    /// name mapping under the other.
    #[test]
    fn refs_of_one_tenant_never_share_a_name(
        tenant in tenant_ids(),
        (r1, r2) in ref_pairs(),
        env_key in "[A-Z0-9_]{1,8}",
        kv_key in "[A-Za-z0-9-]{1,8}",
    ) {
        let (Ok(t), Ok(r1), Ok(r2)) = (TenantId::parse(&tenant), Ref::parse(&r1), Ref::parse(&r2))
        else {
            return Ok(());
        };
        prop_assume!(r1 != r2);
        let (e1, e2) = (env_prefix(&t, &r1), env_prefix(&t, &r2));
        prop_assert!(!e1.starts_with(&e2) && !e2.starts_with(&e1), "{} / {}", e1, e2);
        let (k1, k2) = (key_vault_prefix(&t, &r1), key_vault_prefix(&t, &r2));
        prop_assert!(!k1.starts_with(&k2) && !k2.starts_with(&k1), "{} / {}", k1, k2);

        for (mine, theirs, e_theirs, k_mine, k_theirs) in
            [(&r1, &r2, &e2, &k1, &k2), (&r2, &r1, &e1, &k2, &k1)]
        {
            let provider = EnvProvider::from_vars([(format!("{e_theirs}{env_key}"), "theirs")]);
            let got = provider.resolve(&t, mine);
            let not_found = matches!(got, Err(BrokerError::NotFound { .. }));
            prop_assert!(not_found, "{} read {}'s variable: {:?}", mine, theirs, got);
            let secret = format!("{k_theirs}{kv_key}");
            prop_assert_eq!(key_vault_bundle_name(&secret, k_mine), None, "{} read {}", mine, secret);
        }
    }

    /// Accepted refs never carry a separator, `..` or `tenant`.
    #[test]
    fn accepted_refs_are_plain_suffixes(reference in refs()) {
        if Ref::parse(&reference).is_ok() {
            prop_assert!(!reference.contains(['/', '\\']));
            prop_assert!(!reference.contains(".."));
            prop_assert!(!reference.to_lowercase().contains("tenant"));
            prop_assert!(!reference.is_empty() && reference.len() <= 64);
        }
    }

    /// Two different tenants: no prefix of one is a prefix of the other's, whatever the refs, so
    /// no variable or secret name can match both.
    #[test]
    fn prefixes_of_different_tenants_never_overlap(
        a in tenant_ids(), b in tenant_ids(), ra in refs(), rb in refs()
    ) {
        let (Ok(a), Ok(b), Ok(ra), Ok(rb)) =
            (TenantId::parse(&a), TenantId::parse(&b), Ref::parse(&ra), Ref::parse(&rb))
        else {
            return Ok(());
        };
        prop_assume!(a != b);
        prop_assert_ne!(a.slug(), b.slug());
        let (ea, eb) = (env_prefix(&a, &ra), env_prefix(&b, &rb));
        prop_assert!(!ea.starts_with(&eb) && !eb.starts_with(&ea), "{} / {}", ea, eb);
        let (ka, kb) = (key_vault_prefix(&a, &ra), key_vault_prefix(&b, &rb));
        prop_assert!(!ka.starts_with(&kb) && !kb.starts_with(&ka), "{} / {}", ka, kb);
    }

    /// End to end through the env provider: tenant B's variable, however named, never reaches A.
    #[test]
    fn env_provider_never_crosses_tenants(
        a in tenant_ids(), b in tenant_ids(), ra in refs(), rb in refs(), key in "[A-Z][A-Z0-9_]{0,8}"
    ) {
        let (Ok(ta), Ok(tb), Ok(rfa), Ok(rfb)) =
            (TenantId::parse(&a), TenantId::parse(&b), Ref::parse(&ra), Ref::parse(&rb))
        else {
            return Ok(());
        };
        prop_assume!(ta != tb);
        let var = format!("{}{key}", env_prefix(&tb, &rfb));
        let provider = EnvProvider::from_vars([(var, "b-secret")]);
        let got = provider.resolve(&ta, &rfa);
        let not_found = matches!(got, Err(BrokerError::NotFound { .. }));
        prop_assert!(not_found, "{:?}", got);
    }
}
