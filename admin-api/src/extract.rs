//! What every request goes through before and after its handler, and the extractors that turn
//! a request into typed, validated input — each refusal an [`ApiError`] with the field named.
//!
//! - [`request_layer`]: gives the request the server's own id (`x-request-id` in the answer,
//!   in every log line of the request, every error body and every audit entry; a caller's own
//!   `x-request-id` is kept beside it, never instead of it, so that no caller picks the id an
//!   investigation follows), times it into the metrics, renders handler errors, and counts and
//!   audits refused credentials and rights.
//! - [`Ctx`]: the caller behind the bearer token (401 without a valid one), the tenants it may
//!   reach, and the request's ids.
//! - [`JsonBody`]: a JSON body, parsed into an exact shape once the caller's rights are checked
//!   (unknown fields refused, the failing field's path named; `application/json` required; the
//!   size bounded by the router's limit).
//! - [`Params`]: a query string of an exact shape.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::AdminApi;
use crate::audit::{ActedBy, Actor};
use crate::error::{ApiError, TokenRefusal, render};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::roles::Right;
use crate::tokens::{Caller, Verdict};

pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's ids, as the request layer set them.
#[derive(Debug, Clone)]
pub(crate) struct RequestId {
    /// The server's own.
    pub id: String,
    /// The caller's `x-request-id`, when it sent a plain one.
    pub caller: Option<String>,
}

/// Where the `Ctx` extractor leaves the caller it verified, for the request layer to name in
/// the audit entry of a refusal (a 403 is decided in a handler, after the layer let go of the
/// request).
#[derive(Clone, Default)]
struct CallerSlot(Arc<std::sync::OnceLock<Caller>>);

pub(crate) async fn request_layer(
    axum::extract::State(api): axum::extract::State<Arc<AdminApi>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = new_request_id();
    let caller_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_safe_request_id(v))
        .map(str::to_string);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    request.extensions_mut().insert(RequestId {
        id: id.clone(),
        caller: caller_id.clone(),
    });
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        caller_request_id = caller_id.as_deref().unwrap_or(""),
        %method,
        %route
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(error) = response.extensions().get::<ApiError>().cloned() {
        if let Some(refusal) = error.refusal() {
            api.refusals.note(
                refusal,
                slot.0.get(),
                crate::refusals::Request {
                    route: &route,
                    method: &method,
                    request_id: &id,
                    caller_request_id: caller_id.as_deref(),
                },
            );
        }
        response = render(&error, &id);
    } else if response.status().is_client_error() && response.headers().get(CONTENT_TYPE).is_none()
    {
        // axum's own refusals (no such route, a method not allowed) get our body too.
        let error = match response.status().as_u16() {
            404 => ApiError::NotFound("no such route".into()),
            405 => ApiError::invalid("method", "not allowed on this route"),
            413 => ApiError::TooLarge(crate::MAX_BODY_BYTES),
            _ => ApiError::invalid("request", "refused"),
        };
        let status = response.status();
        response = render(&error, &id);
        *response.status_mut() = status;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let status = response.status().as_u16();
    api.metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.clone(),
            status,
        })
        .inc();
    api.metrics
        .duration
        .get_or_create(&RouteLabels { route, method })
        .observe(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    response
}

/// A caller's own request id is kept when it is short and plain (it ends up in log lines).
fn is_safe_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// The authenticated caller and the request's ids.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub caller: Caller,
    pub request_id: String,
    /// The caller's own `x-request-id`, recorded beside the server's.
    pub caller_request_id: Option<String>,
}

impl Ctx {
    /// Refuses (403) a caller whose role lacks `right`.
    pub fn require(&self, right: Right) -> Result<(), ApiError> {
        if self.caller.role.may(right) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.caller.role.as_str(),
                action: right.describe().to_string(),
            })
        }
    }

    /// Whether the caller's token reaches `tenant_id`'s things.
    pub fn sees(&self, tenant_id: &str) -> bool {
        self.caller.tenants.is_empty() || self.caller.tenants.iter().any(|t| t == tenant_id)
    }

    /// Whether it reaches a job's: a job without a tenant belongs to no token's tenants.
    pub fn sees_job(&self, tenant_id: Option<&str>) -> bool {
        match tenant_id {
            Some(tenant_id) => self.sees(tenant_id),
            None => self.caller.tenants.is_empty(),
        }
    }

    /// Refuses (403) a tenant the caller named that its token does not reach. Things found by
    /// their own id are answered "not found" instead (see the routes), so that a token learns
    /// nothing of another tenant's ids.
    pub fn require_tenant(&self, tenant_id: &str) -> Result<(), ApiError> {
        if self.sees(tenant_id) {
            Ok(())
        } else {
            Err(ApiError::OutsideTenants {
                tenants: self.caller.tenants.clone(),
            })
        }
    }

    /// Refuses (403) a token limited to tenants an action over every tenant (creating a
    /// tenant, managing tokens).
    pub fn require_every_tenant(&self, action: &str) -> Result<(), ApiError> {
        if self.caller.tenants.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                role: self.caller.role.as_str(),
                action: format!("{action} with a token limited to tenants"),
            })
        }
    }

    /// The tenants a list is limited to: empty for every tenant.
    pub fn tenant_limit(&self) -> &[String] {
        &self.caller.tenants
    }

    /// Who did it, as recorded on runs and pauses: the token's name.
    pub fn who(&self) -> String {
        self.caller.name.clone()
    }
}

impl<'a> From<&'a Ctx> for ActedBy<'a> {
    fn from(ctx: &'a Ctx) -> ActedBy<'a> {
        ActedBy {
            actor: Actor {
                token_id: ctx.caller.token_id.clone(),
                name: ctx.caller.name.clone(),
                role: ctx.caller.role.as_str().to_string(),
            },
            request_id: &ctx.request_id,
            caller_request_id: ctx.caller_request_id.as_deref(),
        }
    }
}

impl FromRequestParts<Arc<AdminApi>> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<AdminApi>) -> Result<Ctx, ApiError> {
        let ids = parts.extensions.get::<RequestId>().cloned();
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthenticated {
                refusal: TokenRefusal::Missing,
            })?;
        let verdict = api.tokens.verify(presented).await.map_err(|error| {
            tracing::warn!(%error, "token lookup failed");
            ApiError::Unavailable
        })?;
        let caller = match verdict {
            Verdict::Valid(caller) => caller,
            Verdict::Unknown => return Err(unauthenticated(TokenRefusal::Unknown)),
            Verdict::Revoked => return Err(unauthenticated(TokenRefusal::Revoked)),
            Verdict::Expired => return Err(unauthenticated(TokenRefusal::Expired)),
        };
        tracing::debug!(
            token_id = caller.token_id,
            role = caller.role.as_str(),
            "caller"
        );
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            let _ = slot.0.set(caller.clone());
        }
        Ok(Ctx {
            caller,
            request_id: ids.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            caller_request_id: ids.and_then(|i| i.caller),
        })
    }
}

fn unauthenticated(refusal: TokenRefusal) -> ApiError {
    ApiError::Unauthenticated { refusal }
}

/// The token of an `Authorization: Bearer <token>` header. HTTP's auth schemes are
/// case-insensitive, and clients do send `bearer`; any other scheme, or none, is no token.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A request's body, read but not yet parsed: a handler parses it after the caller's rights are
/// checked, so that a caller without the right learns nothing from a validation error. Only
/// its size is checked on reading (413 past the router's limit).
pub(crate) struct JsonBody {
    json: bool,
    bytes: Bytes,
}

impl FromRequest<Arc<AdminApi>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, api: &Arc<AdminApi>) -> Result<JsonBody, ApiError> {
        let json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let bytes = Bytes::from_request(request, api)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(crate::MAX_BODY_BYTES)
                } else {
                    ApiError::invalid("body", rejection.body_text())
                }
            })?;
        Ok(JsonBody { json, bytes })
    }
}

impl JsonBody {
    /// The body as a `T`: sent as `application/json` (else 415), of exactly `T`'s shape
    /// (unknown fields refused), the failing field's path named.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.json {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON, sent as `content-type: application/json`".into(),
            ));
        }
        parse_json(&self.bytes)
    }
}

/// Deserializes `bytes`, naming the path of the field that failed.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Measured on the bytes first: parsing recurses per level.
    if let Some(path) = sv0_domain::limits::json_text_too_deep(bytes) {
        let field = if path.is_empty() { "body".into() } else { path };
        return Err(ApiError::invalid(
            field,
            format!(
                "nested deeper than {} levels",
                sv0_domain::limits::MAX_DEPTH
            ),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        // A missing field is reported at its parent's path: name the field itself.
        let missing = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_string(),
            (".", None) => "body".to_string(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (_, None) => path,
        };
        ApiError::invalid(field, reason)
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::invalid("body", error.to_string()))?;
    Ok(value)
}

/// A query string of type `T`.
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<AdminApi>> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<AdminApi>,
    ) -> Result<Params<T>, ApiError> {
        Query::<T>::from_request_parts(parts, api)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let reason = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::invalid("query", reason)
            })
    }
}
