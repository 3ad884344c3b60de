//! The API's refusals and failures, and how each becomes a response: a status and a JSON body
//! `{"error": {"code", "message", "field"?}, "request_id"}`. Bad input is always a 4xx naming the
//! field; a 5xx means the database (or this code) failed, never the caller.

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sv0_domain::DomainError;
use sv0_pipeline::PipelineError;
use sv0_queue::QueueError;
use utoipa::ToSchema;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Input the caller can fix: the field and the rule.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// No bearer token, or not a live one of this API's: nothing more is said in the body. The
    /// `WWW-Authenticate` challenge tells "none sent" from "refused", and "expired" from the
    /// rest, which says no more than the caller knows already: only a token's own secret gets
    /// as far as "expired".
    #[error("a valid bearer token is required")]
    Unauthenticated { refusal: TokenRefusal },
    /// The token's role lacks the right.
    #[error("role {role} may not {action}")]
    Forbidden { role: &'static str, action: String },
    /// The request names a tenant the token is not limited to.
    #[error("this token is limited to tenants {}", tenants.join(", "))]
    OutsideTenants { tenants: Vec<String> },
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The database is away or asked to retry: the same request may succeed later.
    #[error("the database is unavailable; retry later")]
    Unavailable,
    /// The action's audit entry could not be written, so the action was not taken.
    #[error("the audit log could not be written, so nothing was done; retry later")]
    AuditUnavailable,
    /// Anything else: logged with its cause, answered without it.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::OutsideTenants { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable | ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid",
            ApiError::Unauthenticated { .. } => "unauthenticated",
            ApiError::Forbidden { .. } | ApiError::OutsideTenants { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable | ApiError::AuditUnavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// Why credentials or rights were refused, for a 401 or a 403.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        match self {
            ApiError::Unauthenticated { refusal } => Some(Refusal::Token(*refusal)),
            ApiError::Forbidden { .. } => Some(Refusal::Role),
            ApiError::OutsideTenants { .. } => Some(Refusal::Tenant),
            _ => None,
        }
    }

    /// The error body, stamped with the request's id.
    pub(crate) fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
                field: match self {
                    ApiError::Invalid { field, .. } => Some(field.clone()),
                    _ => None,
                },
            },
            request_id: request_id.to_string(),
        }
    }
}

/// Why a request's token was refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a token of ours: malformed, unknown, or the secret is wrong.
    Unknown,
    Revoked,
    Expired,
}

/// A refused request, as counted and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Token(TokenRefusal),
    /// The role lacks the right (403).
    Role,
    /// The token does not reach the tenant (403).
    Tenant,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Token(TokenRefusal::Missing) => "missing_token",
            Refusal::Token(TokenRefusal::Unknown) => "unknown_token",
            Refusal::Token(TokenRefusal::Revoked) => "revoked_token",
            Refusal::Token(TokenRefusal::Expired) => "expired_token",
            Refusal::Role => "role",
            Refusal::Tenant => "tenant",
        }
    }

    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::Token(_) => 401,
            Refusal::Role | Refusal::Tenant => 403,
        }
    }
}

/// Every error response's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The request's id, as in the `x-request-id` header and the API's log lines.
    pub request_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid`, `unauthenticated`, `forbidden`, `not_found`, `conflict`, `too_large`,
    /// `unsupported_media_type`, `unavailable` or `internal`.
    pub code: String,
    pub message: String,
    /// The field a validation error is about, as a dotted path (`schedule.cadence.every_seconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A handler's error travels as this response extension; the request-id layer writes the body,
/// so that every error carries the id of its request.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The protection space every 401's challenge names.
pub const REALM: &str = "sv0";

/// Renders an error with its request id (the request-id layer calls this). A 401 carries the
/// challenge HTTP requires of it, so that clients know to send a bearer token, and, when a
/// token was sent and refused, `invalid_token`, so that they know to get another rather than
/// retry it.
pub(crate) fn render(error: &ApiError, request_id: &str) -> Response {
    let mut response = (error.status(), Json(error.body(request_id))).into_response();
    if let ApiError::Unauthenticated { refusal } = error {
        let challenge = match refusal {
            TokenRefusal::Missing => format!("Bearer realm=\"{REALM}\""),
            TokenRefusal::Expired => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", \
                 error_description=\"the token has expired\""
            ),
            TokenRefusal::Unknown | TokenRefusal::Revoked => {
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"")
            }
        };
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
    }
    response
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> ApiError {
        match error {
            DomainError::Invalid { field, reason } => ApiError::Invalid { field, reason },
            // The tenant is the caller's own request: the message names what was not found.
            DomainError::NotFound { what, id, .. } => {
                ApiError::NotFound(format!("{what} {id} not found"))
            }
            DomainError::Conflict(message) => ApiError::Conflict(message),
            error if error.is_transient() => {
                tracing::warn!(%error, "database unavailable");
                ApiError::Unavailable
            }
            error => {
                tracing::error!(%error, "request failed");
                ApiError::Internal
            }
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> ApiError {
        match error {
            PipelineError::Domain(error) => error.into(),
            PipelineError::Queue(error) => error.into(),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> ApiError {
        match error {
            QueueError::InvalidFilter { field, reason } => ApiError::Invalid { field, reason },
            QueueError::Invalid(reason) => invalid_from_message(&reason),
            QueueError::Transient(error) => {
                tracing::warn!(%error, "database unavailable");
                ApiError::Unavailable
            }
            error => {
                tracing::error!(%error, "request failed");
                ApiError::Internal
            }
        }
    }
}

impl From<mongodb::error::Error> for ApiError {
    fn from(error: mongodb::error::Error) -> ApiError {
        QueueError::from(error).into()
    }
}

/// The queue's invalid-input messages read `field: reason`.
fn invalid_from_message(message: &str) -> ApiError {
    match message.split_once(": ") {
        Some((field, reason)) if !field.contains(' ') => ApiError::invalid(field, reason),
        _ => ApiError::invalid("body", message),
    }
}
