//! The routes, one file per resource, and what they share: id and time parsing, and the router
//! with its layers.

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
use axum::routing::{get, post, put};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;

use crate::AdminApi;
use crate::error::ApiError;
use crate::extract::request_layer;

pub(crate) fn router(api: Arc<AdminApi>) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(health::openapi))
        .route("/admin/rematerialize", post(rematerialize::rematerialize))
        .route("/scan-runs", get(runs::list).post(runs::create))
        .route("/scan-runs/{id}", get(runs::show))
        .route("/scan-runs/{id}/retry", post(runs::retry))
        .route("/scan-runs/{id}/cancel", post(runs::cancel))
        .route("/ingest/normalized-graph", post(ingest::ingest))
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/tenants/{tenant_id}",
            get(tenants::show).patch(tenants::update),
        )
        .route(
            "/tenants/{tenant_id}/instances",
            get(instances::list).post(instances::create),
        )
        .route(
            "/tenants/{tenant_id}/instances/{id}",
            get(instances::show)
                .patch(instances::update)
                .delete(instances::delete),
        )
        .route("/scopes", get(scopes::list))
        .route("/tenants/{tenant_id}/scopes", post(scopes::create))
        .route(
            "/tenants/{tenant_id}/scopes/{id}",
            get(scopes::show)
                .patch(scopes::update)
                .delete(scopes::delete),
        )
        .route(
            "/tenants/{tenant_id}/scopes/{id}/schedule",
            put(scopes::set_schedule),
        )
        .route(
            "/tenants/{tenant_id}/scopes/{id}/pause",
            post(scopes::pause),
        )
        .route(
            "/tenants/{tenant_id}/scopes/{id}/resume",
            post(scopes::resume),
        )
        .route(
            "/tenants/{tenant_id}/scopes/{id}/trigger",
            post(scopes::trigger),
        )
        .route(
            "/tenants/{tenant_id}/scopes/{id}/backfill",
            post(scopes::backfill),
        )
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/bulk/cancel", post(jobs::bulk_cancel))
        .route("/jobs/bulk/retry", post(jobs::bulk_retry))
        .route("/tokens", get(tokens::list))
        .route("/tokens/{id}/revoke", post(tokens::revoke))
        .route("/audit-log", get(tokens::audit_log));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
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
