//! The stand's known gaps, each pinned by a test that shows what happens on devdb. The product
//! must rely on none of them. The day mongo-java-server closes a gap, its test fails here and says
//! so: update docs/design.md ("The test stand and its cost model") and tools/devdb/README.md then.
//!
//! These pin devdb's behaviour, not MongoDB's, so each returns early on a real MongoDB.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mongodb::IndexModel;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ServerApi, ServerApiVersion};
use sv0_testkit::{TestDb, on_real_mongodb, oplog_stand, stand};

#[tokio::test]
async fn gap_transactions_start_but_every_operation_in_them_fails() {
    if on_real_mongodb() {
        return;
    }
    let test = TestDb::new("gap_transactions").await;
    let jobs = test.db.collection::<Document>("jobs");
    let mut session = test.client.start_session().await.unwrap();
    session
        .start_transaction()
        .await
        .expect("the driver starts a transaction without asking the server");
    let inside = jobs.insert_one(doc! {"_id": 1}).session(&mut session).await;
    assert!(
        inside.is_err(),
        "an insert inside a transaction fails on devdb"
    );
    let _ = session.abort_transaction().await;
    assert_eq!(
        jobs.count_documents(doc! {}).await.unwrap(),
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn gap_ttl_indexes_are_accepted_but_never_expire_anything() {
    if on_real_mongodb() {
        return;
    }
    let test = TestDb::new("gap_ttl").await;
    let finished = test.db.collection::<Document>("finished");
    finished
        .create_index(
            IndexModel::builder()
                .keys(doc! {"finished_at": 1})
                .options(
                    IndexOptions::builder()
                        .expire_after(Duration::from_secs(0))
                        .build(),
                )
                .build(),
        )
        .await
        .expect("devdb accepts a TTL index");
    let long_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    finished
        .insert_one(doc! {"finished_at": long_ago})
        .await
        .unwrap();
    // MongoDB's TTL monitor runs every 60 s; by then it would have deleted the document.
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert_eq!(
        finished.count_documents(doc! {}).await.unwrap(),
        1,
        "an expired document is still there: pruning must be done by the code"
    );
}

#[tokio::test]
async fn gap_pipeline_style_updates_fail_and_change_nothing() {
    if on_real_mongodb() {
        return;
    }
    let test = TestDb::new("gap_pipeline_update").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.insert_one(doc! {"_id": 1, "attempts": 1})
        .await
        .unwrap();
    let result = jobs
        .update_one(
            doc! {"_id": 1},
            vec![doc! {"$set": {"attempts": {"$add": ["$attempts", 1]}}}],
        )
        .await;
    assert!(
        result.is_err(),
        "a pipeline-style update fails on devdb: {result:?}"
    );
    let stored = jobs.find_one(doc! {"_id": 1}).await.unwrap().unwrap();
    assert_eq!(stored.get_i32("attempts").unwrap(), 1);
}

#[tokio::test]
async fn gap_partial_filter_expression_is_ignored_so_a_partial_unique_index_counts_missing_as_null()
{
    if on_real_mongodb() {
        return;
    }
    let test = TestDb::new("gap_partial_index").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.create_index(
        IndexModel::builder()
            .keys(doc! {"dedup_key": 1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .partial_filter_expression(doc! {"dedup_key": {"$exists": true}})
                    .build(),
            )
            .build(),
    )
    .await
    .unwrap();
    jobs.insert_one(doc! {"_id": 1}).await.unwrap();
    // On MongoDB the partial index covers neither document, so this insert succeeds.
    let error = jobs.insert_one(doc! {"_id": 2}).await.unwrap_err();
    let code = match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code,
        _ => panic!("expected a write error, got {error}"),
    };
    assert_eq!(
        code, 11000,
        "two documents without the key collide: use a sparse index"
    );
}

#[tokio::test]
async fn gap_find_one_and_update_emits_no_change_event() {
    if on_real_mongodb() {
        return;
    }
    let test = TestDb::on(oplog_stand(), "gap_fam_event").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.insert_one(doc! {"_id": 1, "status": "queued"})
        .await
        .unwrap();
    let mut stream = jobs.watch().await.unwrap();

    let claimed = jobs
        .find_one_and_update(doc! {"_id": 1}, doc! {"$set": {"status": "running"}})
        .await
        .unwrap();
    assert!(claimed.is_some());
    jobs.insert_one(doc! {"_id": 2, "marker": true})
        .await
        .unwrap();

    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.operation_type,
        mongodb::change_stream::event::OperationType::Insert,
        "the first event is the later insert: the claim's update emitted none"
    );
}

#[tokio::test]
async fn gap_a_stable_api_version_fails_the_handshake() {
    if on_real_mongodb() {
        return;
    }
    let mut options = ClientOptions::parse(stand().uri()).await.unwrap();
    options.server_api = Some(ServerApi::builder().version(ServerApiVersion::V1).build());
    options.server_selection_timeout = Some(Duration::from_secs(3));
    let client = mongodb::Client::with_options(options).unwrap();
    let result = client.database("admin").run_command(doc! {"ping": 1}).await;
    assert!(
        result.is_err(),
        "devdb has no `hello`, which a Stable API handshake needs"
    );
}

/// Non-unique indexes are accepted and ignored: a unique index serves a query only when the
/// query's keys are exactly the index's keys. A fenced update `{_id, owner, token}` therefore scans
/// the collection, while `{_id}` alone is a lookup. Shown as a ratio, measured in one run.
#[tokio::test]
async fn gap_non_unique_indexes_are_ignored_so_a_fenced_update_scans_the_collection() {
    if on_real_mongodb() {
        return;
    }
    const DOCUMENTS: i32 = 20_000;
    const UPDATES: i32 = 40;
    let test = TestDb::new("gap_index_cost").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.create_index(
        IndexModel::builder()
            .keys(doc! {"_id": 1, "owner": 1, "token": 1})
            .build(),
    )
    .await
    .unwrap();
    let docs: Vec<Document> = (0..DOCUMENTS)
        .map(|i| doc! {"_id": i, "owner": format!("w{}", i % 8), "token": 1})
        .collect();
    for chunk in docs.chunks(5_000) {
        jobs.insert_many(chunk.to_vec()).await.unwrap();
    }

    let time = |fenced: bool| {
        let jobs = jobs.clone();
        async move {
            let started = Instant::now();
            for n in 0..UPDATES {
                let id = DOCUMENTS - 1 - n * 8;
                let filter = if fenced {
                    doc! {"_id": id, "owner": format!("w{}", id % 8), "token": 1}
                } else {
                    doc! {"_id": id}
                };
                let result = jobs
                    .update_one(filter, doc! {"$set": {"seen": true}})
                    .await
                    .unwrap();
                assert_eq!(result.matched_count, 1);
            }
            started.elapsed()
        }
    };
    // Warm both paths once, then measure.
    time(false).await;
    let by_id = time(false).await;
    let fenced = time(true).await;
    let ratio = fenced.as_secs_f64() / by_id.as_secs_f64();
    eprintln!("fenced {fenced:?} vs by _id {by_id:?} for {UPDATES} updates: ratio {ratio:.1}");
    assert!(
        ratio > 4.0,
        "a fenced update over {DOCUMENTS} documents took {fenced:?} for {UPDATES}, by _id {by_id:?} \
         (ratio {ratio:.1}); a ratio near 1 means devdb now uses the compound index"
    );
}
