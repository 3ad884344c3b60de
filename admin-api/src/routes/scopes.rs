//! Scan scopes and the schedule editor: list, detail, create, edit, delete; set the schedule and
//! its policies (validated exactly as the scheduler validates it: by the same code), pause with
//! a note, resume, trigger now, backfill a range of past slots.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use serde::{Deserialize, Serialize};
use sv0_domain::{Budget, ScanScope, Schedule, ScopeFilter, ScopeUpdate};
use utoipa::{IntoParams, ToSchema};

use super::{check_tenant, instant, object_id, tenant_path};
use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody, Params};
use crate::page::{self, Page};
use crate::roles::Right;
use crate::views::{RunView, ScopeView, time};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScopeQuery {
    tenant_id: Option<String>,
    instance_id: Option<String>,
    paused: Option<bool>,
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

/// Lists scan scopes, newest first.
#[utoipa::path(get, path = "/api/v1/scopes", tag = "scopes", params(ScopeQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<ScopeView>)))]
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Params(query): Params<ScopeQuery>,
) -> Result<Json<Page<ScopeView>>, ApiError> {
    ctx.require(Right::Read)?;
    if let Some(tenant_id) = &query.tenant_id {
        ctx.require_tenant(tenant_id)?;
    }
    let filter = ScopeFilter {
        tenant_id: query.tenant_id,
        tenant_ids: ctx.tenant_limit().to_vec(),
        instance_id: query
            .instance_id
            .as_deref()
            .map(|id| object_id("instance_id", id))
            .transpose()?,
        paused: query.paused,
    };
    let limit = page::limit(query.limit)?;
    let after = page::object_id_cursor(query.cursor.as_deref())?;
    let scopes = api
        .domain
        .list_scopes(&filter, after, i64::from(limit) + 1)
        .await?;
    Ok(Json(page::page(
        scopes,
        limit,
        |s| s.id.to_hex(),
        ScopeView::from,
    )))
}

/// One scan scope, with its schedule and pause.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/scopes/{id}", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ScopeView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<ScopeView>, ApiError> {
    ctx.require(Right::Read)?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    Ok(Json(api.domain.scope(&tenant_id, id).await?.into()))
}

/// A JSON object as the BSON document the domain stores.
fn object(field: &str, value: serde_json::Value) -> Result<Document, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid(field, "must be a JSON object"));
    }
    mongodb::bson::to_document(&value).map_err(|e| ApiError::invalid(field, e.to_string()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateScopeRequest {
    instance_id: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// What to scan, in the connector's own terms (handed to it as `scope.json`): at most 64 KiB
    /// as BSON and 32 levels deep (with the body), no key empty, starting with `$` or holding
    /// `.` or NUL.
    #[schema(value_type = Object)]
    scope: serde_json::Value,
    /// The run budget, 1 to 86400 seconds (default 3600).
    #[serde(default)]
    max_runtime_seconds: Option<i64>,
    /// See the scope's `schedule`; absent: the scope runs only on request.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schedule: Option<Schedule>,
}

/// Creates a scope of one of the tenant's instances.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/scopes", tag = "scopes",
    params(("tenant_id" = String, Path)), request_body = CreateScopeRequest, security(("bearer" = [])),
    responses((status = 201, body = ScopeView), (status = 404, body = ErrorBody)))]
pub(crate) async fn create(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<ScopeView>), ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let body: CreateScopeRequest = body.parse()?;
    check_tenant(&ctx, &tenant_id)?;
    let instance_id = object_id("instance_id", &body.instance_id)?;
    let scope_doc = object("scope", body.scope)?;
    let budget = Budget {
        max_runtime_seconds: body
            .max_runtime_seconds
            .unwrap_or(Budget::default().max_runtime_seconds),
    };
    if let Some(schedule) = &body.schedule {
        schedule.validate()?;
    }
    let instance = api.domain.instance(&tenant_id, instance_id).await?;
    let mut scope = ScanScope::new(&instance, &body.name, scope_doc, budget)
        .map_err(|e| rename_budget_field(e.into()))?;
    scope.schedule = body.schedule;
    let detail = doc! {
        "name": &scope.name,
        "instance_id": instance_id.to_hex(),
        "schedule": schedule_value(scope.schedule.as_ref()),
    };
    api.audit
        .around(
            &ctx,
            scope_action("scope.create", &tenant_id, scope.id, None, detail),
            async {
                api.domain.insert_scope(&scope).await?;
                Ok(((), Completion::new()))
            },
        )
        .await?;
    let stored = api.domain.scope(&tenant_id, scope.id).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// The domain names the budget `budget.max_runtime_seconds`; the API's body has it flat.
fn rename_budget_field(error: ApiError) -> ApiError {
    match error {
        ApiError::Invalid { field, reason } if field.starts_with("budget") => ApiError::Invalid {
            field: "max_runtime_seconds".into(),
            reason,
        },
        other => other,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateScopeRequest {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    scope: Option<serde_json::Value>,
    #[serde(default)]
    max_runtime_seconds: Option<i64>,
}

/// Edits a scope's name, what it scans, or its budget (its schedule has its own route).
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/scopes/{id}", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), request_body = UpdateScopeRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ScopeView), (status = 404, body = ErrorBody)))]
pub(crate) async fn update(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<ScopeView>, ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let body: UpdateScopeRequest = body.parse()?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let update = ScopeUpdate {
        name: body.name,
        scope: body.scope.map(|s| object("scope", s)).transpose()?,
        budget: body.max_runtime_seconds.map(|seconds| Budget {
            max_runtime_seconds: seconds,
        }),
    };
    let (before, entry) = before_edit(&api, "scope.update", &tenant_id, id, None).await?;
    let scope = api
        .audit
        .around(&ctx, entry, async {
            let after = api
                .domain
                .update_scope_settings(&tenant_id, id, &update)
                .await
                .map_err(|e| rename_budget_field(e.into()))?;
            let completion = Completion::new()
                .change("name", before.name.as_str(), after.name.as_str())
                .change("scope", before.scope, after.scope.clone())
                .change(
                    "max_runtime_seconds",
                    before.budget.max_runtime_seconds,
                    after.budget.max_runtime_seconds,
                );
            Ok((after, completion))
        })
        .await?;
    Ok(Json(scope.into()))
}

/// Deletes a scope (its runs stay, as history).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/scopes/{id}", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    api.audit
        .around(
            &ctx,
            scope_action("scope.delete", &tenant_id, id, None, doc! {}),
            async {
                api.domain.delete_scope(&tenant_id, id).await?;
                Ok(((), Completion::new()))
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleRequest {
    /// `{cadence: {type: interval, every_seconds} | {type: cron, expression, time_zone},
    /// catch_up?: {window_seconds, run: latest|all}, overlap?: skip|buffer_one|allow}`, or
    /// null to clear it (the scope then runs only on request).
    #[schema(value_type = Option<Object>)]
    schedule: Option<Schedule>,
}

/// Sets or clears a scope's schedule; its next slot is the first after now.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant_id}/scopes/{id}/schedule", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), request_body = ScheduleRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ScopeView), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_schedule(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<ScopeView>, ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let body: ScheduleRequest = body.parse()?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let (before, entry) = before_edit(&api, "scope.set_schedule", &tenant_id, id, None).await?;
    let scope = api
        .audit
        .around(&ctx, entry, async {
            let after = api
                .controls
                .set_schedule(&tenant_id, id, body.schedule)
                .await?;
            let completion = Completion::new().change(
                "schedule",
                schedule_value(before.schedule.as_ref()),
                schedule_value(after.schedule.as_ref()),
            );
            Ok((after, completion))
        })
        .await?;
    Ok(Json(scope.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseRequest {
    /// Why: shown on the scope while it is paused, and kept in the audit log.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    note: Option<String>,
}

/// Pauses a scope: its slots are skipped until it is resumed.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/scopes/{id}/pause", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), request_body = PauseRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ScopeView), (status = 404, body = ErrorBody)))]
pub(crate) async fn pause(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<ScopeView>, ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let body: PauseRequest = body.parse()?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let note = body
        .note
        .as_deref()
        .map(super::reason)
        .transpose()
        .map_err(|_| {
            ApiError::invalid(
                "note",
                "must be 1 to 500 characters on one line, without control characters or \
                 bidirectional marks",
            )
        })?;
    let (before, entry) = before_edit(&api, "scope.pause", &tenant_id, id, note).await?;
    let scope = api
        .audit
        .around(&ctx, entry, async {
            let after = api
                .controls
                .pause(&tenant_id, id, note.map(str::to_string), Some(ctx.who()))
                .await?;
            let completion = pause_changes(&before, &after);
            Ok((after, completion))
        })
        .await?;
    Ok(Json(scope.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResumeResponse {
    pub scope: ScopeView,
    /// How many slots the pause skipped (recorded as skipped, `paused`).
    pub skipped_slots: u64,
}

/// Resumes a paused scope from the first slot after now.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/scopes/{id}/resume", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ResumeResponse), (status = 404, body = ErrorBody)))]
pub(crate) async fn resume(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<ResumeResponse>, ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let (before, entry) = before_edit(&api, "scope.resume", &tenant_id, id, None).await?;
    let (scope, skipped) = api
        .audit
        .around(&ctx, entry, async {
            let (after, skipped) = api.controls.resume(&tenant_id, id).await?;
            let completion =
                pause_changes(&before, &after).detail(doc! { "skipped_slots": skipped as i64 });
            Ok(((after, skipped), completion))
        })
        .await?;
    Ok(Json(ResumeResponse {
        scope: scope.into(),
        skipped_slots: skipped,
    }))
}

/// Starts a run of the scope now (`manual_api`), outside its schedule.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/scopes/{id}/trigger", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = RunView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn trigger(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let run = api
        .audit
        .around(
            &ctx,
            scope_action("scope.trigger", &tenant_id, id, None, doc! {}),
            async {
                let run = api
                    .controls
                    .trigger_now(&tenant_id, id, Some(ctx.who()))
                    .await?;
                let completion = Completion::new().detail(doc! { "run_id": run.id.to_hex() });
                Ok((run, completion))
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillRequest {
    /// RFC 3339: the first slot time covered.
    from: String,
    /// RFC 3339, not in the future: the last slot time covered (at most 1,000 slots).
    to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BackfillResponse {
    pub slots: Vec<BackfilledSlot>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BackfilledSlot {
    pub slot: String,
    pub run_id: String,
    /// False: the slot had run already (by the schedule or an earlier backfill).
    pub created: bool,
}

/// Runs every slot of the schedule in `[from, to]` once (a slot that ran is not run again).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/scopes/{id}/backfill", tag = "scopes",
    params(("tenant_id" = String, Path), ("id" = String, Path)), request_body = BackfillRequest,
    security(("bearer" = [])),
    responses((status = 202, body = BackfillResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn backfill(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<(StatusCode, Json<BackfillResponse>), ApiError> {
    ctx.require(Right::ActOnScopes)?;
    let body: BackfillRequest = body.parse()?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let from = instant("from", &body.from)?;
    let to = instant("to", &body.to)?;
    let detail = doc! { "from": &body.from, "to": &body.to };
    let done = api
        .audit
        .around(
            &ctx,
            scope_action("scope.backfill", &tenant_id, id, None, detail),
            async {
                let done = api.controls.backfill(&tenant_id, id, from, to).await?;
                let created = done.iter().filter(|d| d.created).count() as i64;
                let completion = Completion::new().detail(doc! { "runs_created": created });
                Ok((done, completion))
            },
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BackfillResponse {
            slots: done
                .into_iter()
                .map(|d| BackfilledSlot {
                    slot: time(d.slot),
                    run_id: d.run.id.to_hex(),
                    created: d.created,
                })
                .collect(),
        }),
    ))
}

/// A scope action's audit entry, before the action.
fn scope_action<'a>(
    action: &'static str,
    tenant_id: &'a str,
    scope_id: ObjectId,
    reason: Option<&'a str>,
    detail: Document,
) -> Action<'a> {
    Action {
        action,
        target_kind: "scan_scope",
        target_id: scope_id.to_hex(),
        tenant_id: Some(tenant_id),
        reason,
        detail,
    }
}

/// What an edit of a scope starts from: the scope as it is, for the entry's old values, and the
/// edit's audit entry.
async fn before_edit<'a>(
    api: &AdminApi,
    action: &'static str,
    tenant_id: &'a str,
    scope_id: ObjectId,
    reason: Option<&'a str>,
) -> Result<(ScanScope, Action<'a>), ApiError> {
    let before = api.domain.scope(tenant_id, scope_id).await?;
    Ok((
        before,
        scope_action(action, tenant_id, scope_id, reason, doc! {}),
    ))
}

/// A schedule as the audit log records it: its stored form, or null.
fn schedule_value(schedule: Option<&Schedule>) -> Bson {
    schedule
        .and_then(|s| mongodb::bson::to_bson(s).ok())
        .unwrap_or(Bson::Null)
}

/// A pause or a resume's changes: whether the scope is paused, and its pause.
fn pause_changes(before: &ScanScope, after: &ScanScope) -> Completion {
    Completion::new()
        .change("paused", before.paused, after.paused)
        .change("pause", pause_value(before), pause_value(after))
}

/// A pause as the audit log records it: the note and who paused, or null.
fn pause_value(scope: &ScanScope) -> Bson {
    scope
        .pause
        .as_ref()
        .and_then(|p| mongodb::bson::to_bson(p).ok())
        .unwrap_or(Bson::Null)
}
