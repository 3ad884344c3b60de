//! A race devdb fixes in mongo-java-server's in-memory backend. A read handed the reply the very
//! `Document` objects the collection stores, and the reply was encoded to BSON after the
//! collection's lock was released; an update of one of those documents at that moment (fields
//! added or removed in place) broke the encoding with a `ConcurrentModificationException`, and the
//! server closed the connection. A find (its first batch and its `getMore` batches), an aggregate
//! and a `find_one_and_update` returning the new document were all exposed. The driver retries a
//! read once on a new connection, which hid it; this test turns retries off so every such failure
//! is counted. devdb now has an update change a copy of the document and store the copy
//! (`tools/devdb/java/.../ReadSafeMemoryCollection.java`). On MongoDB the test passes trivially.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, ReturnDocument};
use sv0_testkit::{TestDb, stand};

/// Documents in the collection, each read and updated over and over.
const DOCS: i32 = 8;
/// Fields per document: a wide document is slow to encode, so the window is wide enough to hit.
const FIELDS: usize = 400;

/// A client that does not retry reads (or writes), so a connection the server closes mid-reply
/// is an error here instead of a silent second attempt.
async fn client_without_retries() -> Client {
    let mut options = ClientOptions::parse(stand().uri()).await.unwrap();
    options.retry_reads = Some(false);
    options.retry_writes = Some(false);
    options.server_selection_timeout = Some(Duration::from_secs(10));
    Client::with_options(options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_succeed_while_other_clients_reshape_the_documents() {
    let test = TestDb::new("encode_race").await;
    let setup = test.db.collection::<Document>("jobs");
    let wide: Document = (0..FIELDS)
        .map(|i| (format!("f{i}"), (i as i64).into()))
        .collect();
    for id in 0..DOCS {
        let mut job = wide.clone();
        job.insert("_id", id);
        setup.insert_one(job).await.unwrap();
    }

    // Readers and writers on separate clients, as workers and producers are.
    let readers = client_without_retries()
        .await
        .database(test.name())
        .collection::<Document>("jobs");
    let writers = client_without_retries()
        .await
        .database(test.name())
        .collection::<Document>("jobs");

    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();

    // Writers: each update adds or removes a field, which changes the stored document's map in
    // place (overwriting an existing field's value would not trip the encoder's iterator).
    for n in 0..2 {
        let (jobs, stop) = (writers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = (i % DOCS as u64) as i32;
                let round = i / DOCS as u64;
                let flip = format!("flip{n}");
                let update = if round.is_multiple_of(2) {
                    doc! {"$set": {flip: i as i64}}
                } else {
                    doc! {"$unset": {flip: ""}}
                };
                jobs.update_one(doc! {"_id": id}, update)
                    .await
                    .expect("an update");
                i += 1;
            }
        }));
    }

    let finds = Arc::new(Failures::default());
    let aggregates = Arc::new(Failures::default());
    let claims = Arc::new(Failures::default());

    // A find of every document in batches of 3: the first batch is encoded by the find, the rest
    // by each `getMore`.
    for _ in 0..2 {
        let (jobs, stop, failures) = (readers.clone(), stop.clone(), finds.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let read = async { jobs.find(doc! {}).batch_size(3).await?.try_collect().await };
                failures.record(
                    read.await
                        .map(|all: Vec<Document>| all.len() == DOCS as usize),
                );
            }
        }));
    }
    // An aggregate whose only stage is a `$match`: it answers with the documents themselves.
    {
        let (jobs, stop, failures) = (readers.clone(), stop.clone(), aggregates.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let read = async {
                    jobs.aggregate([doc! {"$match": {"f0": 0}}])
                        .await?
                        .try_collect()
                        .await
                };
                failures.record(
                    read.await
                        .map(|all: Vec<Document>| all.len() == DOCS as usize),
                );
            }
        }));
    }
    // A claim-like `find_one_and_update` answering the new document: the document it returns is
    // the stored one, which the writers keep reshaping.
    {
        let (jobs, stop, failures) = (readers.clone(), stop.clone(), claims.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = (i % DOCS as i64) as i32;
                let claim = jobs
                    .find_one_and_update(doc! {"_id": id}, doc! {"$set": {"claimed": i}})
                    .return_document(ReturnDocument::After)
                    .await;
                failures.record(claim.map(|found| found.is_some()));
                i += 1;
            }
        }));
    }

    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let report = format!(
        "find: {}; aggregate: {}; find_one_and_update: {}",
        finds.summary(),
        aggregates.summary(),
        claims.summary()
    );
    println!("{report}");
    for (what, failures) in [
        ("find", &finds),
        ("aggregate", &aggregates),
        ("find_one_and_update", &claims),
    ] {
        assert!(
            failures.ok.load(Ordering::Relaxed) > 0,
            "no {what} completed: {report}"
        );
    }
    assert!(
        finds.clean() && aggregates.clean() && claims.clean(),
        "reads failed while the documents they read were updated: {report}"
    );
}

/// The outcomes of one kind of read.
#[derive(Default)]
struct Failures {
    ok: AtomicU64,
    /// Answered, but not what was there (a document missing from a full read).
    wrong: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Failures {
    fn record(&self, outcome: mongodb::error::Result<bool>) {
        match outcome {
            Ok(true) => self.ok.fetch_add(1, Ordering::Relaxed),
            Ok(false) => self.wrong.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
                self.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn clean(&self) -> bool {
        self.wrong.load(Ordering::Relaxed) == 0 && self.errors.load(Ordering::Relaxed) == 0
    }

    fn summary(&self) -> String {
        let first = self.first_error.lock().unwrap().clone();
        format!(
            "{} ok, {} wrong, {} errors{}",
            self.ok.load(Ordering::Relaxed),
            self.wrong.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            first.map(|e| format!(" (first: {e})")).unwrap_or_default()
        )
    }
}
