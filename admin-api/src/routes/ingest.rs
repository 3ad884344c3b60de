//! `POST /api/v1/ingest/normalized-graph`: a graph pushed from outside becomes a synthesised
//! `manual_api` run whose pipeline starts at `sync_ingestion`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mongodb::bson::doc;
use serde::Deserialize;
use sv0_domain::Graph;
use utoipa::ToSchema;

use super::check_tenant;
use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody};
use crate::roles::Right;
use crate::views::RunView;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IngestRequest {
    tenant_id: String,
    /// Where the graph comes from: 1 to 64 letters, digits, `_`, `-` or `.`. The graph is that
    /// source's full state: entities of the source it does not hold are marked gone.
    #[schema(min_length = 1, max_length = 64)]
    source: String,
    /// `{entities: [{id, type, name, …}], edges: [{from, to, type}]}`, as a connector writes
    /// `graph.json`.
    #[schema(value_type = Object)]
    graph: Graph,
}

/// Ingests a normalized graph as a new run.
#[utoipa::path(post, path = "/api/v1/ingest/normalized-graph", tag = "runs", request_body = IngestRequest,
    security(("bearer" = [])),
    responses((status = 202, body = RunView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn ingest(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    body: JsonBody,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    ctx.require(Right::ActOnRuns)?;
    let body: IngestRequest = body.parse()?;
    check_tenant(&ctx, &body.tenant_id)?;
    let entities = body.graph.entities.len() as i64;
    let edges = body.graph.edges.len() as i64;
    let IngestRequest {
        tenant_id,
        source,
        graph,
    } = body;
    let action = Action {
        action: "graph.ingest",
        target_kind: "scan_run",
        target_id: String::new(),
        tenant_id: Some(&tenant_id),
        reason: None,
        detail: doc! { "source": &source, "entities": entities, "edges": edges },
    };
    let run = api
        .audit
        .around(&ctx, action, async {
            let run = api
                .pipeline
                .ingest_graph(&tenant_id, &source, graph)
                .await?;
            Ok((run.clone(), Completion::new().target(run.id.to_hex())))
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}
