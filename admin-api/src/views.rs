//! What the API returns: the stored documents in the API's own shapes (ids as hex strings,
//! times as RFC 3339), so that the storage can change without changing the contract, and
//! nothing internal (claims, leases' tokens, dedup keys of other kinds) leaks out by accident.

use std::collections::BTreeMap;

use mongodb::bson::{Bson, DateTime, Document};
use serde::Serialize;
use sv0_domain::{CategoryResult, ConnectorInstance, ScanRun, ScanScope, Tenant, Trigger};
use sv0_queue::JobDoc;
use utoipa::ToSchema;

use crate::audit::AuditEntry;
use crate::tokens::TokenInfo;

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn time(at: DateTime) -> String {
    at.try_to_rfc3339_string()
        .unwrap_or_else(|_| at.timestamp_millis().to_string())
}

/// A BSON document as plain JSON: ObjectIds as hex, dates as RFC 3339.
pub(crate) fn plain_json(document: &Document) -> serde_json::Value {
    fn plain(value: &Bson) -> serde_json::Value {
        match value {
            Bson::ObjectId(id) => id.to_hex().into(),
            Bson::DateTime(at) => time(*at).into(),
            Bson::Document(d) => plain_json(d),
            Bson::Array(items) => items.iter().map(plain).collect(),
            other => other.clone().into_relaxed_extjson(),
        }
    }
    document
        .iter()
        .map(|(k, v)| (k.clone(), plain(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub tenant_id: String,
    pub trigger: TriggerView,
    /// `queued`, `running`, `succeeded`, `failed`, `timeout` or `cancelled`.
    pub status: String,
    /// Why the run failed, naming the stage or category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// What a deploy-gate run rebuilds: `chains`, `stitched_paths`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rematerialize: Option<Vec<String>>,
    pub max_runtime_seconds: i64,
    /// Every cell: the connector's categories and the reserved stage cells (`__sync`, …).
    pub category_results: BTreeMap<String, CellView>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// Why a run exists.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerView {
    /// `scheduled`, `manual_api`, `iac_lifecycle`, `deploy_gate` or `retry`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
}

/// One cell of a run: exactly the five fields the stored cell has.
#[derive(Debug, Serialize, ToSchema)]
pub struct CellView {
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub items_scanned: i64,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    pub errors: Vec<String>,
}

impl From<ScanRun> for RunView {
    fn from(run: ScanRun) -> RunView {
        RunView {
            id: run.id.to_hex(),
            tenant_id: run.tenant_id,
            trigger: TriggerView::from(run.trigger),
            status: run.status.as_str().to_string(),
            error: run.error,
            scope_id: run.scope_id.map(|id| id.to_hex()),
            instance_id: run.instance_id.map(|id| id.to_hex()),
            rematerialize: run
                .rematerialize
                .map(|stages| stages.iter().map(enum_name).collect()),
            max_runtime_seconds: run.budget.max_runtime_seconds,
            category_results: run
                .category_results
                .into_iter()
                .map(|(name, cell)| (name.as_str().to_string(), CellView::from(cell)))
                .collect(),
            created_at: time(run.created_at),
            started_at: run.started_at.map(time),
            finished_at: run.finished_at.map(time),
        }
    }
}

impl From<Trigger> for TriggerView {
    fn from(trigger: Trigger) -> TriggerView {
        let mut view = TriggerView {
            kind: trigger.type_name().to_string(),
            scope_id: None,
            slot: None,
            requested_by: None,
            event: None,
            deploy_id: None,
            commit: None,
            retry_of: None,
        };
        match trigger {
            Trigger::Scheduled { scope_id, slot } => {
                view.scope_id = Some(scope_id.to_hex());
                view.slot = Some(time(slot));
            }
            Trigger::ManualApi { requested_by } => view.requested_by = requested_by,
            Trigger::IacLifecycle { event } => view.event = event,
            Trigger::DeployGate { deploy_id, commit } => {
                view.deploy_id = Some(deploy_id);
                view.commit = commit;
            }
            Trigger::Retry { retry_of } => view.retry_of = Some(retry_of.to_hex()),
        }
        view
    }
}

impl From<CategoryResult> for CellView {
    fn from(cell: CategoryResult) -> CellView {
        CellView {
            status: enum_name(&cell.status),
            items_scanned: cell.items_scanned,
            started_at: time(cell.started_at),
            ended_at: cell.ended_at.map(time),
            errors: cell.errors,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> TenantView {
        TenantView {
            id: tenant.id,
            name: tenant.name,
            status: enum_name(&tenant.status),
            created_at: time(tenant.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// The registered connector kind that scans it; which program that is, is the
    /// deployment's configuration and never shown here.
    pub kind: String,
    /// Where the credentials live: a provider and a reference, never a value.
    pub credentials_ref: CredentialsRefView,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsRefView {
    /// `env`, `azure_keyvault`, `aws_secretsmanager` or `op`.
    pub provider: String,
    #[serde(rename = "ref")]
    pub reference: String,
}

impl From<ConnectorInstance> for InstanceView {
    fn from(instance: ConnectorInstance) -> InstanceView {
        InstanceView {
            id: instance.id.to_hex(),
            tenant_id: instance.tenant_id,
            name: instance.name,
            kind: instance.kind,
            credentials_ref: CredentialsRefView {
                provider: enum_name(&instance.credentials_ref.provider),
                reference: instance.credentials_ref.reference,
            },
            status: enum_name(&instance.status),
            created_at: time(instance.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeView {
    pub id: String,
    pub tenant_id: String,
    pub instance_id: String,
    pub name: String,
    /// What to scan, in the connector's own terms.
    #[schema(value_type = Object)]
    pub scope: serde_json::Value,
    /// `{cadence: {type: interval, every_seconds} | {type: cron, expression, time_zone},
    /// catch_up: {window_seconds, run: latest|all}, overlap: skip|buffer_one|allow}`; absent:
    /// the scope runs only on request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<serde_json::Value>,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// The schedule's next slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    pub max_runtime_seconds: i64,
    pub created_at: String,
    /// Present when the stored scope is too deep to read whole (a list shows it anyway, to be
    /// replaced or deleted): which fields were not read, and why; an unread `scope` is `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl From<ScanScope> for ScopeView {
    fn from(scope: ScanScope) -> ScopeView {
        ScopeView {
            id: scope.id.to_hex(),
            tenant_id: scope.tenant_id,
            instance_id: scope.instance_id.to_hex(),
            name: scope.name,
            scope: plain_json(&scope.scope),
            schedule: scope.schedule.and_then(|s| serde_json::to_value(s).ok()),
            paused: scope.paused,
            pause_note: scope.pause.as_ref().and_then(|p| p.note.clone()),
            paused_by: scope.pause.as_ref().and_then(|p| p.by.clone()),
            paused_at: scope.pause.as_ref().map(|p| time(p.at)),
            next_run_at: scope.next_run_at.map(time),
            last_run_id: scope.last_run_id.map(|id| id.to_hex()),
            max_runtime_seconds: scope.budget.max_runtime_seconds,
            created_at: time(scope.created_at),
            unreadable: scope.unreadable,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The run (or other group) the job belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `queued`, `running`, `succeeded`, `failed`, `dead` or `cancelled`.
    pub status: String,
    pub priority: i32,
    pub run_at: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The worker holding it, while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub cancel_requested: bool,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl From<JobDoc> for JobView {
    fn from(job: JobDoc) -> JobView {
        JobView {
            id: job.id.to_hex(),
            kind: job.kind,
            tenant_id: job.tenant_id,
            group_id: job.group_id,
            payload: plain_json(&job.payload),
            status: job.status.as_str().to_string(),
            priority: job.priority,
            run_at: time(job.run_at),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            lease_owner: job.lease.owner,
            lease_expires_at: job.lease.expires_at.map(time),
            last_error: job.last_error,
            cancel_requested: job.cancel_requested,
            created_at: time(job.created_at),
            started_at: job.started_at.map(time),
            finished_at: job.finished_at.map(time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The tenants it is limited to; empty: every tenant.
    pub tenants: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// To the minute; absent until its first use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl From<TokenInfo> for TokenView {
    fn from(token: TokenInfo) -> TokenView {
        TokenView {
            id: token.id,
            name: token.name,
            role: token.role.as_str().to_string(),
            created_at: time(token.created_at),
            revoked_at: token.revoked_at.map(time),
            tenants: token.tenants,
            expires_at: token.expires_at.map(time),
            last_used_at: token.last_used_at.map(time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: String,
    pub at: String,
    pub token_id: String,
    pub token_name: String,
    pub role: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The server's id of the request.
    pub request_id: String,
    /// The caller's own `x-request-id`, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_request_id: Option<String>,
    /// `started` (written before the action, not completed: it may or may not have happened),
    /// `done`, or `refused` (see `error`).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `{field: {old, new}}` for what the action changed.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> AuditView {
        AuditView {
            id: entry.id.to_hex(),
            at: time(entry.at),
            token_id: entry.token_id,
            token_name: entry.token_name,
            role: entry.role,
            action: entry.action,
            target_kind: entry.target_kind,
            target_id: entry.target_id,
            tenant_id: entry.tenant_id,
            reason: entry.reason,
            request_id: entry.request_id,
            caller_request_id: entry.caller_request_id,
            outcome: entry.outcome,
            completed_at: entry.completed_at.map(time),
            error: entry.error,
            changes: plain_json(&entry.changes),
            detail: plain_json(&entry.detail),
        }
    }
}

/// A unit enum's serde name (`suspended`, `azure_keyvault`).
pub(crate) fn enum_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
