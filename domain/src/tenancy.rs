//! Who is scanned and how: `tenants`, `connector_instances` (a connector configured for a
//! tenant, with where its credentials live) and `scan_scopes` (what one scan of an instance
//! covers, its schedule and its budget).

use std::collections::HashMap;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, RawDocument, RawDocumentBuf, doc};
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};
use sv0_broker::CredentialsRef;
use sv0_broker::naming::TenantId;

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::limits;
use crate::run::{Budget, MAX_RUNTIME_SECONDS};
use crate::schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    /// Kept, but nothing new runs for it: no scheduled scans, no rematerializations.
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// The tenant id itself: what every other document's `tenant_id` holds.
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub status: TenantStatus,
    pub created_at: DateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Active,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorInstance {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub tenant_id: String,
    pub name: String,
    /// The connector's kind (`demo`, `aws`, …): which registered connector program scans it
    /// (the deployment's connector registry says which executable that is; an instance never
    /// names a program), and part of where Key Vault looks for its secrets.
    pub kind: String,
    pub credentials_ref: CredentialsRef,
    pub status: InstanceStatus,
    pub created_at: DateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanScope {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub tenant_id: String,
    pub instance_id: ObjectId,
    pub name: String,
    /// What to scan, in the connector's own terms: handed to it as `scope.json`.
    pub scope: Document,
    /// The schedule (interval or cron) and its policies; none: the scope runs only on request.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub paused: bool,
    /// Why and by whom the scope was paused, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// The schedule's next slot that has not been decided yet (run, skipped or missed).
    #[serde(default)]
    pub next_run_at: Option<DateTime>,
    /// When the scheduler must look at the scope next: the next slot, or sooner while a slot
    /// waits for the previous run (`buffer_one`).
    #[serde(default)]
    pub due_at: Option<DateTime>,
    /// A slot waiting for the previous run to finish (overlap policy `buffer_one`).
    #[serde(default)]
    pub buffered_slot: Option<DateTime>,
    /// The latest run the schedule (or a trigger-now) started: what "the previous run is still
    /// running" is checked against.
    #[serde(default)]
    pub last_run_id: Option<ObjectId>,
    /// A scheduler replica's hold on the scope while it decides its due slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ScopeClaim>,
    pub budget: Budget,
    pub created_at: DateTime,
    /// Set only on a list's row for a scope stored too deep to read whole: which of its fields
    /// were not read, and why (an unread `scope` is empty here). Never stored.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
    pub at: DateTime,
}

/// A scheduler's claim on a scope: `nonce` is new for every claim, and every write the holder
/// makes filters on it, so once the claim has expired and another replica holds the scope, the
/// old holder's writes match nothing (the fence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeClaim {
    pub owner: String,
    pub nonce: ObjectId,
    pub expires_at: DateTime,
}

/// An edit of a connector instance: each field given replaces the stored one, validated as at
/// creation. The kind is not editable: it is part of where the instance's secrets are looked up.
#[derive(Debug, Clone, Default)]
pub struct InstanceUpdate {
    pub name: Option<String>,
    pub credentials_ref: Option<CredentialsRef>,
    pub status: Option<InstanceStatus>,
}

/// An edit of a scan scope: each field given replaces the stored one, validated as at creation.
/// The schedule and pausing are not here: the scheduler's controls own those edits, since they
/// move the scope's slots and drop the scheduler's claims.
#[derive(Debug, Clone, Default)]
pub struct ScopeUpdate {
    pub name: Option<String>,
    pub scope: Option<Document>,
    pub budget: Option<Budget>,
}

impl Tenant {
    pub fn new(id: &str, name: &str) -> Result<Tenant> {
        validate_tenant_id(id)?;
        validate_name(name)?;
        Ok(Tenant {
            id: id.to_string(),
            name: name.to_string(),
            status: TenantStatus::Active,
            created_at: DateTime::now(),
        })
    }
}

impl ConnectorInstance {
    pub fn new(
        tenant_id: &str,
        name: &str,
        kind: &str,
        credentials_ref: CredentialsRef,
    ) -> Result<ConnectorInstance> {
        validate_tenant_id(tenant_id)?;
        validate_name(name)?;
        validate_kind(kind)?;
        validate_credentials_ref(&credentials_ref)?;
        Ok(ConnectorInstance {
            id: ObjectId::new(),
            tenant_id: tenant_id.to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
            credentials_ref,
            status: InstanceStatus::Active,
            created_at: DateTime::now(),
        })
    }
}

impl ScanScope {
    pub fn new(
        instance: &ConnectorInstance,
        name: &str,
        scope: Document,
        budget: Budget,
    ) -> Result<ScanScope> {
        validate_name(name)?;
        validate_scope_document(&scope)?;
        validate_budget(&budget)?;
        Ok(ScanScope {
            id: ObjectId::new(),
            tenant_id: instance.tenant_id.clone(),
            instance_id: instance.id,
            name: name.to_string(),
            scope,
            schedule: None,
            paused: false,
            pause: None,
            next_run_at: None,
            due_at: None,
            buffered_slot: None,
            last_run_id: None,
            claim: None,
            budget,
            created_at: DateTime::now(),
            unreadable: None,
        })
    }
}

pub fn validate_tenant_id(id: &str) -> Result<()> {
    TenantId::parse(id)
        .map(|_| ())
        .map_err(|refusal| DomainError::invalid("tenant_id", refusal.to_string()))
}

/// The longest name an instance or scope may have.
const MAX_NAME_CHARS: usize = 200;

/// A tenant's, instance's or scope's name: what lists and logs show, so something to read, on
/// one line, shown as written (no control characters, no bidirectional marks).
fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(DomainError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} printable characters, not all blank"),
        ));
    }
    limits::check_text("name", name)
}

/// A stored scope, read only once its depth is known to be readable: deserializing recurses per
/// level, and a scope written before depth was bounded (or by hand; the stand stores any depth)
/// could otherwise overflow the reader's stack and abort its process. Too deep a scope is a
/// conflict naming it, so that it can be replaced or deleted.
pub(crate) fn read_scope(raw: &RawDocument) -> Result<ScanScope> {
    let id = raw.get_object_id("_id").ok();
    let named = id.map(|id| id.to_hex()).unwrap_or_default();
    if limits::raw_depth_exceeds(raw, limits::MAX_READ_DEPTH) {
        return Err(DomainError::Conflict(format!(
            "scan scope {named} is stored nested deeper than {} levels, too deep to read: \
             replace its scope or delete it",
            limits::MAX_READ_DEPTH
        )));
    }
    mongodb::bson::from_slice(raw.as_bytes()).map_err(|error| match id {
        Some(id) => DomainError::malformed("scan scope", id, error),
        None => DomainError::Write(format!("a scan scope without an ObjectId _id: {error}")),
    })
}

/// What a scope scans: bounded in depth and size, its keys storable (see [`limits`]).
fn validate_scope_document(scope: &Document) -> Result<()> {
    limits::check_document("scope", scope, limits::MAX_SCOPE_BYTES)
}

/// The longest connector kind name.
pub const MAX_KIND_CHARS: usize = 64;

/// A connector kind's name: the key of the deployment's connector registry and a part of Key
/// Vault secret names, so plain lower-case ASCII.
pub fn validate_kind(kind: &str) -> Result<()> {
    if kind.is_empty()
        || kind.len() > MAX_KIND_CHARS
        || !kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(DomainError::invalid(
            "kind",
            format!("must be 1 to {MAX_KIND_CHARS} lower-case letters, digits and `_`"),
        ));
    }
    Ok(())
}

/// The broker refuses a bad ref at resolve time; refusing it here too means the mistake is
/// reported when the instance is made or edited, not at 3 a.m. by the next scheduled scan.
fn validate_credentials_ref(credentials_ref: &CredentialsRef) -> Result<()> {
    sv0_broker::naming::Ref::parse(&credentials_ref.reference)
        .map(|_| ())
        .map_err(|refusal| DomainError::invalid("credentials_ref.ref", refusal.to_string()))
}

pub fn validate_budget(budget: &Budget) -> Result<()> {
    if !(1..=MAX_RUNTIME_SECONDS).contains(&budget.max_runtime_seconds) {
        return Err(DomainError::invalid(
            "budget.max_runtime_seconds",
            format!("must be 1 to {MAX_RUNTIME_SECONDS}"),
        ));
    }
    Ok(())
}

impl InstanceUpdate {
    /// The `$set` of this edit, once every field given is valid.
    fn to_set(&self) -> Result<Document> {
        let mut set = Document::new();
        if let Some(name) = &self.name {
            validate_name(name)?;
            set.insert("name", name);
        }
        if let Some(credentials_ref) = &self.credentials_ref {
            validate_credentials_ref(credentials_ref)?;
            set.insert("credentials_ref", mongodb::bson::to_bson(credentials_ref)?);
        }
        if let Some(status) = self.status {
            set.insert("status", mongodb::bson::to_bson(&status)?);
        }
        non_empty(set, "name, credentials_ref, status")
    }
}

impl ScopeUpdate {
    /// The `$set` of this edit, once every field given is valid.
    fn to_set(&self) -> Result<Document> {
        let mut set = Document::new();
        if let Some(name) = &self.name {
            validate_name(name)?;
            set.insert("name", name);
        }
        if let Some(scope) = &self.scope {
            validate_scope_document(scope)?;
            set.insert("scope", scope.clone());
        }
        if let Some(budget) = &self.budget {
            validate_budget(budget)?;
            set.insert("budget", mongodb::bson::to_bson(budget)?);
        }
        non_empty(set, "name, scope, budget")
    }
}

/// An edit that sets nothing is a mistake of the caller's (a misspelt field, say), not a no-op.
fn non_empty(set: Document, fields: &str) -> Result<Document> {
    if set.is_empty() {
        return Err(DomainError::invalid(
            "body",
            format!("set at least one of {fields}"),
        ));
    }
    Ok(set)
}

impl Domain {
    /// Creates the tenant; one that exists already is a [`DomainError::Conflict`] naming its id,
    /// and is left as it is. The insert itself decides, so of two creates of one id exactly one
    /// wins, and a create never reactivates or renames a tenant suspended meanwhile.
    pub async fn insert_tenant(&self, tenant: &Tenant) -> Result<()> {
        match self.tenants().insert_one(tenant).await {
            Ok(_) => Ok(()),
            Err(error) if sv0_storage::is_duplicate(&error) => Err(DomainError::Conflict(format!(
                "tenant {:?} exists already",
                tenant.id
            ))),
            Err(error) => Err(error.into()),
        }
    }

    /// Creates the tenant, or updates its name and status if it exists: for provisioning that is
    /// re-run over its own tenants (the demo, benchmarks, tests), never for a caller's create,
    /// which must not overwrite a tenant someone else made or suspended (see
    /// [`Domain::insert_tenant`]).
    pub async fn put_tenant(&self, tenant: &Tenant) -> Result<()> {
        self.tenants()
            .update_one(
                doc! { "_id": &tenant.id },
                doc! {
                    "$set": { "name": &tenant.name, "status": mongodb::bson::to_bson(&tenant.status)? },
                    "$setOnInsert": { "created_at": tenant.created_at },
                },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    pub async fn tenant(&self, tenant_id: &str) -> Result<Tenant> {
        self.tenants()
            .find_one(doc! { "_id": tenant_id })
            .await?
            .ok_or_else(|| DomainError::not_found("tenant", tenant_id, tenant_id))
    }

    /// The tenants among `ids` that exist, by id, read in one round trip (a batch of runs
    /// checks its tenants at once).
    pub async fn tenants_by_id(&self, ids: &[&str]) -> Result<HashMap<String, Tenant>> {
        use futures::TryStreamExt;
        let found: Vec<Tenant> = self
            .tenants()
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        Ok(found.into_iter().map(|t| (t.id.clone(), t)).collect())
    }

    /// Sets a tenant's status and returns the tenant as it is now. A suspended tenant's runs
    /// already started go on; no new ones start.
    pub async fn set_tenant_status(&self, tenant_id: &str, status: TenantStatus) -> Result<Tenant> {
        self.tenants()
            .find_one_and_update(
                doc! { "_id": tenant_id },
                doc! { "$set": { "status": mongodb::bson::to_bson(&status)? } },
            )
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| DomainError::not_found("tenant", tenant_id, tenant_id))
    }

    pub async fn active_tenants(&self) -> Result<Vec<Tenant>> {
        use futures::TryStreamExt;
        Ok(self
            .tenants()
            .find(doc! { "status": "active" })
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?)
    }

    pub async fn insert_instance(&self, instance: &ConnectorInstance) -> Result<()> {
        self.tenant(&instance.tenant_id).await?;
        self.instances().insert_one(instance).await?;
        Ok(())
    }

    pub async fn instance(&self, tenant_id: &str, id: ObjectId) -> Result<ConnectorInstance> {
        self.instances()
            .find_one(doc! { "_id": id, "tenant_id": tenant_id })
            .await?
            .ok_or_else(|| DomainError::not_found("connector instance", id, tenant_id))
    }

    /// The instances among `ids` that exist, whatever their tenant, by id, read in one round
    /// trip: the caller compares each one's tenant with its own.
    pub async fn instances_by_id(
        &self,
        ids: &[ObjectId],
    ) -> Result<HashMap<ObjectId, ConnectorInstance>> {
        use futures::TryStreamExt;
        let found: Vec<ConnectorInstance> = self
            .instances()
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        Ok(found.into_iter().map(|i| (i.id, i)).collect())
    }

    /// Edits one of the tenant's instances in one write and returns it as it is now.
    pub async fn update_instance(
        &self,
        tenant_id: &str,
        id: ObjectId,
        update: &InstanceUpdate,
    ) -> Result<ConnectorInstance> {
        self.instances()
            .find_one_and_update(
                doc! { "_id": id, "tenant_id": tenant_id },
                doc! { "$set": update.to_set()? },
            )
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| DomainError::not_found("connector instance", id, tenant_id))
    }

    /// Deletes one of the tenant's instances, refused while a scope uses it (that scope could
    /// never run again). Its runs keep its id, as history.
    pub async fn delete_instance(&self, tenant_id: &str, id: ObjectId) -> Result<()> {
        // The count and the delete are two steps (the stand has no transactions): a scope
        // inserted between them is left without its instance, and its runs fail naming it.
        let scopes = self
            .scopes()
            .count_documents(doc! { "tenant_id": tenant_id, "instance_id": id })
            .await?;
        if scopes > 0 {
            return Err(DomainError::Conflict(format!(
                "connector instance {id} is used by {scopes} scan scope(s): delete them first"
            )));
        }
        let deleted = self
            .instances()
            .delete_one(doc! { "_id": id, "tenant_id": tenant_id })
            .await?;
        if deleted.deleted_count == 0 {
            return Err(DomainError::not_found("connector instance", id, tenant_id));
        }
        Ok(())
    }

    /// Removes the `command` instances stored when an API caller could set the program a
    /// connector runs; the deployment's connector registry says that now. Returns how many
    /// instances had one. Idempotent: a second call changes nothing.
    pub async fn drop_instance_commands(&self) -> Result<u64> {
        let dropped = self
            .instances()
            .update_many(
                doc! { "command": { "$exists": true } },
                doc! { "$unset": { "command": "" } },
            )
            .await?;
        Ok(dropped.modified_count)
    }

    /// Every instance's tenant, id and kind, by tenant then id: what to hold against a
    /// connector registry before workers that read it start.
    pub async fn instance_kinds(&self) -> Result<Vec<(String, ObjectId, String)>> {
        use futures::TryStreamExt;
        #[derive(Deserialize)]
        struct KindRow {
            #[serde(rename = "_id")]
            id: ObjectId,
            tenant_id: String,
            kind: String,
        }
        let mut rows: Vec<(String, ObjectId, String)> = self
            .instances()
            .clone_with_type::<KindRow>()
            .find(doc! {})
            .projection(doc! { "_id": 1, "tenant_id": 1, "kind": 1 })
            .await?
            .map_ok(|row| (row.tenant_id, row.id, row.kind))
            .try_collect()
            .await?;
        // Sorted here rather than by the server: no index serves this order, and a one-shot
        // report of a few thousand rows needs none.
        rows.sort();
        Ok(rows)
    }

    /// Inserts `scope`. A scope inserted with a schedule starts at the schedule's first slot
    /// after now, whatever `next_run_at` it carried.
    pub async fn insert_scope(&self, scope: &ScanScope) -> Result<()> {
        validate_name(&scope.name)?;
        validate_scope_document(&scope.scope)?;
        self.instance(&scope.tenant_id, scope.instance_id).await?;
        let mut scope = scope.clone();
        scope.next_run_at = match &scope.schedule {
            Some(schedule) => {
                schedule.validate()?;
                schedule.slots()?.next_after(DateTime::now())
            }
            None => None,
        };
        scope.due_at = scope.next_run_at;
        scope.buffered_slot = None;
        scope.claim = None;
        self.scopes().insert_one(&scope).await?;
        Ok(())
    }

    pub async fn scope(&self, tenant_id: &str, id: ObjectId) -> Result<ScanScope> {
        let raw = self
            .raw_scopes()
            .find_one(doc! { "_id": id, "tenant_id": tenant_id })
            .await?
            .ok_or_else(|| DomainError::not_found("scan scope", id, tenant_id))?;
        read_scope(&raw)
    }

    /// The scopes as stored, to be read through [`read_scope`].
    pub(crate) fn raw_scopes(&self) -> mongodb::Collection<RawDocumentBuf> {
        self.db.collection("scan_scopes")
    }

    /// Edits one of the tenant's scopes in one write and returns it as it is now. (Not
    /// `update_scope`: that name is the schedule edits' shared write, in `scopes`.) A
    /// scheduler's claim on the scope stays: its settlement writes none of these fields, and
    /// each run reads the scope when it starts.
    pub async fn update_scope_settings(
        &self,
        tenant_id: &str,
        id: ObjectId,
        update: &ScopeUpdate,
    ) -> Result<ScanScope> {
        let raw = self
            .raw_scopes()
            .find_one_and_update(
                doc! { "_id": id, "tenant_id": tenant_id },
                doc! { "$set": update.to_set()? },
            )
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| DomainError::not_found("scan scope", id, tenant_id))?;
        read_scope(&raw)
    }

    /// Deletes one of the tenant's scopes. Its runs keep its id, as history; one still queued
    /// fails at its scan, naming the missing scope, and a scheduler's claim on it settles nothing.
    pub async fn delete_scope(&self, tenant_id: &str, id: ObjectId) -> Result<()> {
        let deleted = self
            .scopes()
            .delete_one(doc! { "_id": id, "tenant_id": tenant_id })
            .await?;
        if deleted.deleted_count == 0 {
            return Err(DomainError::not_found("scan scope", id, tenant_id));
        }
        Ok(())
    }
}
