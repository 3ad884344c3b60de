//! The scan pipeline end to end: real `sv0 worker` processes, the demo connector (and
//! `tests/connectors/wrap.sh` around it for the failure cases), each run confined as the
//! workers' connector registry says, the stand.

mod support;

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mongodb::bson::doc;
use nix::sys::signal::Signal;
use support::pipeline::{DEMO_KIND, Fixture, canary, dump};
use support::{all, count};
use sv0_domain::category::{CHAIN, DRIVER, EVAL, EVIDENCE, STAGE_CELLS, STITCH, SYNC};
use sv0_domain::{CellStatus, ItemSet, Materializer, RunStatus, ScanRun, ScanScope, Trigger};
use sv0_pipeline::{Deploy, RunRequest};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn demo_scope(size: i64, seed: i64) -> mongodb::bson::Document {
    doc! { "clouds": ["aws", "azure"], "size": size, "seed": seed }
}

fn cell<'a>(run: &'a ScanRun, name: &str) -> &'a sv0_domain::CategoryResult {
    run.cell(name)
        .unwrap_or_else(|| panic!("run has no {name} cell: {run:#?}"))
}

/// Acme's scope of connector kind `kind` over a small demo graph, with a minute's budget.
async fn small_scope(fixture: &Fixture, kind: &str) -> ScanScope {
    fixture.provision("acme", kind, demo_scope(20, 1), 60).await
}

/// A manual run of `scope`, once finished.
async fn scanned(fixture: &Fixture, scope: &ScanScope) -> ScanRun {
    let run = fixture.scan(scope).await;
    fixture
        .finished(&scope.tenant_id, run.id, RUN_TIMEOUT)
        .await
}

/// Waits until a `sleep:…:started` connector has started: it writes `started` in its run
/// directory first.
async fn until_the_connector_starts(fixture: &Fixture) {
    support::eventually("the connector to start", RUN_TIMEOUT, || async {
        fixture.connector_file("started").is_some()
    })
    .await;
}

/// What a wrap.sh behaviour reported on stderr, which a run keeps only when it fails (in its
/// driver cell's errors).
fn stderr_report(run: &ScanRun) -> String {
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    cell(run, DRIVER).errors.join("\n")
}

/// A scan from enqueue to `succeeded`: the connector's categories and the five stage cells, each
/// `items_scanned` equal to what the collections hold.
#[tokio::test]
async fn a_demo_scan_runs_every_stage_and_each_cell_counts_what_is_stored() {
    let fixture = Fixture::new("demo_scan").await;
    let kind = fixture.wrap_kind("ok");
    let scope = fixture
        .provision("acme", &kind, demo_scope(60, 3), 60)
        .await;
    let _worker = fixture.worker(&["acme"], &[]);
    let run = scanned(&fixture, &scope).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.error, None);

    for name in STAGE_CELLS
        .iter()
        .chain(&["identities", "roles", "machines", "storage"])
    {
        assert_eq!(cell(&run, name).status, CellStatus::Succeeded, "{name}");
        assert!(cell(&run, name).ended_at.is_some(), "{name}");
    }
    assert!(
        run.cell(DRIVER).is_none(),
        "no driver cell when the connector did its job"
    );
    assert!(fixture.connector_started());
    let db = fixture.db();
    let live = |collection: &'static str, status: &'static str| async move {
        count(db, collection, doc! {"tenant_id": "acme", "status": status}).await as i64
    };
    let sync = all(db, "connector_syncs", doc! {"scan_run_id": run.id}).await;
    assert_eq!(sync.len(), 1);
    assert_eq!(run.sync_id, Some(sync[0].get_object_id("_id").unwrap()));
    let entities = live("entities", "live").await;
    assert_eq!(entities, 120, "two clouds of 60");
    assert_eq!(cell(&run, SYNC).items_scanned, entities);
    assert_eq!(
        cell(&run, EVAL).items_scanned,
        live("findings", "open").await
    );
    assert_eq!(
        cell(&run, CHAIN).items_scanned,
        live("chains", "live").await
    );
    assert_eq!(
        cell(&run, STITCH).items_scanned,
        live("stitched_paths", "live").await
    );
    assert_eq!(cell(&run, EVIDENCE).items_scanned, 1);
    assert_eq!(
        count(db, "evidence_packs", doc! {"scan_run_id": run.id}).await,
        1
    );
    for (collection, floor) in [("findings", "open"), ("chains", "live")] {
        assert!(
            live(collection, floor).await > 0,
            "the demo graph has {collection}"
        );
    }
    let categories: i64 = ["identities", "roles", "machines", "storage"]
        .iter()
        .map(|c| cell(&run, c).items_scanned)
        .sum();
    assert_eq!(
        categories, entities,
        "the connector's categories count its entities"
    );
    // Every stage job ran once and succeeded, deduplicated per (run, stage).
    let jobs = fixture.settled_jobs(run.id, RUN_TIMEOUT).await;
    assert_eq!(jobs.len(), 6, "{jobs:#?}");
    assert!(jobs.iter().all(|j| j.get_str("status") == Ok("succeeded")));

    // Each stage's holder took the run up under its fence (the stage's place, its lease token)
    // and wrote under it: the run's fence log, in the order the writes landed.
    let log: Vec<(u8, i64, String)> = run
        .fence_log
        .iter()
        .map(|e| (e.fence.stage(), e.fence.token(), e.write.clone()))
        .collect();
    let write = |stage: u8, what: &str| (stage, 1, what.to_string());
    let mut expected = vec![write(0, "take_up"), write(0, "cells"), write(0, "sync")];
    for (stage, cell) in (1u8..).zip(STAGE_CELLS) {
        let cell = format!("cell {cell}");
        expected.extend([
            write(stage, "take_up"),
            write(stage, &cell),
            write(stage, &cell),
        ]);
    }
    expected.push(write(5, "finish succeeded"));
    assert_eq!(log, expected);
}

/// A stage that fails fails the run with the stage named, and nothing after it is enqueued.
#[tokio::test]
async fn a_failing_stage_fails_the_run_naming_it_and_enqueues_nothing_after_it() {
    let fixture = Fixture::new("failing_stage").await;
    small_scope(&fixture, DEMO_KIND).await;
    let graph = sv0_domain::Graph::from_json(
        br#"{"entities": [{"id": "m", "type": "machine", "cloud": "aws", "name": "m"}]}"#,
    )
    .unwrap();
    let run = fixture
        .pipeline
        .ingest_graph("acme", "seed", graph)
        .await
        .unwrap();
    // The sync's record vanishes before sync_ingestion runs: the stage cannot do its work.
    fixture
        .db()
        .collection::<mongodb::bson::Document>("connector_syncs")
        .delete_many(doc! {"scan_run_id": run.id})
        .await
        .unwrap();
    let _worker = fixture.worker(&[], &[]);
    let run = fixture.finished("acme", run.id, RUN_TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(cell(&run, SYNC).status, CellStatus::Failed);
    let error = run.error.clone().unwrap();
    assert!(error.starts_with("__sync failed: "), "{error}");
    assert!(error.contains("connector sync of run"), "{error}");
    assert!(run.cell(EVAL).is_none());
    let jobs = fixture.settled_jobs(run.id, RUN_TIMEOUT).await;
    let kinds: Vec<&str> = jobs.iter().map(|j| j.get_str("kind").unwrap()).collect();
    assert_eq!(
        kinds,
        vec!["sync_ingestion"],
        "nothing after the failed stage"
    );
    assert_eq!(jobs[0].get_str("status").unwrap(), "failed");
}

/// A scan cancelled while its connector runs: what the connector delivers after the cancel
/// lands nowhere, and the run stays exactly as the cancel left it.
#[tokio::test]
async fn a_scan_cancelled_while_its_connector_runs_stays_as_the_cancel_left_it() {
    let fixture = Fixture::new("cancel_mid_scan").await;
    let slow = fixture.wrap_kind("sleep:1:started");
    let scope = small_scope(&fixture, &slow).await;
    let _worker = fixture.worker(&["acme"], &[]);
    let run = fixture.scan(&scope).await;
    until_the_connector_starts(&fixture).await;
    let cancelled = fixture.pipeline.cancel_run("acme", run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let jobs = fixture.settled_jobs(run.id, RUN_TIMEOUT).await;
    let kinds: Vec<&str> = jobs.iter().map(|j| j.get_str("kind").unwrap()).collect();
    assert_eq!(kinds, vec!["execute_scan"], "nothing after the cancel");
    let now = fixture.domain.run("acme", run.id).await.unwrap();
    assert_eq!(now, cancelled, "the run changed after its cancel");
    assert_eq!(count(fixture.db(), "connector_syncs", doc! {}).await, 0);
    assert_eq!(count(fixture.db(), "entities", doc! {}).await, 0);
}

/// A connector past the run's budget: its whole process group is killed, the run times out, and
/// the driver cell says so.
#[tokio::test]
async fn a_connector_past_its_budget_is_killed_and_the_run_times_out() {
    let fixture = Fixture::new("connector_timeout").await;
    let hung = fixture.wrap_kind("sleep:30:started");
    let scope = fixture.provision("acme", &hung, demo_scope(20, 1), 2).await;
    let _worker = fixture.worker(&["acme"], &[]);
    let run = fixture.scan(&scope).await;
    let run = fixture
        .finished("acme", run.id, Duration::from_secs(30))
        .await;
    assert_eq!(run.status, RunStatus::Timeout, "{run:#?}");
    let driver = cell(&run, DRIVER);
    assert_eq!(driver.status, CellStatus::Failed);
    assert!(
        driver.errors[0].contains("timed out"),
        "{:?}",
        driver.errors
    );
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("__driver__ failed")
    );
    assert!(run.cell(SYNC).is_none());
}

/// Each connector mistake fails the run, with the reason in the driver cell.
#[tokio::test]
async fn connector_mistakes_fail_the_run_with_the_reason_in_the_driver_cell() {
    let fixture = Fixture::new("connector_mistakes").await;
    let mistakes = [
        ("exit", "exited"),
        ("reserved", "reserved"),
        ("invalid", "category_results"),
    ];
    let kinds: Vec<String> = mistakes.iter().map(|(b, _)| fixture.wrap_kind(b)).collect();
    let _worker = fixture.worker(&["acme"], &[]);
    for ((behaviour, expected), kind) in mistakes.into_iter().zip(&kinds) {
        let scope = small_scope(&fixture, kind).await;
        let run = scanned(&fixture, &scope).await;
        assert_eq!(run.status, RunStatus::Failed, "{behaviour}: {run:#?}");
        let driver = cell(&run, DRIVER);
        assert_eq!(driver.status, CellStatus::Failed, "{behaviour}");
        assert!(
            driver.errors[0].contains(expected),
            "{behaviour}: {:?} should mention {expected:?}",
            driver.errors
        );
        assert!(
            run.cell(SYNC).is_none(),
            "{behaviour}: no stage after a failed scan"
        );
        assert_eq!(
            count(
                fixture.db(),
                "connector_syncs",
                doc! {"scan_run_id": run.id}
            )
            .await,
            0
        );
    }
}

/// A connector that prints its credential: the stored stderr has it redacted, and the canary is
/// nowhere in the database or the worker's log.
#[tokio::test]
async fn a_credential_printed_by_the_connector_is_stored_redacted_and_leaks_nowhere() {
    let fixture = Fixture::new("credential_leak").await;
    let leaky = fixture.wrap_kind("leak");
    let scope = small_scope(&fixture, &leaky).await;
    let worker = fixture.worker(&["acme"], &[]);
    let run = scanned(&fixture, &scope).await;
    assert_eq!(run.status, RunStatus::Failed);
    let errors = cell(&run, DRIVER).errors.join("\n");
    assert!(errors.contains("my token is [REDACTED]"), "{errors}");
    let secret = canary("acme");
    assert!(
        !dump(fixture.db()).await.contains(&secret),
        "the canary is in the database"
    );
    let log: String = worker.all_events().iter().map(|e| e.to_string()).collect();
    assert!(log.contains("scan failed"), "the worker logged the failure");
    assert!(!log.contains(&secret), "the canary is in the worker's log");
}

/// A worker without the tenant's credentials: the broker refuses (a permanent error), the
/// connector never starts, and the run fails saying why.
#[tokio::test]
async fn a_scan_whose_credentials_cannot_be_resolved_fails_saying_so() {
    let fixture = Fixture::new("credentials_missing").await;
    let scope = small_scope(&fixture, DEMO_KIND).await;
    let _worker = fixture.worker(&[], &[]);
    let run = scanned(&fixture, &scope).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = &cell(&run, DRIVER).errors[0];
    assert!(error.starts_with("credentials: "), "{error}");
    assert!(!fixture.connector_started(), "the connector never started");
    let scans = fixture.settled_jobs(run.id, RUN_TIMEOUT).await;
    assert_eq!(
        scans[0].get_str("kind").unwrap(),
        "execute_scan",
        "{scans:#?}"
    );
    assert_eq!(
        scans[0].get_str("status").unwrap(),
        "failed",
        "not retried: it would fail the same way"
    );
}

/// The connector's environment is the OS allowlist (those of its variables the worker has) plus
/// its bundle, nothing else; its HOME and TMPDIR are its private run directory, where it runs.
#[tokio::test]
async fn the_connector_sees_only_the_allowlist_and_its_bundle() {
    let fixture = Fixture::new("connector_env").await;
    let kind = fixture.wrap_kind("env");
    let scope = small_scope(&fixture, &kind).await;
    let _worker = fixture.worker(&["acme"], &[]);
    let run = scanned(&fixture, &scope).await;
    let report = stderr_report(&run);
    let reported = |key: &str| -> Vec<&str> {
        report
            .lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .collect()
    };
    let mut names = reported("name");
    // The shell running wrap.sh sets these itself.
    names.retain(|name| !["PWD", "OLDPWD", "SHLVL", "_"].contains(name));
    names.sort();
    // The worker inherits this process's environment.
    let mut expected: Vec<&str> = sv0_broker::OS_ENV_ALLOWLIST
        .into_iter()
        .filter(|name| ["HOME", "TMPDIR"].contains(name) || std::env::var_os(name).is_some())
        .chain(["DEMO_CLOUD_TOKEN"])
        .collect();
    expected.sort();
    assert_eq!(names, expected, "{report}");

    let one = |key: &str| match reported(key)[..] {
        [value] => std::path::PathBuf::from(value),
        ref other => panic!("{key}: {other:?} in {report}"),
    };
    let cwd = one("cwd");
    assert_eq!(
        cwd.parent(),
        Some(fixture.runs_dir().canonicalize().unwrap().as_path()),
        "the connector runs in a directory of the worker's runs directory"
    );
    let run_dir = fixture.runs_dir().join(cwd.file_name().unwrap());
    for variable in ["home", "tmpdir"] {
        assert_eq!(one(variable), run_dir, "{variable}");
    }
    assert!(!run_dir.exists(), "the run directory outlived the run");
}

/// A worker whose registry lacks the instance's kind gives each attempt back (another worker
/// may have the kind); once the job's attempts are spent the run fails naming the kind and the
/// kinds the worker has, and the job is final: not retried forever.
#[tokio::test]
async fn a_kind_the_worker_lacks_fails_the_run_once_the_attempts_are_spent() {
    let fixture = Fixture::new("unregistered_kind").await;
    let spare = fixture.wrap_kind("ok");
    let scope = small_scope(&fixture, "aws").await;
    let _worker = fixture.worker(&["acme"], &["--retry-base-ms", "100"]);
    let run = scanned(&fixture, &scope).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    let driver = cell(&run, DRIVER);
    assert_eq!(driver.status, CellStatus::Failed);
    let expected = format!(
        "connector kind \"aws\" is not registered (registered: {DEMO_KIND}, {spare}) on this worker"
    );
    assert_eq!(driver.errors, std::slice::from_ref(&expected));
    assert_eq!(run.error, Some(format!("{DRIVER} failed: {expected}")));
    assert!(run.cell(SYNC).is_none());
    assert!(!fixture.connector_started(), "no connector ran");

    let jobs = fixture.settled_jobs(run.id, RUN_TIMEOUT).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let scan = &jobs[0];
    assert_eq!(scan.get_str("kind").unwrap(), "execute_scan");
    let max_attempts = scan.get_i32("max_attempts").unwrap();
    assert!(max_attempts > 1, "the job had attempts to give back");
    assert_eq!(
        scan.get_i32("attempts").unwrap(),
        max_attempts,
        "every attempt was given back before the run failed: {scan:#?}"
    );
    assert!(
        ["failed", "dead"].contains(&scan.get_str("status").unwrap()),
        "{scan:#?}"
    );
    // Several backoffs later, still final and claimed no more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = all(
        fixture.db(),
        "jobs",
        doc! {"_id": scan.get_object_id("_id").unwrap()},
    )
    .await
    .remove(0);
    assert_eq!(later.get_str("status"), scan.get_str("status"));
    assert_eq!(later.get_i32("claims"), scan.get_i32("claims"));
}

/// The kind's fixed arguments reach the connector first, each whole, then the contract's three
/// flags with the files in its run directory.
#[tokio::test]
async fn the_kinds_fixed_arguments_come_before_the_contracts_flags() {
    let fixture = Fixture::new("fixed_arguments").await;
    let mut kind = fixture.wrapped("argv");
    kind.args.push("one fixed argument".into());
    fixture.register("argv", kind);
    let scope = small_scope(&fixture, "argv").await;
    let _worker = fixture.worker(&["acme"], &[]);
    let run = scanned(&fixture, &scope).await;
    let report = stderr_report(&run);
    // wrap.sh keeps the kind's first two fixed arguments (its behaviour, the demo connector)
    // and prints every argument after them.
    let args: Vec<&str> = report
        .lines()
        .filter_map(|line| line.strip_prefix("arg "))
        .collect();
    assert_eq!(args.len(), 7, "{report}");
    let run_dir = std::path::Path::new(args[2]).parent().unwrap();
    assert_eq!(run_dir.parent(), Some(fixture.runs_dir()), "{report}");
    let file = |name: &str| run_dir.join(name).display().to_string();
    assert_eq!(
        args,
        [
            "one fixed argument",
            "--scope-json",
            &file("scope.json"),
            "--category-results-out",
            &file("category_results.json"),
            "--graph-json",
            &file("graph.json"),
        ]
    );
}

/// A worker SIGKILLed while the connector runs: another worker re-runs the scan once the lease
/// expires, and the collections end up equal to a clean run's: nothing twice.
#[tokio::test]
async fn a_worker_killed_mid_scan_leaves_the_same_results_as_a_clean_run() {
    let clean = Fixture::new("kill_clean").await;
    let scope = clean
        .provision("acme", DEMO_KIND, demo_scope(40, 5), 60)
        .await;
    let _worker = clean.worker(&["acme"], &[]);
    assert_eq!(scanned(&clean, &scope).await.status, RunStatus::Succeeded);

    let fixture = Fixture::new("kill_mid_scan").await;
    let slow = fixture.wrap_kind("sleep:3:started");
    let scope = fixture
        .provision("acme", &slow, demo_scope(40, 5), 60)
        .await;
    let mut first = fixture.worker(&["acme"], &["--lease-ttl-ms", "1500"]);
    let run = fixture.scan(&scope).await;
    until_the_connector_starts(&fixture).await;
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    let _second = fixture.worker(&["acme"], &["--lease-ttl-ms", "1500"]);
    let run = fixture.finished("acme", run.id, RUN_TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let scans = all(fixture.db(), "jobs", doc! {"kind": "execute_scan"}).await;
    assert_eq!(
        scans[0].get_i32("claims").unwrap(),
        2,
        "the scan was taken up twice"
    );
    assert_eq!(fixture.snapshot("acme").await, clean.snapshot("acme").await);
}

/// The deploy gate: idempotent per (deploy, tenant), and on an unchanged graph a second
/// rematerialization writes no item: every document stays as it was, while the chains' last
/// sighting (their set's newest write) moves on.
#[tokio::test]
async fn rematerializing_an_unchanged_graph_writes_no_item() {
    let fixture = Fixture::new("rematerialize").await;
    let scope = fixture
        .provision("acme", DEMO_KIND, demo_scope(40, 2), 60)
        .await;
    let _worker = fixture.worker(&["acme"], &[]);
    assert_eq!(scanned(&fixture, &scope).await.status, RunStatus::Succeeded);

    let stages = [Materializer::Chains, Materializer::StitchedPaths];
    let deploy = |id: &str| Deploy {
        id: id.into(),
        commit: Some("abc123".into()),
    };
    let collections = [
        "entities",
        "findings",
        "chains",
        "stitched_paths",
        "evidence_packs",
    ];
    let raw = |db: mongodb::Database| async move {
        let mut all_docs = Vec::new();
        for c in collections {
            let mut docs = all(&db, c, doc! {}).await;
            docs.sort_by_key(|d| d.get_object_id("_id").unwrap());
            all_docs.extend(docs);
        }
        all_docs
    };
    let before = raw(fixture.db().clone()).await;
    let chains_seen = || fixture.domain.last_seen("acme", ItemSet::Chains);
    let mut seen = chains_seen().await.unwrap();
    for deploy_id in ["d1", "d2"] {
        let runs = fixture
            .pipeline
            .rematerialize(&stages, None, &deploy(deploy_id))
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        let run = fixture.finished("acme", runs[0].id, RUN_TIMEOUT).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
        assert!(matches!(&run.trigger, Trigger::DeployGate { deploy_id: d, .. } if d == deploy_id));
        assert_eq!(
            cell(&run, CHAIN).items_scanned,
            0,
            "no chain created or updated"
        );
        assert_eq!(cell(&run, CHAIN).status, CellStatus::Succeeded);
        assert_eq!(cell(&run, STITCH).status, CellStatus::Succeeded);
        assert!(run.cell(SYNC).is_none() && run.cell(EVAL).is_none());
        assert_eq!(
            raw(fixture.db().clone()).await,
            before,
            "after deploy {deploy_id}"
        );
        let now_seen = chains_seen().await.unwrap();
        assert!(now_seen > seen, "chains seen again by deploy {deploy_id}");
        seen = now_seen;
    }
    // The same deploy again (CI retried its step): the same run, nothing new.
    let again = fixture
        .pipeline
        .rematerialize(&stages, None, &deploy("d1"))
        .await
        .unwrap();
    let first = all(fixture.db(), "scan_runs", doc! {"trigger.deploy_id": "d1"}).await;
    assert_eq!(first.len(), 1);
    assert_eq!(again[0].id, first[0].get_object_id("_id").unwrap());
}

/// Stitch fan-out: when a run's stitch joins chains from another instance's sync, the other
/// run gets the `__stitch` cell too.
#[tokio::test]
async fn stitching_stamps_every_participating_run() {
    let fixture = Fixture::new("stitch_fan_out").await;
    let aws = fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! {"clouds": ["aws"], "size": 60, "seed": 4},
            60,
        )
        .await;
    let azure = fixture
        .provision(
            "acme",
            DEMO_KIND,
            doc! {"clouds": ["azure"], "size": 60, "seed": 4},
            60,
        )
        .await;
    let _worker = fixture.worker(&["acme"], &[]);
    let first = scanned(&fixture, &aws).await;
    assert_eq!(
        cell(&first, STITCH).items_scanned,
        0,
        "one cloud alone stitches nothing"
    );
    let second = scanned(&fixture, &azure).await;
    assert_eq!(second.status, RunStatus::Succeeded);
    let stitched = count(fixture.db(), "stitched_paths", doc! {"status": "live"}).await as i64;
    assert!(stitched > 0, "the two clouds share principals");
    assert_eq!(cell(&second, STITCH).items_scanned, stitched);
    let first = fixture.domain.run("acme", first.id).await.unwrap();
    assert_eq!(
        cell(&first, STITCH).items_scanned,
        stitched,
        "every stitched path runs through the first run's source too"
    );
}

/// A failed run retried: a new run with `trigger.type = retry` and `retry_of`, which succeeds
/// once the cause is gone; the failed run stays as it was.
#[tokio::test]
async fn a_failed_run_retried_is_a_new_run_that_points_at_it() {
    let fixture = Fixture::new("retry_run").await;
    // The cause lives outside the run directory: in a directory the kind lets its connector
    // read, and so one the connector user can reach.
    let causes = tempfile::Builder::new()
        .permissions(Permissions::from_mode(0o755))
        .tempdir()
        .unwrap();
    let cause = causes.path().join("cause");
    std::fs::write(&cause, "the cloud is unreachable").unwrap();
    std::fs::set_permissions(&cause, Permissions::from_mode(0o644)).unwrap();
    let mut flaky = fixture.wrapped(&format!("fail-if:{}", cause.display()));
    flaky.read_paths.push(causes.path().to_path_buf());
    fixture.register("flaky", flaky);
    let scope = small_scope(&fixture, "flaky").await;
    let _worker = fixture.worker(&["acme"], &[]);
    let failed = scanned(&fixture, &scope).await;
    assert_eq!(failed.status, RunStatus::Failed);
    let errors = cell(&failed, DRIVER).errors.join("\n");
    assert!(
        errors.contains("failing: the cloud is unreachable"),
        "the connector read the file its kind grants: {errors}"
    );
    std::fs::remove_file(&cause).unwrap();
    let retry = fixture.pipeline.retry_run("acme", failed.id).await.unwrap();
    assert_eq!(
        retry.trigger,
        Trigger::Retry {
            retry_of: failed.id
        }
    );
    assert_ne!(retry.id, failed.id);
    let retry = fixture.finished("acme", retry.id, RUN_TIMEOUT).await;
    assert_eq!(retry.status, RunStatus::Succeeded, "{retry:#?}");
    assert_eq!(
        fixture.domain.run("acme", failed.id).await.unwrap().status,
        RunStatus::Failed
    );
    // A run still going cannot be retried.
    let running = fixture.scan(&scope).await;
    let refused = fixture
        .pipeline
        .retry_run("acme", running.id)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("only a finished run"),
        "{refused}"
    );
}

/// Two tenants scanned at once: each one's documents are its own.
#[tokio::test]
async fn two_tenants_scanned_at_once_stay_apart() {
    let fixture = Fixture::new("tenant_isolation").await;
    let a = fixture
        .provision("alpha", DEMO_KIND, demo_scope(40, 11), 60)
        .await;
    let b = fixture
        .provision("bravo", DEMO_KIND, demo_scope(24, 12), 60)
        .await;
    let _one = fixture.worker(&["alpha", "bravo"], &[]);
    let _two = fixture.worker(&["alpha", "bravo"], &[]);
    let (ra, rb) = (fixture.scan(&a).await, fixture.scan(&b).await);
    let ra = fixture.finished("alpha", ra.id, RUN_TIMEOUT).await;
    let rb = fixture.finished("bravo", rb.id, RUN_TIMEOUT).await;
    assert_eq!(
        (ra.status, rb.status),
        (RunStatus::Succeeded, RunStatus::Succeeded)
    );
    // The same ids exist in both graphs (aws:machine:0 …): each tenant has its own copy.
    for (tenant, run, entities) in [("alpha", &ra, 80), ("bravo", &rb, 48)] {
        let db = fixture.db();
        assert_eq!(
            count(db, "entities", doc! {"tenant_id": tenant}).await,
            entities
        );
        assert_eq!(cell(run, SYNC).items_scanned, entities as i64, "{tenant}");
        let open = count(db, "findings", doc! {"tenant_id": tenant, "status": "open"}).await;
        assert_eq!(cell(run, EVAL).items_scanned, open as i64, "{tenant}");
        let pack = all(db, "evidence_packs", doc! {"scan_run_id": run.id}).await;
        assert_eq!(pack[0].get_str("tenant_id").unwrap(), tenant);
        assert_eq!(pack[0].get_array("findings").unwrap().len() as u64, open);
    }
    let tenants: Vec<String> = all(
        fixture.db(),
        "entities",
        doc! {"tenant_id": {"$nin": ["alpha", "bravo"]}},
    )
    .await
    .iter()
    .map(|d| d.to_string())
    .collect();
    assert!(tenants.is_empty(), "{tenants:?}");
}

/// The create entry point takes only `manual_api` and `iac_lifecycle` runs, with a message naming
/// the field; nothing is written for a refused one.
#[tokio::test]
async fn only_manual_and_iac_runs_are_created_through_the_api() {
    let fixture = Fixture::new("create_run_triggers").await;
    let scope = small_scope(&fixture, DEMO_KIND).await;
    let refused = [
        Trigger::Retry {
            retry_of: mongodb::bson::oid::ObjectId::new(),
        },
        Trigger::DeployGate {
            deploy_id: "d".into(),
            commit: None,
        },
        Trigger::Scheduled {
            scope_id: scope.id,
            slot: mongodb::bson::DateTime::now(),
        },
    ];
    for trigger in refused {
        let error = fixture
            .pipeline
            .create_run(RunRequest {
                tenant_id: "acme".into(),
                scope_id: scope.id,
                trigger,
            })
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("trigger.type: "), "{error}");
    }
    assert_eq!(count(fixture.db(), "scan_runs", doc! {}).await, 0);
    let iac = fixture
        .pipeline
        .create_run(RunRequest {
            tenant_id: "acme".into(),
            scope_id: scope.id,
            trigger: Trigger::IacLifecycle {
                event: Some("stack_created".into()),
            },
        })
        .await
        .unwrap();
    assert_eq!(iac.status, RunStatus::Queued);
    assert_eq!(
        count(fixture.db(), "jobs", doc! {"kind": "execute_scan"}).await,
        1
    );
}
