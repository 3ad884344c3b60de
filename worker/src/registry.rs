//! The live-worker registry: one document per worker process in `workers`, with its own
//! heartbeat, so operators can count live workers and see what each serves.
//!
//! A record not seen for `registry_stale_after` (its process killed, its machine gone) is marked
//! `gone` by any live worker; `stopped` and `gone` records are deleted once they have not been
//! seen for the retention, so the collection holds the live workers and the recent past, not a
//! document for every process start ever.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{DateTime, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Database, IndexModel};
use serde::{Deserialize, Serialize};

pub(crate) const COLLECTION: &str = "workers";

/// States of a worker that is no more.
const ENDED: [&str; 2] = ["stopped", "gone"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    #[serde(rename = "_id")]
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub kinds: Vec<String>,
    pub concurrency: i64,
    /// `running`, `draining`, `stopped`, or `gone` (not seen for a while: killed, or cut off).
    pub state: String,
    pub started_at: DateTime,
    pub last_seen_at: DateTime,
    /// The database server's time at the last touch (for measuring this host's clock skew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_seen_at: Option<DateTime>,
}

impl WorkerRecord {
    pub(crate) async fn save(&self, db: &Database) -> mongodb::error::Result<()> {
        db.collection::<WorkerRecord>(COLLECTION)
            .replace_one(doc! {"_id": &self.id}, self)
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Marks the record seen, in `state`; returns the server's time stamped on it.
    pub(crate) async fn touch(
        db: &Database,
        id: &str,
        state: &str,
    ) -> mongodb::error::Result<Option<DateTime>> {
        let touched = db
            .collection::<WorkerRecord>(COLLECTION)
            .find_one_and_update(
                doc! {"_id": id},
                doc! {
                    "$set": {"last_seen_at": DateTime::now(), "state": state},
                    "$currentDate": {"server_seen_at": true},
                },
            )
            .return_document(ReturnDocument::After)
            .await?;
        Ok(touched.and_then(|record| record.server_seen_at))
    }

    /// Marks records not seen for `stale_after` as `gone`, and deletes ended records not seen for
    /// `retention`. Idempotent: two leaders during a handover repeat it harmlessly.
    pub(crate) async fn sweep(
        db: &Database,
        stale_after: Duration,
        retention: Duration,
    ) -> mongodb::error::Result<()> {
        let workers = db.collection::<WorkerRecord>(COLLECTION);
        workers
            .update_many(
                doc! {"state": {"$nin": ENDED.as_slice()}, "last_seen_at": {"$lt": ago(stale_after)}},
                doc! {"$set": {"state": "gone"}},
            )
            .await?;
        workers
            .delete_many(
                doc! {"state": {"$in": ENDED.as_slice()}, "last_seen_at": {"$lt": ago(retention)}},
            )
            .await?;
        Ok(())
    }
}

fn ago(span: Duration) -> DateTime {
    DateTime::from_millis(
        DateTime::now()
            .timestamp_millis()
            .saturating_sub(span.as_millis().min(i64::MAX as u128) as i64),
    )
}

/// Creates the registry's index (idempotent; run at start-up): the sweep and the live-worker
/// count select by state and `last_seen_at` from every worker on every heartbeat, a scan of the
/// collection without it. State first, so the count reads only live workers' keys, not the
/// ended records kept for the retention.
///
/// The `leader` index serves the leader's pick (running workers in id order), which every worker
/// reads at every heartbeat: it stops at the first running record stamped recently enough.
pub async fn ensure_registry_indexes(db: &Database) -> mongodb::error::Result<()> {
    db.collection::<WorkerRecord>(COLLECTION)
        .create_indexes([
            IndexModel::builder()
                .keys(doc! {"state": 1, "last_seen_at": 1})
                .options(IndexOptions::builder().name("seen".to_string()).build())
                .build(),
            IndexModel::builder()
                .keys(doc! {"state": 1, "_id": 1})
                .options(IndexOptions::builder().name("leader".to_string()).build())
                .build(),
        ])
        .await?;
    Ok(())
}

/// Workers seen within `within` and neither stopped nor gone.
pub async fn live_workers(
    db: &Database,
    within: Duration,
) -> mongodb::error::Result<Vec<WorkerRecord>> {
    db.collection::<WorkerRecord>(COLLECTION)
        .find(live(within))
        .await?
        .try_collect()
        .await
}

/// How many workers [`live_workers`] would list.
pub(crate) async fn count_live_workers(
    db: &Database,
    within: Duration,
) -> mongodb::error::Result<u64> {
    db.collection::<WorkerRecord>(COLLECTION)
        .count_documents(live(within))
        .await
}

fn live(within: Duration) -> mongodb::bson::Document {
    doc! {"last_seen_at": {"$gte": ago(within)}, "state": {"$nin": ENDED.as_slice()}}
}
