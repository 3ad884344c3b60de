//! The history's retention on the stand: finished runs, syncs and evidence packs are deleted once
//! their retention has passed, never a source's latest sync nor what an unfinished run needs.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use sv0_domain::{
    ConnectorSync, Domain, EvidencePack, ForRun, Graph, PrunedHistory, Retention, RunStatus,
    ScanRun, Trigger,
};
use sv0_testkit::TestDb;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn days_later(days: u32) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + (DAY * days).as_millis() as i64)
}

async fn run(domain: &Domain, status: RunStatus) -> ObjectId {
    let mut run = ScanRun::new(
        "acme",
        Trigger::ManualApi { requested_by: None },
        Default::default(),
    );
    run.status = status;
    if status.is_finished() {
        run.finished_at = Some(DateTime::now());
    }
    domain.insert_run(&run).await.unwrap();
    run.id
}

async fn sync(domain: &Domain, run: ObjectId, source: &str) -> ObjectId {
    let graph = Graph::from_json(br#"{"entities": []}"#).unwrap();
    let sync = ConnectorSync::new("acme", run, source.to_string(), None, graph);
    domain
        .record_sync(&sync, ForRun::outside(run))
        .await
        .unwrap()
        .id
}

async fn pack(domain: &Domain, run: ObjectId) -> ObjectId {
    let pack = EvidencePack {
        id: ObjectId::new(),
        tenant_id: "acme".into(),
        scan_run_id: run,
        findings: vec![],
        chains: vec![],
        stitched_paths: vec![],
        hash: "h".into(),
        fence: None,
        created_at: DateTime::now(),
    };
    domain
        .put_evidence_pack(&pack, ForRun::outside(run))
        .await
        .unwrap()
        .id
}

async fn ids(tdb: &TestDb, collection: &str) -> Vec<ObjectId> {
    let mut ids: Vec<ObjectId> = tdb
        .db
        .collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<ObjectId>) -> Vec<ObjectId> {
    ids.sort();
    ids
}

#[tokio::test]
async fn history_past_its_retention_goes_but_what_is_still_needed_stays() {
    let tdb = TestDb::new("retention").await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();

    // Source s: an old sync and its latest. Source u: the sync of a run still running, then the
    // latest, of a finished run.
    let (old, latest) = (
        run(&domain, RunStatus::Succeeded).await,
        run(&domain, RunStatus::Failed).await,
    );
    let (running, finished) = (
        run(&domain, RunStatus::Running).await,
        run(&domain, RunStatus::Succeeded).await,
    );
    let old_sync = sync(&domain, old, "s").await;
    let latest_sync = sync(&domain, latest, "s").await;
    let running_sync = sync(&domain, running, "u").await;
    let finished_sync = sync(&domain, finished, "u").await;
    let old_pack = pack(&domain, old).await;
    let running_pack = pack(&domain, running).await;
    let retention = Retention::default();

    // Within every retention: nothing goes.
    assert_eq!(
        domain
            .prune_history(&retention, days_later(1))
            .await
            .unwrap(),
        PrunedHistory::default()
    );
    assert_eq!(
        ids(&tdb, "connector_syncs").await,
        sorted(vec![old_sync, latest_sync, running_sync, finished_sync])
    );

    // Past the syncs' two weeks: only the old sync of s goes.
    let pruned = domain
        .prune_history(&retention, days_later(15))
        .await
        .unwrap();
    assert_eq!(
        pruned,
        PrunedHistory {
            syncs: 1,
            ..PrunedHistory::default()
        }
    );
    assert_eq!(
        ids(&tdb, "connector_syncs").await,
        sorted(vec![latest_sync, running_sync, finished_sync])
    );

    // Past the runs' quarter: the finished runs go, the running one stays; the packs' year has
    // not passed.
    let pruned = domain
        .prune_history(&retention, days_later(91))
        .await
        .unwrap();
    assert_eq!(pruned.runs, 3);
    assert_eq!(ids(&tdb, "scan_runs").await, vec![running]);
    assert_eq!(
        ids(&tdb, "evidence_packs").await,
        sorted(vec![old_pack, running_pack])
    );

    // Past the packs' year: the old run's pack goes, the running run's stays; each source's
    // latest sync stays, whatever its age.
    let pruned = domain
        .prune_history(&retention, days_later(400))
        .await
        .unwrap();
    assert_eq!(pruned.evidence_packs, 1);
    assert_eq!(ids(&tdb, "evidence_packs").await, vec![running_pack]);
    assert_eq!(
        ids(&tdb, "connector_syncs").await,
        sorted(vec![latest_sync, running_sync, finished_sync])
    );
}

/// More history than one batch: a pass deletes it all (up to its bound), in batches.
#[tokio::test]
async fn a_pass_deletes_more_than_one_batch() {
    let tdb = TestDb::new("retention_batches").await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    let runs: Vec<ScanRun> = (0..2_500)
        .map(|_| {
            let mut run = ScanRun::new(
                "acme",
                Trigger::ManualApi { requested_by: None },
                Default::default(),
            );
            run.status = RunStatus::Cancelled;
            run.finished_at = Some(DateTime::now());
            run
        })
        .collect();
    tdb.db
        .collection::<ScanRun>("scan_runs")
        .insert_many(&runs)
        .await
        .unwrap();
    let kept = run(&domain, RunStatus::Queued).await;
    let pruned = domain
        .prune_history(&Retention::default(), days_later(91))
        .await
        .unwrap();
    assert_eq!(pruned.runs, 2_500);
    assert_eq!(ids(&tdb, "scan_runs").await, vec![kept]);
}
