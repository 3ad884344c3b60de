//! Each driver operation the queue and the pipeline rely on, one test each, through the Rust
//! driver against the stand (or the real MongoDB `SV0_MONGODB_URI` names: the same assertions hold).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, IndexModel};
use sv0_testkit::{TestDb, oplog_stand};

const DUPLICATE_KEY: i32 = 11000;

fn write_error_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        _ => None,
    }
}

#[tokio::test]
async fn insert_one_then_find_it_by_id() {
    let test = TestDb::new("insert_one").await;
    let jobs = test.db.collection::<Document>("jobs");
    let id = jobs
        .insert_one(doc! {"kind": "execute_scan", "attempts": 0})
        .await
        .unwrap()
        .inserted_id;
    let found = jobs.find_one(doc! {"_id": &id}).await.unwrap().unwrap();
    assert_eq!(found.get_str("kind").unwrap(), "execute_scan");
    assert_eq!(found.get("_id"), Some(&id));
}

#[tokio::test]
async fn unordered_insert_many_reports_each_duplicate_with_11000_and_keeps_the_rest() {
    let test = TestDb::new("insert_many_unordered").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.insert_one(doc! {"_id": 2}).await.unwrap();

    let batch = vec![
        doc! {"_id": 1},
        doc! {"_id": 2},
        doc! {"_id": 3},
        doc! {"_id": 3},
        doc! {"_id": 4},
    ];
    let error = jobs.insert_many(batch).ordered(false).await.unwrap_err();
    let ErrorKind::InsertMany(failure) = error.kind.as_ref() else {
        panic!("expected an insert-many error, got {error}");
    };
    let mut failed: Vec<(usize, i32)> = failure
        .write_errors
        .as_ref()
        .expect("per-document write errors")
        .iter()
        .map(|e| (e.index, e.code))
        .collect();
    failed.sort();
    assert_eq!(failed, vec![(1, DUPLICATE_KEY), (3, DUPLICATE_KEY)]);

    let mut ids: Vec<i32> = jobs
        .find(doc! {})
        .await
        .unwrap()
        .map(|d| d.unwrap().get_i32("_id").unwrap())
        .collect()
        .await;
    ids.sort();
    assert_eq!(
        ids,
        vec![1, 2, 3, 4],
        "documents after a duplicate are still inserted"
    );
}

#[tokio::test]
async fn unique_compound_index_rejects_only_the_same_pair() {
    let test = TestDb::new("unique_compound").await;
    let cells = test.db.collection::<Document>("cells");
    cells
        .create_index(
            IndexModel::builder()
                .keys(doc! {"scan_run_id": 1, "stage": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
        )
        .await
        .unwrap();
    cells
        .insert_one(doc! {"scan_run_id": "r1", "stage": "sync"})
        .await
        .unwrap();
    cells
        .insert_one(doc! {"scan_run_id": "r1", "stage": "eval"})
        .await
        .unwrap();
    cells
        .insert_one(doc! {"scan_run_id": "r2", "stage": "sync"})
        .await
        .unwrap();

    let error = cells
        .insert_one(doc! {"scan_run_id": "r1", "stage": "sync"})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&error), Some(DUPLICATE_KEY), "{error}");
    assert_eq!(cells.count_documents(doc! {}).await.unwrap(), 3);
}

#[tokio::test]
async fn sparse_unique_index_allows_many_documents_without_the_field() {
    let test = TestDb::new("sparse_unique").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.create_index(
        IndexModel::builder()
            .keys(doc! {"dedup_key": 1})
            .options(IndexOptions::builder().unique(true).sparse(true).build())
            .build(),
    )
    .await
    .unwrap();
    jobs.insert_one(doc! {"n": 1}).await.unwrap();
    jobs.insert_one(doc! {"n": 2}).await.unwrap();
    jobs.insert_one(doc! {"n": 3, "dedup_key": "scope-1@slot-1"})
        .await
        .unwrap();

    let error = jobs
        .insert_one(doc! {"n": 4, "dedup_key": "scope-1@slot-1"})
        .await
        .unwrap_err();
    assert_eq!(write_error_code(&error), Some(DUPLICATE_KEY), "{error}");
    assert_eq!(jobs.count_documents(doc! {}).await.unwrap(), 3);
}

#[tokio::test]
async fn find_with_filter_sort_and_limit_reads_a_cursor_over_several_batches() {
    let test = TestDb::new("find_cursor").await;
    let jobs = test.db.collection::<Document>("jobs");
    let docs: Vec<Document> = (0..250)
        .map(|i| doc! {"_id": i, "status": if i % 2 == 0 { "queued" } else { "running" }, "priority": i % 7})
        .collect();
    jobs.insert_many(docs).await.unwrap();

    // A second client on the same database counts the getMore round trips of the cursor.
    let get_mores = Arc::new(AtomicUsize::new(0));
    let counter = get_mores.clone();
    let mut options = ClientOptions::parse(test.uri()).await.unwrap();
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(started) = event
            && started.command_name == "getMore"
        {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }));
    let counted = Client::with_options(options).unwrap();
    let jobs = counted.database(test.name()).collection::<Document>("jobs");
    let found: Vec<Document> = jobs
        .find(doc! {"status": "queued"})
        .sort(doc! {"priority": -1, "_id": 1})
        .limit(100)
        .batch_size(16)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found.len(), 100, "the limit holds across 7 batches of 16");
    assert!(
        get_mores.load(Ordering::SeqCst) >= 6,
        "the cursor fetched its later batches with getMore"
    );
    assert!(
        found
            .iter()
            .all(|d| d.get_str("status").unwrap() == "queued")
    );
    let keys: Vec<(i32, i32)> = found
        .iter()
        .map(|d| (d.get_i32("priority").unwrap(), d.get_i32("_id").unwrap()))
        .collect();
    let mut expected = keys.clone();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(keys, expected, "sorted by priority desc, then _id");
    assert_eq!(
        keys[0],
        (6, 6),
        "the first is the highest priority, lowest id"
    );
}

#[tokio::test]
async fn find_one_and_update_takes_the_first_in_sort_order_and_returns_the_projected_after_image() {
    let test = TestDb::new("find_one_and_update").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.insert_many(vec![
        doc! {"_id": 1, "status": "queued", "priority": 1, "run_at": 10, "payload": "p1"},
        doc! {"_id": 2, "status": "queued", "priority": 5, "run_at": 30, "payload": "p2"},
        doc! {"_id": 3, "status": "queued", "priority": 5, "run_at": 20, "payload": "p3"},
        doc! {"_id": 4, "status": "running", "priority": 9, "run_at": 0, "payload": "p4"},
    ])
    .await
    .unwrap();

    let claimed = jobs
        .find_one_and_update(
            doc! {"status": "queued"},
            doc! {"$set": {"status": "running", "lease.owner": "w1"}, "$inc": {"lease.token": 1}},
        )
        .sort(doc! {"priority": -1, "run_at": 1})
        .projection(doc! {"status": 1, "lease": 1})
        .return_document(ReturnDocument::After)
        .await
        .unwrap()
        .expect("a queued job");
    assert_eq!(
        claimed,
        doc! {"_id": 3, "status": "running", "lease": {"owner": "w1", "token": 1}},
        "highest priority, then earliest run_at; only projected fields; the after-image"
    );
}

#[tokio::test]
async fn update_many_changes_every_match_and_counts_them() {
    let test = TestDb::new("update_many").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.insert_many(
        (0..30).map(|i| doc! {"_id": i, "status": if i < 12 { "running" } else { "queued" }}),
    )
    .await
    .unwrap();
    let result = jobs
        .update_many(
            doc! {"status": "running"},
            doc! {"$set": {"status": "queued"}, "$unset": {"lease": ""}},
        )
        .await
        .unwrap();
    assert_eq!((result.matched_count, result.modified_count), (12, 12));
    assert_eq!(
        jobs.count_documents(doc! {"status": "queued"})
            .await
            .unwrap(),
        30
    );
}

#[tokio::test]
async fn upsert_with_set_on_insert_inserts_once_and_never_overwrites() {
    let test = TestDb::new("upsert").await;
    let chains = test.db.collection::<Document>("chains");
    let upsert = |seen: i32| {
        chains
            .update_one(
                doc! {"tenant_id": "acme", "hash": "h1"},
                doc! {"$setOnInsert": {"created": seen}, "$set": {"last_seen": seen}},
            )
            .upsert(true)
    };
    let first = upsert(1).await.unwrap();
    assert!(
        matches!(first.upserted_id, Some(Bson::ObjectId(_))),
        "{first:?}"
    );
    let second = upsert(2).await.unwrap();
    assert_eq!((second.matched_count, second.upserted_id), (1, None));

    let stored = chains.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(
        stored.get_i32("created").unwrap(),
        1,
        "$setOnInsert applied only on insert"
    );
    assert_eq!(stored.get_i32("last_seen").unwrap(), 2);
    assert_eq!(
        stored.get_str("tenant_id").unwrap(),
        "acme",
        "the filter's equalities are stored"
    );
    assert_eq!(chains.count_documents(doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn aggregate_groups_with_sum_min_and_max() {
    let test = TestDb::new("aggregate").await;
    let jobs = test.db.collection::<Document>("jobs");
    jobs.insert_many(vec![
        doc! {"kind": "scan", "status": "queued", "run_at": 30},
        doc! {"kind": "scan", "status": "queued", "run_at": 10},
        doc! {"kind": "scan", "status": "running", "run_at": 5},
        doc! {"kind": "eval", "status": "queued", "run_at": 20},
    ])
    .await
    .unwrap();
    let mut depth: Vec<Document> = jobs
        .aggregate(vec![
            doc! {"$match": {"status": "queued"}},
            doc! {"$group": {
                "_id": "$kind",
                "depth": {"$sum": 1},
                "oldest": {"$min": "$run_at"},
                "newest": {"$max": "$run_at"},
            }},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    depth.sort_by_key(|d| d.get_str("_id").unwrap().to_string());
    assert_eq!(
        depth,
        vec![
            doc! {"_id": "eval", "depth": 1, "oldest": 20, "newest": 20},
            doc! {"_id": "scan", "depth": 2, "oldest": 10, "newest": 30},
        ]
    );
}

#[tokio::test]
async fn change_stream_delivers_an_insert() {
    let test = TestDb::on(oplog_stand(), "change_stream").await;
    let jobs = test.db.collection::<Document>("jobs");
    // The collection must exist before it is watched.
    jobs.insert_one(doc! {"_id": 0}).await.unwrap();
    let mut stream = jobs.watch().await.unwrap();

    jobs.insert_one(doc! {"_id": 1, "kind": "execute_scan"})
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .unwrap();
    assert_eq!(
        event.operation_type,
        mongodb::change_stream::event::OperationType::Insert
    );
    assert_eq!(
        event.full_document.unwrap().get_str("kind").unwrap(),
        "execute_scan"
    );
}
