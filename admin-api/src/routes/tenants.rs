//! Tenants: list, detail, create, and status (suspend, reactivate). Reading is for every role
//! that reads; changing is `super_admin`'s. A token limited to tenants lists and reads those
//! only, may change their status, and creates none.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mongodb::bson::doc;
use serde::Deserialize;
use sv0_domain::{Tenant, TenantStatus};
use utoipa::{IntoParams, ToSchema};

use super::check_tenant;
use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody, Params};
use crate::page::{self, Page};
use crate::roles::Right;
use crate::views::{TenantView, enum_name};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantQuery {
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

/// Lists tenants by id.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<TenantView>)))]
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Params(query): Params<TenantQuery>,
) -> Result<Json<Page<TenantView>>, ApiError> {
    ctx.require(Right::Read)?;
    let limit = page::limit(query.limit)?;
    if let Some(cursor) = &query.cursor {
        sv0_domain::validate_tenant_id(cursor)
            .map_err(|_| ApiError::invalid("cursor", "not a cursor this API returned"))?;
    }
    let tenants = if ctx.tenant_limit().is_empty() {
        api.domain
            .list_tenants(query.cursor.as_deref(), i64::from(limit) + 1)
            .await?
    } else {
        reachable_tenants(&api, &ctx, query.cursor.as_deref(), limit as usize + 1).await?
    };
    Ok(Json(page::page(
        tenants,
        limit,
        |t| t.id.clone(),
        TenantView::from,
    )))
}

/// A page of the tenants a limited token reaches, in id order after `after`: at most
/// [`crate::MAX_TOKEN_TENANTS`] reads, since that is all a token can name.
async fn reachable_tenants(
    api: &AdminApi,
    ctx: &Ctx,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Tenant>, ApiError> {
    let mut ids: Vec<&String> = ctx
        .tenant_limit()
        .iter()
        .filter(|id| after.is_none_or(|after| id.as_str() > after))
        .collect();
    ids.sort();
    ids.dedup();
    let mut tenants = Vec::new();
    for id in ids {
        if tenants.len() == limit {
            break;
        }
        match api.domain.tenant(id).await {
            Ok(tenant) => tenants.push(tenant),
            Err(sv0_domain::DomainError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(tenants)
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}", tag = "tenants", params(("tenant_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(tenant_id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    ctx.require(Right::Read)?;
    check_tenant(&ctx, &tenant_id)?;
    Ok(Json(api.domain.tenant(&tenant_id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenantRequest {
    /// Lower-case letters, digits and `-`: it becomes part of credential lookups.
    id: String,
    name: String,
}

/// Creates an active tenant (409 if the id is taken).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenantRequest,
    security(("bearer" = [])),
    responses((status = 201, body = TenantView), (status = 409, body = ErrorBody)))]
pub(crate) async fn create(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    body: JsonBody,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    ctx.require(Right::ManageTenants)?;
    ctx.require_every_tenant("create tenants")?;
    let body: CreateTenantRequest = body.parse()?;
    let tenant = Tenant::new(&body.id, &body.name)?;
    let action = Action {
        action: "tenant.create",
        target_kind: "tenant",
        target_id: tenant.id.clone(),
        tenant_id: Some(&tenant.id),
        reason: None,
        detail: doc! { "name": &tenant.name },
    };
    api.audit
        .around(&ctx, action, async {
            api.domain.insert_tenant(&tenant).await?;
            Ok(((), Completion::new()))
        })
        .await?;
    let stored = api.domain.tenant(&tenant.id).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateTenantRequest {
    /// `active` or `suspended` (nothing new runs for a suspended tenant).
    #[schema(value_type = String)]
    status: TenantStatus,
}

/// Suspends or reactivates a tenant.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}", tag = "tenants", params(("tenant_id" = String, Path)),
    request_body = UpdateTenantRequest, security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = ErrorBody)))]
pub(crate) async fn update(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<Json<TenantView>, ApiError> {
    ctx.require(Right::ManageTenants)?;
    let body: UpdateTenantRequest = body.parse()?;
    check_tenant(&ctx, &tenant_id)?;
    let before = api.domain.tenant(&tenant_id).await?;
    let action = Action {
        action: "tenant.set_status",
        target_kind: "tenant",
        target_id: tenant_id.clone(),
        tenant_id: Some(&tenant_id),
        reason: None,
        detail: doc! {},
    };
    let tenant = api
        .audit
        .around(&ctx, action, async {
            let tenant = api
                .domain
                .set_tenant_status(&tenant_id, body.status)
                .await?;
            let completion = Completion::new().change(
                "status",
                enum_name(&before.status),
                enum_name(&tenant.status),
            );
            Ok((tenant, completion))
        })
        .await?;
    Ok(Json(tenant.into()))
}
