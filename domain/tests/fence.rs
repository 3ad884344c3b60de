//! The run's fence on the stand: a stage holder whose lease was reaped cannot land a write on
//! the run once a newer holder, or a later stage, has taken it up; take-ups never lower the
//! fence, however they race; and the run's `fence_log` lists the landed holder writes in order.

mod support;

use mongodb::bson::oid::ObjectId;
use support::acme_with_a_run as setup;
use sv0_domain::run_fence::stale_entries;
use sv0_domain::{
    CategoryName, CategoryResult, CellStatus, Domain, DomainError, Finding, ForRun, RunFence,
    RunStatus, RunWriter, ScanRun, Severity,
};

fn sync_cell() -> CategoryName {
    CategoryName::parse("__sync").unwrap()
}

fn succeeded() -> CategoryResult {
    CategoryResult::succeeded(3, mongodb::bson::DateTime::now())
}

fn log_of(run: &ScanRun) -> Vec<(RunFence, String)> {
    run.fence_log
        .iter()
        .map(|e| (e.fence, e.write.clone()))
        .collect()
}

/// Holder A's lease was reaped and holder B (the same job, a higher token) took the run up: every
/// write A still makes (a cell, the sync link, the run's end) is refused, and A's late take-up
/// neither lowers the fence nor lands in the log. B's writes land.
#[tokio::test]
async fn a_reaped_holders_writes_are_refused_once_a_newer_holder_took_the_run_up() {
    let (_tdb, domain, run) = setup("fence_reaped").await;
    let (a, b) = (RunFence::new(1, 1), RunFence::new(1, 2));
    let taken = domain.start_run("acme", run.id, a).await.unwrap();
    assert_eq!(taken.fence, Some(a));
    assert_eq!(taken.status, RunStatus::Running);
    let again = domain.start_run("acme", run.id, a).await.unwrap();
    assert_eq!(
        again.fence_log.len(),
        1,
        "a second take-up under one fence writes nothing"
    );
    let taken = domain.start_run("acme", run.id, b).await.unwrap();
    assert_eq!(taken.fence, Some(b));

    let refused = domain
        .stamp_cell(
            "acme",
            run.id,
            RunWriter::Holder(a),
            &sync_cell(),
            &succeeded(),
        )
        .await;
    assert!(
        matches!(refused, Err(DomainError::FencedOut(_))),
        "{refused:?}"
    );
    let refused = domain
        .set_run_sync("acme", run.id, RunWriter::Holder(a), ObjectId::new())
        .await;
    assert!(
        matches!(refused, Err(DomainError::FencedOut(_))),
        "{refused:?}"
    );
    let refused = domain
        .stamp_cells(
            "acme",
            run.id,
            RunWriter::Holder(a),
            [(&sync_cell(), &succeeded())],
        )
        .await;
    assert!(
        matches!(refused, Err(DomainError::FencedOut(_))),
        "{refused:?}"
    );
    assert!(
        !domain
            .finish_run(
                "acme",
                run.id,
                RunWriter::Holder(a),
                RunStatus::Failed,
                None
            )
            .await
            .unwrap()
    );
    let late = domain.start_run("acme", run.id, a).await.unwrap();
    assert_eq!(
        late.fence,
        Some(b),
        "a late take-up does not lower the fence"
    );

    let now = domain.run("acme", run.id).await.unwrap();
    assert!(now.cell("__sync").is_none(), "A's cell did not land");
    assert!(now.sync_id.is_none(), "A's sync link did not land");
    assert_eq!(now.status, RunStatus::Running);

    domain
        .stamp_cell(
            "acme",
            run.id,
            RunWriter::Holder(b),
            &sync_cell(),
            &succeeded(),
        )
        .await
        .unwrap();
    assert!(
        domain
            .finish_run(
                "acme",
                run.id,
                RunWriter::Holder(b),
                RunStatus::Succeeded,
                None
            )
            .await
            .unwrap()
    );
    let done = domain.run("acme", run.id).await.unwrap();
    assert_eq!(done.cell("__sync").unwrap().status, CellStatus::Succeeded);
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(
        log_of(&done),
        vec![
            (a, "take_up".to_string()),
            (b, "take_up".to_string()),
            (b, "cell __sync".to_string()),
            (b, "finish succeeded".to_string()),
        ]
    );
    assert!(stale_entries(&done.fence_log).is_empty());
}

/// A later stage's holder outranks any token of an earlier stage: once it took the run up, the
/// earlier stage's holder is refused. Writes from outside the pipeline (an operator's cancel)
/// are not fenced and not logged.
#[tokio::test]
async fn a_later_stage_fences_out_an_earlier_stages_holder() {
    let (_tdb, domain, run) = setup("fence_later_stage").await;
    let (earlier, later) = (RunFence::new(1, 9), RunFence::new(2, 1));
    domain.start_run("acme", run.id, earlier).await.unwrap();
    domain.start_run("acme", run.id, later).await.unwrap();
    let refused = domain
        .stamp_cell(
            "acme",
            run.id,
            RunWriter::Holder(earlier),
            &sync_cell(),
            &succeeded(),
        )
        .await;
    assert!(
        matches!(refused, Err(DomainError::FencedOut(_))),
        "{refused:?}"
    );
    assert_eq!(
        domain
            .start_run("acme", run.id, earlier)
            .await
            .unwrap()
            .fence,
        Some(later)
    );

    domain
        .stamp_cell(
            "acme",
            run.id,
            RunWriter::Outside,
            &sync_cell(),
            &succeeded(),
        )
        .await
        .unwrap();
    let now = domain.run("acme", run.id).await.unwrap();
    assert!(now.cell("__sync").is_some());
    assert_eq!(now.fence_log.len(), 2, "{:?}", now.fence_log);
}

/// A run finished from outside (an operator's cancel, the orphan reaper's timeout) while its
/// holder still works: the holder's later writes are refused, to the run (a cell, its end) and
/// for it (a keyed set), so the run stays as it was finished.
#[tokio::test]
async fn a_run_finished_from_outside_refuses_its_holders_writes() {
    let (_tdb, domain, run) = setup("fence_finished").await;
    let holder = RunFence::new(0, 1);
    domain.start_run("acme", run.id, holder).await.unwrap();
    let cancelled = domain
        .finish_run(
            "acme",
            run.id,
            RunWriter::Outside,
            RunStatus::Cancelled,
            Some("cancelled on request".into()),
        )
        .await
        .unwrap();
    assert!(cancelled);
    let finished = domain.run("acme", run.id).await.unwrap();

    let cell = domain
        .stamp_cell(
            "acme",
            run.id,
            RunWriter::Holder(holder),
            &sync_cell(),
            &succeeded(),
        )
        .await;
    assert!(matches!(cell, Err(DomainError::FencedOut(_))), "{cell:?}");
    let for_run = ForRun {
        run_id: run.id,
        writer: RunWriter::Holder(holder),
    };
    let finding = Finding {
        rule: "public_storage".into(),
        entity_id: "s".into(),
        severity: Severity::High,
        title: "storage s is public".into(),
    };
    let set = domain.write_findings("acme", for_run, &[finding]).await;
    assert!(matches!(set, Err(DomainError::FencedOut(_))), "{set:?}");
    let end = domain
        .finish_run(
            "acme",
            run.id,
            RunWriter::Holder(holder),
            RunStatus::Succeeded,
            None,
        )
        .await
        .unwrap();
    assert!(!end, "the run was finished already");
    assert_eq!(domain.run("acme", run.id).await.unwrap(), finished);
}

/// Holders racing to take the run up, each on a connection of its own: whatever the order, the
/// fence ends at the highest, each holder either took the run up or sees a higher fence, and the
/// log's fences never decrease.
#[tokio::test]
async fn racing_take_ups_never_lower_the_fence() {
    let (tdb, _domain, run) = setup("fence_race").await;
    let mut tasks = Vec::new();
    for token in 1..=12 {
        let uri = tdb.uri().to_string();
        let name = tdb.name().to_string();
        tasks.push(tokio::spawn(async move {
            let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
            let domain = Domain::new(&client.database(&name));
            let fence = RunFence::new(1, token);
            let seen = domain.start_run("acme", run.id, fence).await.unwrap();
            (fence, seen.fence.unwrap())
        }));
    }
    for task in tasks {
        let (mine, seen) = task.await.unwrap();
        assert!(seen >= mine, "{mine} saw {seen}");
    }
    let client = mongodb::Client::with_uri_str(tdb.uri()).await.unwrap();
    let domain = Domain::new(&client.database(tdb.name()));
    let run = domain.run("acme", run.id).await.unwrap();
    assert_eq!(run.fence, Some(RunFence::new(1, 12)));
    assert!(
        stale_entries(&run.fence_log).is_empty(),
        "{:?}",
        run.fence_log
    );
    assert!(run.fence_log.iter().all(|e| e.write == "take_up"));
}
