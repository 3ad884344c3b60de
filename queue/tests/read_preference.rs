//! The reads that may lag go where the queue is told, and no other read does: with a secondary
//! named for them, the depth sample and the list pages ask for a secondary, while a claim's
//! candidates and a job read by id stay on the primary (a secondary may be behind the write they
//! decide). Sent to a fake replica set primary that records what it receives: the stand is a
//! standalone, to which no read preference is sent at all.

mod support;

use std::time::Duration;

use mongodb::Client;
use mongodb::bson::oid::ObjectId;
use mongodb::options::ReadPreference;
use support::request;
use sv0_queue::{JobFilter, Queue};
use sv0_testkit::fake_primary::FakePrimary;

#[tokio::test]
async fn the_depth_sample_and_list_pages_read_where_told_and_claims_read_the_primary() {
    let primary = FakePrimary::start().await;
    let client = Client::with_uri_str(primary.uri()).await.unwrap();
    let queue = Queue::new(&client.database("fake")).lag_tolerant_reads(
        ReadPreference::SecondaryPreferred {
            options: Default::default(),
        },
    );

    queue.depth().await.unwrap();
    queue
        .list_jobs(&JobFilter::default(), None, 10)
        .await
        .unwrap();
    let claimed = queue
        .claim(&request("w", &["k"], 4, Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(claimed.is_empty(), "the fake holds no job");
    queue.get(ObjectId::new()).await.unwrap();

    let secondary = Some("secondaryPreferred".to_string());
    let primary_read = Some("primaryPreferred".to_string());
    assert_eq!(
        primary.read_preferences("aggregate", "jobs"),
        vec![secondary.clone()]
    );
    let finds = primary.read_preferences("find", "jobs");
    assert_eq!(finds.first(), Some(&secondary), "the list page: {finds:?}");
    assert!(
        finds.len() >= 3 && finds[1..].iter().all(|mode| mode == &primary_read),
        "the claim's candidates and the read by id stay on the primary: {finds:?}"
    );
}
