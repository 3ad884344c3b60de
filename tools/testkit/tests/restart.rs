//! Data written to a devdb started with `--data` survives a clean stop (SIGTERM) and a new start,
//! indexes included.

use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use sv0_devdb::DevDb;
use sv0_testkit::{connect, on_real_mongodb};

#[tokio::test]
async fn documents_and_unique_indexes_survive_a_sigterm_stop_and_a_start() {
    if on_real_mongodb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stand.h2");

    let first = DevDb::builder().data(&file).start().unwrap();
    let client = connect(&first.uri()).await;
    let jobs = client.database("restart").collection::<Document>("jobs");
    jobs.create_index(
        IndexModel::builder()
            .keys(doc! {"dedup_key": 1})
            .options(IndexOptions::builder().unique(true).sparse(true).build())
            .build(),
    )
    .await
    .unwrap();
    jobs.insert_many((0..1_000).map(|i| doc! {"_id": i, "dedup_key": format!("k{i}")}))
        .await
        .unwrap();
    // The last write lands right before the stop: a stop that did not flush would lose it.
    jobs.update_one(doc! {"_id": 999}, doc! {"$set": {"last": true}})
        .await
        .unwrap();
    client.shutdown().await;
    first.stop().expect("a clean stop");

    let second = DevDb::builder().data(&file).start().unwrap();
    let client = connect(&second.uri()).await;
    let jobs = client.database("restart").collection::<Document>("jobs");
    assert_eq!(jobs.count_documents(doc! {}).await.unwrap(), 1_000);
    let last = jobs.find_one(doc! {"_id": 999}).await.unwrap().unwrap();
    assert_eq!(last.get_bool("last"), Ok(true));
    let duplicate = jobs
        .insert_one(doc! {"_id": 5_000, "dedup_key": "k7"})
        .await;
    assert!(
        duplicate.is_err(),
        "the unique index came back with the data"
    );
}
