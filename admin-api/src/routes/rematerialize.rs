//! `POST /api/v1/admin/rematerialize`: what CI calls after a deploy. One `deploy_gate` run per
//! tenant, idempotent per `(deploy id, tenant)`: a retried CI step gets the same runs back and
//! creates nothing. A token limited to tenants rematerializes those tenants only: by default its
//! active ones, and naming another is a 403.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mongodb::bson::doc;
use serde::{Deserialize, Serialize};
use sv0_domain::{DomainError, Materializer, TenantStatus};
use sv0_pipeline::Deploy;
use utoipa::ToSchema;

use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody};
use crate::roles::Right;
use crate::views::{RunView, enum_name};

/// The most tenants one request may name.
const MAX_TENANTS: usize = 1_000;

/// The most stages one request may name: there are two, and naming one twice is harmless.
const MAX_STAGES: usize = 8;

/// The longest deploy id or commit.
const MAX_DEPLOY_CHARS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RematerializeRequest {
    /// `chains` and/or `stitched_paths`.
    #[schema(value_type = Vec<String>, max_items = 8)]
    stages: Vec<Materializer>,
    /// Default: every active tenant.
    #[serde(default)]
    #[schema(max_items = 1000)]
    tenants: Option<Vec<String>>,
    /// The deploy this is for; without one, the request id stands in (and a retried request
    /// creates new runs).
    #[serde(default)]
    deploy: Option<DeployBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployBody {
    /// 1 to 200 characters: runs are idempotent per (deploy id, tenant).
    #[schema(min_length = 1, max_length = 200)]
    id: String,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    commit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RematerializeResponse {
    pub deploy_id: String,
    pub runs: Vec<RunView>,
}

/// One deploy-gate run per tenant, rebuilding `stages`.
#[utoipa::path(post, path = "/api/v1/admin/rematerialize", tag = "runs",
    request_body = RematerializeRequest, security(("bearer" = [])),
    responses((status = 202, body = RematerializeResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn rematerialize(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    body: JsonBody,
) -> Result<(StatusCode, Json<RematerializeResponse>), ApiError> {
    ctx.require(Right::Rematerialize)?;
    let body: RematerializeRequest = body.parse()?;
    if let Some(tenants) = &body.tenants {
        if tenants.is_empty() || tenants.len() > MAX_TENANTS {
            return Err(ApiError::invalid(
                "tenants",
                format!("name 1 to {MAX_TENANTS} tenants, or leave it out for every active tenant"),
            ));
        }
        for (i, tenant) in tenants.iter().enumerate() {
            sv0_domain::validate_tenant_id(tenant)
                .map_err(|e| ApiError::invalid(format!("tenants[{i}]"), e.to_string()))?;
            ctx.require_tenant(tenant)?;
        }
    }
    if body.stages.len() > MAX_STAGES {
        return Err(ApiError::invalid(
            "stages",
            format!("name at most {MAX_STAGES} stages"),
        ));
    }
    let deploy = match body.deploy {
        Some(d) => {
            super::text("deploy.id", &d.id, MAX_DEPLOY_CHARS)?;
            if let Some(commit) = &d.commit {
                super::text("deploy.commit", commit, MAX_DEPLOY_CHARS)?;
            }
            Deploy {
                id: d.id,
                commit: d.commit,
            }
        }
        None => Deploy {
            id: format!("request-{}", ctx.request_id),
            commit: None,
        },
    };
    let tenants = match body.tenants {
        Some(tenants) => Some(tenants),
        None if !ctx.tenant_limit().is_empty() => Some(active_of(&api, ctx.tenant_limit()).await?),
        None => None,
    };
    let action = Action {
        action: "rematerialize",
        target_kind: "deploy",
        target_id: deploy.id.clone(),
        tenant_id: None,
        reason: None,
        detail: doc! {
            "stages": body.stages.iter().map(enum_name).collect::<Vec<_>>(),
            "tenants": tenants.clone(),
            "commit": deploy.commit.clone(),
        },
    };
    let runs = api
        .audit
        .around(&ctx, action, async {
            let runs = api
                .pipeline
                .rematerialize(&body.stages, tenants.as_deref(), &deploy)
                .await?;
            let ids: Vec<String> = runs.iter().map(|r| r.id.to_hex()).collect();
            Ok((runs, Completion::new().detail(doc! { "runs": ids })))
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RematerializeResponse {
            deploy_id: deploy.id,
            runs: runs.into_iter().map(RunView::from).collect(),
        }),
    ))
}

/// Of `tenants`, the active ones: what "every active tenant" means to a token limited to them.
async fn active_of(api: &AdminApi, tenants: &[String]) -> Result<Vec<String>, ApiError> {
    let mut active = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        match api.domain.tenant(tenant_id).await {
            Ok(tenant) if tenant.status == TenantStatus::Active => active.push(tenant.id),
            Ok(_) | Err(DomainError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(active)
}
