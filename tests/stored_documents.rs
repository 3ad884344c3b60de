//! No stored document, whatever its depth, can crash a reader: scopes nested 115 and 300 levels
//! deep, written straight into the database (as before input was bounded, or by hand), are
//! listed, shown and triggered by a real `sv0 admin-api` process, which answers every request
//! and is still running afterwards.

mod support;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{RawDocumentBuf, doc};
use reqwest::StatusCode;
use support::pipeline::{DEMO_KIND, Fixture, token};
use sv0_domain::ScanScope;
use sv0_domain::limits::MAX_READ_DEPTH;

/// `{"a": {"a": … {"leaf": 1}}}`, `levels` documents deep, built as bytes: writing it through a
/// `Document` would recurse once per level in this test's own (small) stack.
fn nested_bytes(levels: usize) -> RawDocumentBuf {
    // The innermost document: {"leaf": int32 1}.
    let mut current = {
        let mut body = vec![0x10];
        body.extend_from_slice(b"leaf\0");
        body.extend_from_slice(&1i32.to_le_bytes());
        body.push(0);
        with_length(body)
    };
    for _ in 1..levels {
        let mut body = vec![0x03];
        body.extend_from_slice(b"a\0");
        body.extend_from_slice(&current);
        body.push(0);
        current = with_length(body);
    }
    RawDocumentBuf::from_bytes(current).unwrap()
}

fn with_length(body: Vec<u8>) -> Vec<u8> {
    let mut bytes = ((body.len() + 4) as i32).to_le_bytes().to_vec();
    bytes.extend(body);
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_stored_115_and_300_levels_deep_are_listed_shown_and_triggered() {
    let fixture = Fixture::new("stored_deep_scopes").await;
    let plain = fixture
        .provision("acme", DEMO_KIND, doc! {"size": 3}, 60)
        .await;
    let api = fixture.admin_api(&[]);
    let url = api.api_url();
    let operator = token(&fixture, "operator", "oncall");
    let client = reqwest::Client::new();
    let collection = fixture.db().collection::<RawDocumentBuf>("scan_scopes");

    let other = fixture
        .provision("initech", DEMO_KIND, doc! {"size": 3}, 60)
        .await;
    let store = |of: &ScanScope, levels: usize| {
        let id = ObjectId::new();
        let mut stored = mongodb::bson::to_document(of).unwrap();
        stored.insert("_id", id);
        stored.insert("name", format!("{levels} deep"));
        stored.remove("scope");
        let mut raw = RawDocumentBuf::from_document(&stored).unwrap();
        raw.append("scope", nested_bytes(levels));
        let collection = collection.clone();
        async move {
            collection.insert_one(raw).await.unwrap();
            id
        }
    };
    let mut ids = Vec::new();
    for levels in [115, 300] {
        ids.push((levels, store(&plain, levels).await));
    }
    // The deepest a reader reads, and one level more: refused as a conflict naming the scope.
    let deepest = store(&other, MAX_READ_DEPTH - 1).await;
    let too_deep = store(&other, MAX_READ_DEPTH).await;

    let get = |path: String| {
        let request = client
            .get(format!("{url}/api/v1{path}"))
            .bearer_auth(&operator);
        async move {
            let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    };
    let (status, body) = get("/scopes?tenant_id=acme".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (levels, id) in &ids {
        assert!(body.contains(&id.to_hex()), "{levels} deep not listed");
        let (status, body) = get(format!("/tenants/acme/scopes/{}", id.to_hex())).await;
        assert_eq!(status, StatusCode::OK, "{levels} deep: {body}");
        assert!(body.contains(r#"{"leaf":1}"#), "{levels} deep: {body}");
        let triggered = client
            .post(format!(
                "{url}/api/v1/tenants/acme/scopes/{}/trigger",
                id.to_hex()
            ))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{levels} deep: the API went away: {e}"));
        let status = triggered.status();
        assert!(
            status == StatusCode::CREATED || status.is_client_error(),
            "{levels} deep: {status} {}",
            triggered.text().await.unwrap()
        );
    }
    let (status, body) = get(format!("/tenants/initech/scopes/{}", deepest.to_hex())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(format!("/tenants/initech/scopes/{}", too_deep.to_hex())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains(&too_deep.to_hex()), "{body}");
    // The list shows every scope, the one too deep to read as a row whose `scope` is not read.
    let (status, body) = get("/scopes?tenant_id=initech".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The page holds a 300-deep scope, past what a JSON parser reads by default: look at its text.
    for id in [deepest, too_deep, other.id] {
        assert!(
            body.contains(&format!("\"id\":\"{}\"", id.to_hex())),
            "{id} not listed: {body}"
        );
    }
    assert_eq!(
        body.matches("\"unreadable\":").count(),
        1,
        "only the scope too deep to read is marked: {body}"
    );
    let triggered = client
        .post(format!(
            "{url}/api/v1/tenants/initech/scopes/{}/trigger",
            too_deep.to_hex()
        ))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(triggered.status(), StatusCode::CONFLICT);
    let (status, _) = get(format!("/tenants/acme/scopes/{}", plain.id.to_hex())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = support::http_get(url.trim_start_matches("http://"), "/healthz");
    assert_eq!(status, 200, "{body}");
}
