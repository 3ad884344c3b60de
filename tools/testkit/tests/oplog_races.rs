//! A race devdb fixes in mongo-java-server's oplog: with the oplog on, an insert copies each new
//! document into the oplog after the collection's lock is released, so an update of that document
//! arriving in between made the copy fail (`ConcurrentModificationException`), and the insert,
//! already applied, was reported as an error without a code. Workers claiming a job the moment it
//! is enqueued do exactly this. On MongoDB the same test passes trivially.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use sv0_testkit::{TestDb, oplog_stand};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inserts_succeed_while_other_clients_update_the_new_documents() {
    let test = TestDb::on(oplog_stand(), "oplog_insert_race").await;
    let jobs = test.db.collection::<Document>("jobs");
    // Wide documents make each copy slow, so the window is wide enough to hit in a few seconds.
    let wide: Document = (0..200).map(|i| (format!("f{i}"), i.into())).collect();

    // The updaters hammer the document being inserted, by `_id` (a lookup, so they reach it the
    // moment it exists).
    let newest: Arc<Mutex<ObjectId>> = Arc::new(Mutex::new(ObjectId::new()));
    let stop = Instant::now() + Duration::from_secs(4);
    let mut updaters = Vec::new();
    for n in 0..3 {
        let (jobs, newest) = (jobs.clone(), newest.clone());
        updaters.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let id = *newest.lock().unwrap();
                jobs.update_one(
                    doc! {"_id": id},
                    doc! {"$set": {format!("claimed{n}"): true}},
                )
                .await
                .expect("an update");
            }
        }));
    }
    let mut inserted = 0;
    while Instant::now() < stop {
        let id = ObjectId::new();
        *newest.lock().unwrap() = id;
        let mut job = wide.clone();
        job.insert("_id", id);
        jobs.insert_one(job)
            .await
            .unwrap_or_else(|e| panic!("insert #{inserted} failed: {e}"));
        inserted += 1;
    }
    for updater in updaters {
        updater.await.unwrap();
    }
    assert_eq!(
        jobs.count_documents(doc! {}).await.unwrap(),
        inserted,
        "every insert reported as done is there"
    );
}
