//! Bounded input: every request body at most 32 levels deep, a scope at most 64 KiB with
//! storable keys, a cron expression at most 256 characters, every list in a body bounded, and
//! free text without control characters or bidirectional marks. Each refusal is a 400 naming
//! the path, and nothing is written or audited.

mod support;

use mongodb::bson::doc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Api, Reply};
use sv0_admin_api::Role;

/// `{"a": … {"a": leaf}}`, `levels` objects deep.
fn nested(levels: usize, leaf: Value) -> Value {
    let mut value = leaf;
    for _ in 0..levels {
        value = json!({ "a": value });
    }
    value
}

/// Sends `body` as it is (a body too deep for `serde_json` to write is built as text).
async fn post_raw(api: &Api, role: Role, path: &str, body: String) -> Answer {
    let response = api
        .client
        .post(format!("{}{path}", api.base))
        .bearer_auth(&api.tokens[&role])
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A reply's status and body, from [`Reply`] or from [`post_raw`].
struct Answer {
    status: StatusCode,
    body: Value,
}

impl From<&Reply> for Answer {
    fn from(reply: &Reply) -> Answer {
        Answer {
            status: reply.status,
            body: reply.body.clone(),
        }
    }
}

impl From<&Answer> for Answer {
    fn from(answer: &Answer) -> Answer {
        Answer {
            status: answer.status,
            body: answer.body.clone(),
        }
    }
}

fn assert_refused(reply: impl Into<Answer>, field: &str) {
    let reply: Answer = reply.into();
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{field}: {:?}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "invalid", "{:?}", reply.body);
    assert_eq!(reply.body["error"]["field"], field, "{:?}", reply.body);
}

/// The API answers after a refusal: refusing did not take it down.
async fn assert_still_answers(api: &Api) {
    assert_eq!(
        api.get(Role::Operator, "/api/v1/scopes").await.status,
        StatusCode::OK
    );
}

/// The scope a user sent, nested 115 levels deep, used to be stored and audited before the API
/// aborted on it. Now the create is a 400 naming the path, and nothing is stored or audited.
#[tokio::test(flavor = "multi_thread")]
async fn a_scope_nested_115_deep_is_refused_naming_the_path_and_nothing_is_stored() {
    let api = Api::start("bounds_deep_scope").await;
    let (instance, _) = api.tenant_with_scope("acme").await;
    let scopes_before = api.count("scan_scopes", doc! {}).await;
    let body = json!({
        "instance_id": instance.id.to_hex(),
        "name": "deep",
        "scope": nested(115, json!(1)),
    });
    let reply = api
        .post(Role::Operator, "/api/v1/tenants/acme/scopes", body)
        .await;
    // The body is level 1 and `scope` level 2: the first object past 32 levels is scope's 32nd.
    let path = format!("scope{}", ".a".repeat(31));
    assert_refused(&reply, &path);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 32 levels"),
        "{:?}",
        reply.body
    );
    assert_eq!(api.count("scan_scopes", doc! {}).await, scopes_before);
    assert_eq!(
        api.count("audit_log", doc! {"action": "scope.create"})
            .await,
        0
    );
    assert_still_answers(&api).await;
}

/// 32 levels (the body itself the first) pass; 33 are refused, in a create and in an edit.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_of_32_levels_is_accepted_and_of_33_refused() {
    let api = Api::start("bounds_depth_edge").await;
    let (instance, scope) = api.tenant_with_scope("acme").await;
    let create = |levels: usize| {
        json!({
            "instance_id": instance.id.to_hex(),
            "name": format!("depth {levels}"),
            "scope": nested(levels, json!(1)),
        })
    };
    // `scope` holds `levels` objects, the body one more.
    let accepted = api
        .post(Role::Operator, "/api/v1/tenants/acme/scopes", create(31))
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{:?}", accepted.body);
    let refused = api
        .post(Role::Operator, "/api/v1/tenants/acme/scopes", create(32))
        .await;
    assert_refused(&refused, &format!("scope{}", ".a".repeat(31)));
    let path = support::scope_path(&scope);
    let edited = api
        .patch(
            Role::Operator,
            &path,
            json!({"scope": nested(32, json!(1))}),
        )
        .await;
    assert_refused(&edited, &format!("scope{}", ".a".repeat(31)));
    // An array counts as a level too.
    let mut listed = json!(1);
    for _ in 0..40 {
        listed = json!([listed]);
    }
    let refused = api
        .post(
            Role::Operator,
            "/api/v1/tenants/acme/scopes",
            json!({"instance_id": instance.id.to_hex(), "name": "arrays", "scope": {"l": listed}}),
        )
        .await;
    assert_refused(&refused, &format!("scope.l{}", "[0]".repeat(30)));
    assert_eq!(api.count("scan_scopes", doc! {}).await, 2);
}

/// A body 100,000 levels deep is a 400 naming the path, not a crash; the API answers after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_a_hundred_thousand_levels_deep_is_a_clean_400() {
    let api = Api::start("bounds_very_deep").await;
    let (instance, _) = api.tenant_with_scope("acme").await;
    let levels = 100_000;
    let body = format!(
        r#"{{"instance_id": "{}", "name": "x", "scope": {}1{}}}"#,
        instance.id.to_hex(),
        r#"{"a":"#.repeat(levels),
        "}".repeat(levels)
    );
    let reply = post_raw(&api, Role::Operator, "/api/v1/tenants/acme/scopes", body).await;
    assert_refused(&reply, &format!("scope{}", ".a".repeat(31)));
    let arrays = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let reply = post_raw(&api, Role::Operator, "/api/v1/jobs/bulk/cancel", arrays).await;
    assert_refused(&reply, &"[0]".repeat(32));
    assert_still_answers(&api).await;
}

/// A scope is at most 64 KiB as BSON; its keys hold no NUL, no leading `$`, no `.`.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_scope_or_a_bad_key_is_refused_naming_it() {
    let api = Api::start("bounds_scope_shape").await;
    let (instance, scope) = api.tenant_with_scope("acme").await;
    let create =
        |scope: Value| json!({"instance_id": instance.id.to_hex(), "name": "s", "scope": scope});
    let big = create(json!({"blob": "x".repeat(65 * 1024)}));
    let reply = api
        .post(Role::Operator, "/api/v1/tenants/acme/scopes", big)
        .await;
    assert_refused(&reply, "scope");
    let path = support::scope_path(&scope);
    let reply = api
        .patch(
            Role::Operator,
            &path,
            json!({"scope": {"blob": "x".repeat(65 * 1024)}}),
        )
        .await;
    assert_refused(&reply, "scope");
    let fits = create(json!({"blob": "x".repeat(60 * 1024)}));
    let reply = api
        .post(Role::Operator, "/api/v1/tenants/acme/scopes", fits)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);

    for (scope, field) in [
        (
            json!({"filter": {"$where": "sleep(1000)"}}),
            "scope.filter.$where",
        ),
        (json!({"a.b": 1}), "scope.a.b"),
        (json!({"x": [{"a\u{0}b": 1}]}), "scope.x[0].a\\0b"),
    ] {
        let reply = api
            .post(
                Role::Operator,
                "/api/v1/tenants/acme/scopes",
                create(scope.clone()),
            )
            .await;
        assert_refused(&reply, field);
        let reply = api
            .patch(Role::Operator, &path, json!({ "scope": scope }))
            .await;
        assert_refused(&reply, field);
    }
    assert_eq!(api.count("scan_scopes", doc! {}).await, 2);
    assert_eq!(
        api.count("audit_log", doc! {"action": "scope.update"})
            .await,
        0
    );
}

/// A cron expression is at most 256 characters, at creation and in the schedule editor.
#[tokio::test(flavor = "multi_thread")]
async fn a_cron_expression_past_256_characters_is_refused() {
    let api = Api::start("bounds_cron").await;
    let (instance, scope) = api.tenant_with_scope("acme").await;
    let mut minutes = "0,".repeat(123);
    minutes.push_str("0,0");
    let expression = format!("{minutes} * * * *");
    assert_eq!(expression.len(), 257);
    let schedule =
        json!({"cadence": {"type": "cron", "expression": expression, "time_zone": "UTC"}});
    let path = format!("{}/schedule", support::scope_path(&scope));
    let reply = api
        .put(Role::Operator, &path, json!({ "schedule": schedule }))
        .await;
    assert_refused(&reply, "schedule.cadence.expression");
    let reply = api
        .post(
            Role::Operator,
            "/api/v1/tenants/acme/scopes",
            json!({"instance_id": instance.id.to_hex(), "name": "c", "scope": {}, "schedule": schedule}),
        )
        .await;
    assert_refused(&reply, "schedule.cadence.expression");
    assert_eq!(api.count("scan_scopes", doc! {}).await, 1);
}

/// Every list a body carries has a bound, and past it the list is named.
#[tokio::test(flavor = "multi_thread")]
async fn every_list_in_a_body_is_bounded() {
    let api = Api::start("bounds_lists").await;
    api.tenant_with_scope("acme").await;
    let many = |n: usize, item: &str| vec![json!(item); n];
    let cases = [
        (
            "/api/v1/admin/rematerialize",
            json!({"stages": many(9, "chains"), "deploy": {"id": "d"}}),
            "stages",
        ),
        (
            "/api/v1/admin/rematerialize",
            json!({"stages": ["chains"], "tenants": many(1001, "acme")}),
            "tenants",
        ),
        (
            "/api/v1/jobs/bulk/cancel",
            json!({"ids": many(1001, "0123456789abcdef01234567"), "reason": "r"}),
            "ids",
        ),
        (
            "/api/v1/jobs/bulk/retry",
            json!({"filter": {"kinds": many(65, "execute_scan")}, "reason": "r"}),
            "filter.kinds",
        ),
        (
            "/api/v1/jobs/bulk/retry",
            json!({"filter": {"statuses": many(17, "dead")}, "reason": "r"}),
            "filter.statuses",
        ),
        (
            "/api/v1/jobs/bulk/retry",
            json!({
                "filter": {"payload": (0..17).map(|i| (format!("p{i}"), json!(i))).collect::<serde_json::Map<_, _>>()},
                "reason": "r",
            }),
            "filter.payload",
        ),
        (
            "/api/v1/ingest/normalized-graph",
            json!({"tenant_id": "acme", "source": "cmdb", "graph": {
                "entities": [],
                "edges": vec![json!({"from": "m", "to": "i", "type": "runs_as"}); 100_001],
            }}),
            "graph.edges",
        ),
    ];
    for (path, body, field) in cases {
        let reply = api.post(Role::SuperAdmin, path, body).await;
        assert_refused(&reply, field);
    }
    assert_eq!(api.count("scan_runs", doc! {}).await, 0);
    assert_eq!(api.count("audit_log", doc! {}).await, 0);
}

/// A graph entity's properties are stored as they are: their keys are checked as a scope's, and
/// its id, cloud and name as free text.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingested_property_key_or_entity_text_that_cannot_be_stored_plainly_is_refused() {
    let api = Api::start("bounds_ingest_keys").await;
    api.tenant_with_scope("acme").await;
    let with_properties = |properties: Value| {
        json!({"entities": [
            {"id": "m", "type": "machine", "cloud": "aws", "name": "m", "properties": properties},
        ]})
    };
    let with_entity = |entity: Value| json!({ "entities": [entity] });
    for (graph, field) in [
        (
            with_properties(json!({"tags": {"$gt": 1}})),
            "graph.entities[0].properties.tags.$gt",
        ),
        (
            with_properties(json!({"a.b": 1})),
            "graph.entities[0].properties.a.b",
        ),
        (
            with_entity(
                json!({"id": "m", "type": "machine", "cloud": "aws", "name": "evil\u{202E}gpj.exe"}),
            ),
            "graph.entities[0].name",
        ),
        (
            with_entity(json!({"id": "m\u{0}", "type": "machine", "cloud": "aws", "name": "m"})),
            "graph.entities[0].id",
        ),
        (
            with_entity(
                json!({"id": "m", "type": "machine", "cloud": "aws\u{1b}[2J", "name": "m"}),
            ),
            "graph.entities[0].cloud",
        ),
    ] {
        let reply = api
            .post(
                Role::Operator,
                "/api/v1/ingest/normalized-graph",
                json!({"tenant_id": "acme", "source": "cmdb", "graph": graph}),
            )
            .await;
        assert_refused(&reply, field);
    }
    assert_eq!(api.count("connector_syncs", doc! {}).await, 0);
}

/// Free text with a NUL, an escape sequence or a bidirectional override is refused in every
/// field that takes it, naming the field; nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_and_bidi_marks_are_refused_in_every_free_text_field() {
    let api = Api::start("bounds_text").await;
    let (instance, scope) = api.tenant_with_scope("acme").await;
    let scope_path = support::scope_path(&scope);
    let job = api
        .queue
        .enqueue(sv0_queue::NewJob::new("execute_scan", doc! {"x": 1}))
        .await
        .unwrap()
        .id;
    for bad in [
        "a\u{0}b",
        "a\u{1b}[2Jb",
        "evil\u{202E}txt.exe",
        "a\u{2066}b",
        "a\u{200F}",
    ] {
        let cases: Vec<(Method, String, Value, &str)> = vec![
            (
                Method::POST,
                "/api/v1/tenants".into(),
                json!({"id": "initech", "name": bad}),
                "name",
            ),
            (
                Method::POST,
                "/api/v1/tenants/acme/instances".into(),
                json!({"name": bad, "kind": "demo", "credentials_ref": {"provider": "env", "ref": "DEMO_CLOUD"}}),
                "name",
            ),
            (
                Method::PATCH,
                format!("/api/v1/tenants/acme/instances/{}", instance.id.to_hex()),
                json!({ "name": bad }),
                "name",
            ),
            (
                Method::POST,
                "/api/v1/tenants/acme/scopes".into(),
                json!({"instance_id": instance.id.to_hex(), "name": bad, "scope": {}}),
                "name",
            ),
            (
                Method::PATCH,
                scope_path.clone(),
                json!({ "name": bad }),
                "name",
            ),
            (
                Method::POST,
                format!("{scope_path}/pause"),
                json!({ "note": bad }),
                "note",
            ),
            (
                Method::POST,
                "/api/v1/admin/rematerialize".into(),
                json!({"stages": ["chains"], "deploy": {"id": bad}}),
                "deploy.id",
            ),
            (
                Method::POST,
                "/api/v1/admin/rematerialize".into(),
                json!({"stages": ["chains"], "deploy": {"id": "d1", "commit": bad}}),
                "deploy.commit",
            ),
            (
                Method::POST,
                "/api/v1/scan-runs".into(),
                json!({"tenant_id": "acme", "scope_id": scope.id.to_hex(),
                    "trigger": {"type": "iac_lifecycle", "event": bad}}),
                "trigger.event",
            ),
            (
                Method::POST,
                format!("/api/v1/jobs/{}/cancel", job.to_hex()),
                json!({ "reason": bad }),
                "reason",
            ),
            (
                Method::POST,
                "/api/v1/jobs/bulk/cancel".into(),
                json!({"ids": [job.to_hex()], "reason": bad}),
                "reason",
            ),
            (
                Method::POST,
                "/api/v1/jobs/bulk/retry".into(),
                json!({"filter": {"kinds": [bad]}, "reason": "r"}),
                "filter.kinds[0]",
            ),
            (
                Method::POST,
                "/api/v1/jobs/bulk/retry".into(),
                json!({"filter": {"group_id": bad}, "reason": "r"}),
                "filter.group_id",
            ),
        ];
        for (method, path, body, field) in cases {
            let reply = api
                .call(Role::SuperAdmin, method.clone(), &path, Some(body))
                .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{method} {path} {bad:?}: {:?}",
                reply.body
            );
            assert_eq!(
                reply.field(),
                field,
                "{method} {path} {bad:?}: {:?}",
                reply.body
            );
        }
    }
    assert_eq!(api.count("tenants", doc! {}).await, 1);
    assert_eq!(api.count("connector_instances", doc! {}).await, 1);
    assert_eq!(api.count("scan_scopes", doc! {}).await, 1);
    assert_eq!(api.count("scan_runs", doc! {}).await, 0);
    assert_eq!(api.count("audit_log", doc! {}).await, 0);
    let stored = api.domain.scope("acme", scope.id).await.unwrap();
    assert!(!stored.paused);
}

/// A scope stored nested deeper than a reader reads (written straight into the database, as
/// before input was bounded, or by hand) does not hide the others: the list is a 200 holding it
/// as a row whose `scope` is not read, saying why. Shown alone, it is a 409 naming it.
#[tokio::test(flavor = "multi_thread")]
async fn a_scope_stored_too_deep_is_listed_unread_beside_the_others() {
    use mongodb::bson::RawDocumentBuf;
    use mongodb::bson::oid::ObjectId;
    use sv0_domain::limits::MAX_READ_DEPTH;

    let api = Api::start("bounds_stored_too_deep").await;
    let (_, plain) = api.tenant_with_scope("acme").await;
    let deep_id = ObjectId::new();
    let mut stored = mongodb::bson::to_document(&plain).unwrap();
    stored.insert("_id", deep_id);
    stored.insert("name", "too deep");
    stored.remove("scope");
    let mut raw = RawDocumentBuf::from_document(&stored).unwrap();
    raw.append("scope", nested_bytes(MAX_READ_DEPTH));
    api.tdb
        .db
        .collection::<RawDocumentBuf>("scan_scopes")
        .insert_one(raw)
        .await
        .unwrap();

    let reply = api.get(Role::Operator, "/api/v1/scopes").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let items = reply.body["items"].as_array().unwrap();
    let listed: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [deep_id.to_hex(), plain.id.to_hex()]);
    assert_eq!(items[0]["name"], "too deep");
    assert_eq!(items[0]["tenant_id"], "acme");
    assert_eq!(items[0]["scope"], json!({}));
    let reason = items[0]["unreadable"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "scope stored nested deeper than {MAX_READ_DEPTH} levels"
        )),
        "{reason}"
    );
    assert_eq!(items[1]["name"], "scope");
    assert!(items[1].get("unreadable").is_none(), "{:?}", items[1]);

    let path = format!("/api/v1/tenants/acme/scopes/{}", deep_id.to_hex());
    let reply = api.get(Role::Operator, &path).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    assert!(
        reply.body.to_string().contains(&deep_id.to_hex()),
        "{:?}",
        reply.body
    );
}

/// `{"a": {"a": … {"leaf": 1}}}`, `levels` documents deep, built as bytes: a `Document` that
/// deep would recurse once per level to be written, in the test's own stack.
fn nested_bytes(levels: usize) -> mongodb::bson::RawDocumentBuf {
    let with_length = |body: Vec<u8>| {
        let mut bytes = ((body.len() + 4) as i32).to_le_bytes().to_vec();
        bytes.extend(body);
        bytes
    };
    let mut nested = with_length(b"\x10leaf\0\x01\0\0\0\0".to_vec());
    for _ in 1..levels {
        let mut body = b"\x03a\0".to_vec();
        body.extend_from_slice(&nested);
        body.push(0);
        nested = with_length(body);
    }
    mongodb::bson::RawDocumentBuf::from_bytes(nested).unwrap()
}
