//! The stand's claims are atomic across OS processes: 4 processes × 8 concurrent claim loops race
//! `find_one_and_update` over the same 10,000 queued documents. Every document must be claimed
//! exactly once, and the database must agree with what each process says it claimed.

use std::collections::HashMap;
use std::collections::HashSet;
use std::process::{Command, Stdio};

use futures::TryStreamExt;

use mongodb::bson::{Document, doc};
use sv0_testkit::TestDb;

const DOCUMENTS: i32 = 10_000;
const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 8;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claims_from_four_processes_never_claim_a_document_twice() {
    let test = TestDb::new("atomic_claims").await;
    let claims = test.db.collection::<Document>("claims");
    let queued: Vec<Document> = (0..DOCUMENTS)
        .map(|id| doc! {"_id": id, "status": "queued"})
        .collect();
    claims.insert_many(queued).await.unwrap();

    // All processes are spawned before any is waited on, so they race each other.
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_stand-claimer"))
                .args([
                    test.uri(),
                    test.name(),
                    &format!("p{p}"),
                    &TASKS_PER_PROCESS.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("stand-claimer starts")
        })
        .collect();
    let mut claimed_by: HashMap<i32, Vec<String>> = HashMap::new();
    for child in children {
        let output = child.wait_with_output().expect("stand-claimer runs");
        assert!(
            output.status.success(),
            "stand-claimer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let (holder, id) = line.split_once('\t').expect("HOLDER<TAB>ID");
            claimed_by
                .entry(id.parse().unwrap())
                .or_default()
                .push(holder.to_string());
        }
    }

    let twice: Vec<_> = claimed_by
        .iter()
        .filter(|(_, holders)| holders.len() > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "documents claimed more than once: {twice:?}"
    );
    assert_eq!(
        claimed_by.len(),
        DOCUMENTS as usize,
        "every document is claimed"
    );
    let holders: HashSet<_> = claimed_by
        .values()
        .flatten()
        .map(|h| h.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        holders.len(),
        PROCESSES,
        "every process won some claims: {holders:?}"
    );

    assert_eq!(
        claims
            .count_documents(doc! {"status": "queued"})
            .await
            .unwrap(),
        0
    );
    let mut cursor = claims.find(doc! {}).await.unwrap();
    while let Some(job) = cursor.try_next().await.unwrap() {
        let id = job.get_i32("_id").unwrap();
        assert_eq!(job.get_str("status").unwrap(), "running");
        assert_eq!(
            job.get_str("owner").unwrap(),
            claimed_by[&id][0],
            "the stored owner of {id} is the process that reported the claim"
        );
    }
}
