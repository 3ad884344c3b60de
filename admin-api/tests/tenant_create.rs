//! Creating a tenant over real HTTP is insert-only: of concurrent creates of one id exactly one
//! succeeds, and a create never renames, reactivates or otherwise touches a tenant that exists.

mod support;

use reqwest::StatusCode;
use support::Api;
use sv0_domain::TenantStatus;

/// Before, the route looked the id up and then upserted name and status: every create that looked
/// before the first one wrote got a 201, the last of them wrote its name over the first's, and
/// one that wrote after a suspension reactivated the tenant. Each round suspends the tenant as
/// soon as it exists, while the creates are still arriving.
#[tokio::test(flavor = "multi_thread")]
async fn of_concurrent_creates_of_one_id_exactly_one_succeeds_and_its_name_is_kept() {
    let api = Api::start("tenant_create_race").await;
    for round in 0..4 {
        let id = format!("racer-{round}");
        let creates = (0..24).map(|n| {
            let api = &api;
            let id = id.clone();
            async move {
                let name = format!("name {n}");
                let reply = api.create_tenant(&id, &name).await;
                (name, reply)
            }
        });
        let suspend = async {
            loop {
                let reply = api.set_tenant_status(&id, "suspended").await;
                if reply.status == StatusCode::OK {
                    break;
                }
                assert_eq!(reply.status, StatusCode::NOT_FOUND, "{:?}", reply.body);
            }
        };
        let (replies, ()) = tokio::join!(futures::future::join_all(creates), suspend);
        let created: Vec<&String> = replies
            .iter()
            .filter(|(_, reply)| reply.status == StatusCode::CREATED)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(created.len(), 1, "round {round}: 201s for {created:?}");
        for (name, reply) in &replies {
            if reply.status == StatusCode::CREATED {
                continue;
            }
            assert_eq!(
                reply.status,
                StatusCode::CONFLICT,
                "{name}: {:?}",
                reply.body
            );
            assert_eq!(reply.body["error"]["code"], "conflict");
            assert_eq!(
                reply.body["error"]["message"],
                format!("tenant {id:?} exists already")
            );
        }
        let stored = api.domain.tenant(&id).await.unwrap();
        assert_eq!(&stored.name, created[0], "round {round}");
        assert_eq!(
            stored.status,
            TenantStatus::Suspended,
            "round {round}: a create after the suspension reactivated the tenant"
        );
    }
    assert_eq!(
        api.count(
            "audit_log",
            mongodb::bson::doc! {"action": "tenant.create", "outcome": "done"}
        )
        .await,
        4,
        "one audit entry per tenant actually created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_a_suspended_tenant_again_is_a_conflict_and_it_stays_suspended() {
    let api = Api::start("tenant_create_suspended").await;
    let created = api.create_tenant("initech", "Initech").await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let suspended = api.set_tenant_status("initech", "suspended").await;
    assert_eq!(suspended.status, StatusCode::OK, "{:?}", suspended.body);

    let again = api.create_tenant("initech", "Initech Again").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    assert_eq!(
        again.body["error"]["message"],
        "tenant \"initech\" exists already"
    );
    let stored = api.domain.tenant("initech").await.unwrap();
    assert_eq!(stored.status, TenantStatus::Suspended);
    assert_eq!(stored.name, "Initech");
}

/// The domain call itself refuses: whoever creates through it (the API, a tool) cannot reactivate
/// a suspended tenant, even when its own lookup raced the suspension.
#[tokio::test(flavor = "multi_thread")]
async fn insert_tenant_refuses_an_existing_id_and_changes_nothing() {
    let api = Api::start("tenant_insert_domain").await;
    let tenant = sv0_domain::Tenant::new("globex", "Globex").unwrap();
    api.domain.insert_tenant(&tenant).await.unwrap();
    api.domain
        .set_tenant_status("globex", TenantStatus::Suspended)
        .await
        .unwrap();
    let error = api
        .domain
        .insert_tenant(&sv0_domain::Tenant::new("globex", "Renamed").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, sv0_domain::DomainError::Conflict(message)
            if message == "tenant \"globex\" exists already"),
        "{error:?}"
    );
    let stored = api.domain.tenant("globex").await.unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.status),
        ("Globex", TenantStatus::Suspended)
    );
}
