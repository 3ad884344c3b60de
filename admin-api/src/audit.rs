//! `audit_log`: one entry per mutation — who (token id, name, role; or a local operator of
//! `sv0 token`), what (an action name such as `scope.pause`), on what (a target kind and id, the
//! tenant), why (the caller's reason, where the action takes one), what changed (old and new
//! values), the server's request id beside the caller's own, and when.
//!
//! An entry is written *before* its action (`outcome: started`) and completed after it (`done`,
//! or `refused` with the error that stopped it: a 404 or 409; input the domain finds invalid on
//! the way takes its entry back, as bad input leaves nothing written). An action whose entry cannot be written is not
//! taken: the caller gets a 503 and nothing changes. So no mutation happens unrecorded; what the
//! log cannot promise is the completion: an entry left `started` (the completion's write
//! failed, or the process died mid-action) says the action may or may not have happened, and
//! the target's own state says which.
//!
//! Entries hold no secret and no token: only the token's id and name. Refused credentials and
//! rights are recorded too (see `refusals`), at a bounded rate.

use std::future::Future;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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
    /// The server's id of the request.
    pub request_id: String,
    /// The caller's own `x-request-id`, when it sent one.
    #[serde(default)]
    pub caller_request_id: Option<String>,
    /// `started`, `done` or `refused`. Entries written before entries had an outcome were
    /// written after their action, so they read as `done`.
    #[serde(default = "done")]
    pub outcome: String,
    #[serde(default)]
    pub completed_at: Option<DateTime>,
    /// What refused the action (`code: message`), when it was refused.
    #[serde(default)]
    pub error: Option<String>,
    /// `{field: {old, new}}` for what the action changed.
    #[serde(default)]
    pub changes: Document,
    /// What the action did, in a few fields (counts, the ids it created).
    #[serde(default)]
    pub detail: Document,
}

fn done() -> String {
    "done".to_string()
}

/// Who acts: a token's caller, or someone at the database's side (`sv0 token`).
#[derive(Debug, Clone)]
pub struct Actor {
    pub token_id: String,
    pub name: String,
    pub role: String,
}

impl Actor {
    /// An operator acting next to the database, without a token: `user` is the OS user.
    pub fn local(user: &str) -> Actor {
        Actor {
            token_id: String::new(),
            name: format!("local:{user}"),
            role: "local".to_string(),
        }
    }
}

/// Who acts and in which request, as an entry records it (a request's context gives one).
#[derive(Debug, Clone)]
pub(crate) struct ActedBy<'a> {
    pub actor: Actor,
    pub request_id: &'a str,
    pub caller_request_id: Option<&'a str>,
}

/// One mutation to record.
#[derive(Debug, Clone)]
pub struct Action<'a> {
    pub action: &'static str,
    pub target_kind: &'static str,
    /// Empty when the action creates its target: the completion names it.
    pub target_id: String,
    pub tenant_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// What is known before the action: the request's values.
    pub detail: Document,
}

/// What an action did, for its entry's completion.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    target_id: Option<String>,
    changes: Document,
    detail: Document,
}

impl Completion {
    pub fn new() -> Completion {
        Completion::default()
    }

    /// The target the action created.
    pub fn target(mut self, id: impl Into<String>) -> Completion {
        self.target_id = Some(id.into());
        self
    }

    /// `field` went from `old` to `new`; nothing is recorded when they are equal.
    pub fn change(mut self, field: &str, old: impl Into<Bson>, new: impl Into<Bson>) -> Completion {
        let (old, new) = (old.into(), new.into());
        if old != new {
            self.changes.insert(field, doc! { "old": old, "new": new });
        }
        self
    }

    /// What the action did, beside what was known before it.
    pub fn detail(mut self, detail: Document) -> Completion {
        self.detail = detail;
        self
    }
}

/// An entry written before its action, to be completed after it.
#[must_use = "an audit entry must be completed with `done` or `refused`"]
pub struct PendingEntry {
    collection: Collection<AuditEntry>,
    id: ObjectId,
    action: &'static str,
}

impl PendingEntry {
    /// The action happened. A failed write is logged and leaves the entry `started`: the action
    /// is done by then, and the caller is not told otherwise.
    pub async fn done(self, completion: Completion) {
        let mut set = doc! {
            "outcome": "done",
            "completed_at": DateTime::now(),
            "changes": completion.changes,
        };
        for (key, value) in completion.detail {
            set.insert(format!("detail.{key}"), value);
        }
        if let Some(target) = completion.target_id {
            set.insert("target_id", target);
        }
        self.complete(set).await;
    }

    /// The action did not happen: `error` stopped it. Input found invalid on the way (a 400
    /// the domain's own checks gave) takes the entry back: nothing was attempted on the target,
    /// and bad input leaves nothing written, the log included.
    pub(crate) async fn refused(self, error: &ApiError) {
        if matches!(error, ApiError::Invalid { .. }) {
            let removed = self.collection.delete_one(doc! { "_id": self.id }).await;
            if let Err(error) = removed {
                tracing::error!(
                    %error,
                    entry = %self.id,
                    action = self.action,
                    "the entry of an action refused as invalid could not be taken back; it stays `started`"
                );
            }
            return;
        }
        let set = doc! {
            "outcome": "refused",
            "completed_at": DateTime::now(),
            "error": format!("{}: {}", error.status().as_u16(), error),
        };
        self.complete(set).await;
    }

    async fn complete(self, set: Document) {
        let written = self
            .collection
            .update_one(doc! { "_id": self.id }, doc! { "$set": set })
            .await;
        if let Err(error) = written {
            tracing::error!(
                %error,
                entry = %self.id,
                action = self.action,
                "an audit entry could not be completed; it stays `started`"
            );
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditLog {
    collection: Collection<AuditEntry>,
}

impl AuditLog {
    pub fn new(db: &Database) -> AuditLog {
        AuditLog {
            collection: sv0_storage::durable(db).collection("audit_log"),
        }
    }

    /// Creates the indexes of the log's narrow queries: a target's entries, a tenant's entries,
    /// newest first.
    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        for keys in [
            doc! { "target_id": 1, "_id": -1 },
            doc! { "tenant_id": 1, "_id": -1 },
        ] {
            self.collection
                .create_index(IndexModel::builder().keys(keys).build())
                .await?;
        }
        Ok(())
    }

    /// Writes `action`'s entry as `started`, before the action.
    pub async fn begin(
        &self,
        actor: &Actor,
        request_id: &str,
        caller_request_id: Option<&str>,
        action: Action<'_>,
    ) -> Result<PendingEntry, mongodb::error::Error> {
        let entry = AuditEntry {
            id: ObjectId::new(),
            at: DateTime::now(),
            token_id: actor.token_id.clone(),
            token_name: actor.name.clone(),
            role: actor.role.clone(),
            action: action.action.to_string(),
            target_kind: action.target_kind.to_string(),
            target_id: action.target_id,
            tenant_id: action.tenant_id.map(str::to_string),
            reason: action.reason.map(str::to_string),
            request_id: request_id.to_string(),
            caller_request_id: caller_request_id.map(str::to_string),
            outcome: "started".to_string(),
            completed_at: None,
            error: None,
            changes: Document::new(),
            detail: action.detail,
        };
        self.collection.insert_one(&entry).await?;
        Ok(PendingEntry {
            collection: self.collection.clone(),
            id: entry.id,
            action: action.action,
        })
    }

    /// Runs `work` between its entry's start and completion. Nothing of `work` runs unless the
    /// entry was written (a future does nothing until polled); else the answer is 503.
    pub(crate) async fn around<'c, T>(
        &self,
        by: impl Into<ActedBy<'c>>,
        action: Action<'_>,
        work: impl Future<Output = Result<(T, Completion), ApiError>>,
    ) -> Result<T, ApiError> {
        let name = action.action;
        let by = by.into();
        let pending = self
            .begin(&by.actor, by.request_id, by.caller_request_id, action)
            .await
            .map_err(|error| {
                tracing::error!(%error, action = name, "the audit entry could not be written; the action is not taken");
                ApiError::AuditUnavailable
            })?;
        match work.await {
            Ok((value, completion)) => {
                pending.done(completion).await;
                Ok(value)
            }
            Err(error) => {
                pending.refused(&error).await;
                Err(error)
            }
        }
    }

    /// Writes a complete entry at once: for what is recorded rather than done (a refusal).
    pub(crate) async fn write(&self, entry: &AuditEntry) -> Result<(), mongodb::error::Error> {
        self.collection.insert_one(entry).await.map(|_| ())
    }

    /// Deletes the entries written before `before`; returns how many. The log is kept longest of
    /// all the history (a year and more by default): it is what answers "who did this".
    pub async fn prune(&self, before: DateTime) -> Result<u64, mongodb::error::Error> {
        // An entry's id is made when it is written: "before" is a range of the `_id` index.
        Ok(self
            .collection
            .delete_many(doc! { "_id": { "$lt": sv0_storage::first_id_at(before) } })
            .await?
            .deleted_count)
    }

    /// Newest first, before `after`; optionally only about `target_id`, only of `tenant_id`,
    /// and only of the tenants in `tenant_ids` when it is not empty.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, mongodb::error::Error> {
        let mut query = Document::new();
        if let Some(target) = &filter.target_id {
            query.insert("target_id", target);
        }
        if let Some(action) = &filter.action {
            query.insert("action", action);
        }
        let mut tenant = Document::new();
        if let Some(one) = &filter.tenant_id {
            tenant.insert("$eq", one);
        }
        if !filter.tenant_ids.is_empty() {
            tenant.insert("$in", filter.tenant_ids.as_slice());
        }
        if !tenant.is_empty() {
            query.insert("tenant_id", tenant);
        }
        if let Some(after) = after {
            query.insert("_id", doc! { "$lt": after });
        }
        self.collection
            .find(query)
            .sort(doc! { "_id": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await
    }
}

/// Which entries to list; every field given narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub target_id: Option<String>,
    pub tenant_id: Option<String>,
    /// Only these tenants' entries, when not empty: what a token limited to tenants sees.
    pub tenant_ids: Vec<String>,
    /// An action name (`scope.pause`, `auth.refused`).
    pub action: Option<String>,
}
