//! `sv0 migrate`: a deployment's one-shot step creates every collection's indexes, twice without
//! harm, and a database it cannot reach is an error naming the flag, not a hang or a panic.

mod common;

use std::process::Command;

use common::SV0;
use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
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
        "workers",
    ] {
        let indexes = index_count(&tdb, collection).await;
        assert!(
            indexes > 1,
            "{collection} has {indexes} index(es) after migrate"
        );
    }
}

async fn index_names(tdb: &TestDb, collection: &str) -> Vec<String> {
    tdb.db
        .collection::<Document>(collection)
        .list_index_names()
        .await
        .unwrap_or_default()
}

/// The indexes docs/scaling.md found missing for hot queries on MongoDB: the reaper's cancel
/// sweep (it read every queued job on every pass, in every worker), the registry's sweep and
/// live count (every worker, every heartbeat), the scheduler's claim (it walked past every paused
/// scope), and the run and sync look-ups whose `_id` tie-break kept their sort out of the index.
/// An upgraded database loses the shorter indexes these replace.
#[tokio::test]
async fn migrate_serves_the_hot_queries_and_drops_the_indexes_they_replace() {
    let tdb = TestDb::new("migrate_hot").await;
    for (collection, keys) in [
        ("scan_runs", doc! {"tenant_id": 1, "created_at": -1}),
        (
            "connector_syncs",
            doc! {"tenant_id": 1, "source": 1, "created_at": -1},
        ),
        ("scan_scopes", doc! {"due_at": 1}),
    ] {
        tdb.db
            .collection::<Document>(collection)
            .create_index(IndexModel::builder().keys(keys).build())
            .await
            .unwrap();
    }
    let out = migrate(tdb.uri(), tdb.name());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let jobs = tdb.db.collection::<Document>("jobs");
    let sweep = jobs
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .find(|index| {
            index.options.as_ref().and_then(|o| o.name.as_deref()) == Some("cancel_sweep")
        })
        .expect("the cancel sweep's index");
    assert_eq!(sweep.keys, doc! {"status": 1, "cancel_requested": 1});
    assert!(
        index_names(&tdb, "workers")
            .await
            .contains(&"seen".to_string())
    );
    let runs = index_names(&tdb, "scan_runs").await;
    assert!(
        runs.contains(&"tenant_id_1_created_at_-1__id_-1".to_string()),
        "{runs:?}"
    );
    assert!(
        !runs.contains(&"tenant_id_1_created_at_-1".to_string()),
        "{runs:?}"
    );
    assert!(
        runs.contains(&"unconfirmed_queued".to_string()),
        "the orphaned-run reaper's look at queued runs: {runs:?}"
    );
    assert!(
        runs.contains(&"fence".to_string()),
        "a stage holder's fenced writes: {runs:?}"
    );
    let scopes = index_names(&tdb, "scan_scopes").await;
    assert!(
        scopes.contains(&"paused_1_due_at_1".to_string()),
        "{scopes:?}"
    );
    assert!(!scopes.contains(&"due_at_1".to_string()), "{scopes:?}");
    let syncs = index_names(&tdb, "connector_syncs").await;
    assert!(
        syncs.contains(&"tenant_id_1_source_1_created_at_-1__id_-1".to_string()),
        "{syncs:?}"
    );
    assert!(
        !syncs.contains(&"tenant_id_1_source_1_created_at_-1".to_string()),
        "{syncs:?}"
    );
}

#[test]
fn a_malformed_uri_is_refused_naming_the_flag() {
    let out = migrate("not-a-uri", "sv0");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--mongodb-uri"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
