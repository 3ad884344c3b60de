//! Bulk cancel and retry by filter cannot flatten the fleet by accident: a dry run unless asked
//! otherwise, answered by tenant and kind; a real run only when narrowed or when it names the
//! count its dry run returned; other tenants' jobs untouched in every case.

mod support;

use std::time::Duration;

use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Api;
use sv0_admin_api::Role;
use sv0_queue::{ClaimRequest, NewJob};

const CANCEL: &str = "/api/v1/jobs/bulk/cancel";
const RETRY: &str = "/api/v1/jobs/bulk/retry";

/// Two tenants, each with two queued `scan` jobs, one queued `probe` job and one running `scan`
/// job: four cancellable jobs per tenant.
async fn fleet(api: &Api) {
    for tenant in ["acme", "globex"] {
        for kind in ["scan", "scan", "probe", "scan"] {
            let job = NewJob::new(kind, doc! {}).tenant_id(tenant);
            api.queue.enqueue(job).await.unwrap();
        }
    }
    let request = ClaimRequest {
        owner: "w".to_string(),
        kinds: vec!["scan".to_string()],
        limit: 1,
        lease_ttl: Duration::from_secs(3600),
    };
    for tenant in ["acme", "globex"] {
        let newest: Document = api
            .tdb
            .db
            .collection::<Document>("jobs")
            .find_one(doc! {"tenant_id": tenant, "kind": "scan"})
            .sort(doc! {"_id": -1})
            .await
            .unwrap()
            .unwrap();
        let id = newest.get_object_id("_id").unwrap();
        let claimed = api.queue.claim_candidates(&request, &[id]).await.unwrap();
        assert_eq!(claimed.len(), 1, "{tenant}'s running job");
    }
}

/// The jobs of `tenant` a cancel has not touched: neither cancelled nor asked to stop.
async fn untouched(api: &Api, tenant: &str) -> u64 {
    api.count(
        "jobs",
        doc! {"tenant_id": tenant, "status": {"$in": ["queued", "running"]}, "cancel_requested": false},
    )
    .await
}

fn pairs(reply: &Value) -> Vec<(String, String, u64)> {
    reply["by_tenant_kind"]
        .as_array()
        .expect("by_tenant_kind")
        .iter()
        .map(|c| {
            (
                c["tenant_id"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
                c["jobs"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pair(tenant: &str, kind: &str, jobs: u64) -> (String, String, u64) {
    (tenant.to_string(), kind.to_string(), jobs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_date_alone_without_dry_run_counts_by_tenant_and_kind_and_changes_nothing() {
    let api = Api::start("bulk_default_dry").await;
    fleet(&api).await;
    let everything = json!({"filter": {"created_until": "2999-01-01T00:00:00Z"}, "reason": "x"});

    let reply = api.post(Role::Operator, CANCEL, everything).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["dry_run"], true, "{:?}", reply.body);
    assert_eq!(reply.body["matched"], 8);
    assert_eq!(reply.body["changed"], 0);
    assert_eq!(reply.body["more_pairs"], 0);
    assert_eq!(
        pairs(&reply.body),
        vec![
            pair("acme", "scan", 3),
            pair("globex", "scan", 3),
            pair("acme", "probe", 1),
            pair("globex", "probe", 1),
        ]
    );
    assert_eq!(untouched(&api, "acme").await, 4, "nothing cancelled");
    assert_eq!(untouched(&api, "globex").await, 4, "nothing cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_run_on_a_date_alone_is_refused_naming_the_rule() {
    let api = Api::start("bulk_date_alone").await;
    fleet(&api).await;
    for filter in [
        json!({"created_until": "2999-01-01T00:00:00Z"}),
        json!({"created_from": "2000-01-01T00:00:00Z"}),
        json!({"created_from": "2000-01-01T00:00:00Z", "created_until": "2999-01-01T00:00:00Z"}),
    ] {
        for path in [CANCEL, RETRY] {
            let body = json!({"filter": filter, "reason": "x", "dry_run": false});
            let reply = api.post(Role::Operator, path, body).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{path} {filter}: {:?}",
                reply.body
            );
            assert_eq!(reply.field(), "filter", "{:?}", reply.body);
            let rule = reply.body.to_string();
            assert!(
                rule.contains("tenant_id") && rule.contains("expect"),
                "the refusal names the rule: {rule}"
            );
        }
    }
    assert_eq!(untouched(&api, "acme").await, 4);
    assert_eq!(untouched(&api, "globex").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_run_with_the_dry_runs_count_acts() {
    let api = Api::start("bulk_expect_equal").await;
    fleet(&api).await;
    let filter = json!({"created_until": "2999-01-01T00:00:00Z"});
    let dry = api
        .post(
            Role::Operator,
            CANCEL,
            json!({"filter": filter, "reason": "x"}),
        )
        .await;
    let expect = dry.body["matched"].as_u64().unwrap();
    assert_eq!(expect, 8);

    let body = json!({"filter": filter, "reason": "x", "dry_run": false, "expect": expect});
    let done = api.post(Role::Operator, CANCEL, body).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body["dry_run"], false);
    assert_eq!(
        (
            &done.body["matched"],
            &done.body["changed"],
            &done.body["requested"]
        ),
        (&json!(8), &json!(6), &json!(2)),
        "{:?}",
        done.body
    );
    assert_eq!(pairs(&done.body).len(), 4, "the counts it acted on");
    assert_eq!(api.count("jobs", doc! {"status": "cancelled"}).await, 6);
    let audit = api.audit().await;
    let last = audit.last().unwrap().get_document("detail").unwrap();
    assert_eq!(last.get_i64("expect").unwrap(), 8, "{last:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_count_is_a_conflict_saying_both_and_nothing_changes() {
    let api = Api::start("bulk_expect_stale").await;
    fleet(&api).await;
    for (path, expect) in [(CANCEL, 7), (CANCEL, 9), (RETRY, 1)] {
        let body = json!({
            "filter": {"created_until": "2999-01-01T00:00:00Z"},
            "reason": "x",
            "dry_run": false,
            "expect": expect,
        });
        let reply = api.post(Role::Operator, path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::CONFLICT,
            "{path}: {:?}",
            reply.body
        );
        let message = reply.body.to_string();
        let now = if path == CANCEL { "8" } else { "0" };
        assert!(
            message.contains(&format!("{now} jobs match now"))
                && message.contains(&format!("expect is {expect}")),
            "{message}"
        );
    }
    assert_eq!(untouched(&api, "acme").await, 4);
    assert_eq!(untouched(&api, "globex").await, 4);

    let on_a_dry_run = json!({"filter": {"tenant_id": "acme"}, "reason": "x", "expect": 4});
    let reply = api.post(Role::Operator, CANCEL, on_a_dry_run).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert_eq!(reply.field(), "expect");
    assert_eq!(untouched(&api, "acme").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_filter_acts_on_that_tenant_only() {
    let api = Api::start("bulk_tenant").await;
    fleet(&api).await;
    let body = json!({
        "filter": {"tenant_id": "acme", "created_until": "2999-01-01T00:00:00Z"},
        "reason": "acme offboarded",
        "dry_run": false,
    });
    let done = api.post(Role::Operator, CANCEL, body).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body["matched"], 4, "{:?}", done.body);
    assert_eq!(
        pairs(&done.body),
        vec![pair("acme", "scan", 3), pair("acme", "probe", 1)]
    );
    assert_eq!(untouched(&api, "acme").await, 0);
    assert_eq!(untouched(&api, "globex").await, 4, "another tenant's jobs");

    // Retry: the same rules, and again only the tenant named.
    let dry = api
        .post(
            Role::Operator,
            RETRY,
            json!({"filter": {"created_until": "2999-01-01T00:00:00Z"}, "reason": "x"}),
        )
        .await;
    assert_eq!(dry.body["dry_run"], true, "{:?}", dry.body);
    assert_eq!(
        pairs(&dry.body),
        vec![pair("acme", "scan", 2), pair("acme", "probe", 1)]
    );
    let done = api
        .post(
            Role::Operator,
            RETRY,
            json!({"filter": {"tenant_id": "acme", "kinds": ["probe"]}, "reason": "x", "dry_run": false}),
        )
        .await;
    assert_eq!(done.body["changed"], 1, "{:?}", done.body);
    assert_eq!(
        api.count(
            "jobs",
            doc! {"tenant_id": "acme", "kind": "probe", "status": "queued"}
        )
        .await,
        1
    );
    assert_eq!(untouched(&api, "globex").await, 4, "another tenant's jobs");
}
