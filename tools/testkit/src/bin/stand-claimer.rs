//! One OS process of the stand's atomic-claim test (`tests/atomic_claims.rs`).
//!
//! Usage: `stand-claimer URI DATABASE OWNER TASKS`. Runs TASKS concurrent claim loops, each
//! claiming `{status: "queued"}` documents of the `claims` collection with `find_one_and_update`
//! until none is left, and prints one line per claim, `OWNER<TAB>ID`, for the test to check.

use std::io::Write;

use anyhow::{Context, bail};
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, database, owner, tasks] = args.as_slice() else {
        bail!("usage: stand-claimer URI DATABASE OWNER TASKS");
    };
    let tasks: usize = tasks.parse().context("TASKS must be a number")?;
    let client = sv0_testkit::connect(uri).await;
    let claims = client.database(database).collection::<Document>("claims");

    let mut loops = Vec::new();
    for task in 0..tasks {
        let claims = claims.clone();
        let holder = format!("{owner}/{task}");
        loops.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let found = claims
                    .find_one_and_update(
                        doc! {"status": "queued"},
                        doc! {"$set": {"status": "running", "owner": &holder}},
                    )
                    .return_document(ReturnDocument::After)
                    .await?;
                match found {
                    Some(job) => claimed.push(job.get_i32("_id")?),
                    None => return anyhow::Ok(claimed),
                }
            }
        }));
    }
    let mut out = std::io::stdout().lock();
    for (task, handle) in loops.into_iter().enumerate() {
        for id in handle.await?? {
            writeln!(out, "{owner}/{task}\t{id}")?;
        }
    }
    Ok(())
}
