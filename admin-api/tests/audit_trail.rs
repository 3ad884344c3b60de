//! The audit trail cannot be skipped: an entry is written before its action and completed after
//! it, an action whose entry cannot be written is refused (503) and not taken, changes are
//! recorded old and new, refused credentials and rights are counted and recorded at a bounded
//! rate, and the server's request id is recorded beside the caller's own.

mod support;

use std::time::{Duration, Instant};

use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::Api;
use sv0_admin_api::Role;

/// Makes the next audit entry of `action` fail to be written, as a full disk or a lost primary
/// would: a unique index on the action's name, and an entry holding it already.
async fn break_audit_of(api: &Api, action: &str) {
    let log = api.tdb.db.collection::<Document>("audit_log");
    log.create_index(
        IndexModel::builder()
            .keys(doc! {"action": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build(),
    )
    .await
    .unwrap();
    log.insert_one(doc! {"action": action, "planted": true})
        .await
        .unwrap();
}

async fn entries_of(api: &Api, action: &str) -> Vec<Document> {
    api.audit()
        .await
        .into_iter()
        .filter(|e| e.get_str("action") == Ok(action) && !e.contains_key("planted"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_whose_entry_cannot_be_written_is_refused_and_not_taken() {
    let api = Api::start("audit_unwritable").await;
    let (_, scope) = api.tenant_with_scope("acme").await;
    break_audit_of(&api, "scope.pause").await;
    let scope_path = support::scope_path(&scope);
    let paused = api.pause_scope(&scope_path, "unaudited").await;
    assert_eq!(
        paused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        paused.body
    );
    assert!(
        paused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audit"),
        "{:?}",
        paused.body
    );
    let stored = api.domain.scope("acme", scope.id).await.unwrap();
    assert!(
        !stored.paused,
        "the scope was paused without an audit entry"
    );

    // Other actions still work and are recorded.
    let triggered = api.trigger_scope(&scope_path).await;
    assert_eq!(
        triggered.status,
        StatusCode::CREATED,
        "{:?}",
        triggered.body
    );
    assert_eq!(entries_of(&api, "scope.trigger").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_are_started_then_completed_with_old_and_new_values() {
    let api = Api::start("audit_changes").await;
    let (instance, scope) = api.tenant_with_scope("acme").await;
    let scope_path = support::scope_path(&scope);

    let renamed = api
        .patch(
            Role::Operator,
            &scope_path,
            json!({"name": "nightly", "max_runtime_seconds": 600}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    let entry = &entries_of(&api, "scope.update").await[0];
    assert_eq!(entry.get_str("outcome").unwrap(), "done");
    assert!(entry.get_datetime("completed_at").is_ok());
    let changes = entry.get_document("changes").unwrap();
    assert_eq!(
        changes.get_document("name").unwrap(),
        &doc! {"old": "scope", "new": "nightly"}
    );
    assert_eq!(
        changes.get_document("max_runtime_seconds").unwrap(),
        &doc! {"old": 3600_i64, "new": 600_i64}
    );
    assert!(
        !changes.contains_key("scope"),
        "an unchanged field is not recorded"
    );

    let paused = api.pause_scope(&scope_path, "maintenance").await;
    assert_eq!(paused.status, StatusCode::OK);
    let entry = &entries_of(&api, "scope.pause").await[0];
    assert_eq!(
        entry
            .get_document("changes")
            .unwrap()
            .get_document("paused")
            .unwrap(),
        &doc! {"old": false, "new": true}
    );

    let edited = api
        .patch(
            Role::Operator,
            &format!("/api/v1/tenants/acme/instances/{}", instance.id),
            json!({"credentials_ref": {"provider": "env", "ref": "ROTATED"}}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.body);
    let entry = &entries_of(&api, "instance.update").await[0];
    let credentials = entry
        .get_document("changes")
        .unwrap()
        .get_document("credentials_ref")
        .unwrap();
    assert_eq!(
        credentials
            .get_document("old")
            .unwrap()
            .get_str("ref")
            .unwrap(),
        "DEMO_CLOUD"
    );
    assert_eq!(
        credentials
            .get_document("new")
            .unwrap()
            .get_str("ref")
            .unwrap(),
        "ROTATED"
    );

    let suspended = api.set_tenant_status("acme", "suspended").await;
    assert_eq!(suspended.status, StatusCode::OK);
    assert_eq!(
        entries_of(&api, "tenant.set_status").await[0]
            .get_document("changes")
            .unwrap()
            .get_document("status")
            .unwrap(),
        &doc! {"old": "active", "new": "suspended"}
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_the_state_refuses_is_completed_as_refused() {
    let api = Api::start("audit_refused").await;
    let (_, scope) = api.tenant_with_scope("acme").await;
    let run = api.run_now(Role::Operator, &scope).await;
    let run_id = run.body["id"].as_str().unwrap();
    let cancel = format!("/api/v1/scan-runs/{run_id}/cancel");
    assert_eq!(
        api.post(Role::Operator, &cancel, json!(null)).await.status,
        StatusCode::OK
    );
    let again = api.post(Role::Operator, &cancel, json!(null)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let outcomes: Vec<(String, Option<String>)> = entries_of(&api, "scan_run.cancel")
        .await
        .iter()
        .map(|e| {
            (
                e.get_str("outcome").unwrap().to_string(),
                e.get_str("error").ok().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0], ("done".to_string(), None));
    assert_eq!(outcomes[1].0, "refused");
    assert!(
        outcomes[1].1.as_deref().unwrap().starts_with("409"),
        "{outcomes:?}"
    );
    assert_eq!(
        entries_of(&api, "scan_run.cancel").await[0]
            .get_document("changes")
            .unwrap()
            .get_document("status")
            .unwrap(),
        &doc! {"old": "queued", "new": "cancelled"}
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_request_id_is_recorded_beside_the_callers() {
    let api = Api::start("audit_request_ids").await;
    let (_, scope) = api.tenant_with_scope("acme").await;
    let response = api
        .client
        .post(format!("{}/api/v1/scan-runs", api.base))
        .bearer_auth(&api.tokens[&Role::Operator])
        .header("x-request-id", "ci-step-17")
        .json(&support::manual_run("acme", &scope.id.to_hex()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let server_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(
        server_id, "ci-step-17",
        "the caller does not pick the server's id"
    );
    let entry = &entries_of(&api, "scan_run.create").await[0];
    assert_eq!(entry.get_str("request_id").unwrap(), server_id);
    assert_eq!(entry.get_str("caller_request_id").unwrap(), "ci-step-17");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_and_recorded_at_a_bounded_rate() {
    let api = Api::start("audit_refusals").await;
    api.tenant_with_scope("acme").await;
    // 40 requests without a token, one with a token it does not know, one of a role that may not.
    for _ in 0..40 {
        let reply = api
            .call_with(None, Method::GET, "/api/v1/scan-runs", None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let forbidden = api.get(Role::ReadOnly, "/api/v1/tokens").await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let metrics = api.metrics().await;
    let count = |labels: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("sv0_api_refusals_total{") && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("reason=\"missing_token\""), 40.0, "{metrics}");
    assert_eq!(count("reason=\"role\""), 1.0, "{metrics}");

    // The entries are written off the request's path: wait for them, then see that the rate
    // held (30 a minute; the 41st refusal fell in the same minute on any machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let refused = entries_of(&api, "auth.refused").await;
        if refused.len() >= 30 || Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.len(), 30, "at most 30 refusals recorded a minute");
    let first = &refused[0];
    assert_eq!(first.get_str("target_id").unwrap(), "/api/v1/scan-runs");
    assert_eq!(
        first
            .get_document("detail")
            .unwrap()
            .get_str("reason")
            .unwrap(),
        "missing_token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_request_is_recorded_with_its_caller() {
    let api = Api::start("audit_forbidden").await;
    let forbidden = api.get(Role::Operator, "/api/v1/audit-log").await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let refused = entries_of(&api, "auth.refused").await;
        if !refused.is_empty() || Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entry = &refused[0];
    assert_eq!(entry.get_str("token_name").unwrap(), "test-operator");
    assert_eq!(entry.get_str("role").unwrap(), "operator");
    assert_eq!(entry.get_str("request_id").unwrap(), forbidden.request_id);
    assert_eq!(
        entry
            .get_document("detail")
            .unwrap()
            .get_str("reason")
            .unwrap(),
        "role"
    );
}

/// The audit log's retention: entries written before the cut-off go, newer ones stay.
#[tokio::test(flavor = "multi_thread")]
async fn entries_past_their_retention_are_pruned() {
    let api = Api::start("audit_prune").await;
    assert_eq!(
        api.create_tenant("acme", "Acme").await.status,
        StatusCode::CREATED
    );
    let written = api.audit().await.len();
    assert!(written >= 1);
    let log = sv0_admin_api::AuditLog::new(&api.tdb.db);
    let now = mongodb::bson::DateTime::now().timestamp_millis();
    let at = mongodb::bson::DateTime::from_millis;
    assert_eq!(log.prune(at(now - 24 * 3600 * 1000)).await.unwrap(), 0);
    assert_eq!(api.audit().await.len(), written);
    assert_eq!(log.prune(at(now + 2_000)).await.unwrap(), written as u64);
    assert!(api.audit().await.is_empty());
}
