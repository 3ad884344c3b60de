//! What the admin API reads and edits, on the stand: keyset pages of runs, tenants, instances and
//! scopes and what each filter picks; edits of instances and scopes, validated as creation is and
//! written whole or not at all; deletes; and that another tenant's ids are not found.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use sv0_broker::{CredentialsRef, Provider};
use sv0_domain::{
    Budget, ConnectorInstance, Domain, DomainError, InstanceStatus, InstanceUpdate, RunFilter,
    RunStatus, ScanRun, ScanScope, ScopeFilter, ScopeUpdate, Tenant, TenantStatus, Trigger,
};
use sv0_testkit::TestDb;

async fn setup(label: &str, tenants: &[&str]) -> (TestDb, Domain) {
    let tdb = TestDb::new(label).await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    for tenant in tenants {
        domain
            .put_tenant(&Tenant::new(tenant, tenant).unwrap())
            .await
            .unwrap();
    }
    (tdb, domain)
}

fn env_ref(reference: &str) -> CredentialsRef {
    CredentialsRef {
        provider: Provider::Env,
        reference: reference.into(),
    }
}

async fn instance(domain: &Domain, tenant: &str, name: &str) -> ConnectorInstance {
    let instance = ConnectorInstance::new(tenant, name, "demo", env_ref("DEMO_CLOUD")).unwrap();
    domain.insert_instance(&instance).await.unwrap();
    instance
}

async fn scope(domain: &Domain, instance: &ConnectorInstance, name: &str) -> ScanScope {
    let scope = ScanScope::new(instance, name, doc! { "size": 1 }, Budget::default()).unwrap();
    domain.insert_scope(&scope).await.unwrap();
    domain.scope(&scope.tenant_id, scope.id).await.unwrap()
}

fn manual() -> Trigger {
    Trigger::ManualApi { requested_by: None }
}

/// An hour after an arbitrary start, `hours` times: runs' creation times, apart from their ids.
fn hour(hours: i64) -> DateTime {
    DateTime::from_millis(1_700_000_000_000 + hours * 3_600_000)
}

async fn run(
    domain: &Domain,
    tenant: &str,
    trigger: Trigger,
    status: RunStatus,
    scope_id: Option<ObjectId>,
    created_at: DateTime,
) -> ObjectId {
    let mut run = ScanRun::new(tenant, trigger, Budget::default());
    run.status = status;
    run.scope_id = scope_id;
    run.created_at = created_at;
    domain.insert_run(&run).await.unwrap();
    run.id
}

async fn run_ids(domain: &Domain, filter: RunFilter) -> Vec<ObjectId> {
    let runs = domain.list_runs(&filter, None, 1000).await.unwrap();
    ids(runs, |r| r.id)
}

fn ids<T, I>(items: Vec<T>, id: impl Fn(&T) -> I) -> Vec<I> {
    items.iter().map(id).collect()
}

/// The field an `Invalid` error names.
fn invalid_field(error: DomainError) -> String {
    match error {
        DomainError::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other}"),
    }
}

fn assert_not_found(error: DomainError) {
    assert!(matches!(error, DomainError::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn runs_are_listed_newest_first_and_paged_without_gaps_or_repeats() {
    let (_tdb, domain) = setup("list_runs_pages", &["t"]).await;
    let mut inserted = Vec::new();
    for _ in 0..7 {
        inserted.push(run(&domain, "t", manual(), RunStatus::Queued, None, hour(0)).await);
    }
    let filter = RunFilter::default();
    let first = domain.list_runs(&filter, None, 3).await.unwrap();
    // A run started while the caller pages is newer than every page after the first: it
    // neither shifts them nor shows up in them.
    run(&domain, "t", manual(), RunStatus::Queued, None, hour(0)).await;
    let mut seen = ids(first, |r| r.id);
    let mut sizes = vec![seen.len()];
    loop {
        let page = domain
            .list_runs(&filter, seen.last().copied(), 3)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        sizes.push(page.len());
        seen.extend(ids(page, |r| r.id));
    }
    inserted.reverse();
    assert_eq!(seen, inserted);
    assert_eq!(sizes, [3, 3, 1]);
}

#[tokio::test]
async fn each_run_filter_narrows_the_list() {
    let (_tdb, domain) = setup("list_runs_filters", &["a", "b"]).await;
    let (s1, s2) = (ObjectId::new(), ObjectId::new());
    let slot = Trigger::Scheduled {
        scope_id: s1,
        slot: hour(1),
    };
    let retry = Trigger::Retry {
        retry_of: ObjectId::new(),
    };
    let r1 = run(&domain, "a", manual(), RunStatus::Queued, Some(s1), hour(0)).await;
    let r2 = run(&domain, "a", slot, RunStatus::Succeeded, Some(s1), hour(1)).await;
    let r3 = run(&domain, "a", retry, RunStatus::Failed, Some(s2), hour(2)).await;
    let r4 = run(&domain, "b", manual(), RunStatus::Queued, None, hour(3)).await;

    let all = RunFilter::default();
    assert_eq!(run_ids(&domain, all).await, [r4, r3, r2, r1]);
    let tenant = |t: &str| RunFilter {
        tenant_id: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(run_ids(&domain, tenant("a")).await, [r3, r2, r1]);
    assert_eq!(run_ids(&domain, tenant("b")).await, [r4]);
    let queued = RunFilter {
        status: Some(RunStatus::Queued),
        ..Default::default()
    };
    assert_eq!(run_ids(&domain, queued.clone()).await, [r4, r1]);
    let queued_of_a = RunFilter {
        tenant_id: Some("a".into()),
        ..queued
    };
    assert_eq!(run_ids(&domain, queued_of_a).await, [r1]);
    let trigger = |t: &str| RunFilter {
        trigger: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(run_ids(&domain, trigger("scheduled")).await, [r2]);
    assert_eq!(run_ids(&domain, trigger("retry")).await, [r3]);
    assert_eq!(run_ids(&domain, trigger("manual_api")).await, [r4, r1]);
    assert_eq!(run_ids(&domain, trigger("deploy_gate")).await, []);
    let of_scope = RunFilter {
        scope_id: Some(s1),
        ..Default::default()
    };
    assert_eq!(run_ids(&domain, of_scope).await, [r2, r1]);
    let created = |from: Option<i64>, until: Option<i64>| RunFilter {
        created_from: from.map(hour),
        created_until: until.map(hour),
        ..Default::default()
    };
    // From is inclusive, until exclusive: consecutive ranges neither overlap nor leave gaps.
    assert_eq!(run_ids(&domain, created(Some(1), None)).await, [r4, r3, r2]);
    assert_eq!(run_ids(&domain, created(None, Some(1))).await, [r1]);
    assert_eq!(run_ids(&domain, created(Some(1), Some(3))).await, [r3, r2]);
}

#[tokio::test]
async fn invalid_filters_and_limits_name_their_field() {
    let (_tdb, domain) = setup("list_invalid", &["t"]).await;
    let list = |filter: RunFilter, limit: i64| {
        let domain = domain.clone();
        async move { domain.list_runs(&filter, None, limit).await }
    };
    let cron = RunFilter {
        trigger: Some("cron".into()),
        ..Default::default()
    };
    assert_eq!(invalid_field(list(cron, 10).await.unwrap_err()), "trigger");
    let empty_range = RunFilter {
        created_from: Some(hour(1)),
        created_until: Some(hour(1)),
        ..Default::default()
    };
    assert_eq!(
        invalid_field(list(empty_range, 10).await.unwrap_err()),
        "created_until"
    );
    for limit in [0, -1, 1001] {
        let error = list(RunFilter::default(), limit).await.unwrap_err();
        assert_eq!(invalid_field(error), "limit", "limit {limit}");
    }
    for limit in [1, 1000] {
        list(RunFilter::default(), limit).await.unwrap();
    }
    let error = domain.list_tenants(None, 0).await.unwrap_err();
    assert_eq!(invalid_field(error), "limit");
    let error = domain.list_instances(None, None, 1001).await.unwrap_err();
    assert_eq!(invalid_field(error), "limit");
    let error = domain
        .list_scopes(&ScopeFilter::default(), None, 0)
        .await
        .unwrap_err();
    assert_eq!(invalid_field(error), "limit");
}

#[tokio::test]
async fn tenants_are_listed_in_id_order_and_their_status_is_set() {
    let (_tdb, domain) = setup("list_tenants", &["corp", "acme", "beta"]).await;
    let first = domain.list_tenants(None, 2).await.unwrap();
    assert_eq!(ids(first, |t| t.id.clone()), ["acme", "beta"]);
    let next = domain.list_tenants(Some("beta"), 2).await.unwrap();
    assert_eq!(ids(next, |t| t.id.clone()), ["corp"]);

    let suspended = domain
        .set_tenant_status("beta", TenantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(suspended.status, TenantStatus::Suspended);
    assert_eq!(domain.tenant("beta").await.unwrap(), suspended);
    let active = domain
        .set_tenant_status("beta", TenantStatus::Active)
        .await
        .unwrap();
    assert_eq!(active.status, TenantStatus::Active);

    let error = domain
        .set_tenant_status("nobody", TenantStatus::Suspended)
        .await
        .unwrap_err();
    assert_not_found(error);
    assert_not_found(domain.tenant("nobody").await.unwrap_err());
}

#[tokio::test]
async fn instances_and_scopes_are_listed_newest_first_by_filter() {
    let (_tdb, domain) = setup("list_instances_scopes", &["a", "b"]).await;
    let a1 = instance(&domain, "a", "a1").await;
    let a2 = instance(&domain, "a", "a2").await;
    let b1 = instance(&domain, "b", "b1").await;
    let instances = |tenant: Option<&'static str>, after: Option<ObjectId>| {
        let domain = domain.clone();
        async move {
            let page = domain.list_instances(tenant, after, 10).await.unwrap();
            ids(page, |i| i.id)
        }
    };
    assert_eq!(instances(Some("a"), None).await, [a2.id, a1.id]);
    assert_eq!(instances(None, None).await, [b1.id, a2.id, a1.id]);
    assert_eq!(instances(Some("a"), Some(a2.id)).await, [a1.id]);
    // A page holds whole instances.
    let page = domain.list_instances(None, None, 1).await.unwrap();
    assert_eq!(page, std::slice::from_ref(&b1));

    let s1 = scope(&domain, &a1, "s1").await;
    let s2 = scope(&domain, &a1, "s2").await;
    let s3 = scope(&domain, &a2, "s3").await;
    let s4 = scope(&domain, &b1, "s4").await;
    domain
        .pause_scope("a", s2.id, None, None, DateTime::now())
        .await
        .unwrap();
    let scopes = |filter: ScopeFilter, after: Option<ObjectId>, limit: i64| {
        let domain = domain.clone();
        async move {
            let page = domain.list_scopes(&filter, after, limit).await.unwrap();
            ids(page, |s| s.id)
        }
    };
    let of_a = ScopeFilter {
        tenant_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(
        scopes(ScopeFilter::default(), None, 10).await,
        [s4.id, s3.id, s2.id, s1.id]
    );
    assert_eq!(scopes(of_a.clone(), None, 10).await, [s3.id, s2.id, s1.id]);
    assert_eq!(scopes(of_a.clone(), Some(s3.id), 1).await, [s2.id]);
    let of_a1 = ScopeFilter {
        instance_id: Some(a1.id),
        ..Default::default()
    };
    assert_eq!(scopes(of_a1, None, 10).await, [s2.id, s1.id]);
    let paused = |paused: bool| ScopeFilter {
        paused: Some(paused),
        ..of_a.clone()
    };
    assert_eq!(scopes(paused(true), None, 10).await, [s2.id]);
    assert_eq!(scopes(paused(false), None, 10).await, [s3.id, s1.id]);
}

#[tokio::test]
async fn an_instance_update_sets_each_field_given() {
    let (_tdb, domain) = setup("instance_update", &["t"]).await;
    let mut expected = instance(&domain, "t", "before").await;
    let updates = [
        InstanceUpdate {
            name: Some("after".into()),
            ..Default::default()
        },
        InstanceUpdate {
            credentials_ref: Some(CredentialsRef {
                provider: Provider::AzureKeyvault,
                reference: "AWS_PRIMARY".into(),
            }),
            ..Default::default()
        },
        InstanceUpdate {
            status: Some(InstanceStatus::Disabled),
            ..Default::default()
        },
    ];
    for update in updates {
        let updated = domain
            .update_instance("t", expected.id, &update)
            .await
            .unwrap();
        if let Some(name) = update.name {
            expected.name = name;
        }
        if let Some(credentials_ref) = update.credentials_ref {
            expected.credentials_ref = credentials_ref;
        }
        if let Some(status) = update.status {
            expected.status = status;
        }
        assert_eq!(updated, expected);
        assert_eq!(domain.instance("t", expected.id).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn an_invalid_instance_update_names_its_field_and_writes_nothing() {
    let (_tdb, domain) = setup("instance_update_invalid", &["t"]).await;
    let stored = instance(&domain, "t", "demo").await;
    let name = |name: &str| InstanceUpdate {
        name: Some(name.into()),
        ..Default::default()
    };
    let cases = [
        (name(""), "name"),
        (name("   "), "name"),
        (name("two\nlines"), "name"),
        (name(&"x".repeat(201)), "name"),
        // With a valid name beside it: the edit is written whole or not at all.
        (
            InstanceUpdate {
                name: Some("renamed".into()),
                credentials_ref: Some(env_ref("../other-tenant")),
                ..Default::default()
            },
            "credentials_ref.ref",
        ),
        (InstanceUpdate::default(), "body"),
    ];
    for (update, field) in cases {
        let error = domain
            .update_instance("t", stored.id, &update)
            .await
            .unwrap_err();
        assert_eq!(invalid_field(error), field, "{update:?}");
        assert_eq!(domain.instance("t", stored.id).await.unwrap(), stored);
    }
    // Creation holds names to the same rule.
    let error = ConnectorInstance::new("t", " ", "demo", env_ref("DEMO"));
    assert_eq!(invalid_field(error.unwrap_err()), "name");
    let error = ConnectorInstance::new("t", "demo", "Demo Cloud", env_ref("DEMO"));
    assert_eq!(invalid_field(error.unwrap_err()), "kind");
}

/// An instance as stored before the connector registry: with the program it ran.
async fn insert_old_instance(db: &mongodb::Database, tenant: &str, kind: &str) -> ObjectId {
    let id = ObjectId::new();
    db.collection::<mongodb::bson::Document>("connector_instances")
        .insert_one(doc! {
            "_id": id, "tenant_id": tenant, "name": "old", "kind": kind,
            "command": ["/bin/sh", "-c", "cat /proc/$PPID/environ"],
            "credentials_ref": {"provider": "env", "ref": "DEMO_CLOUD"},
            "status": "active", "created_at": DateTime::now(),
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn an_instance_stored_with_a_command_still_reads_and_migrating_drops_the_command() {
    let (tdb, domain) = setup("instance_old_command", &["a", "b"]).await;
    let old_b = insert_old_instance(&tdb.db, "b", "aws").await;
    let old_a = insert_old_instance(&tdb.db, "a", "demo").await;
    let new_a = instance(&domain, "a", "new").await;

    let read = domain.instance("a", old_a).await.unwrap();
    assert_eq!((read.kind.as_str(), read.name.as_str()), ("demo", "old"));
    let listed = domain.list_instances(Some("b"), None, 10).await.unwrap();
    assert_eq!(ids(listed, |i| i.id), [old_b]);

    let raw = tdb
        .db
        .collection::<mongodb::bson::Document>("connector_instances");
    let with_command = || raw.count_documents(doc! { "command": { "$exists": true } });
    assert_eq!(with_command().await.unwrap(), 2);
    assert_eq!(domain.drop_instance_commands().await.unwrap(), 2);
    assert_eq!(with_command().await.unwrap(), 0);
    assert_eq!(
        domain.drop_instance_commands().await.unwrap(),
        0,
        "a second migration changes nothing"
    );
    // Only `command` went: every other field reads back as before.
    assert_eq!(domain.instance("a", old_a).await.unwrap(), read);
    assert_eq!(domain.instance("a", new_a.id).await.unwrap(), new_a);

    let mut expected = vec![
        ("a".to_string(), old_a, "demo".to_string()),
        ("a".to_string(), new_a.id, "demo".to_string()),
        ("b".to_string(), old_b, "aws".to_string()),
    ];
    expected.sort();
    assert_eq!(domain.instance_kinds().await.unwrap(), expected);
}

#[tokio::test]
async fn an_instance_is_deleted_only_once_no_scope_uses_it() {
    let (_tdb, domain) = setup("instance_delete", &["t"]).await;
    let used = instance(&domain, "t", "used").await;
    let s1 = scope(&domain, &used, "s1").await;
    let s2 = scope(&domain, &used, "s2").await;
    let error = domain.delete_instance("t", used.id).await.unwrap_err();
    assert!(
        matches!(&error, DomainError::Conflict(m) if m.contains("2 scan scope")),
        "{error}"
    );
    assert_eq!(domain.instance("t", used.id).await.unwrap(), used);

    domain.delete_scope("t", s1.id).await.unwrap();
    domain.delete_scope("t", s2.id).await.unwrap();
    domain.delete_instance("t", used.id).await.unwrap();
    assert_not_found(domain.instance("t", used.id).await.unwrap_err());
    assert_not_found(domain.delete_instance("t", used.id).await.unwrap_err());
}

#[tokio::test]
async fn a_scope_update_sets_its_fields_and_an_invalid_one_writes_nothing() {
    let (_tdb, domain) = setup("scope_update", &["t"]).await;
    let parent = instance(&domain, "t", "demo").await;
    let stored = scope(&domain, &parent, "before").await;
    let budget = Budget {
        max_runtime_seconds: 60,
    };
    let update = ScopeUpdate {
        name: Some("after".into()),
        scope: Some(doc! { "clouds": ["aws"] }),
        budget: Some(budget),
    };
    let updated = domain
        .update_scope_settings("t", stored.id, &update)
        .await
        .unwrap();
    let expected = ScanScope {
        name: "after".into(),
        scope: doc! { "clouds": ["aws"] },
        budget,
        ..stored
    };
    assert_eq!(updated, expected);
    assert_eq!(domain.scope("t", stored.id).await.unwrap(), expected);

    let no_time = Budget {
        max_runtime_seconds: 0,
    };
    let cases = [
        (
            ScopeUpdate {
                name: Some("renamed".into()),
                budget: Some(no_time),
                ..Default::default()
            },
            "budget.max_runtime_seconds",
        ),
        (
            ScopeUpdate {
                name: Some("".into()),
                ..Default::default()
            },
            "name",
        ),
        (ScopeUpdate::default(), "body"),
    ];
    for (update, field) in cases {
        let error = domain
            .update_scope_settings("t", stored.id, &update)
            .await
            .unwrap_err();
        assert_eq!(invalid_field(error), field, "{update:?}");
        assert_eq!(domain.scope("t", stored.id).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn a_deleted_scope_is_gone_and_its_runs_keep_its_id() {
    let (_tdb, domain) = setup("scope_delete", &["t"]).await;
    let parent = instance(&domain, "t", "demo").await;
    let stored = scope(&domain, &parent, "s").await;
    let run_id = run(
        &domain,
        "t",
        manual(),
        RunStatus::Succeeded,
        Some(stored.id),
        hour(0),
    )
    .await;

    domain.delete_scope("t", stored.id).await.unwrap();
    assert_not_found(domain.scope("t", stored.id).await.unwrap_err());
    assert_not_found(domain.delete_scope("t", stored.id).await.unwrap_err());
    let of_scope = RunFilter {
        scope_id: Some(stored.id),
        ..Default::default()
    };
    assert_eq!(run_ids(&domain, of_scope).await, [run_id]);
}

#[tokio::test]
async fn another_tenants_ids_are_not_found() {
    let (_tdb, domain) = setup("tenant_isolation", &["a", "b"]).await;
    let theirs = instance(&domain, "a", "theirs").await;
    let their_scope = scope(&domain, &theirs, "theirs").await;
    let rename = InstanceUpdate {
        name: Some("mine".into()),
        ..Default::default()
    };
    let error = domain
        .update_instance("b", theirs.id, &rename)
        .await
        .unwrap_err();
    assert_not_found(error);
    // Not found, not a conflict: which scopes another tenant has is none of b's business.
    assert_not_found(domain.delete_instance("b", theirs.id).await.unwrap_err());
    let rename = ScopeUpdate {
        name: Some("mine".into()),
        ..Default::default()
    };
    let error = domain
        .update_scope_settings("b", their_scope.id, &rename)
        .await
        .unwrap_err();
    assert_not_found(error);
    assert_not_found(domain.delete_scope("b", their_scope.id).await.unwrap_err());

    assert_eq!(domain.instance("a", theirs.id).await.unwrap(), theirs);
    assert_eq!(
        domain.scope("a", their_scope.id).await.unwrap(),
        their_scope
    );
}

/// A scope stored nested deeper than a reader reads (written straight into the database: the
/// stand stores any depth) is listed as a row whose `scope` is not read, saying why, beside the
/// scopes that read; shown alone, it is still a conflict naming it.
#[tokio::test]
async fn a_scope_too_deep_to_read_is_listed_unread_beside_the_others() {
    use mongodb::bson::RawDocumentBuf;
    use sv0_domain::limits::MAX_READ_DEPTH;

    let (tdb, domain) = setup("list_too_deep", &["t"]).await;
    let parent = instance(&domain, "t", "demo").await;
    let plain = scope(&domain, &parent, "plain").await;

    // `{"a": {"a": … {"leaf": 1}}}`, built as bytes: a `Document` that deep would recurse once
    // per level to be written, in this test's own stack.
    let with_length = |body: Vec<u8>| {
        let mut bytes = ((body.len() + 4) as i32).to_le_bytes().to_vec();
        bytes.extend(body);
        bytes
    };
    let mut nested = with_length(b"\x10leaf\0\x01\0\0\0\0".to_vec());
    for _ in 1..MAX_READ_DEPTH {
        let mut body = b"\x03a\0".to_vec();
        body.extend_from_slice(&nested);
        body.push(0);
        nested = with_length(body);
    }
    let deep_id = ObjectId::new();
    let mut stored = mongodb::bson::to_document(&plain).unwrap();
    stored.insert("_id", deep_id);
    stored.insert("name", "too deep");
    stored.remove("scope");
    let mut raw = RawDocumentBuf::from_document(&stored).unwrap();
    raw.append("scope", RawDocumentBuf::from_bytes(nested).unwrap());
    tdb.db
        .collection::<RawDocumentBuf>("scan_scopes")
        .insert_one(raw)
        .await
        .unwrap();

    let of_t = ScopeFilter {
        tenant_id: Some("t".into()),
        ..Default::default()
    };
    let page = domain.list_scopes(&of_t, None, 10).await.unwrap();
    assert_eq!(ids(page.clone(), |s| s.id), [deep_id, plain.id]);
    assert_eq!(page[1], plain);
    let deep = &page[0];
    let reason = deep.unreadable.as_deref().expect("the deep row says why");
    assert!(
        reason.contains("scope") && reason.contains(&MAX_READ_DEPTH.to_string()),
        "{reason}"
    );
    let expected = ScanScope {
        id: deep_id,
        name: "too deep".into(),
        scope: doc! {},
        unreadable: deep.unreadable.clone(),
        ..plain.clone()
    };
    assert_eq!(deep, &expected);
    // Paging walks past it as past any other row.
    let next = domain.list_scopes(&of_t, Some(deep_id), 10).await.unwrap();
    assert_eq!(next, std::slice::from_ref(&plain));

    let error = domain.scope("t", deep_id).await.unwrap_err();
    assert!(
        matches!(&error, DomainError::Conflict(m) if m.contains(&deep_id.to_hex())),
        "{error}"
    );
}
