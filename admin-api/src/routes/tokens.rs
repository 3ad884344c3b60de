//! Tokens (list, revoke) and the audit log: `super_admin` only. Tokens are created with
//! `sv0 token create`, next to the database, so that the first one needs no API. Tokens are
//! fleet-wide, so a token limited to tenants manages none; it reads the audit entries of its
//! tenants only.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use mongodb::bson::doc;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AdminApi;
use crate::audit::{Action, AuditFilter, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, Params};
use crate::page::{self, Page};
use crate::roles::Right;
use crate::tokens::TokenError;
use crate::views::{AuditView, TokenView};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenQuery {
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

/// The tokens, oldest first: id, name, role and dates; never the token.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(TokenQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<TokenView>)))]
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Params(query): Params<TokenQuery>,
) -> Result<Json<Page<TokenView>>, ApiError> {
    ctx.require(Right::ManageTokens)?;
    ctx.require_every_tenant("manage tokens")?;
    let limit = page::limit(query.limit)?;
    let after = page::object_id_cursor(query.cursor.as_deref())?;
    let tokens = api
        .tokens
        .list(after, i64::from(limit) + 1)
        .await
        .map_err(token_error)?;
    Ok(Json(page::page(
        tokens,
        limit,
        |t| t.id.clone(),
        TokenView::from,
    )))
}

/// Revokes a token: refused from the next request on.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "tokens", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    ctx.require(Right::ManageTokens)?;
    ctx.require_every_tenant("manage tokens")?;
    super::object_id("id", &id)?;
    let action = Action {
        action: "token.revoke",
        target_kind: "token",
        target_id: id.clone(),
        tenant_id: None,
        reason: None,
        detail: doc! {},
    };
    let token = api
        .audit
        .around(&ctx, action, async {
            let token = api.tokens.revoke(&id).await.map_err(token_error)?;
            let completion = Completion::new().detail(doc! { "name": &token.name });
            Ok((token, completion))
        })
        .await?;
    Ok(Json(token.into()))
}

pub(crate) fn token_error(error: TokenError) -> ApiError {
    match error {
        TokenError::Invalid { field, reason } => ApiError::invalid(field, reason),
        TokenError::NotFound(id) => ApiError::NotFound(format!("token {id} not found")),
        TokenError::Storage(error) => error.into(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only entries about this target (a run, scope, instance, job or token id, a tenant id).
    target_id: Option<String>,
    /// Only entries of this tenant.
    tenant_id: Option<String>,
    /// Only entries of this action (`scope.pause`, `token.create`, `auth.refused`, …).
    action: Option<String>,
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "tokens", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<AuditView>)))]
pub(crate) async fn audit_log(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Params(query): Params<AuditQuery>,
) -> Result<Json<Page<AuditView>>, ApiError> {
    ctx.require(Right::ManageTokens)?;
    for (field, value, max) in [
        ("target_id", &query.target_id, 200),
        ("tenant_id", &query.tenant_id, 64),
        ("action", &query.action, 64),
    ] {
        if let Some(value) = value {
            super::text(field, value, max)?;
        }
    }
    if let Some(tenant_id) = &query.tenant_id {
        ctx.require_tenant(tenant_id)?;
    }
    let limit = page::limit(query.limit)?;
    let after = page::object_id_cursor(query.cursor.as_deref())?;
    let filter = AuditFilter {
        target_id: query.target_id,
        tenant_id: query.tenant_id,
        tenant_ids: ctx.tenant_limit().to_vec(),
        action: query.action,
    };
    let entries = api.audit.list(&filter, after, i64::from(limit) + 1).await?;
    Ok(Json(page::page(
        entries,
        limit,
        |e| e.id.to_hex(),
        AuditView::from,
    )))
}
