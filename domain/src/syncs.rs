//! `connector_syncs` and `evidence_packs`: the record of what one run's connector (or ingest)
//! delivered, graph included, and the evidence pack built at the end of a run. One of each per
//! run at most: both are keyed by `scan_run_id`, so a stage that runs twice finds the first
//! one's record instead of writing a second.

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};
use mongodb::error::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::graph::Graph;

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
            created_at: DateTime::now(),
        }
    }
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
    pub created_at: DateTime,
}

impl Domain {
    /// Records `sync`, or returns the run's existing sync if it has one already.
    pub async fn record_sync(&self, sync: &ConnectorSync) -> Result<ConnectorSync> {
        match self.syncs().insert_one(sync).await {
            Ok(_) => Ok(sync.clone()),
            Err(e) if is_duplicate(&e) => self.sync_of_run(&sync.tenant_id, sync.scan_run_id).await,
            Err(e) => Err(e.into()),
        }
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

    /// Stores the run's pack unless it has one; returns the stored pack either way.
    pub async fn put_evidence_pack(&self, pack: &EvidencePack) -> Result<EvidencePack> {
        match self.packs().insert_one(pack).await {
            Ok(_) => Ok(pack.clone()),
            Err(e) if is_duplicate(&e) => self
                .packs()
                .find_one(doc! { "scan_run_id": pack.scan_run_id, "tenant_id": &pack.tenant_id })
                .await?
                .ok_or_else(|| {
                    DomainError::not_found(
                        "evidence pack of run",
                        pack.scan_run_id,
                        &pack.tenant_id,
                    )
                }),
            Err(e) => Err(e.into()),
        }
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

/// A unique index refused the insert.
pub(crate) fn is_duplicate(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => e.code == 11000,
        _ => false,
    }
}
