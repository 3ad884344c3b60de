//! Cancelling a run on the stand: the run ends `cancelled`, saying so in its `__driver__` cell,
//! and its jobs are cancelled (a queued one at once, a running one by request); a finished run,
//! or another tenant's, is refused and left as it was.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;
use sv0_broker::CredentialBroker;
use sv0_domain::category::DRIVER;
use sv0_domain::{
    CellStatus, Domain, DomainError, RunFence, RunStatus, RunWriter, ScanRun, ScanScope, Tenant,
    TenantSetup, Trigger,
};
use sv0_pipeline::{Pipeline, PipelineError, RunRequest, kinds};
use sv0_queue::{ClaimRequest, JobDoc, JobStatus, Queue};
use sv0_testkit::TestDb;

/// A pipeline on a fresh database, with tenants `a` and `b` and a scope of `a`'s.
async fn setup(label: &str) -> (TestDb, Pipeline, ScanScope) {
    let tdb = TestDb::new(label).await;
    let domain = Domain::new(&tdb.db);
    domain.ensure_indexes().await.unwrap();
    let queue = Queue::new(&tdb.db);
    queue.ensure_indexes().await.unwrap();
    domain
        .put_tenant(&Tenant::new("b", "b").unwrap())
        .await
        .unwrap();
    let scope = domain
        .set_up_tenant(&TenantSetup::new("a"))
        .await
        .unwrap()
        .scope()
        .clone();
    let broker = CredentialBroker::unobserved();
    (tdb, Pipeline::new(domain, queue, broker), scope)
}

/// A new manual run of `scope`, queued with its `execute_scan` job.
async fn start(pipeline: &Pipeline, scope: &ScanScope) -> ScanRun {
    pipeline
        .create_run(RunRequest {
            tenant_id: scope.tenant_id.clone(),
            scope_id: scope.id,
            trigger: Trigger::ManualApi { requested_by: None },
        })
        .await
        .unwrap()
}

/// The run's one job, read through the queue.
async fn job_of(pipeline: &Pipeline, run_id: ObjectId) -> JobDoc {
    let found = pipeline
        .queue()
        .collection()
        .find_one(doc! { "group_id": run_id.to_hex() })
        .await
        .unwrap()
        .expect("the run's job");
    let id = found.get_object_id("_id").unwrap();
    pipeline.queue().get(id).await.unwrap().unwrap()
}

fn assert_cancelled(run: &ScanRun) {
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(run.finished_at.is_some());
    assert!(run.error.as_ref().unwrap().contains("cancelled"), "{run:?}");
    let driver = run.cell(DRIVER).expect("a __driver__ cell");
    assert_eq!(driver.status, CellStatus::Failed);
    assert!(driver.errors[0].contains("cancelled"), "{driver:?}");
}

fn assert_conflict_naming(error: PipelineError, status: &str) {
    assert!(
        matches!(&error, PipelineError::Domain(DomainError::Conflict(m)) if m.contains(status)),
        "{error}"
    );
}

#[tokio::test]
async fn a_queued_run_is_cancelled_with_its_queued_job() {
    let (_tdb, pipeline, scope) = setup("cancel_queued").await;
    let run = start(&pipeline, &scope).await;
    assert_eq!(job_of(&pipeline, run.id).await.status, JobStatus::Queued);

    let cancelled = pipeline.cancel_run("a", run.id).await.unwrap();
    assert_cancelled(&cancelled);
    assert_eq!(pipeline.domain().run("a", run.id).await.unwrap(), cancelled);
    assert_eq!(job_of(&pipeline, run.id).await.status, JobStatus::Cancelled);

    // Cancelled is finished: a second cancel is refused and changes nothing.
    let error = pipeline.cancel_run("a", run.id).await.unwrap_err();
    assert_conflict_naming(error, "cancelled");
    assert_eq!(pipeline.domain().run("a", run.id).await.unwrap(), cancelled);
}

#[tokio::test]
async fn a_running_runs_running_job_is_asked_to_stop() {
    let (_tdb, pipeline, scope) = setup("cancel_running").await;
    let run = start(&pipeline, &scope).await;
    let claimed = pipeline
        .queue()
        .claim(&ClaimRequest {
            owner: "worker".into(),
            kinds: vec![kinds::EXECUTE_SCAN.into()],
            limit: 1,
            lease_ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    pipeline
        .domain()
        .start_run("a", run.id, RunFence::new(0, 1))
        .await
        .unwrap();

    let cancelled = pipeline.cancel_run("a", run.id).await.unwrap();
    assert_cancelled(&cancelled);
    // Its holder sees the request at its next heartbeat and stops.
    let job = job_of(&pipeline, run.id).await;
    assert_eq!(job.status, JobStatus::Running);
    assert!(job.cancel_requested);
}

#[tokio::test]
async fn a_finished_run_is_a_conflict_and_left_as_it_was() {
    let (_tdb, pipeline, scope) = setup("cancel_finished").await;
    let run = start(&pipeline, &scope).await;
    pipeline
        .domain()
        .finish_run("a", run.id, RunWriter::Outside, RunStatus::Succeeded, None)
        .await
        .unwrap();
    let finished = pipeline.domain().run("a", run.id).await.unwrap();

    let error = pipeline.cancel_run("a", run.id).await.unwrap_err();
    assert_conflict_naming(error, "succeeded");
    assert_eq!(pipeline.domain().run("a", run.id).await.unwrap(), finished);
    // Nothing of the run's was cancelled: its job (left queued by this test) is as it was.
    assert_eq!(job_of(&pipeline, run.id).await.status, JobStatus::Queued);
}

#[tokio::test]
async fn another_tenants_run_is_not_found() {
    let (_tdb, pipeline, scope) = setup("cancel_tenant").await;
    let run = start(&pipeline, &scope).await;

    let error = pipeline.cancel_run("b", run.id).await.unwrap_err();
    assert!(
        matches!(error, PipelineError::Domain(DomainError::NotFound { .. })),
        "{error}"
    );
    assert_eq!(pipeline.domain().run("a", run.id).await.unwrap(), run);
    assert_eq!(job_of(&pipeline, run.id).await.status, JobStatus::Queued);
}
