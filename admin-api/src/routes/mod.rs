//! The routes, one file per resource, and what they share: the one list of routes (which the
//! router and the OpenAPI document's paths are both built from), the router with its layers, and
//! id and time parsing.

pub(crate) mod health;
pub(crate) mod ingest;
pub(crate) mod instances;
pub(crate) mod jobs;
pub(crate) mod rematerialize;
pub(crate) mod runs;
pub(crate) mod scopes;
pub(crate) mod tenants;
pub(crate) mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminApi;
use crate::error::ApiError;
use crate::extract::{Ctx, request_layer};

/// Every route, each registered once: its method and path come from the handler's
/// `#[utoipa::path]`, so the router and the document's paths are the same list. Handlers that
/// share a path go in one `routes!`, and only they do: one `routes!` given several paths serves
/// each of its handlers on all of them.
pub(crate) fn routes() -> OpenApiRouter<Arc<AdminApi>> {
    OpenApiRouter::default()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .routes(routes!(rematerialize::rematerialize))
        .routes(routes!(runs::list, runs::create))
        .routes(routes!(runs::show))
        .routes(routes!(runs::retry))
        .routes(routes!(runs::cancel))
        .routes(routes!(ingest::ingest))
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::show, tenants::update))
        .routes(routes!(instances::list, instances::create))
        .routes(routes!(
            instances::show,
            instances::update,
            instances::delete
        ))
        .routes(routes!(scopes::list))
        .routes(routes!(scopes::create))
        .routes(routes!(scopes::show, scopes::update, scopes::delete))
        .routes(routes!(scopes::set_schedule))
        .routes(routes!(scopes::pause))
        .routes(routes!(scopes::resume))
        .routes(routes!(scopes::trigger))
        .routes(routes!(scopes::backfill))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::bulk_cancel))
        .routes(routes!(jobs::bulk_retry))
        .routes(routes!(tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(tokens::audit_log))
}

pub(crate) fn router(api: Arc<AdminApi>) -> Router {
    // The document half is not needed here: `AdminApi::document` holds it, built once.
    let (routes, _) = routes().split_for_parts();
    routes
        .fallback(health::no_route)
        // After routing, so that the layer sees the matched route template for its metrics.
        .route_layer(middleware::from_fn_with_state(api.clone(), request_layer))
        .layer(DefaultBodyLimit::max(crate::MAX_BODY_BYTES))
        .with_state(api)
}

/// An id in a path or body: 24 hex digits.
pub(crate) fn object_id(field: &str, value: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse_str(value)
        .map_err(|_| ApiError::invalid(field, "must be an id of 24 hex digits"))
}

/// A tenant a request names: a valid id (400 otherwise) that the caller's token reaches (403).
pub(crate) fn check_tenant(ctx: &Ctx, tenant_id: &str) -> Result<(), ApiError> {
    sv0_domain::validate_tenant_id(tenant_id)?;
    ctx.require_tenant(tenant_id)
}

/// The path of one of a tenant's things: a tenant the caller's token reaches, and an id.
pub(crate) fn tenant_path(
    ctx: &Ctx,
    tenant_id: &str,
    id: &str,
) -> Result<(String, ObjectId), ApiError> {
    check_tenant(ctx, tenant_id)?;
    Ok((tenant_id.to_string(), object_id("id", id)?))
}

/// A time in a query or body: RFC 3339 (`2026-11-29T13:00:00Z`).
pub(crate) fn instant(field: &str, value: &str) -> Result<DateTime, ApiError> {
    DateTime::parse_rfc3339_str(value).map_err(|_| {
        ApiError::invalid(field, "must be an RFC 3339 time, e.g. 2026-11-29T13:00:00Z")
    })
}

pub(crate) fn optional_instant(
    field: &str,
    value: Option<&str>,
) -> Result<Option<DateTime>, ApiError> {
    value.map(|v| instant(field, v)).transpose()
}

/// A reason an action records in the audit log: 1 to 500 characters on one line, shown as
/// written (no control characters, no bidirectional marks).
pub(crate) fn reason(value: &str) -> Result<&str, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > 500
        || trimmed.chars().any(sv0_domain::limits::is_forbidden_char)
    {
        return Err(ApiError::invalid(
            "reason",
            "must be 1 to 500 characters on one line, without control characters or \
             bidirectional marks",
        ));
    }
    Ok(trimmed)
}

/// Free text the caller gives as `field` (a deploy id, a commit, an event): 1 to `max`
/// characters, without control characters or bidirectional marks.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    sv0_domain::limits::check_text(field, value).map_err(ApiError::from)
}
