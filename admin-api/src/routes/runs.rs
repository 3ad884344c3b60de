//! Scan runs: list, detail (every cell), create (`manual_api`, `iac_lifecycle` only), retry,
//! cancel. A `ci` token reads deploy-gate runs only: the runs CI itself creates. A token
//! limited to tenants reaches their runs only; another tenant's run is "not found" to it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mongodb::bson::doc;
use serde::Deserialize;
use sv0_domain::{RunFilter, RunStatus, ScanRun, Trigger};
use sv0_pipeline::RunRequest;
use utoipa::{IntoParams, ToSchema};

use super::{check_tenant, object_id, optional_instant};
use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody, Params};
use crate::page::{self, Page};
use crate::roles::Right;
use crate::views::RunView;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunQuery {
    tenant_id: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `timeout` or `cancelled`.
    status: Option<String>,
    /// A trigger type: `scheduled`, `manual_api`, `iac_lifecycle`, `deploy_gate`, `retry`.
    trigger: Option<String>,
    scope_id: Option<String>,
    /// Runs created at or after this RFC 3339 time.
    created_from: Option<String>,
    /// Runs created before this RFC 3339 time.
    created_until: Option<String>,
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

/// Lists runs, newest first.
#[utoipa::path(get, path = "/api/v1/scan-runs", tag = "runs", params(RunQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<RunView>)))]
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Params(query): Params<RunQuery>,
) -> Result<Json<Page<RunView>>, ApiError> {
    ctx.require(Right::ReadDeployRuns)?;
    let mut trigger = query.trigger;
    if !ctx.caller.role.may(Right::Read) {
        match trigger.as_deref() {
            None | Some("deploy_gate") => trigger = Some("deploy_gate".into()),
            Some(_) => {
                return Err(ApiError::Forbidden {
                    role: ctx.caller.role.as_str(),
                    action: "read runs other than deploy-gate runs".into(),
                });
            }
        }
    }
    if let Some(tenant_id) = &query.tenant_id {
        ctx.require_tenant(tenant_id)?;
    }
    let filter = RunFilter {
        tenant_id: query.tenant_id,
        tenant_ids: ctx.tenant_limit().to_vec(),
        status: query.status.as_deref().map(run_status).transpose()?,
        trigger,
        scope_id: query
            .scope_id
            .as_deref()
            .map(|id| object_id("scope_id", id))
            .transpose()?,
        created_from: optional_instant("created_from", query.created_from.as_deref())?,
        created_until: optional_instant("created_until", query.created_until.as_deref())?,
    };
    let limit = page::limit(query.limit)?;
    let after = page::object_id_cursor(query.cursor.as_deref())?;
    let runs = api
        .domain
        .list_runs(&filter, after, i64::from(limit) + 1)
        .await?;
    Ok(Json(page::page(
        runs,
        limit,
        |r| r.id.to_hex(),
        RunView::from,
    )))
}

/// One run with every cell.
#[utoipa::path(get, path = "/api/v1/scan-runs/{id}", tag = "runs", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    ctx.require(Right::ReadDeployRuns)?;
    let run = readable_run(&api, &ctx, &id).await?;
    Ok(Json(run.into()))
}

/// A run the caller may read: a `ci` token sees deploy-gate runs only, a token limited to
/// tenants sees theirs only, and any other run is "not found" to it (not "forbidden": it is
/// not told which other runs exist).
async fn readable_run(api: &AdminApi, ctx: &Ctx, id: &str) -> Result<ScanRun, ApiError> {
    let run = reachable_run(api, ctx, id).await?;
    if !ctx.caller.role.may(Right::Read) && !matches!(run.trigger, Trigger::DeployGate { .. }) {
        return Err(ApiError::NotFound(format!("scan run {} not found", run.id)));
    }
    Ok(run)
}

/// A run of a tenant the caller's token reaches; any other is "not found".
async fn reachable_run(api: &AdminApi, ctx: &Ctx, id: &str) -> Result<ScanRun, ApiError> {
    let id = object_id("id", id)?;
    let run = api.domain.run_by_id(id).await?;
    if !ctx.sees(&run.tenant_id) {
        return Err(ApiError::NotFound(format!("scan run {id} not found")));
    }
    Ok(run)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRunRequest {
    tenant_id: String,
    scope_id: String,
    /// Read in two steps, so that a run of another trigger type is refused with the rule.
    #[schema(value_type = RunTriggerBody)]
    trigger: serde_json::Value,
}

/// Only these two may be created here; `requested_by` is the token's name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RunTriggerBody {
    ManualApi {},
    IacLifecycle {
        #[serde(default)]
        #[schema(min_length = 1, max_length = 200)]
        event: Option<String>,
    },
}

/// Creates a `manual_api` or `iac_lifecycle` run of a scope and enqueues its scan.
#[utoipa::path(post, path = "/api/v1/scan-runs", tag = "runs", request_body = CreateRunRequest,
    security(("bearer" = [])),
    responses((status = 201, body = RunView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn create(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    body: JsonBody,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    ctx.require(Right::ActOnRuns)?;
    let body: CreateRunRequest = body.parse()?;
    let trigger = match body.trigger.get("type").and_then(|t| t.as_str()) {
        Some("manual_api" | "iac_lifecycle") => {
            serde_json::from_value::<RunTriggerBody>(body.trigger)
                .map_err(|e| ApiError::invalid("trigger", e.to_string()))?
        }
        Some(other @ ("scheduled" | "deploy_gate" | "retry")) => {
            return Err(ApiError::invalid(
                "trigger.type",
                format!(
                    "{other} runs are not created here: only manual_api and iac_lifecycle are \
                     (retries through POST /scan-runs/{{id}}/retry, deploy_gate runs through \
                     POST /admin/rematerialize, scheduled runs by the scheduler)"
                ),
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "trigger.type",
                "must be manual_api or iac_lifecycle",
            ));
        }
    };
    let trigger = match trigger {
        RunTriggerBody::ManualApi {} => Trigger::ManualApi {
            requested_by: Some(ctx.who()),
        },
        RunTriggerBody::IacLifecycle { event } => {
            if let Some(event) = &event {
                super::text("trigger.event", event, 200)?;
            }
            Trigger::IacLifecycle { event }
        }
    };
    check_tenant(&ctx, &body.tenant_id)?;
    let scope_id = object_id("scope_id", &body.scope_id)?;
    let action = Action {
        action: "scan_run.create",
        target_kind: "scan_run",
        target_id: String::new(),
        tenant_id: Some(&body.tenant_id),
        reason: None,
        detail: doc! { "scope_id": scope_id.to_hex(), "trigger": trigger.type_name() },
    };
    let run = api
        .audit
        .around(&ctx, action, async {
            let run = api
                .pipeline
                .create_run(RunRequest {
                    tenant_id: body.tenant_id.clone(),
                    scope_id,
                    trigger,
                })
                .await?;
            let completion = Completion::new().target(run.id.to_hex());
            Ok((run, completion))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

/// A new run doing what a finished run did (`trigger.type = retry`, `retry_of`).
#[utoipa::path(post, path = "/api/v1/scan-runs/{id}/retry", tag = "runs", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 201, body = RunView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn retry(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    let run = act_on_run(&api, &ctx, &id, "scan_run.retry", async |original| {
        let run = api
            .pipeline
            .retry_run(&original.tenant_id, original.id)
            .await?;
        let completion = Completion::new().detail(doc! { "new_run_id": run.id.to_hex() });
        Ok((run, completion))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

/// Cancels a queued or running run and its jobs.
#[utoipa::path(post, path = "/api/v1/scan-runs/{id}/cancel", tag = "runs", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let run = act_on_run(&api, &ctx, &id, "scan_run.cancel", async |original| {
        let run = api
            .pipeline
            .cancel_run(&original.tenant_id, original.id)
            .await?;
        let completion =
            Completion::new().change("status", original.status.as_str(), run.status.as_str());
        Ok((run, completion))
    })
    .await?;
    Ok(Json(run.into()))
}

/// Acts on a run of the caller's reach under the action's audit entry; `act` is given the run
/// as it was.
async fn act_on_run<T>(
    api: &AdminApi,
    ctx: &Ctx,
    id: &str,
    action: &'static str,
    act: impl AsyncFnOnce(&ScanRun) -> Result<(T, Completion), ApiError>,
) -> Result<T, ApiError> {
    ctx.require(Right::ActOnRuns)?;
    let run = reachable_run(api, ctx, id).await?;
    let entry = Action {
        action,
        target_kind: "scan_run",
        target_id: run.id.to_hex(),
        tenant_id: Some(&run.tenant_id),
        reason: None,
        detail: doc! {},
    };
    api.audit.around(ctx, entry, act(&run)).await
}

fn run_status(name: &str) -> Result<RunStatus, ApiError> {
    [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| {
        ApiError::invalid(
            "status",
            "must be queued, running, succeeded, failed, timeout or cancelled",
        )
    })
}
