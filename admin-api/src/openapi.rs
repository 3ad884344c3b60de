//! The OpenAPI 3.1 document, generated from the handlers' annotations and the request and
//! response types, so it cannot drift from the code; `docs/openapi.json` is checked against it
//! by a test. Its paths are the router's own (`routes::routes`); this file adds the description,
//! the shared schemas, and the responses every route of a kind shares.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, Response, ResponseBuilder, content::ContentBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::page::Page;
use crate::views::{
    AuditView, CellView, CredentialsRefView, InstanceView, JobView, RunView, ScopeView, TenantView,
    TokenView, TriggerView,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sv0 pipeline admin API",
        description = "What operators and CI act through: scan runs, rematerialize after a deploy, \
            tenants, connector instances, scan scopes and their schedules, graph ingest, and the \
            queue's jobs. Every route under /api/v1 takes `Authorization: Bearer <token>`; every \
            error body names the field and the reason; lists are keyset-paginated (`cursor`, `limit`).",
    ),
    components(schemas(
        ErrorBody, ErrorDetail, RunView, TriggerView, CellView, TenantView, InstanceView,
        CredentialsRefView, ScopeView, JobView, TokenView, AuditView,
        Page<RunView>, Page<TenantView>, Page<InstanceView>, Page<ScopeView>, Page<JobView>,
        Page<AuditView>, Page<TokenView>,
    )),
)]
struct ApiDoc;

/// Every route behind a token may refuse the token (401) or the right (403), and one that takes
/// input (path, query or body) may refuse it (400).
struct Refusals;

impl Modify for Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if operation.security.is_none() {
                    continue;
                }
                let takes_input = operation.request_body.is_some()
                    || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let responses = &mut operation.responses.responses;
                if takes_input {
                    responses.insert("400".into(), refusal("").into());
                }
                responses.insert("401".into(), refusal("").into());
                responses.insert("403".into(), refusal("").into());
            }
        }
    }
}

/// Every route that takes a body may refuse it whole: too large (413) or not JSON (415).
struct BodyRefusals;

impl Modify for BodyRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.post, &mut item.put, &mut item.patch]
                .into_iter()
                .flatten()
            {
                if operation.request_body.is_some() {
                    let responses = &mut operation.responses.responses;
                    responses.insert("413".into(), refusal("The body is too large").into());
                    responses.insert("415".into(), refusal("The body is not JSON").into());
                }
            }
        }
    }
}

/// A refusal's response: its body is an [`ErrorBody`].
fn refusal(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Every 401 carries a `WWW-Authenticate` challenge; the annotations cannot say so once for all.
struct Challenges;

impl Modify for Challenges {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ObjectBuilder, RefOr, Type};
        let challenge = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(format!(
                "`Bearer realm=\"{realm}\"`, with `error=\"invalid_token\"` when a token was \
                 sent and refused",
                realm = crate::error::REALM
            )))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(RefOr::T(response)) = operation.responses.responses.get_mut("401") {
                    response
                        .headers
                        .insert("WWW-Authenticate".into(), challenge.clone());
                }
            }
        }
    }
}

/// The scheme the routes' `security(("bearer" = []))` names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn openapi_json() -> serde_json::Value {
    let (_, paths) = crate::routes::routes().split_for_parts();
    let mut document = ApiDoc::openapi().merge_from(paths);
    // Applied here rather than in `#[openapi(modifiers(...))]`, which runs before the router's
    // paths are merged in; `Challenges` after `Refusals`, whose 401s it annotates.
    let modifiers: [&dyn Modify; 4] = [&BearerAuth, &Refusals, &BodyRefusals, &Challenges];
    for modifier in modifiers {
        modifier.modify(&mut document);
    }
    serde_json::to_value(document).expect("the OpenAPI document serializes")
}
