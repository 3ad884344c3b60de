//! Liveness, readiness, metrics and the OpenAPI document: no token needed (a probe or a
//! scraper has none), and nothing in them is secret.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use mongodb::bson::doc;

use crate::AdminApi;
use crate::error::{ApiError, render};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Up")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The database answers: the API can serve.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The database answers"),
    (status = 503, description = "The database does not answer", body = crate::error::ErrorBody)))]
pub(crate) async fn readyz(State(api): State<Arc<AdminApi>>) -> Result<&'static str, ApiError> {
    api.db
        .run_command(doc! { "ping": 1 })
        .await
        .map_err(|error| {
            tracing::warn!(%error, "readiness: the database does not answer");
            ApiError::Unavailable
        })?;
    Ok("ready")
}

/// Prometheus metrics, in the text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format")))]
pub(crate) async fn metrics(State(api): State<Arc<AdminApi>>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &api.registry).is_err() {
        return ApiError::Internal.into_response();
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI document")))]
pub(crate) async fn openapi(State(api): State<Arc<AdminApi>>) -> Json<serde_json::Value> {
    Json(api.document.as_ref().clone())
}

/// Any path that is not a route (outside the request layer, so it renders its own body).
pub(crate) async fn no_route() -> Response {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let mut response = render(
        &ApiError::NotFound("no such route".into()),
        &hex::encode(bytes),
    );
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
