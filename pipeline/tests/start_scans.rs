//! Starting a batch of scans at once, on the stand: each start gets its run and its one
//! `execute_scan` job, or on its own the reason it cannot start (its tenant suspended, its
//! instance disabled, its dedup key another tenant's) while the rest of the batch starts; the
//! same batch again finds the same runs and jobs.

use mongodb::bson::{DateTime, doc};
use sv0_broker::CredentialBroker;
use sv0_domain::{
    Budget, Domain, DomainError, InstanceStatus, InstanceUpdate, Materializer, ScanRun, ScanScope,
    TenantSetup, TenantStatus, Trigger,
};
use sv0_pipeline::{Pipeline, PipelineError, ScanStart};
use sv0_queue::Queue;
use sv0_testkit::TestDb;

/// A pipeline on a fresh database with two scopes each of tenants `a`, `b`, `c` and `d`.
async fn setup(label: &str) -> (TestDb, Pipeline, Vec<ScanScope>) {
    let tdb = TestDb::new(label).await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    let queue = Queue::new(&tdb.db);
    queue.ensure_indexes().await.unwrap();
    let mut scopes = Vec::new();
    for tenant in ["a", "b", "c", "d"] {
        let setup = TenantSetup::new(tenant)
            .scope("one", doc! {})
            .scope("two", doc! {});
        scopes.extend(domain.set_up_tenant(&setup).await.unwrap().scopes);
    }
    let broker = CredentialBroker::unobserved();
    (tdb, Pipeline::new(domain, queue, broker), scopes)
}

/// A scheduled start of `scope` at `slot` under `key`.
fn start<'a>(scope: &'a ScanScope, key: &str) -> ScanStart<'a> {
    ScanStart {
        scope,
        trigger: Trigger::Scheduled {
            scope_id: scope.id,
            slot: DateTime::from_millis(0),
        },
        dedup_key: Some(key.to_string()),
    }
}

fn conflict(result: &Result<(ScanRun, bool), PipelineError>) -> String {
    match result {
        Err(PipelineError::Domain(DomainError::Conflict(reason))) => reason.clone(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_starts_what_may_start_and_says_why_the_rest_may_not() {
    let (tdb, pipeline, scopes) = setup("start_scans").await;
    let domain = pipeline.domain();
    domain
        .set_tenant_status("b", TenantStatus::Suspended)
        .await
        .unwrap();
    let disabled = InstanceUpdate {
        status: Some(InstanceStatus::Disabled),
        ..Default::default()
    };
    domain
        .update_instance("c", scopes[4].instance_id, &disabled)
        .await
        .unwrap();
    // Tenant d's second scope asks for a key that tenant a's first run holds.
    let starts = || {
        vec![
            start(&scopes[0], "k-a1"),
            start(&scopes[1], "k-a2"),
            start(&scopes[2], "k-b1"),
            start(&scopes[4], "k-c1"),
            start(&scopes[6], "k-d1"),
            start(&scopes[7], "k-a1"),
        ]
    };

    let first = pipeline.start_scans(starts()).await.unwrap();
    assert_eq!(first.len(), 6);
    let started: Vec<_> = [0, 1, 4]
        .iter()
        .map(|&i| first[i].as_ref().expect("started").clone())
        .collect();
    assert!(started.iter().all(|(_, created)| *created), "{started:?}");
    assert_eq!(started[0].0.scope_id, Some(scopes[0].id));
    assert_eq!(started[2].0.tenant_id, "d");
    assert!(conflict(&first[2]).contains("suspended"), "{:?}", first[2]);
    assert!(conflict(&first[3]).contains("disabled"), "{:?}", first[3]);
    assert!(
        conflict(&first[5]).contains("another tenant"),
        "{:?}",
        first[5]
    );

    let runs = sv0_testkit::count(&tdb.db, "scan_runs", doc! {}).await;
    assert_eq!(runs, 3, "no run for a start that was refused");
    for (run, _) in &started {
        let jobs = sv0_testkit::all(&tdb.db, "jobs", doc! { "group_id": run.id.to_hex() }).await;
        assert_eq!(jobs.len(), 1, "one job for run {}", run.id);
        assert_eq!(jobs[0].get_str("kind").unwrap(), "execute_scan");
        assert_eq!(jobs[0].get_str("dedup_key").ok(), run.dedup_key.as_deref());
    }

    // The same batch again (a tick replayed after a crash): the same runs, not created, and
    // still one job each.
    let again = pipeline.start_scans(starts()).await.unwrap();
    for (i, (run, _)) in [0, 1, 4].iter().zip(&started) {
        let (found, created) = again[*i].as_ref().expect("found");
        assert_eq!((found.id, *created), (run.id, false));
    }
    assert_eq!(sv0_testkit::count(&tdb.db, "scan_runs", doc! {}).await, 3);
    assert_eq!(sv0_testkit::count(&tdb.db, "jobs", doc! {}).await, 3);
}

/// A dedup key held by one of the tenant's runs that is not a scan (written by hand, or by
/// another version) starts nothing: the start is refused, and no job of that run's kind is
/// enqueued for it.
#[tokio::test]
async fn a_key_held_by_a_run_that_is_not_a_scan_starts_nothing() {
    let (tdb, pipeline, scopes) = setup("start_scans_not_a_scan").await;
    let mut gate = ScanRun::new(
        "a",
        Trigger::DeployGate {
            deploy_id: "d1".into(),
            commit: None,
        },
        Budget::default(),
    );
    gate.rematerialize = Some(vec![Materializer::Chains]);
    gate.dedup_key = Some("k-a1".into());
    pipeline.domain().insert_run(&gate).await.unwrap();

    let started = pipeline
        .start_scans(vec![start(&scopes[0], "k-a1")])
        .await
        .unwrap();
    assert!(
        conflict(&started[0]).contains("not a scan"),
        "{:?}",
        started[0]
    );
    assert_eq!(sv0_testkit::count(&tdb.db, "jobs", doc! {}).await, 0);
    assert_eq!(sv0_testkit::count(&tdb.db, "scan_runs", doc! {}).await, 1);
}
