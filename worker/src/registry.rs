//! The live-worker registry: one document per worker process in `workers`, with its own
//! heartbeat, so operators can count live workers and see what each serves.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{DateTime, doc};
use serde::{Deserialize, Serialize};

pub(crate) const COLLECTION: &str = "workers";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    #[serde(rename = "_id")]
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub kinds: Vec<String>,
    pub concurrency: i64,
    /// `running`, `draining` or `stopped`.
    pub state: String,
    pub started_at: DateTime,
    pub last_seen_at: DateTime,
}

impl WorkerRecord {
    pub(crate) async fn save(&self, db: &Database) -> mongodb::error::Result<()> {
        db.collection::<WorkerRecord>(COLLECTION)
            .replace_one(doc! {"_id": &self.id}, self)
            .upsert(true)
            .await?;
        Ok(())
    }

    pub(crate) async fn touch(db: &Database, id: &str, state: &str) -> mongodb::error::Result<()> {
        db.collection::<WorkerRecord>(COLLECTION)
            .update_one(
                doc! {"_id": id},
                doc! {"$set": {"last_seen_at": DateTime::now(), "state": state}},
            )
            .await?;
        Ok(())
    }
}

/// Workers seen within `within` and not stopped.
pub async fn live_workers(
    db: &Database,
    within: Duration,
) -> mongodb::error::Result<Vec<WorkerRecord>> {
    let since =
        DateTime::from_millis(DateTime::now().timestamp_millis() - within.as_millis() as i64);
    db.collection::<WorkerRecord>(COLLECTION)
        .find(doc! {"last_seen_at": {"$gte": since}, "state": {"$ne": "stopped"}})
        .await?
        .try_collect()
        .await
}
