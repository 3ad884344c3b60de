//! `connector_syncs` and `evidence_packs`: the record of what one run's connector (or ingest)
//! delivered, graph included, and the evidence pack built at the end of a run. One of each per
//! run at most: both are keyed by `scan_run_id`, so a stage that runs twice finds the first
//! one's record instead of writing a second. Each carries the run fence of the stage holder that
//! stored it: a newer holder's record replaces an older holder's, and a holder that no longer
//! holds the run stores nothing (`crate::run_fence`).

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::graph::Graph;
use crate::run_fence::{ForRun, RunFence, TAKE_UP_TRIES};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorSync {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub tenant_id: String,
    pub scan_run_id: ObjectId,
    /// Whose full state this is: a connector instance's id (hex), or `ingest:{name}`.
    pub source: String,
    pub instance_id: Option<ObjectId>,
    pub graph: Graph,
    pub entity_count: i64,
    pub edge_count: i64,
    /// The run fence of the stage holder that stored it; absent when stored from outside the
    /// stages (an ingest through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<RunFence>,
    pub created_at: DateTime,
}

impl ConnectorSync {
    pub fn new(
        tenant_id: &str,
        scan_run_id: ObjectId,
        source: String,
        instance_id: Option<ObjectId>,
        graph: Graph,
    ) -> ConnectorSync {
        ConnectorSync {
            id: ObjectId::new(),
            tenant_id: tenant_id.to_string(),
            scan_run_id,
            source,
            instance_id,
            entity_count: graph.entities.len() as i64,
            edge_count: graph.edges.len() as i64,
            graph,
            fence: None,
            created_at: DateTime::now(),
        }
    }
}

/// One of a run's records outside its own document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRecord {
    Sync,
    EvidencePack,
}

/// A reference to one item the pack holds, with the hash it had then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackItem {
    pub key: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidencePack {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub tenant_id: String,
    pub scan_run_id: ObjectId,
    pub findings: Vec<PackItem>,
    pub chains: Vec<PackItem>,
    pub stitched_paths: Vec<PackItem>,
    /// The hash of the three lists: two packs with the same hash attest the same state.
    pub hash: String,
    /// The run fence of the stage holder that stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<RunFence>,
    pub created_at: DateTime,
}

impl Domain {
    /// Records `sync` on behalf of `by`, or returns the run's existing sync if it has one
    /// already (see [`Domain::put_for_run`]).
    pub async fn record_sync(&self, sync: &ConnectorSync, by: ForRun) -> Result<ConnectorSync> {
        let mut sync = sync.clone();
        sync.fence = by.fence();
        self.put_for_run(self.syncs(), &sync, &sync.tenant_id, sync.scan_run_id, by)
            .await
    }

    pub async fn sync_of_run(
        &self,
        tenant_id: &str,
        scan_run_id: ObjectId,
    ) -> Result<ConnectorSync> {
        self.syncs()
            .find_one(doc! { "scan_run_id": scan_run_id, "tenant_id": tenant_id })
            .await?
            .ok_or_else(|| DomainError::not_found("connector sync of run", scan_run_id, tenant_id))
    }

    /// The run whose sync last delivered `source`'s state.
    pub async fn latest_sync_run(&self, tenant_id: &str, source: &str) -> Result<Option<ObjectId>> {
        let latest = self
            .syncs()
            .clone_with_type::<mongodb::bson::Document>()
            .find(doc! { "tenant_id": tenant_id, "source": source })
            .projection(doc! { "scan_run_id": 1 })
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(1)
            .await?
            .try_next()
            .await?;
        Ok(latest.and_then(|s| s.get_object_id("scan_run_id").ok()))
    }

    /// Stores the run's pack on behalf of `by` unless it has one; returns the stored pack either
    /// way (see [`Domain::put_for_run`]).
    pub async fn put_evidence_pack(&self, pack: &EvidencePack, by: ForRun) -> Result<EvidencePack> {
        let mut pack = pack.clone();
        pack.fence = by.fence();
        self.put_for_run(self.packs(), &pack, &pack.tenant_id, pack.scan_run_id, by)
            .await
    }

    /// Stores `record`, a run's one record of its kind (keyed by `scan_run_id`), on behalf of
    /// `by`, and returns the record stored. A record already there stays, unless an older holder
    /// of the run stored it: then `record` replaces it under its `_id`, by a compare-and-set on
    /// the older fence. A holder that no longer holds the run, or finds a newer holder's record,
    /// gets [`DomainError::FencedOut`].
    async fn put_for_run<T>(
        &self,
        collection: Collection<T>,
        record: &T,
        tenant_id: &str,
        scan_run_id: ObjectId,
        by: ForRun,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync,
    {
        self.check_holder(tenant_id, by).await?;
        let mine = by.fence();
        let documents = collection.clone_with_type::<Document>();
        for _ in 0..TAKE_UP_TRIES {
            match collection.insert_one(record).await {
                Ok(_) => return Ok(record.clone()),
                Err(e) if sv0_storage::is_duplicate(&e) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(stored) = documents
                .find_one(doc! { "scan_run_id": scan_run_id })
                .await?
            else {
                continue;
            };
            if stored.get_str("tenant_id").ok() != Some(tenant_id) {
                return Err(DomainError::Conflict(format!(
                    "the record of run {scan_run_id} in {} belongs to another tenant",
                    collection.name()
                )));
            }
            let theirs: Option<RunFence> =
                bson::from_bson(stored.get("fence").cloned().unwrap_or(Bson::Null))
                    .map_err(|e| DomainError::Write(e.to_string()))?;
            // A writer from outside the stages, or the same holder again, keeps what is there.
            if mine.is_none() || mine == theirs {
                return bson::from_document(stored)
                    .map_err(|e| DomainError::Write(format!("{}: {e}", collection.name())));
            }
            if mine < theirs {
                return Err(DomainError::FencedOut(format!(
                    "run {scan_run_id}: a newer holder stored its record in {}; this one's was \
                     refused",
                    collection.name()
                )));
            }
            let mut replacement = bson::to_document(record)?;
            replacement.insert("_id", stored.get("_id").cloned().unwrap_or(Bson::Null));
            let replaced = documents
                .replace_one(
                    doc! {
                        "scan_run_id": scan_run_id,
                        "fence": theirs.map_or(Bson::Null, Bson::from),
                    },
                    &replacement,
                )
                .await?;
            if replaced.matched_count == 1 {
                return bson::from_document(replacement)
                    .map_err(|e| DomainError::Write(format!("{}: {e}", collection.name())));
            }
        }
        Err(DomainError::Race(format!(
            "the record of run {scan_run_id} in {} kept changing",
            collection.name()
        )))
    }

    /// The fence under which each run's sync or evidence pack was stored, by run: for the chaos
    /// run, which checks it against the run's fence log.
    pub async fn record_fences(
        &self,
        record: RunRecord,
    ) -> Result<HashMap<ObjectId, Option<RunFence>>> {
        let collection = match record {
            RunRecord::Sync => self.syncs().clone_with_type::<Document>(),
            RunRecord::EvidencePack => self.packs().clone_with_type::<Document>(),
        };
        let mut cursor = collection
            .find(doc! {})
            .projection(doc! { "scan_run_id": 1, "fence": 1 })
            .await?;
        let mut fences = HashMap::new();
        while let Some(d) = cursor.try_next().await? {
            let fence = bson::from_bson(d.get("fence").cloned().unwrap_or(Bson::Null))
                .map_err(|e| DomainError::Write(e.to_string()))?;
            if let Ok(run) = d.get_object_id("scan_run_id") {
                fences.insert(run, fence);
            }
        }
        Ok(fences)
    }

    pub async fn evidence_pack_of_run(
        &self,
        tenant_id: &str,
        scan_run_id: ObjectId,
    ) -> Result<Option<EvidencePack>> {
        Ok(self
            .packs()
            .find_one(doc! { "scan_run_id": scan_run_id, "tenant_id": tenant_id })
            .await?)
    }
}
