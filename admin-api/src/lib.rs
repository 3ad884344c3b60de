//! sv0 pipeline's admin API: what operators and CI act through. JSON over HTTP under `/api/v1`:
//! scan runs (list, detail, create, retry, cancel), rematerialize after a deploy, tenants,
//! connector instances, scan scopes and their schedules, graph ingest, and the queue's jobs
//! (search, cancel, retry, in bulk); `/healthz`, `/readyz`, `/metrics`, and the OpenAPI document
//! at `/api/v1/openapi.json`.
//!
//! It owns the `api_tokens` collection (bearer tokens, stored as digests, each with a role and
//! optionally limited to tenants and a lifetime) and `audit_log` (one entry per mutation,
//! written before it), the HTTP surface and its validation. It must not write
//! another crate's collections except through that crate's API (the domain's, the queue's, the
//! scheduler's controls), never stores or logs a token or a secret, and never answers bad input
//! with a 5xx: every refusal is a 4xx whose body names the field and the reason.

mod audit;
mod error;
mod extract;
mod metrics;
mod openapi;
mod page;
mod refusals;
mod roles;
mod routes;
mod tokens;
mod views;

use std::sync::Arc;

use axum::Router;
use mongodb::Database;
use prometheus_client::registry::Registry;
use sv0_domain::Domain;
use sv0_pipeline::Pipeline;
use sv0_queue::Queue;
use sv0_scheduler::controls::Controls;

pub use audit::{Action, Actor, AuditEntry, AuditFilter, AuditLog, Completion, PendingEntry};
pub use error::ApiError;
pub use metrics::ApiMetrics;
pub use openapi::openapi_json;
pub use roles::Role;
pub use tokens::{IssuedToken, MAX_TOKEN_TENANTS, NewToken, TokenInfo, Tokens};

/// The largest request body accepted: a graph ingest is the largest body the API takes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What every handler acts through.
#[derive(Clone)]
pub struct AdminApi {
    pub(crate) db: Database,
    /// The domain's and the queue's read and search calls the routes make; what starts, stops
    /// or changes a run goes through `pipeline` or `controls`.
    pub(crate) domain: Domain,
    pub(crate) queue: Queue,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) controls: Controls,
    pub(crate) tokens: Tokens,
    pub(crate) audit: AuditLog,
    pub(crate) metrics: ApiMetrics,
    pub(crate) refusals: refusals::Refusals,
    /// Everything `/metrics` shows: the API's own metrics and whatever the process registered.
    pub(crate) registry: Arc<Registry>,
    /// The OpenAPI document, built once.
    pub(crate) document: Arc<serde_json::Value>,
}

impl AdminApi {
    /// The API over `controls` (and the pipeline they carry), with its own collections in `db`;
    /// `metrics` must be registered in `registry`.
    pub fn new(
        db: &Database,
        controls: Controls,
        metrics: ApiMetrics,
        registry: Arc<Registry>,
    ) -> AdminApi {
        let audit = AuditLog::new(db);
        AdminApi {
            db: db.clone(),
            domain: controls.pipeline.domain().clone(),
            queue: controls.pipeline.queue().clone(),
            pipeline: controls.pipeline.clone(),
            tokens: Tokens::new(db),
            refusals: refusals::Refusals::new(audit.clone(), metrics.clone()),
            audit,
            controls,
            metrics,
            registry,
            document: Arc::new(openapi_json()),
        }
    }

    /// Creates the API's own indexes (idempotent; run at start-up).
    pub async fn ensure_indexes(&self) -> Result<(), mongodb::error::Error> {
        self.audit.ensure_indexes().await
    }

    /// Every route, with authentication, request ids, the body limit and the request metrics.
    pub fn router(self) -> Router {
        routes::router(Arc::new(self))
    }
}
