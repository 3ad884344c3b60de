//! `findings`, `chains` and `stitched_paths`: what the rules, the chain assembler and the stitcher
//! derived from a tenant's entities, each rewritten in full per tenant by its stage (see
//! [`crate::materialize`]). A finding is keyed by its rule and entity, so it keeps its identity
//! while it is open, is `resolved` when the rule stops firing, and reopens if it fires again.
//! Chains and stitched paths are keyed by their content hash.

use mongodb::bson::{self, Document, doc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::materialize::{Counts, Item, KeyedSet, content_hash};
use crate::run_fence::ForRun;

pub(crate) const FINDINGS: KeyedSet = KeyedSet {
    collection: "findings",
    key_field: "key",
    live: "open",
    retired: "resolved",
    retired_at: "resolved_at",
};
pub(crate) const CHAINS: KeyedSet = KeyedSet {
    collection: "chains",
    key_field: "key",
    live: "live",
    retired: "gone",
    retired_at: "gone_at",
};
pub(crate) const STITCHED_PATHS: KeyedSet = KeyedSet {
    collection: "stitched_paths",
    key_field: "key",
    live: "live",
    retired: "gone",
    retired_at: "gone_at",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// A rule firing on an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub entity_id: String,
    pub severity: Severity,
    pub title: String,
}

impl Finding {
    pub fn key(&self) -> String {
        format!("{}:{}", self.rule, self.entity_id)
    }
}

/// An attack path inside one cloud: an internet-exposed machine, the identity it runs
/// as, a role of that identity, a sensitive storage the role can access (external ids, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub cloud: String,
    pub path: Vec<String>,
}

/// Two chains of different clouds joined through one principal (a person or workload with an
/// identity in both): the first chain up to its identity, then the second from its identity on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StitchedPath {
    pub principal: String,
    pub path: Vec<String>,
    /// The keys of the chains joined (sorted): every pair of chains that gives this path.
    pub chains: Vec<String>,
}

/// A stored item with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed<T> {
    pub key: String,
    pub hash: String,
    pub item: T,
}

impl Domain {
    /// The tenant's findings, as a full set written on behalf of `by`.
    pub async fn write_findings(
        &self,
        tenant_id: &str,
        by: ForRun,
        findings: &[Finding],
    ) -> Result<Counts> {
        let items = findings
            .iter()
            .map(|f| {
                Ok(Item {
                    key: f.key(),
                    data: bson::to_document(f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_set(&FINDINGS, tenant_id, doc! {}, by, items)
            .await
    }

    pub async fn open_findings(&self, tenant_id: &str) -> Result<Vec<Keyed<Finding>>> {
        read(
            FINDINGS.live(&self.db, tenant_id, doc! {}).await?,
            "finding",
        )
    }

    pub async fn write_chains(
        &self,
        tenant_id: &str,
        by: ForRun,
        chains: &[Chain],
    ) -> Result<Counts> {
        let items = chains
            .iter()
            .map(|c| {
                let data = bson::to_document(c)?;
                Ok(Item {
                    key: content_hash(&data),
                    data,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_set(&CHAINS, tenant_id, doc! {}, by, items).await
    }

    pub async fn live_chains(&self, tenant_id: &str) -> Result<Vec<Keyed<Chain>>> {
        read(CHAINS.live(&self.db, tenant_id, doc! {}).await?, "chain")
    }

    pub async fn write_stitched_paths(
        &self,
        tenant_id: &str,
        by: ForRun,
        paths: &[StitchedPath],
    ) -> Result<Counts> {
        let items = paths
            .iter()
            .map(|p| {
                let data = bson::to_document(p)?;
                Ok(Item {
                    key: content_hash(&data),
                    data,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_set(&STITCHED_PATHS, tenant_id, doc! {}, by, items)
            .await
    }

    pub async fn live_stitched_paths(&self, tenant_id: &str) -> Result<Vec<Keyed<StitchedPath>>> {
        read(
            STITCHED_PATHS.live(&self.db, tenant_id, doc! {}).await?,
            "stitched path",
        )
    }
}

fn read<T: DeserializeOwned>(docs: Vec<Document>, what: &'static str) -> Result<Vec<Keyed<T>>> {
    docs.into_iter()
        .map(|d| {
            let key = d.get_str("key").unwrap_or_default().to_string();
            let item = d
                .get_document("data")
                .ok()
                .and_then(|data| bson::from_document(data.clone()).ok())
                .ok_or_else(|| DomainError::Malformed {
                    what,
                    id: key.clone(),
                    reason: "its `data` does not read back".into(),
                })?;
            Ok(Keyed {
                hash: d.get_str("hash").unwrap_or_default().to_string(),
                key,
                item,
            })
        })
        .collect()
}
