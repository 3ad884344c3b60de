//! `audit_log`: one entry per mutation the API performs — who (token id, name, role), what
//! (an action name such as `scope.pause`), on what (a target kind and id, the tenant), why (the
//! caller's reason, where the action takes one), the request's id, and when. Entries hold no
//! secret and no token: only the token's id and name. The entry is written after the action
//! succeeded; an action whose entry could not be written is logged loudly with everything the
//! entry would have held.

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::tokens::Caller;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub at: DateTime,
    pub token_id: String,
    pub token_name: String,
    pub role: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub request_id: String,
    /// What the action did, in a few fields (counts, the ids it created).
    #[serde(default)]
    pub detail: Document,
}

/// One mutation to record.
pub(crate) struct Action<'a> {
    pub action: &'static str,
    pub target_kind: &'static str,
    pub target_id: String,
    pub tenant_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub detail: Document,
}

#[derive(Debug, Clone)]
pub struct AuditLog {
    collection: Collection<AuditEntry>,
}

impl AuditLog {
    pub fn new(db: &Database) -> AuditLog {
        AuditLog {
            collection: db.collection("audit_log"),
        }
    }

    /// Creates the index of the log's one narrow query: a target's entries, newest first.
    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.collection
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "target_id": 1, "_id": -1 })
                    .build(),
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn record(&self, caller: &Caller, request_id: &str, action: Action<'_>) {
        let entry = AuditEntry {
            id: ObjectId::new(),
            at: DateTime::now(),
            token_id: caller.token_id.clone(),
            token_name: caller.name.clone(),
            role: caller.role.as_str().to_string(),
            action: action.action.to_string(),
            target_kind: action.target_kind.to_string(),
            target_id: action.target_id,
            tenant_id: action.tenant_id.map(str::to_string),
            reason: action.reason.map(str::to_string),
            request_id: request_id.to_string(),
            detail: action.detail,
        };
        if let Err(error) = self.collection.insert_one(&entry).await {
            tracing::error!(
                %error,
                request_id,
                action = entry.action,
                target_kind = entry.target_kind,
                target_id = entry.target_id,
                token_id = entry.token_id,
                "the audit entry of a completed action could not be written"
            );
        }
    }

    /// Newest first, before `after`; optionally only about `target_id`.
    pub async fn list(
        &self,
        target_id: Option<&str>,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, mongodb::error::Error> {
        let mut filter = Document::new();
        if let Some(target) = target_id {
            filter.insert("target_id", target);
        }
        if let Some(after) = after {
            filter.insert("_id", doc! { "$lt": after });
        }
        self.collection
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }
}
