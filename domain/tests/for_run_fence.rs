//! A stage holder's writes outside the run's own document, on the stand: its tenant's keyed sets,
//! the run's sync and its evidence pack. A holder that a newer one took over writes none of them;
//! a newer holder's record replaces an older one's; each set's head logs its commits with the
//! holder's fence.

mod support;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use support::acme_with_a_run as setup;
use sv0_domain::set_head::stale_commits;
use sv0_domain::{
    ConnectorSync, DomainError, EvidencePack, Finding, ForRun, Graph, RunFence, RunRecord,
    RunWriter, ScanRun, Severity,
};

fn holder(run: &ScanRun, fence: RunFence) -> ForRun {
    ForRun {
        run_id: run.id,
        writer: RunWriter::Holder(fence),
    }
}

fn findings(entity: &str) -> Vec<Finding> {
    vec![Finding {
        rule: "public_storage".into(),
        entity_id: entity.into(),
        severity: Severity::High,
        title: format!("storage {entity} is public"),
    }]
}

fn pack(run: &ScanRun, hash: &str) -> EvidencePack {
    EvidencePack {
        id: ObjectId::new(),
        tenant_id: run.tenant_id.clone(),
        scan_run_id: run.id,
        findings: Vec::new(),
        chains: Vec::new(),
        stitched_paths: Vec::new(),
        hash: hash.into(),
        fence: None,
        created_at: DateTime::now(),
    }
}

fn fenced_out<T: std::fmt::Debug>(result: Result<T, DomainError>) {
    assert!(
        matches!(result, Err(DomainError::FencedOut(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_taken_over_holder_writes_no_set_and_stores_no_record() {
    let (tdb, domain, run) = setup("for_run_taken_over").await;
    let (a, b) = (RunFence::new(2, 1), RunFence::new(2, 2));
    domain.start_run("acme", run.id, a).await.unwrap();
    domain.start_run("acme", run.id, b).await.unwrap();

    fenced_out(
        domain
            .write_findings("acme", holder(&run, a), &findings("old"))
            .await,
    );
    fenced_out(
        domain
            .write_entities("acme", "src", holder(&run, a), &Graph::default())
            .await,
    );
    fenced_out(
        domain
            .put_evidence_pack(&pack(&run, "old"), holder(&run, a))
            .await,
    );
    let sync = ConnectorSync::new("acme", run.id, "src".into(), None, Graph::default());
    fenced_out(domain.record_sync(&sync, holder(&run, a)).await);
    for collection in ["findings", "entities", "evidence_packs", "connector_syncs"] {
        let stored = tdb
            .db
            .collection::<mongodb::bson::Document>(collection)
            .count_documents(doc! {})
            .await
            .unwrap();
        assert_eq!(stored, 0, "{collection}: nothing of the taken-over holder");
    }

    let counts = domain
        .write_findings("acme", holder(&run, b), &findings("new"))
        .await
        .unwrap();
    assert_eq!(counts.created, 1);
    let heads = domain.set_heads().await.unwrap();
    assert_eq!(heads.len(), 2, "the findings' and the source's heads");
    let findings_head = heads
        .iter()
        .find(|h| h.id.starts_with("findings|"))
        .unwrap();
    assert_eq!(findings_head.log.len(), 1, "one commit: the newer holder's");
    assert_eq!(findings_head.log[0].fence, Some(b));
    assert_eq!(findings_head.log[0].run_id, run.id);
    assert!(stale_commits(&findings_head.log).is_empty());
}

#[tokio::test]
async fn a_newer_holders_record_replaces_an_older_ones_under_the_same_id() {
    let (_tdb, domain, run) = setup("for_run_records").await;
    let (a, b) = (RunFence::new(5, 1), RunFence::new(5, 2));
    domain.start_run("acme", run.id, a).await.unwrap();
    let first = domain
        .put_evidence_pack(&pack(&run, "first"), holder(&run, a))
        .await
        .unwrap();
    assert_eq!(first.fence, Some(a));
    let again = domain
        .put_evidence_pack(&pack(&run, "replayed"), holder(&run, a))
        .await
        .unwrap();
    assert_eq!(again.hash, "first", "the same holder keeps its own pack");

    domain.start_run("acme", run.id, b).await.unwrap();
    let second = domain
        .put_evidence_pack(&pack(&run, "second"), holder(&run, b))
        .await
        .unwrap();
    assert_eq!((second.id, second.fence), (first.id, Some(b)));
    let stored = domain
        .evidence_pack_of_run("acme", run.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.hash.as_str(), stored.fence), ("second", Some(b)));

    let fences = domain.record_fences(RunRecord::EvidencePack).await.unwrap();
    assert_eq!(fences.get(&run.id), Some(&Some(b)));

    // A writer from outside the stages keeps what a holder stored.
    let sync = ConnectorSync::new("acme", run.id, "src".into(), None, Graph::default());
    let held = domain.record_sync(&sync, holder(&run, b)).await.unwrap();
    let outside = ConnectorSync::new("acme", run.id, "other".into(), None, Graph::default());
    let kept = domain
        .record_sync(&outside, ForRun::outside(run.id))
        .await
        .unwrap();
    assert_eq!((kept.id, kept.source.as_str()), (held.id, "src"));
}

/// A newer holder's record landed between an older holder's check of its run and its insert:
/// the older one's insert meets it and is refused, and the newer record stays.
#[tokio::test]
async fn an_older_holder_meeting_a_newer_holders_record_is_refused() {
    let (tdb, domain, run) = setup("for_run_older_meets_newer").await;
    let (a, b) = (RunFence::new(5, 1), RunFence::new(5, 2));
    domain.start_run("acme", run.id, a).await.unwrap();
    // What the newer holder stored, as it lands while the run's fence is still a's here.
    let mut newer = mongodb::bson::to_document(&pack(&run, "newer")).unwrap();
    newer.insert("fence", mongodb::bson::Bson::from(b));
    tdb.db
        .collection::<mongodb::bson::Document>("evidence_packs")
        .insert_one(newer)
        .await
        .unwrap();
    fenced_out(
        domain
            .put_evidence_pack(&pack(&run, "older"), holder(&run, a))
            .await,
    );
    let stored = domain
        .evidence_pack_of_run("acme", run.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.hash.as_str(), stored.fence), ("newer", Some(b)));
}
