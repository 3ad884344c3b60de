//! Tokens limited to tenants, over real HTTP: each role × its own tenant × another tenant × every
//! route. On its own tenant a limited token does what its role allows; another tenant's things
//! are refused (403 when the request names the tenant, 404 when it names a thing by id), lists
//! leave them out, and nothing of the other tenant changes. Tokens also expire, and record their
//! last use to the minute.

mod support;

use std::collections::BTreeSet;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Admits, Api, Reply, scoped_token};
use sv0_admin_api::{NewToken, Role, Tokens};

/// One tenant's things, made through the API with an unlimited token.
struct Fixture {
    tenant: String,
    instance: String,
    /// An instance no scope uses: the one edited and deleted.
    spare: String,
    scope: String,
    /// A `manual_api` run, and its scan job.
    run: String,
    job: String,
    /// A `deploy_gate` run: what a `ci` token reads.
    deploy_run: String,
}

async fn fixture(api: &Api, tenant: &str) -> Fixture {
    let (instance, scope) = api.tenant_with_scope(tenant).await;
    let spare = api
        .post(
            Role::SuperAdmin,
            &format!("/api/v1/tenants/{tenant}/instances"),
            json!({"name": "spare", "kind": "demo",
                   "credentials_ref": {"provider": "env", "ref": "SPARE"}}),
        )
        .await;
    assert_eq!(spare.status, StatusCode::CREATED, "{:?}", spare.body);
    let run = api.run_now(Role::SuperAdmin, &scope).await;
    assert_eq!(run.status, StatusCode::CREATED, "{:?}", run.body);
    let run_id = run.body["id"].as_str().unwrap().to_string();
    let jobs = api
        .get(Role::SuperAdmin, &format!("/api/v1/jobs?group_id={run_id}"))
        .await;
    let job = jobs.body["items"][0]["id"].as_str().unwrap().to_string();
    let deploy = api
        .post(
            Role::SuperAdmin,
            "/api/v1/admin/rematerialize",
            json!({"stages": ["chains"], "tenants": [tenant], "deploy": {"id": format!("fixture-{tenant}")}}),
        )
        .await;
    assert_eq!(deploy.status, StatusCode::ACCEPTED, "{:?}", deploy.body);
    Fixture {
        tenant: tenant.to_string(),
        instance: instance.id.to_hex(),
        spare: spare.body["id"].as_str().unwrap().to_string(),
        scope: scope.id.to_hex(),
        run: run_id,
        job,
        deploy_run: deploy.body["runs"][0]["id"].as_str().unwrap().to_string(),
    }
}

/// A route called on one tenant's things.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    admits: Admits,
}

fn call(method: Method, path: String, body: Option<Value>, admits: Admits) -> Call {
    Call {
        method,
        path,
        body,
        admits,
    }
}

/// Every route that names a tenant or one of its things, on `f`'s, in an order that lets each
/// succeed on the token's own tenant (deletes last).
fn tenant_calls(f: &Fixture, role: Role) -> Vec<Call> {
    use Admits::*;
    let t = format!("/api/v1/tenants/{}", f.tenant);
    let tenant = &f.tenant;
    let reason = Some(json!({"reason": "matrix"}));
    vec![
        // `ci` reads deploy-gate runs only: another run is "not found" to it.
        call(
            Method::GET,
            format!("/api/v1/scan-runs/{}", f.run),
            None,
            Readers,
        ),
        call(
            Method::GET,
            format!("/api/v1/scan-runs/{}", f.deploy_run),
            None,
            Everyone,
        ),
        call(
            Method::POST,
            "/api/v1/scan-runs".into(),
            Some(support::manual_run(tenant, &f.scope)),
            Operators,
        ),
        call(
            Method::POST,
            format!("/api/v1/scan-runs/{}/cancel", f.run),
            None,
            Operators,
        ),
        call(
            Method::POST,
            format!("/api/v1/scan-runs/{}/retry", f.run),
            None,
            Operators,
        ),
        call(
            Method::POST,
            "/api/v1/admin/rematerialize".into(),
            Some(json!({"stages": ["chains"], "tenants": [tenant],
                        "deploy": {"id": format!("matrix-{}", role.as_str())}})),
            Deployers,
        ),
        call(
            Method::POST,
            "/api/v1/ingest/normalized-graph".into(),
            Some(json!({"tenant_id": tenant, "source": "matrix", "graph": {"entities": []}})),
            Operators,
        ),
        call(Method::GET, t.clone(), None, Readers),
        call(
            Method::PATCH,
            t.clone(),
            Some(json!({"status": "active"})),
            SuperAdmin,
        ),
        call(Method::GET, format!("{t}/instances"), None, Readers),
        call(
            Method::GET,
            format!("{t}/instances/{}", f.instance),
            None,
            Readers,
        ),
        call(
            Method::POST,
            format!("{t}/instances"),
            Some(json!({"name": "new", "kind": "demo",
                        "credentials_ref": {"provider": "env", "ref": "NEW"}})),
            Operators,
        ),
        call(
            Method::PATCH,
            format!("{t}/instances/{}", f.spare),
            Some(json!({"name": "renamed"})),
            Operators,
        ),
        call(
            Method::GET,
            format!("{t}/scopes/{}", f.scope),
            None,
            Readers,
        ),
        call(
            Method::POST,
            format!("{t}/scopes"),
            Some(json!({"instance_id": f.instance, "name": "new", "scope": {}})),
            Operators,
        ),
        call(
            Method::PATCH,
            format!("{t}/scopes/{}", f.scope),
            Some(json!({"name": "renamed"})),
            Operators,
        ),
        call(
            Method::PUT,
            format!("{t}/scopes/{}/schedule", f.scope),
            Some(json!({"schedule": {"cadence": {"type": "interval", "every_seconds": 3600}}})),
            Operators,
        ),
        call(
            Method::POST,
            format!("{t}/scopes/{}/pause", f.scope),
            Some(json!({"note": "matrix"})),
            Operators,
        ),
        call(
            Method::POST,
            format!("{t}/scopes/{}/resume", f.scope),
            None,
            Operators,
        ),
        call(
            Method::POST,
            format!("{t}/scopes/{}/trigger", f.scope),
            None,
            Operators,
        ),
        call(
            Method::POST,
            format!("{t}/scopes/{}/backfill", f.scope),
            Some(json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T02:00:00Z"})),
            Operators,
        ),
        call(
            Method::GET,
            format!("/api/v1/jobs/{}", f.job),
            None,
            Readers,
        ),
        call(
            Method::POST,
            format!("/api/v1/jobs/{}/cancel", f.job),
            reason.clone(),
            Operators,
        ),
        call(
            Method::POST,
            format!("/api/v1/jobs/{}/retry", f.job),
            reason.clone(),
            Operators,
        ),
        call(
            Method::POST,
            "/api/v1/jobs/bulk/cancel".into(),
            Some(json!({"filter": {"tenant_id": tenant}, "reason": "matrix"})),
            Operators,
        ),
        call(
            Method::POST,
            "/api/v1/jobs/bulk/retry".into(),
            Some(json!({"filter": {"tenant_id": tenant}, "reason": "matrix"})),
            Operators,
        ),
        call(
            Method::GET,
            format!("/api/v1/scan-runs?tenant_id={tenant}"),
            None,
            Everyone,
        ),
        call(
            Method::GET,
            format!("/api/v1/scopes?tenant_id={tenant}"),
            None,
            Readers,
        ),
        call(
            Method::GET,
            format!("/api/v1/jobs?tenant_id={tenant}"),
            None,
            Readers,
        ),
        call(
            Method::GET,
            format!("/api/v1/audit-log?tenant_id={tenant}"),
            None,
            SuperAdmin,
        ),
        call(
            Method::DELETE,
            format!("{t}/scopes/{}", f.scope),
            None,
            Operators,
        ),
        call(
            Method::DELETE,
            format!("{t}/instances/{}", f.spare),
            None,
            Operators,
        ),
    ]
}

/// Routes over every tenant: a limited token gets its own tenant's things only.
fn list_calls() -> Vec<Call> {
    use Admits::*;
    vec![
        call(Method::GET, "/api/v1/scan-runs".into(), None, Everyone),
        call(Method::GET, "/api/v1/scopes".into(), None, Readers),
        call(Method::GET, "/api/v1/jobs".into(), None, Readers),
        call(Method::GET, "/api/v1/tenants".into(), None, Readers),
        call(Method::GET, "/api/v1/audit-log".into(), None, SuperAdmin),
    ]
}

/// Routes a limited token may not use whatever its role: they act on the fleet.
fn fleet_calls() -> Vec<Call> {
    vec![
        call(
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"id": "matrix-new", "name": "n"})),
            Admits::SuperAdmin,
        ),
        call(
            Method::GET,
            "/api/v1/tokens".into(),
            None,
            Admits::SuperAdmin,
        ),
        call(
            Method::POST,
            format!("/api/v1/tokens/{}/revoke", ObjectId::new().to_hex()),
            None,
            Admits::SuperAdmin,
        ),
    ]
}

async fn send(api: &Api, token: &str, c: &Call) -> Reply {
    api.call_with(Some(token), c.method.clone(), &c.path, c.body.clone())
        .await
}

/// Everything stored about a tenant: its record, instances, scopes, runs and jobs.
async fn snapshot(api: &Api, tenant: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    let mut all = Vec::new();
    for (collection, filter) in [
        ("tenants", doc! {"_id": tenant}),
        ("connector_instances", doc! {"tenant_id": tenant}),
        ("scan_scopes", doc! {"tenant_id": tenant}),
        ("scan_runs", doc! {"tenant_id": tenant}),
        ("jobs", doc! {"tenant_id": tenant}),
    ] {
        let found: Vec<Document> = api
            .tdb
            .db
            .collection::<Document>(collection)
            .find(filter)
            .sort(doc! {"_id": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        all.extend(found);
    }
    all
}

/// Whether a list's body names `tenant` anywhere in its items.
fn mentions(body: &Value, tenant: &str) -> bool {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|item| item["tenant_id"] == tenant || item["id"] == tenant)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_reaches_its_own_tenant_and_never_another_on_every_route() {
    let api = Api::start("tenant_matrix").await;
    for role in Role::ALL {
        let own = fixture(&api, &format!("own-{}", role.as_str().replace('_', "-"))).await;
        let other = fixture(&api, &format!("other-{}", role.as_str().replace('_', "-"))).await;
        let token = scoped_token(&api, role, &[&own.tenant]).await;
        let before = snapshot(&api, &other.tenant).await;

        for (own_call, other_call) in tenant_calls(&own, role)
            .into_iter()
            .zip(tenant_calls(&other, role))
        {
            let refused = send(&api, &token, &other_call).await;
            assert!(
                matches!(refused.status.as_u16(), 403 | 404),
                "{role:?} {} {} on another tenant: {} {:?}",
                other_call.method,
                other_call.path,
                refused.status,
                refused.body
            );
            let reply = send(&api, &token, &own_call).await;
            if own_call.admits.admits(role) {
                assert!(
                    !matches!(reply.status.as_u16(), 401 | 403 | 404)
                        && reply.status.as_u16() < 500,
                    "{role:?} {} {} on its own tenant: {} {:?}",
                    own_call.method,
                    own_call.path,
                    reply.status,
                    reply.body
                );
            } else {
                assert!(
                    matches!(reply.status.as_u16(), 403 | 404),
                    "{role:?} {} {} is not its role's: {}",
                    own_call.method,
                    own_call.path,
                    reply.status
                );
            }
        }

        for c in list_calls() {
            let reply = send(&api, &token, &c).await;
            if !c.admits.admits(role) {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{role:?} {}", c.path);
                continue;
            }
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{role:?} {}: {:?}",
                c.path,
                reply.body
            );
            assert!(
                !mentions(&reply.body, &other.tenant),
                "{role:?} {} lists another tenant's things: {:?}",
                c.path,
                reply.body
            );
            // Readers see their own tenant's; `ci` sees its deploy-gate runs.
            assert!(
                mentions(&reply.body, &own.tenant),
                "{role:?} {} leaves out its own tenant: {:?}",
                c.path,
                reply.body
            );
        }

        for c in fleet_calls() {
            let reply = send(&api, &token, &c).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{role:?} {}", c.path);
        }

        // A bulk action by ids reaches only the token's tenants' jobs, on a real run too.
        if Admits::Operators.admits(role) {
            let by_ids = api
                .call_with(
                    Some(&token),
                    Method::POST,
                    "/api/v1/jobs/bulk/cancel",
                    Some(json!({"ids": [other.job], "dry_run": false, "reason": "matrix"})),
                )
                .await;
            assert_eq!(by_ids.status, StatusCode::OK, "{:?}", by_ids.body);
            assert_eq!(by_ids.body["matched"], 0, "{:?}", by_ids.body);
        }

        assert_eq!(
            snapshot(&api, &other.tenant).await,
            before,
            "{role:?}'s limited token changed another tenant's things"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_matrix_names_every_route_of_the_api_document() {
    let api = Api::start("tenant_matrix_routes").await;
    let document = api.get(Role::ReadOnly, "/api/v1/openapi.json").await;
    let mut documented = BTreeSet::new();
    for (path, item) in document.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let f = Fixture {
        tenant: "{tenant_id}".into(),
        instance: "{id}".into(),
        spare: "{id}".into(),
        scope: "{id}".into(),
        run: "{id}".into(),
        job: "{id}".into(),
        deploy_run: "{id}".into(),
    };
    let mut covered: BTreeSet<String> = tenant_calls(&f, Role::Operator)
        .into_iter()
        .chain(list_calls())
        .chain(fleet_calls())
        .map(|c| {
            let path = c.path.split('?').next().unwrap().to_string();
            let path = match path.rsplit_once("/tokens/") {
                Some((head, tail)) if tail.ends_with("/revoke") => {
                    format!("{head}/tokens/{{id}}/revoke")
                }
                _ => path,
            };
            format!("{} {path}", c.method)
        })
        .collect();
    // The document, health and metrics need no tenant (nor a token).
    for route in ["/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"] {
        covered.insert(format!("GET {route}"));
    }
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes the matrix leaves out: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limited_token_rematerializes_its_active_tenants_by_default() {
    let api = Api::start("tenant_rematerialize").await;
    for tenant in ["acme", "beta", "gamma"] {
        api.tenant_with_scope(tenant).await;
    }
    let token = scoped_token(&api, Role::Ci, &["acme", "beta"]).await;
    let suspended = api
        .call(
            Role::SuperAdmin,
            Method::PATCH,
            "/api/v1/tenants/beta",
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    let reply = api
        .call_with(
            Some(&token),
            Method::POST,
            "/api/v1/admin/rematerialize",
            Some(json!({"stages": ["chains"], "deploy": {"id": "d-1"}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let tenants: Vec<&str> = reply.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme"], "its active tenants, and none other");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_limited_to_tenants_expire_and_show_their_last_use() {
    let api = Api::start("tenant_token_life").await;
    api.tenant_with_scope("acme").await;
    let store = Tokens::new(&api.tdb.db);
    let in_a_day = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    let issued = store
        .create(
            &NewToken::new("short-lived", Role::ReadOnly)
                .tenants(["acme"])
                .expires_at(in_a_day),
        )
        .await
        .unwrap();
    let id = ObjectId::parse_str(&issued.info.id).unwrap();
    let last_use = || async {
        api.tdb
            .db
            .collection::<Document>("api_tokens")
            .find_one(doc! {"_id": id})
            .await
            .unwrap()
            .unwrap()
            .get_datetime("last_used_at")
            .ok()
            .copied()
    };
    assert_eq!(last_use().await, None, "not used yet");

    let used = api
        .call_with(Some(&issued.token), Method::GET, "/api/v1/tenants", None)
        .await;
    assert_eq!(used.status, StatusCode::OK);
    let first = last_use().await.expect("the first use is recorded");
    api.call_with(Some(&issued.token), Method::GET, "/api/v1/tenants", None)
        .await;
    assert_eq!(
        last_use().await,
        Some(first),
        "a second use within the minute writes nothing"
    );
    // A minute later (as far as the record says), the next use is written.
    let stale = DateTime::from_millis(first.timestamp_millis() - 61_000);
    api.tdb
        .db
        .collection::<Document>("api_tokens")
        .update_one(doc! {"_id": id}, doc! {"$set": {"last_used_at": stale}})
        .await
        .unwrap();
    api.call_with(Some(&issued.token), Method::GET, "/api/v1/tenants", None)
        .await;
    assert!(
        last_use().await.unwrap() > stale,
        "a stale last use is rewritten"
    );

    // GET /tokens shows tenants, expiry and last use.
    let listed = api.get(Role::SuperAdmin, "/api/v1/tokens").await;
    let view = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == issued.info.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(view["tenants"], json!(["acme"]));
    assert!(view["expires_at"].is_string(), "{view:?}");
    assert!(view["last_used_at"].is_string(), "{view:?}");
    assert_eq!(
        listed.body["items"][0]["tenants"],
        json!([]),
        "an unlimited token lists no tenants"
    );

    // Past its expiry (moved into the past in the record), the token is refused, and the
    // challenge says why.
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    api.tdb
        .db
        .collection::<Document>("api_tokens")
        .update_one(doc! {"_id": id}, doc! {"$set": {"expires_at": past}})
        .await
        .unwrap();
    let expired = api
        .call_with(Some(&issued.token), Method::GET, "/api/v1/tenants", None)
        .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(
        expired.challenge().unwrap().contains("expired"),
        "{:?}",
        expired.challenge()
    );

    // A token is not issued already expired, for an unknown-looking tenant id, or for too many.
    for bad in [
        NewToken::new("x", Role::ReadOnly).expires_at(past),
        NewToken::new("x", Role::ReadOnly).tenants(["Not A Tenant"]),
        NewToken::new("x", Role::ReadOnly).tenants((0..101).map(|i| format!("t{i}"))),
    ] {
        assert!(store.create(&bad).await.is_err(), "{bad:?} was issued");
    }
}
