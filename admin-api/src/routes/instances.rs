//! Connector instances of a tenant: list, detail, create, edit, delete (refused while a scope
//! uses the instance). An instance names where its credentials live, never their values, and a
//! connector kind the deployment's registry has, never a program: what runs for a kind is the
//! deployment's configuration, out of every API caller's reach.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use serde::Deserialize;
use sv0_broker::{CredentialsRef, Provider};
use sv0_domain::{ConnectorInstance, InstanceStatus, InstanceUpdate};
use utoipa::{IntoParams, ToSchema};

use super::{check_tenant, tenant_path};
use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody, Params};
use crate::page::{self, Page};
use crate::roles::Right;
use crate::views::{InstanceView, enum_name};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InstanceQuery {
    cursor: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<u32>,
}

/// A tenant's connector instances, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/instances", tag = "instances",
    params(("tenant_id" = String, Path), InstanceQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<InstanceView>)))]
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(tenant_id): Path<String>,
    Params(query): Params<InstanceQuery>,
) -> Result<Json<Page<InstanceView>>, ApiError> {
    ctx.require(Right::Read)?;
    check_tenant(&ctx, &tenant_id)?;
    let limit = page::limit(query.limit)?;
    let after = page::object_id_cursor(query.cursor.as_deref())?;
    let instances = api
        .domain
        .list_instances(Some(&tenant_id), after, i64::from(limit) + 1)
        .await?;
    Ok(Json(page::page(
        instances,
        limit,
        |i| i.id.to_hex(),
        InstanceView::from,
    )))
}

/// One connector instance.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant_id}/instances/{id}", tag = "instances",
    params(("tenant_id" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = InstanceView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<Json<InstanceView>, ApiError> {
    ctx.require(Right::Read)?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    Ok(Json(api.domain.instance(&tenant_id, id).await?.into()))
}

/// Where an instance's credentials live.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialsRefBody {
    /// `env` or `azure_keyvault` (`aws_secretsmanager` is reserved, `op` refused at run time).
    #[schema(value_type = String)]
    provider: Provider,
    /// The connector-specific suffix, e.g. `AWS_PRIMARY`: never a path, never a tenant.
    #[serde(rename = "ref")]
    reference: String,
}

impl From<CredentialsRefBody> for CredentialsRef {
    fn from(body: CredentialsRefBody) -> CredentialsRef {
        CredentialsRef {
            provider: body.provider,
            reference: body.reference,
        }
    }
}

/// A new instance. Any other field is refused, `command` included: the program a kind runs is
/// set in the deployment's connector registry, not here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateInstanceRequest {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// The connector's kind (`demo`, `aws`, …): one the deployment's connector registry has
    /// (the file the workers and this API read); an unregistered kind is refused, naming the
    /// registered ones. Not editable later.
    kind: String,
    credentials_ref: CredentialsRefBody,
}

/// Creates an active connector instance of a registered kind.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant_id}/instances", tag = "instances",
    params(("tenant_id" = String, Path)), request_body = CreateInstanceRequest, security(("bearer" = [])),
    responses((status = 201, body = InstanceView), (status = 404, body = ErrorBody)))]
pub(crate) async fn create(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(tenant_id): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<InstanceView>), ApiError> {
    ctx.require(Right::ActOnInstances)?;
    let body: CreateInstanceRequest = body.parse()?;
    check_tenant(&ctx, &tenant_id)?;
    let instance = ConnectorInstance::new(
        &tenant_id,
        &body.name,
        &body.kind,
        body.credentials_ref.into(),
    )?;
    // Refused now rather than stored: every scan of an instance of a kind the workers do not
    // have would fail.
    api.pipeline
        .connectors()
        .kind(&instance.kind)
        .map_err(|unknown| ApiError::invalid("kind", unknown.to_string()))?;
    api.domain.tenant(&tenant_id).await?;
    let action = instance_action(
        "instance.create",
        &tenant_id,
        instance.id,
        instance_detail(&instance),
    );
    api.audit
        .around(&ctx, action, async {
            api.domain.insert_instance(&instance).await?;
            Ok(((), Completion::new()))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(instance.into())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateInstanceRequest {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[serde(default)]
    credentials_ref: Option<CredentialsRefBody>,
    /// `active` or `disabled` (a disabled instance's scopes do not run).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    status: Option<InstanceStatus>,
}

/// Edits an instance: only the fields given change (its kind never does).
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant_id}/instances/{id}", tag = "instances",
    params(("tenant_id" = String, Path), ("id" = String, Path)), request_body = UpdateInstanceRequest,
    security(("bearer" = [])),
    responses((status = 200, body = InstanceView), (status = 404, body = ErrorBody)))]
pub(crate) async fn update(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Json<InstanceView>, ApiError> {
    ctx.require(Right::ActOnInstances)?;
    let body: UpdateInstanceRequest = body.parse()?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    let update = InstanceUpdate {
        name: body.name,
        credentials_ref: body.credentials_ref.map(CredentialsRef::from),
        status: body.status,
    };
    let before = api.domain.instance(&tenant_id, id).await?;
    let action = instance_action("instance.update", &tenant_id, id, doc! {});
    let instance = api
        .audit
        .around(&ctx, action, async {
            let after = api.domain.update_instance(&tenant_id, id, &update).await?;
            let completion = instance_changes(&before, &after);
            Ok((after, completion))
        })
        .await?;
    Ok(Json(instance.into()))
}

/// An instance action's audit entry, before the action.
fn instance_action<'a>(
    action: &'static str,
    tenant_id: &'a str,
    instance_id: ObjectId,
    detail: Document,
) -> Action<'a> {
    Action {
        action,
        target_kind: "connector_instance",
        target_id: instance_id.to_hex(),
        tenant_id: Some(tenant_id),
        reason: None,
        detail,
    }
}

/// What an instance is, for the entries of its creation and deletion: the log must still say
/// what an instance was once it is gone.
fn instance_detail(instance: &ConnectorInstance) -> Document {
    doc! {
        "kind": &instance.kind,
        "name": &instance.name,
        "credentials_ref": credentials_ref_detail(&instance.credentials_ref),
    }
}

/// Where the credentials live, for the audit log: a provider and a ref are names, never
/// secret values, and the log must say where a changed instance now reads from.
fn credentials_ref_detail(credentials_ref: &CredentialsRef) -> Document {
    doc! {
        "provider": enum_name(&credentials_ref.provider),
        "ref": &credentials_ref.reference,
    }
}

/// Each field an edit changed, old and new. A credentials reference is a name, never a secret.
fn instance_changes(before: &ConnectorInstance, after: &ConnectorInstance) -> Completion {
    Completion::new()
        .change("name", before.name.as_str(), after.name.as_str())
        .change(
            "credentials_ref",
            credentials_ref_detail(&before.credentials_ref),
            credentials_ref_detail(&after.credentials_ref),
        )
        .change(
            "status",
            enum_name(&before.status),
            enum_name(&after.status),
        )
}

/// Deletes an instance no scope uses (409 while one does).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant_id}/instances/{id}", tag = "instances",
    params(("tenant_id" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path((tenant_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    ctx.require(Right::ActOnInstances)?;
    let (tenant_id, id) = tenant_path(&ctx, &tenant_id, &id)?;
    // Read first so that the log says what was deleted; an instance gone in between is a 404
    // from the delete, as it would have been anyway.
    let instance = api.domain.instance(&tenant_id, id).await?;
    let action = instance_action(
        "instance.delete",
        &tenant_id,
        id,
        instance_detail(&instance),
    );
    api.audit
        .around(&ctx, action, async {
            api.domain.delete_instance(&tenant_id, id).await?;
            Ok(((), Completion::new()))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
