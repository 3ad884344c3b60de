//! How long the pipeline's history is kept: finished runs, connector syncs (each holding a
//! source's whole graph, the bulk of what a scan stores) and evidence packs are deleted once
//! their retention has passed, a bounded batch at a time.
//!
//! Never deleted, whatever their age: a run that is not finished, a sync or pack of such a run,
//! and the latest sync of each source (the stitch stage reads every source's latest graph).
//! Every pass is idempotent, so two processes running it at once delete nothing twice. A record
//! is given its id when it is written, so "written before" is a range of the `_id` index and the
//! passes need no index of their own.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use serde::Serialize;

use sv0_storage::first_id_at;

use crate::Domain;
use crate::error::Result;
use crate::run::RunStatus;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Documents deleted per batch: one read of ids, one delete by id.
const BATCH: i64 = 1_000;

/// Batches per collection per pass, so one pass is bounded however much is due; the next pass
/// goes on where this one stopped.
const BATCHES_PER_PASS: usize = 20;

/// How long each kind of history is kept, counted from when it was written (a run: from when it
/// finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub runs: Duration,
    pub syncs: Duration,
    pub evidence_packs: Duration,
}

impl Default for Retention {
    /// Syncs are the bulk and the least read once superseded: two weeks. Runs: a quarter.
    /// Evidence packs attest what a tenant's state was: a year.
    fn default() -> Retention {
        Retention {
            runs: DAY * 90,
            syncs: DAY * 14,
            evidence_packs: DAY * 365,
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrunedHistory {
    pub runs: u64,
    pub syncs: u64,
    pub evidence_packs: u64,
}

fn before(now: DateTime, keep: Duration) -> DateTime {
    DateTime::from_millis(
        now.timestamp_millis()
            .saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64),
    )
}

impl Domain {
    /// Deletes the history older than `retention` allows at `now` (see the module's comment for
    /// what is always kept).
    pub async fn prune_history(
        &self,
        retention: &Retention,
        now: DateTime,
    ) -> Result<PrunedHistory> {
        let syncs = self.prune_syncs(before(now, retention.syncs)).await?;
        let evidence_packs = self
            .prune_run_records(
                &self.packs().clone_with_type(),
                before(now, retention.evidence_packs),
            )
            .await?;
        let finals: Vec<&str> = RunStatus::FINAL.iter().map(|s| s.as_str()).collect();
        let cutoff = before(now, retention.runs);
        let runs = prune_batches(
            &self.runs().clone_with_type(),
            first_id_at(cutoff),
            doc! { "status": { "$in": finals }, "finished_at": { "$lt": cutoff } },
            |_| async { Ok(HashSet::new()) },
        )
        .await?;
        Ok(PrunedHistory {
            runs,
            syncs,
            evidence_packs,
        })
    }

    /// Syncs written before `cutoff`, but not a source's latest nor one of an unfinished run.
    async fn prune_syncs(&self, cutoff: DateTime) -> Result<u64> {
        let syncs = self.syncs().clone_with_type::<Document>();
        prune_batches(
            &syncs,
            first_id_at(cutoff),
            doc! {},
            |batch: Vec<Document>| async move {
                let mut kept = self.unfinished(&batch).await?;
                let sources: HashSet<(String, String)> = batch
                    .iter()
                    .filter_map(|s| {
                        Some((
                            s.get_str("tenant_id").ok()?.to_string(),
                            s.get_str("source").ok()?.to_string(),
                        ))
                    })
                    .collect();
                for (tenant_id, source) in sources {
                    if let Some(latest) = self.latest_sync(&tenant_id, &source).await? {
                        kept.insert(latest);
                    }
                }
                Ok(kept)
            },
        )
        .await
    }

    /// A run's records (evidence packs) written before `cutoff`, but not one of an unfinished
    /// run.
    async fn prune_run_records(
        &self,
        records: &Collection<Document>,
        cutoff: DateTime,
    ) -> Result<u64> {
        prune_batches(
            records,
            first_id_at(cutoff),
            doc! {},
            |batch: Vec<Document>| async move { self.unfinished(&batch).await },
        )
        .await
    }

    /// The records of `batch` (by `_id`) whose run is queued or running.
    async fn unfinished(&self, batch: &[Document]) -> Result<HashSet<ObjectId>> {
        let runs: Vec<ObjectId> = batch
            .iter()
            .filter_map(|r| r.get_object_id("scan_run_id").ok())
            .collect();
        let live: HashSet<ObjectId> = self
            .runs()
            .clone_with_type::<Document>()
            .find(doc! {
                "_id": { "$in": runs },
                "status": { "$in": [RunStatus::Queued.as_str(), RunStatus::Running.as_str()] },
            })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|r| r.get_object_id("_id").ok())
            .collect();
        Ok(batch
            .iter()
            .filter(|r| {
                r.get_object_id("scan_run_id")
                    .is_ok_and(|run| live.contains(&run))
            })
            .filter_map(|r| r.get_object_id("_id").ok())
            .collect())
    }

    /// The id of `source`'s latest sync.
    async fn latest_sync(&self, tenant_id: &str, source: &str) -> Result<Option<ObjectId>> {
        let latest = self
            .syncs()
            .clone_with_type::<Document>()
            .find(doc! { "tenant_id": tenant_id, "source": source })
            .projection(doc! { "_id": 1 })
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(1)
            .await?
            .try_next()
            .await?;
        Ok(latest.and_then(|s| s.get_object_id("_id").ok()))
    }
}

/// Deletes the documents of `collection` written before `written_before` (an id) and matching
/// `due`, a batch at a time in id order, sparing those that `spared` names among each batch;
/// returns how many were deleted.
async fn prune_batches<S, F>(
    collection: &Collection<Document>,
    written_before: ObjectId,
    due: Document,
    spared: S,
) -> Result<u64>
where
    S: Fn(Vec<Document>) -> F,
    F: Future<Output = Result<HashSet<ObjectId>>>,
{
    let mut deleted = 0;
    let mut ids = doc! { "$lt": written_before };
    for _ in 0..BATCHES_PER_PASS {
        let mut filter = due.clone();
        filter.insert("_id", ids.clone());
        let batch: Vec<Document> = collection
            .find(filter)
            .projection(doc! { "_id": 1, "tenant_id": 1, "source": 1, "scan_run_id": 1 })
            .sort(doc! { "_id": 1 })
            .limit(BATCH)
            .await?
            .try_collect()
            .await?;
        let Some(last) = batch.last().and_then(|d| d.get_object_id("_id").ok()) else {
            break;
        };
        let full = batch.len() as i64 == BATCH;
        let read: Vec<ObjectId> = batch
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        let spared = spared(batch).await?;
        let doomed: Vec<ObjectId> = read.into_iter().filter(|id| !spared.contains(id)).collect();
        if !doomed.is_empty() {
            // The due filter again: a document that changed since the read stays.
            let mut filter = due.clone();
            filter.insert("_id", doc! { "$in": doomed });
            deleted += collection.delete_many(filter).await?.deleted_count;
        }
        if !full {
            break;
        }
        ids.insert("$gt", last);
    }
    Ok(deleted)
}
