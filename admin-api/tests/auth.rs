//! Authentication and roles over real HTTP: every route refuses a request without a valid
//! token (401, saying nothing about which tokens exist), and each role gets exactly its rights
//! (403 otherwise), as the issue lists them.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Admits, Api};
use sv0_admin_api::{NewToken, Role, Tokens};

const ID: &str = "0123456789abcdef01234567";

fn routes() -> Vec<(Method, String, Option<Value>, Admits)> {
    use Admits::*;
    let t = "/api/v1/tenants/acme";
    let empty = Some(json!({}));
    let reason = Some(json!({"reason": "auth test"}));
    vec![
        (Method::GET, "/api/v1/scan-runs".into(), None, Everyone),
        (
            Method::GET,
            format!("/api/v1/scan-runs/{ID}"),
            None,
            Everyone,
        ),
        (
            Method::POST,
            "/api/v1/scan-runs".into(),
            Some(support::manual_run("acme", ID)),
            Operators,
        ),
        (
            Method::POST,
            format!("/api/v1/scan-runs/{ID}/retry"),
            None,
            Operators,
        ),
        (
            Method::POST,
            format!("/api/v1/scan-runs/{ID}/cancel"),
            None,
            Operators,
        ),
        (
            Method::POST,
            "/api/v1/admin/rematerialize".into(),
            Some(json!({"stages": ["chains"], "tenants": ["nobody"], "deploy": {"id": "d1"}})),
            Deployers,
        ),
        (
            Method::POST,
            "/api/v1/ingest/normalized-graph".into(),
            Some(json!({"tenant_id": "nobody", "source": "s", "graph": {"entities": []}})),
            Operators,
        ),
        (Method::GET, "/api/v1/tenants".into(), None, Readers),
        (Method::GET, t.into(), None, Readers),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({"id": "auth-new", "name": "n"})),
            SuperAdmin,
        ),
        (
            Method::PATCH,
            t.into(),
            Some(json!({"status": "active"})),
            SuperAdmin,
        ),
        (Method::GET, format!("{t}/instances"), None, Readers),
        (Method::GET, format!("{t}/instances/{ID}"), None, Readers),
        (
            Method::POST,
            format!("{t}/instances"),
            empty.clone(),
            Operators,
        ),
        (
            Method::PATCH,
            format!("{t}/instances/{ID}"),
            empty.clone(),
            Operators,
        ),
        (
            Method::DELETE,
            format!("{t}/instances/{ID}"),
            None,
            Operators,
        ),
        (Method::GET, "/api/v1/scopes".into(), None, Readers),
        (Method::GET, format!("{t}/scopes/{ID}"), None, Readers),
        (
            Method::POST,
            format!("{t}/scopes"),
            empty.clone(),
            Operators,
        ),
        (
            Method::PATCH,
            format!("{t}/scopes/{ID}"),
            empty.clone(),
            Operators,
        ),
        (Method::DELETE, format!("{t}/scopes/{ID}"), None, Operators),
        (
            Method::PUT,
            format!("{t}/scopes/{ID}/schedule"),
            Some(json!({"schedule": null})),
            Operators,
        ),
        (
            Method::POST,
            format!("{t}/scopes/{ID}/pause"),
            empty.clone(),
            Operators,
        ),
        (
            Method::POST,
            format!("{t}/scopes/{ID}/resume"),
            None,
            Operators,
        ),
        (
            Method::POST,
            format!("{t}/scopes/{ID}/trigger"),
            None,
            Operators,
        ),
        (
            Method::POST,
            format!("{t}/scopes/{ID}/backfill"),
            Some(json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:01:00Z"})),
            Operators,
        ),
        (Method::GET, "/api/v1/jobs".into(), None, Readers),
        (Method::GET, format!("/api/v1/jobs/{ID}"), None, Readers),
        (
            Method::POST,
            format!("/api/v1/jobs/{ID}/cancel"),
            reason.clone(),
            Operators,
        ),
        (
            Method::POST,
            format!("/api/v1/jobs/{ID}/retry"),
            reason.clone(),
            Operators,
        ),
        (
            Method::POST,
            "/api/v1/jobs/bulk/cancel".into(),
            Some(json!({"ids": [ID], "dry_run": true, "reason": "r"})),
            Operators,
        ),
        (
            Method::POST,
            "/api/v1/jobs/bulk/retry".into(),
            Some(json!({"ids": [ID], "dry_run": true, "reason": "r"})),
            Operators,
        ),
        (Method::GET, "/api/v1/tokens".into(), None, SuperAdmin),
        (
            Method::POST,
            format!("/api/v1/tokens/{ID}/revoke"),
            None,
            SuperAdmin,
        ),
        (Method::GET, "/api/v1/audit-log".into(), None, SuperAdmin),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_a_request_without_a_valid_token_alike() {
    let api = Api::start("auth_401").await;
    let revoked = {
        let store = Tokens::new(&api.tdb.db);
        let issued = store
            .create(&NewToken::new("soon-revoked", Role::SuperAdmin))
            .await
            .unwrap();
        store.revoke(&issued.info.id).await.unwrap();
        issued.token
    };
    // A real token's id with a wrong secret, a malformed token, a revoked one, none at all.
    let admin = api.tokens[&Role::SuperAdmin].clone();
    let wrong_secret = format!("{}{}", &admin[..admin.len() - 4], "0000");
    let presented = [
        Some(wrong_secret.as_str()),
        Some("sv0_nonsense"),
        Some(revoked.as_str()),
        None,
    ];
    let mut bodies = std::collections::BTreeSet::new();
    for (method, path, body, _) in routes() {
        for token in presented {
            let reply = api
                .call_with(token, method.clone(), &path, body.clone())
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {:?}",
                reply.body
            );
            assert_eq!(reply.body["request_id"], reply.request_id.as_str());
            // The challenge HTTP requires of a 401; `invalid_token` only when one was sent.
            let challenge = match token {
                Some(_) => r#"Bearer realm="sv0", error="invalid_token""#,
                None => r#"Bearer realm="sv0""#,
            };
            assert_eq!(
                reply.challenge(),
                Some(challenge),
                "{method} {path} with {token:?}"
            );
            bodies.insert(reply.body["error"].to_string());
        }
        // Another scheme is no bearer token at all; a bearer scheme in any case is one.
        for (authorization, challenge) in [
            ("Basic YWRtaW46YWRtaW4=", r#"Bearer realm="sv0""#),
            ("Bearer", r#"Bearer realm="sv0""#),
            (
                "bearer sv0_nonsense",
                r#"Bearer realm="sv0", error="invalid_token""#,
            ),
        ] {
            let reply = api
                .call_authorized(Some(authorization), method.clone(), &path, body.clone())
                .await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(
                reply.challenge(),
                Some(challenge),
                "{method} {path} with {authorization:?}"
            );
            bodies.insert(reply.body["error"].to_string());
        }
    }
    assert_eq!(bodies.len(), 1, "every refusal reads the same: {bodies:?}");
}

/// HTTP's auth schemes are case-insensitive: `bearer` and `BEARER` are the same scheme, and a
/// valid token under either gets past authentication on every route.
#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_scheme_is_accepted_in_any_case_on_every_route() {
    let api = Api::start("auth_scheme_case").await;
    let admin = api.tokens[&Role::SuperAdmin].clone();
    for (method, path, body, _) in routes() {
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let authorization = format!("{scheme} {admin}");
            let reply = api
                .call_authorized(Some(&authorization), method.clone(), &path, body.clone())
                .await;
            assert!(
                reply.status != StatusCode::UNAUTHORIZED && !reply.status.is_server_error(),
                "{method} {path} with scheme {scheme:?}: {} {:?}",
                reply.status,
                reply.body
            );
            assert_eq!(reply.challenge(), None, "{method} {path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_gets_exactly_its_rights_on_every_route() {
    let api = Api::start("auth_403").await;
    for (method, path, body, admits) in routes() {
        for role in Role::ALL {
            let reply = api.call(role, method.clone(), &path, body.clone()).await;
            if admits.admits(role) {
                assert!(
                    reply.status != StatusCode::FORBIDDEN
                        && reply.status != StatusCode::UNAUTHORIZED,
                    "{} should be admitted to {method} {path}: {} {:?}",
                    role.as_str(),
                    reply.status,
                    reply.body
                );
                assert!(
                    !reply.status.is_server_error(),
                    "{method} {path}: {:?}",
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{} must be refused {method} {path}: {:?}",
                    role.as_str(),
                    reply.body
                );
                assert_eq!(reply.body["error"]["code"], "forbidden");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ci_token_reads_deploy_gate_runs_only() {
    let api = Api::start("auth_ci_runs").await;
    let (_, scope) = api.tenant_with_scope("acme").await;
    let manual = api.run_now(Role::Operator, &scope).await;
    assert_eq!(manual.status, StatusCode::CREATED, "{:?}", manual.body);
    let deploy = api
        .post(
            Role::Ci,
            "/api/v1/admin/rematerialize",
            json!({"stages": ["chains"], "deploy": {"id": "d-7"}}),
        )
        .await;
    assert_eq!(deploy.status, StatusCode::ACCEPTED, "{:?}", deploy.body);
    let deploy_run = deploy.body["runs"][0]["id"].as_str().unwrap().to_string();

    let listed = api.get(Role::Ci, "/api/v1/scan-runs").await;
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![deploy_run.as_str()],
        "ci lists deploy-gate runs only"
    );
    assert_eq!(
        api.get(Role::Ci, &format!("/api/v1/scan-runs/{deploy_run}"))
            .await
            .status,
        StatusCode::OK
    );
    let hidden = api
        .get(
            Role::Ci,
            &format!("/api/v1/scan-runs/{}", manual.body["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        hidden.status,
        StatusCode::NOT_FOUND,
        "another run is not shown to ci"
    );
    let other = api
        .get(Role::Ci, "/api/v1/scan-runs?trigger=manual_api")
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    // The operator sees both.
    let all = api.get(Role::Operator, "/api/v1/scan-runs").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_stored_as_digests_and_never_shown_again() {
    let api = Api::start("auth_digests").await;
    let store = Tokens::new(&api.tdb.db);
    let issued = store
        .create(&NewToken::new("canary-holder", Role::Operator))
        .await
        .unwrap();
    let secret = issued.token.rsplit('_').next().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    // Use it for a mutation, list tokens, read the audit log.
    let (_, scope) = api.tenant_with_scope("acme").await;
    let made = api
        .call_with(
            Some(&issued.token),
            Method::POST,
            "/api/v1/scan-runs",
            Some(support::manual_run("acme", &scope.id.to_hex())),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let listed = api.get(Role::SuperAdmin, "/api/v1/tokens").await;
    let audit = api.get(Role::SuperAdmin, "/api/v1/audit-log").await;
    let metrics = api.metrics().await;
    let mut everything = format!("{:?}{:?}{:?}{metrics}", made.body, listed.body, audit.body);
    for name in ["api_tokens", "audit_log", "scan_runs", "jobs"] {
        everything.push_str(&format!("{:?}", dump(&api, name).await));
    }
    assert!(
        !everything.contains(&secret),
        "the token's secret appears somewhere"
    );
    assert!(
        everything.contains("canary-holder"),
        "the dump covered the token's records"
    );
    assert!(format!("{issued:?}").contains("redacted") && !format!("{issued:?}").contains(&secret));
}

async fn dump(api: &Api, collection: &str) -> Vec<mongodb::bson::Document> {
    use futures::TryStreamExt;
    api.tdb
        .db
        .collection::<mongodb::bson::Document>(collection)
        .find(mongodb::bson::doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}
