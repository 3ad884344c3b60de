//! The admin API's lists of runs, tenants, connector instances and scan scopes, a page at a time.
//!
//! Pages are keyset pages: sorted by `_id`, each starting strictly past the last id of the page
//! before (`after`). Unlike an offset, a deep page costs no more than the first, and documents
//! inserted meanwhile neither shift a page nor show up twice. Runs, instances and scopes come
//! newest first: an ObjectId starts with the second it was made in, so `_id` order is creation
//! order to the second. Tenants, whose ids are names people chose, come in id order.

use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, RawBsonRef, RawDocument, RawDocumentBuf, doc};
use serde::de::DeserializeOwned;

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::limits::{MAX_READ_DEPTH, raw_depth_exceeds};
use crate::run::{RunStatus, ScanRun, Trigger};
use crate::tenancy::{ConnectorInstance, ScanScope, Tenant, read_scope};

/// The most one page may hold.
const MAX_PAGE: i64 = 1000;

/// Which runs to list; every field given narrows the list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub tenant_id: Option<String>,
    /// Only these tenants' runs, when not empty: the tenants a caller may see.
    pub tenant_ids: Vec<String>,
    pub status: Option<RunStatus>,
    /// A trigger type: `scheduled`, `manual_api`, `iac_lifecycle`, `deploy_gate` or `retry`.
    pub trigger: Option<String>,
    pub scope_id: Option<ObjectId>,
    /// Created at or after this.
    pub created_from: Option<DateTime>,
    /// Created before this; must be after `created_from` when both are given.
    pub created_until: Option<DateTime>,
}

/// Which scan scopes to list; every field given narrows the list.
#[derive(Debug, Clone, Default)]
pub struct ScopeFilter {
    pub tenant_id: Option<String>,
    /// Only these tenants' scopes, when not empty: the tenants a caller may see.
    pub tenant_ids: Vec<String>,
    pub instance_id: Option<ObjectId>,
    pub paused: Option<bool>,
}

impl RunFilter {
    fn to_query(&self) -> Result<Document> {
        let mut query = Document::new();
        query.extend(tenant_condition(
            self.tenant_id.as_deref(),
            &self.tenant_ids,
        ));
        if let Some(status) = self.status {
            query.insert("status", status.as_str());
        }
        if let Some(trigger) = &self.trigger {
            if !Trigger::TYPE_NAMES.contains(&trigger.as_str()) {
                return Err(DomainError::invalid(
                    "trigger",
                    format!("must be one of {}", Trigger::TYPE_NAMES.join(", ")),
                ));
            }
            query.insert("trigger.type", trigger);
        }
        if let Some(scope_id) = self.scope_id {
            query.insert("scope_id", scope_id);
        }
        let mut created = Document::new();
        if let Some(from) = self.created_from {
            created.insert("$gte", from);
        }
        if let Some(until) = self.created_until {
            if self.created_from.is_some_and(|from| from >= until) {
                return Err(DomainError::invalid(
                    "created_until",
                    "must be after created_from",
                ));
            }
            created.insert("$lt", until);
        }
        if !created.is_empty() {
            query.insert("created_at", created);
        }
        Ok(query)
    }
}

impl ScopeFilter {
    fn to_query(&self) -> Document {
        let mut query = Document::new();
        query.extend(tenant_condition(
            self.tenant_id.as_deref(),
            &self.tenant_ids,
        ));
        if let Some(instance_id) = self.instance_id {
            query.insert("instance_id", instance_id);
        }
        if let Some(paused) = self.paused {
            query.insert("paused", paused);
        }
        query
    }
}

/// `tenant_id` equal to `one` and within `any_of` (when not empty): both hold, even when
/// `one` is outside `any_of` (then nothing matches).
fn tenant_condition(one: Option<&str>, any_of: &[String]) -> Document {
    let mut condition = Document::new();
    if let Some(one) = one {
        condition.insert("$eq", one);
    }
    if !any_of.is_empty() {
        condition.insert("$in", any_of);
    }
    if condition.is_empty() {
        Document::new()
    } else {
        doc! { "tenant_id": condition }
    }
}

impl Domain {
    /// A page of the runs `filter` picks, newest first, strictly before `after` when given, at
    /// most `limit` (1 to 1000).
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<ScanRun>> {
        newest_first(self.listed(self.runs()), filter.to_query()?, after, limit).await
    }

    /// A page of tenants in id order, strictly after `after` when given, at most `limit` (1 to
    /// 1000).
    pub async fn list_tenants(&self, after: Option<&str>, limit: i64) -> Result<Vec<Tenant>> {
        let limit = page_limit(limit)?;
        let query = match after {
            Some(after) => doc! { "_id": { "$gt": after } },
            None => doc! {},
        };
        Ok(self
            .listed(self.tenants())
            .find(query)
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }

    /// A page of connector instances (of one tenant, or of all), newest first, strictly before
    /// `after` when given, at most `limit` (1 to 1000).
    pub async fn list_instances(
        &self,
        tenant_id: Option<&str>,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<ConnectorInstance>> {
        let query = match tenant_id {
            Some(tenant_id) => doc! { "tenant_id": tenant_id },
            None => doc! {},
        };
        newest_first(self.listed(self.instances()), query, after, limit).await
    }

    /// A page of the scan scopes `filter` picks, newest first, strictly before `after` when
    /// given, at most `limit` (1 to 1000).
    pub async fn list_scopes(
        &self,
        filter: &ScopeFilter,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<ScanScope>> {
        // Read raw first: a scope too deep to deserialize is not read whole (see `read_scope`),
        // and one such scope must not hide the page's others.
        newest_first(
            self.listed(self.raw_scopes()),
            filter.to_query(),
            after,
            limit,
        )
        .await?
        .iter()
        .map(|raw| scope_row(raw))
        .collect()
    }
}

/// A stored scope as a list row: read whole when its depth allows; else a row of its top-level
/// fields that are readable, the others left unread and named in `unreadable`, so that an
/// operator sees the scope to replace or delete it. The deep fields are measured without
/// recursing and never deserialized.
fn scope_row(raw: &RawDocument) -> Result<ScanScope> {
    if !raw_depth_exceeds(raw, MAX_READ_DEPTH) {
        return read_scope(raw);
    }
    let mut readable = RawDocumentBuf::new();
    let mut unread = Vec::new();
    for element in raw {
        // Bytes that do not even walk are no row: the conflict names the scope.
        let Ok((key, value)) = element else {
            return read_scope(raw);
        };
        // The document itself is level 1, so a field's value may nest one level less.
        let too_deep = match value {
            RawBsonRef::Document(child) => raw_depth_exceeds(child, MAX_READ_DEPTH - 1),
            RawBsonRef::Array(items) => RawDocument::from_bytes(items.as_bytes())
                .is_ok_and(|items| raw_depth_exceeds(items, MAX_READ_DEPTH - 1)),
            _ => false,
        };
        if too_deep {
            unread.push(key);
        } else {
            readable.append_ref(key, value);
        }
    }
    if unread.is_empty() {
        return read_scope(raw);
    }
    if unread.contains(&"scope") {
        readable.append("scope", RawDocumentBuf::new());
    }
    let mut row = read_scope(&readable)?;
    row.unreadable = Some(format!(
        "{} stored nested deeper than {MAX_READ_DEPTH} levels, not read: replace the scope or \
         delete it",
        unread.join(", ")
    ));
    Ok(row)
}

fn page_limit(limit: i64) -> Result<i64> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(DomainError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// One page of `collection`'s documents matching `query`, newest first.
async fn newest_first<T>(
    collection: Collection<T>,
    mut query: Document,
    after: Option<ObjectId>,
    limit: i64,
) -> Result<Vec<T>>
where
    T: DeserializeOwned + Unpin + Send + Sync,
{
    let limit = page_limit(limit)?;
    if let Some(after) = after {
        query.insert("_id", doc! { "$lt": after });
    }
    Ok(collection
        .find(query)
        .sort(doc! { "_id": -1 })
        .limit(limit)
        .await?
        .try_collect()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trigger;

    #[test]
    fn every_trigger_type_can_be_filtered_on() {
        let now = DateTime::now();
        let id = ObjectId::new();
        let triggers = [
            Trigger::Scheduled {
                scope_id: id,
                slot: now,
            },
            Trigger::ManualApi { requested_by: None },
            Trigger::IacLifecycle { event: None },
            Trigger::DeployGate {
                deploy_id: "d".into(),
                commit: None,
            },
            Trigger::Retry { retry_of: id },
        ];
        let names: Vec<&str> = triggers.iter().map(Trigger::type_name).collect();
        assert_eq!(names, Trigger::TYPE_NAMES);
    }
}
