//! The keyed sets the stages rewrite in full (entities per source, findings per tenant), on the
//! stand: what a rewrite creates, updates, leaves alone and retires, and that a replay of the
//! same write converges on the same documents.

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use sv0_domain::{Counts, Domain, Finding, ForRun, Graph, ItemSet, Severity};
use sv0_testkit::TestDb;

async fn setup(label: &str) -> (TestDb, Domain) {
    let tdb = TestDb::new(label).await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    (tdb, domain)
}

fn finding(entity: &str, severity: Severity) -> Finding {
    Finding {
        rule: "public_storage".into(),
        entity_id: entity.into(),
        severity,
        title: format!("storage {entity} is readable by anyone"),
    }
}

async fn docs(tdb: &TestDb, collection: &str, filter: Document) -> Vec<Document> {
    tdb.db
        .collection::<Document>(collection)
        .find(filter)
        .sort(doc! {"key": 1, "external_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn counts(created: u64, updated: u64, unchanged: u64, retired: u64) -> Counts {
    Counts {
        created,
        updated,
        unchanged,
        retired,
        superseded: false,
    }
}

/// These tests write outside any run's stages; the fence's own tests are in set_fence.rs.
/// A graph of one machine per id, all in one cloud.
fn machines(ids: &[&str]) -> Graph {
    let entities: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id": "{id}", "type": "machine", "cloud": "aws", "name": "{id}"}}"#))
        .collect();
    Graph::from_json(format!(r#"{{"entities": [{}]}}"#, entities.join(",")).as_bytes()).unwrap()
}

fn by() -> ForRun {
    ForRun::outside(ObjectId::new())
}

#[tokio::test]
async fn a_rewrite_creates_updates_keeps_and_resolves_findings() {
    let (tdb, domain) = setup("findings_rewrite").await;
    let first = [
        finding("a", Severity::Medium),
        finding("b", Severity::Medium),
        finding("c", Severity::Medium),
    ];
    assert_eq!(
        domain.write_findings("t", by(), &first).await.unwrap(),
        counts(3, 0, 0, 0)
    );
    let before = docs(&tdb, "findings", doc! {"key": "public_storage:a"}).await;
    let first_seen = domain.last_seen("t", ItemSet::Findings).await.unwrap();
    assert!(first_seen.is_some());

    // a unchanged, b changed, c gone, d new.
    let second = [
        finding("a", Severity::Medium),
        finding("b", Severity::Critical),
        finding("d", Severity::Medium),
    ];
    assert_eq!(
        domain.write_findings("t", by(), &second).await.unwrap(),
        counts(1, 1, 1, 1)
    );
    let after = docs(&tdb, "findings", doc! {}).await;
    let status: Vec<(&str, &str)> = after
        .iter()
        .map(|d| (d.get_str("key").unwrap(), d.get_str("status").unwrap()))
        .collect();
    assert_eq!(
        status,
        vec![
            ("public_storage:a", "open"),
            ("public_storage:b", "open"),
            ("public_storage:c", "resolved"),
            ("public_storage:d", "open"),
        ]
    );
    // The unchanged finding was not written at all: it was seen at the set's newest write.
    assert_eq!(before[0], after[0]);
    assert!(before[0].get("last_seen_at").is_none());
    // The resolved one keeps when it was last produced: the first write.
    assert_eq!(
        after[2].get_datetime("last_seen_at").unwrap(),
        &first_seen.unwrap()
    );
    assert_eq!(
        after[1]
            .get_document("data")
            .unwrap()
            .get_str("severity")
            .unwrap(),
        "critical"
    );
    assert!(after[2].get_datetime("resolved_at").is_ok());

    // The same write again (a replayed stage): no finding is written, and the set's last
    // sighting moves on.
    let seen_before = domain.last_seen("t", ItemSet::Findings).await.unwrap();
    assert_eq!(
        domain.write_findings("t", by(), &second).await.unwrap(),
        counts(0, 0, 3, 0)
    );
    assert_eq!(docs(&tdb, "findings", doc! {}).await, after);
    let seen_after = domain.last_seen("t", ItemSet::Findings).await.unwrap();
    assert!(
        seen_after > seen_before,
        "{seen_after:?} after {seen_before:?}"
    );
    // c fires again: it reopens (an update of the same finding, not a new one).
    let third = [
        finding("a", Severity::Medium),
        finding("b", Severity::Critical),
        finding("c", Severity::Medium),
        finding("d", Severity::Medium),
    ];
    assert_eq!(
        domain.write_findings("t", by(), &third).await.unwrap(),
        counts(0, 1, 3, 0)
    );
    let c = docs(&tdb, "findings", doc! {"key": "public_storage:c"}).await;
    assert_eq!(c[0].get_str("status").unwrap(), "open");
    assert!(
        c[0].get("resolved_at").is_none(),
        "reopened: no resolved_at"
    );
    assert_eq!(c[0].get_object_id("_id"), after[2].get_object_id("_id"));
}

#[tokio::test]
async fn each_tenant_has_its_own_set() {
    let (tdb, domain) = setup("findings_tenants").await;
    domain
        .write_findings("t1", by(), &[finding("a", Severity::Low)])
        .await
        .unwrap();
    // t2's full set is empty: t1's finding is not t2's to resolve.
    assert_eq!(
        domain.write_findings("t2", by(), &[]).await.unwrap(),
        counts(0, 0, 0, 0)
    );
    assert_eq!(
        domain
            .write_findings("t2", by(), &[finding("a", Severity::Low)])
            .await
            .unwrap(),
        counts(1, 0, 0, 0)
    );
    let all = docs(&tdb, "findings", doc! {"status": "open"}).await;
    assert_eq!(all.len(), 2, "the same key in two tenants is two findings");
}

#[tokio::test]
async fn a_sync_is_its_sources_full_state() {
    let (tdb, domain) = setup("entities_full_state").await;
    assert_eq!(
        domain
            .write_entities("t", "src-1", by(), &machines(&["m1", "m2"]))
            .await
            .unwrap(),
        counts(2, 0, 0, 0)
    );
    assert_eq!(
        domain
            .write_entities("t", "src-2", by(), &machines(&["x1"]))
            .await
            .unwrap(),
        counts(1, 0, 0, 0)
    );
    // src-1 no longer has m2: gone. src-2's entity is not src-1's to retire.
    assert_eq!(
        domain
            .write_entities("t", "src-1", by(), &machines(&["m1", "m3"]))
            .await
            .unwrap(),
        counts(1, 0, 1, 1)
    );
    let status: Vec<(String, String)> = docs(&tdb, "entities", doc! {})
        .await
        .iter()
        .map(|d| {
            (
                d.get_str("external_id").unwrap().into(),
                d.get_str("status").unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("m1", "live"),
        ("m2", "gone"),
        ("m3", "live"),
        ("x1", "live"),
    ];
    assert_eq!(
        status,
        expected.map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(domain.count_live_entities("t", "src-1").await.unwrap(), 2);
    let live: Vec<String> = domain
        .live_entities("t")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.external_id)
        .collect();
    assert_eq!(live, vec!["m1", "m3", "x1"]);
}

/// A re-scan writes what changed, not what it saw: of 100 entities, an unchanged re-write leaves
/// every document as it was, and one that renames 5 rewrites those 5; the source's last sighting
/// moves on with each.
#[tokio::test]
async fn a_rewrite_writes_only_the_changed_entities() {
    let (tdb, domain) = setup("entities_seen_per_set").await;
    let ids: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
    let names = |renamed: usize| -> Graph {
        let entities: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let name = if i < renamed {
                    format!("{id}-renamed")
                } else {
                    id.clone()
                };
                format!(r#"{{"id": "{id}", "type": "machine", "cloud": "aws", "name": "{name}"}}"#)
            })
            .collect();
        Graph::from_json(format!(r#"{{"entities": [{}]}}"#, entities.join(",")).as_bytes()).unwrap()
    };
    let seen = || domain.last_seen("t", ItemSet::Entities { source: "src" });
    domain
        .write_entities("t", "src", by(), &names(0))
        .await
        .unwrap();
    let first = docs(&tdb, "entities", doc! {}).await;
    let first_seen = seen().await.unwrap();

    assert_eq!(
        domain
            .write_entities("t", "src", by(), &names(0))
            .await
            .unwrap(),
        counts(0, 0, 100, 0)
    );
    assert_eq!(docs(&tdb, "entities", doc! {}).await, first);
    let second_seen = seen().await.unwrap();
    assert!(second_seen > first_seen);

    assert_eq!(
        domain
            .write_entities("t", "src", by(), &names(5))
            .await
            .unwrap(),
        counts(0, 5, 95, 0)
    );
    let third = docs(&tdb, "entities", doc! {}).await;
    let rewritten: Vec<&str> = first
        .iter()
        .zip(&third)
        .filter(|(before, after)| before != after)
        .map(|(_, after)| after.get_str("external_id").unwrap())
        .collect();
    assert_eq!(rewritten, ["m000", "m001", "m002", "m003", "m004"]);
    assert!(seen().await.unwrap() > second_seen);
    assert_eq!(
        domain
            .last_seen("t", ItemSet::Entities { source: "other" })
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn one_set_may_not_name_a_key_twice() {
    let (_tdb, domain) = setup("findings_twice").await;
    let error = domain
        .write_findings(
            "t",
            by(),
            &[finding("a", Severity::Low), finding("a", Severity::High)],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("appears twice"), "{error}");
}

/// An entity that another source of the tenant delivered before moves to the source that
/// delivers it now (an update of the same document), and the first source's next sync, without
/// it, leaves it live: it is no longer that source's to retire.
#[tokio::test]
async fn an_entity_moves_to_the_source_that_delivers_it_now() {
    let (tdb, domain) = setup("entities_move").await;
    domain
        .write_entities("t", "src-1", by(), &machines(&["x", "y"]))
        .await
        .unwrap();
    assert_eq!(
        domain
            .write_entities("t", "src-2", by(), &machines(&["x"]))
            .await
            .unwrap(),
        counts(0, 1, 0, 0),
        "x is the same entity, updated: its source changes"
    );
    assert_eq!(
        domain
            .write_entities("t", "src-1", by(), &machines(&["y"]))
            .await
            .unwrap(),
        counts(0, 0, 1, 0),
        "x is src-2's now: not src-1's to retire"
    );
    let x = docs(&tdb, "entities", doc! {"external_id": "x"}).await;
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].get_str("source").unwrap(), "src-2");
    assert_eq!(x[0].get_str("status").unwrap(), "live");
    assert_eq!(domain.count_live_entities("t", "src-1").await.unwrap(), 1);
    assert_eq!(domain.count_live_entities("t", "src-2").await.unwrap(), 1);
}

/// A keyed set's take, stagings, commit and apply are acknowledged by a majority, whatever the
/// connection string asks.
#[tokio::test]
async fn every_write_of_a_set_asks_a_majority_over_a_w1_connection_string() {
    let tdb = TestDb::new("sets_write_concern").await;
    let (client, sent) = sv0_testkit::commands::recording_client(tdb.uri()).await;
    let domain = Domain::new(&client.database(tdb.name()));
    domain
        .write_findings("t", by(), &[finding("a", Severity::High)])
        .await
        .unwrap();
    assert!(sent.writes().len() >= 3, "the take, a staging, the commit");
    assert_eq!(sent.writes_without_majority(), vec![]);
}
