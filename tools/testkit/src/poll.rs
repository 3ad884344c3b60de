//! Waiting on what a test cannot be told about: a condition polled until it holds, and
//! documents counted or read as they stand.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::Document;

/// Polls `probe` until it returns true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !probe().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until exactly `n` documents of `collection` match `filter`.
pub async fn wait_count(
    db: &Database,
    collection: &str,
    filter: Document,
    n: u64,
    timeout: Duration,
) {
    let what = format!("{n} documents in {collection} matching {filter}");
    eventually(&what, timeout, || {
        let (db, filter) = (db.clone(), filter.clone());
        async move { count(&db, collection, filter).await == n }
    })
    .await;
}

pub async fn count(db: &Database, collection: &str, filter: Document) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

pub async fn all(db: &Database, collection: &str, filter: Document) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}
