//! `sv0 migrate`: a deployment's one-shot step creates every collection's indexes, twice without
//! harm, and a database it cannot reach is an error naming the flag, not a hang or a panic. It
//! drops the programs instances stored before the connector registry, and lists (failing) every
//! instance whose kind the registry it is given lacks.

mod support;

use std::process::Command;

use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use support::sv0;
use sv0_testkit::TestDb;

fn migrate(uri: &str, database: &str) -> std::process::Output {
    migrate_with(uri, database, &[])
}

fn migrate_with(uri: &str, database: &str, extra: &[&str]) -> std::process::Output {
    Command::new(sv0())
        .args(["migrate", "--mongodb-uri", uri, "--database", database])
        .args(extra)
        .env_remove("SV0_CONNECTORS")
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

/// An instance document as an older version stored it: with the program it ran.
async fn old_instance(tdb: &TestDb, tenant: &str, kind: &str) -> ObjectId {
    let id = ObjectId::new();
    tdb.db
        .collection::<Document>("connector_instances")
        .insert_one(doc! {
            "_id": id, "tenant_id": tenant, "name": format!("{kind} of {tenant}"), "kind": kind,
            "command": ["/bin/sh", "-c", "cat /proc/$PPID/environ"],
            "credentials_ref": {"provider": "env", "ref": "CLOUD"},
            "status": "active", "created_at": mongodb::bson::DateTime::now(),
        })
        .await
        .unwrap();
    id
}

async fn with_command(tdb: &TestDb) -> u64 {
    tdb.db
        .collection::<Document>("connector_instances")
        .count_documents(doc! {"command": {"$exists": true}})
        .await
        .unwrap()
}

fn registry_file(dir: &tempfile::TempDir, name: &str, kinds: &[&str]) -> String {
    let text: String = kinds
        .iter()
        .map(|kind| format!("[kinds.{kind}]\nexecutable = \"/usr/bin/true\"\n"))
        .collect();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn migrate_drops_stored_commands_and_lists_instances_of_unregistered_kinds() {
    let tdb = TestDb::new("migrate_kinds").await;
    let dir = tempfile::tempdir().unwrap();
    let gcp = old_instance(&tdb, "acme", "gcp").await;
    old_instance(&tdb, "acme", "demo").await;
    let aws = old_instance(&tdb, "globex", "aws").await;
    tdb.db
        .collection::<Document>("connector_instances")
        .update_one(doc! {"_id": aws}, doc! {"$unset": {"command": ""}})
        .await
        .unwrap();
    let demo_and_aws = registry_file(&dir, "two.toml", &["demo", "aws"]);

    let out = migrate_with(tdb.uri(), tdb.name(), &["--connectors", &demo_and_aws]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("indexes ready"), "{stdout}");
    assert!(
        stdout.contains("dropped the stored command of 2 connector instance(s)"),
        "{stdout}"
    );
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("unregistered kind"))
        .collect();
    assert_eq!(
        listed,
        [format!(
            "unregistered kind: tenant acme instance {} kind \"gcp\" (registered: aws, demo)",
            gcp.to_hex()
        )],
        "{stdout}"
    );
    assert!(stderr.contains("1 connector instance(s)"), "{stderr}");
    assert!(stderr.contains("scans would fail"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(with_command(&tdb).await, 0, "every stored command is gone");

    // Once every kind is registered, it succeeds; commands already dropped stay dropped.
    let all_three = registry_file(&dir, "three.toml", &["demo", "aws", "gcp"]);
    let out = migrate_with(tdb.uri(), tdb.name(), &["--connectors", &all_three]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("dropped the stored command of 0 connector instance(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "every connector instance's kind is registered (3 instance(s); registered: aws, demo, gcp)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("unregistered kind"), "{stdout}");
}

#[tokio::test]
async fn migrate_without_a_registry_drops_commands_and_says_it_did_not_check_kinds() {
    let tdb = TestDb::new("migrate_no_registry").await;
    old_instance(&tdb, "acme", "gcp").await;
    let out = migrate(tdb.uri(), tdb.name());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("dropped the stored command of 1 connector instance(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("connector kinds not checked"), "{stdout}");
    assert_eq!(with_command(&tdb).await, 0);
}

#[tokio::test]
async fn a_registry_that_does_not_load_fails_migrate_before_it_changes_anything() {
    let tdb = TestDb::new("migrate_bad_registry").await;
    let dir = tempfile::tempdir().unwrap();
    old_instance(&tdb, "acme", "demo").await;
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[kinds.demo]\nexecutable = \"relative/path\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for path in [&bad, &missing] {
        let out = migrate_with(
            tdb.uri(),
            tdb.name(),
            &["--connectors", path.to_str().unwrap()],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("--connectors"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!text(&out.stdout).contains("indexes ready"));
    }
    assert_eq!(with_command(&tdb).await, 1, "nothing was changed");
}

#[test]
fn migrate_help_documents_the_exit_status() {
    let out = Command::new(sv0())
        .args(["migrate", "--help"])
        .output()
        .expect("sv0 runs");
    let help = text(&out.stdout);
    assert!(help.contains("--connectors <FILE>"), "{help}");
    assert!(help.contains("Exit status"), "{help}");
}

/// Items written when every write touched their `last_seen_at` lose it (a live item's last
/// sighting is its set's newest write now); a retired item keeps its own, and a second run finds
/// nothing to do.
#[tokio::test]
async fn migrate_removes_the_stored_last_seen_at_of_live_items() {
    let tdb = TestDb::new("migrate_sightings").await;
    let seen = mongodb::bson::DateTime::from_millis(1_700_000_000_000);
    let entities = tdb.db.collection::<Document>("entities");
    entities
        .insert_many([
            doc! {"tenant_id": "acme", "source": "s", "external_id": "m1", "status": "live", "last_seen_at": seen},
            doc! {"tenant_id": "acme", "source": "s", "external_id": "m2", "status": "gone", "last_seen_at": seen},
        ])
        .await
        .unwrap();
    tdb.db
        .collection::<Document>("findings")
        .insert_one(doc! {"tenant_id": "acme", "key": "k", "status": "open", "last_seen_at": seen})
        .await
        .unwrap();

    let out = migrate(tdb.uri(), tdb.name());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("removed the stored last_seen_at of 2 live item(s)"),
        "{stdout}"
    );
    let kept: Vec<String> = entities
        .find(doc! {"last_seen_at": {"$exists": true}})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_str("external_id").unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        ["m2"],
        "the retired entity keeps when it was last produced"
    );

    let again = text(&migrate(tdb.uri(), tdb.name()).stdout);
    assert!(
        again.contains("removed the stored last_seen_at of 0 live item(s)"),
        "{again}"
    );
}
