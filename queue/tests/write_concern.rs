//! The writes a lease depends on are acknowledged by a majority of the replica set, whatever the
//! connection string asks: every write command the queue sends through a client told `w=1`
//! carries `writeConcern: {w: "majority"}`.

mod support;

use std::time::Duration;

use support::{claim_one, job};
use sv0_queue::{Commit, Queue};
use sv0_testkit::TestDb;
use sv0_testkit::commands::recording_client;

#[tokio::test]
async fn every_write_of_the_queue_asks_a_majority_over_a_w1_connection_string() {
    let test = TestDb::new("write_concern").await;
    let (client, sent) = recording_client(test.uri()).await;
    let queue = Queue::new(&client.database(test.name()));
    queue.ensure_indexes().await.unwrap();

    queue.enqueue(job("k")).await.unwrap();
    let claimed = claim_one(&queue, "w1", Duration::from_secs(3600)).await;
    assert_eq!(queue.complete(&claimed).await.unwrap(), Commit::Committed);

    assert!(
        sent.writes().len() >= 3,
        "an enqueue, a claim and a completion write"
    );
    assert_eq!(sent.writes_without_majority(), vec![]);
}
