//! The OpenAPI 3.1 document, generated from the handlers' annotations and the request and
//! response types, so it cannot drift from the code; `docs/openapi.json` is checked against it
//! by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::page::Page;
use crate::routes::{self as r};
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
    paths(
        r::health::healthz, r::health::readyz, r::health::metrics, r::health::openapi,
        r::rematerialize::rematerialize,
        r::runs::list, r::runs::show, r::runs::create, r::runs::retry, r::runs::cancel,
        r::ingest::ingest,
        r::tenants::list, r::tenants::show, r::tenants::create, r::tenants::update,
        r::instances::list, r::instances::show, r::instances::create, r::instances::update,
        r::instances::delete,
        r::scopes::list, r::scopes::show, r::scopes::create, r::scopes::update, r::scopes::delete,
        r::scopes::set_schedule, r::scopes::pause, r::scopes::resume, r::scopes::trigger,
        r::scopes::backfill,
        r::jobs::list, r::jobs::show, r::jobs::cancel, r::jobs::retry, r::jobs::bulk_cancel,
        r::jobs::bulk_retry,
        r::tokens::list, r::tokens::revoke, r::tokens::audit_log,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, RunView, TriggerView, CellView, TenantView, InstanceView,
        CredentialsRefView, ScopeView, JobView, TokenView, AuditView,
        Page<RunView>, Page<TenantView>, Page<InstanceView>, Page<ScopeView>, Page<JobView>,
        Page<AuditView>, Page<TokenView>,
    )),
    modifiers(&BearerAuth, &BodyRefusals, &Challenges),
)]
struct ApiDoc;

struct BearerAuth;

/// Every route that takes a body may refuse it whole: too large (413) or not JSON (415).
struct BodyRefusals;

impl Modify for BodyRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, ResponseBuilder, content::ContentBuilder};
        let refusal = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
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
    serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes")
}
