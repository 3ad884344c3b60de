//! `sv0 migrate`: a deployment's one-shot step creates every collection's indexes, twice without
//! harm, and a database it cannot reach is an error naming the flag, not a hang or a panic.

mod common;

use std::process::Command;

use common::SV0;
use mongodb::bson::Document;
use sv0_testkit::TestDb;

fn migrate(uri: &str, database: &str) -> std::process::Output {
    Command::new(SV0)
        .args(["migrate", "--mongodb-uri", uri, "--database", database])
        .output()
        .expect("sv0 runs")
}

async fn index_count(tdb: &TestDb, collection: &str) -> usize {
    tdb.db
        .collection::<Document>(collection)
        .list_index_names()
        .await
        .map_or(0, |names| names.len())
}

#[tokio::test]
async fn migrate_creates_every_collections_indexes_and_can_run_again() {
    let tdb = TestDb::new("migrate").await;
    for round in 1..=2 {
        let out = migrate(tdb.uri(), tdb.name());
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("indexes ready"));
    }
    // More than the `_id` index on each collection a hot query reads.
    for collection in [
        "jobs",
        "scan_runs",
        "scan_scopes",
        "connector_instances",
        "entities",
        "findings",
        "slot_outcomes",
        "audit_log",
    ] {
        let indexes = index_count(&tdb, collection).await;
        assert!(
            indexes > 1,
            "{collection} has {indexes} index(es) after migrate"
        );
    }
}

#[test]
fn a_malformed_uri_is_refused_naming_the_flag() {
    let out = migrate("not-a-uri", "sv0");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--mongodb-uri"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
