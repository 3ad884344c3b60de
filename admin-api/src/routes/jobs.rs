//! The queue's jobs: list and search (kind, status, tenant, group, created range, and
//! `payload.<path>` equality, bounded), detail, cancel, retry of failed, dead or cancelled jobs,
//! and the same two actions in bulk — by ids (at most 1,000) or by filter, with a required reason
//! kept in the audit log.
//!
//! A bulk action is a dry run unless it says otherwise, and a real one is taken only when it is
//! narrowed (ids, or a tenant, kind or status) or names the count its dry run returned: a created
//! range alone matches every tenant's jobs, and one mistyped date then cancels the fleet.
//!
//! A token limited to tenants reaches those tenants' jobs only, in lists and bulk actions
//! alike; another tenant's job, or a job of no tenant, is "not found" to it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use serde::{Deserialize, Serialize};
use sv0_queue::{CancelOutcome, JobDoc, JobFilter, JobStatus, RetryOutcome, TenantKindCount};
use utoipa::ToSchema;

use super::{object_id, optional_instant};
use crate::AdminApi;
use crate::audit::{Action, Completion};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Ctx, JsonBody};
use crate::page::{self, Page};
use crate::roles::Right;
use crate::views::JobView;

/// The most ids a bulk action may name.
const MAX_BULK_IDS: usize = 1_000;

/// The most kinds, statuses and payload paths a bulk filter may name: more than there are kinds
/// and statuses, and more payload paths than a search ever needs.
const MAX_FILTER_KINDS: usize = 64;
const MAX_FILTER_STATUSES: usize = 16;
const MAX_FILTER_PAYLOAD: usize = 16;

/// The most tenant and kind pairs a bulk answer lists, the largest first: enough to see whose
/// jobs an action touches without a fleet-wide answer growing with the number of tenants.
const MAX_BULK_COUNTS: usize = 1_000;

/// Lists jobs, newest first. Besides the named parameters, `payload.<path>=<value>` keeps the
/// jobs whose payload has that value at that dotted path (a number or `true`/`false` also
/// matches as such); such a search may examine a bounded number of jobs, and past it is a 400
/// asking to narrow the other filters.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    params(
        ("kind" = Option<Vec<String>>, Query, description = "A job kind; repeat for several"),
        ("status" = Option<Vec<String>>, Query,
            description = "queued, running, succeeded, failed, dead or cancelled; repeat for several"),
        ("tenant_id" = Option<String>, Query),
        ("group_id" = Option<String>, Query, description = "The run (or other group) the jobs belong to"),
        ("created_from" = Option<String>, Query, description = "RFC 3339: created at or after"),
        ("created_until" = Option<String>, Query, description = "RFC 3339: created before"),
        ("cursor" = Option<String>, Query),
        ("limit" = Option<u32>, Query, description = "1 to 500 (default 50)"),
    ),
    security(("bearer" = [])),
    responses((status = 200, body = Page<JobView>)))]
pub(crate) async fn list(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Page<JobView>>, ApiError> {
    ctx.require(Right::Read)?;
    let mut filter = JobFilter::default();
    let (mut cursor, mut limit) = (None, None);
    let (mut created_from, mut created_until) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "kind" => filter.kinds.push(value),
            "status" => filter.statuses.push(job_status("status", &value)?),
            "tenant_id" => filter.tenant_id = Some(value),
            "group_id" => filter.group_id = Some(value),
            "created_from" => created_from = Some(value),
            "created_until" => created_until = Some(value),
            "cursor" => cursor = Some(value),
            "limit" => {
                limit = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| ApiError::invalid("limit", "must be 1 to 500"))?,
                )
            }
            _ => match key.strip_prefix("payload.") {
                Some(path) => filter
                    .payload
                    .push((path.to_string(), payload_values(&value))),
                None => {
                    return Err(ApiError::invalid(
                        key,
                        "unknown parameter (kind, status, tenant_id, group_id, created_from, \
                         created_until, payload.<path>, cursor, limit)",
                    ));
                }
            },
        }
    }
    filter.created_from = optional_instant("created_from", created_from.as_deref())?;
    filter.created_until = optional_instant("created_until", created_until.as_deref())?;
    limit_to_reach(&ctx, &mut filter)?;
    let limit = page::limit(limit)?;
    let after = page::object_id_cursor(cursor.as_deref())?;
    let jobs = api
        .queue
        .list_jobs(&filter, after, i64::from(limit) + 1)
        .await?;
    Ok(Json(page::page(
        jobs,
        limit,
        |j| j.id.to_hex(),
        JobView::from,
    )))
}

/// Keeps a filter to the tenants the caller's token reaches: a tenant it names must be one of
/// them (403), and the filter is bounded to them either way.
fn limit_to_reach(ctx: &Ctx, filter: &mut JobFilter) -> Result<(), ApiError> {
    if let Some(tenant_id) = &filter.tenant_id {
        ctx.require_tenant(tenant_id)?;
    }
    filter.tenant_ids = ctx.tenant_limit().to_vec();
    Ok(())
}

/// A job the caller's token reaches; any other is "not found".
async fn reachable_job(api: &AdminApi, ctx: &Ctx, id: ObjectId) -> Result<JobDoc, ApiError> {
    api.queue
        .get(id)
        .await?
        .filter(|job| ctx.sees_job(job.tenant_id.as_deref()))
        .ok_or_else(|| no_such_job(id))
}

fn no_such_job(id: ObjectId) -> ApiError {
    ApiError::NotFound(format!("job {id} not found"))
}

/// A query value as the values it may match: the text, and the number or boolean it spells.
fn payload_values(value: &str) -> Vec<Bson> {
    let mut values = vec![Bson::String(value.to_string())];
    if let Ok(n) = value.parse::<i64>() {
        values.push(Bson::Int64(n));
    } else if let Ok(x) = value.parse::<f64>()
        && x.is_finite()
    {
        values.push(Bson::Double(x));
    }
    match value {
        "true" => values.push(Bson::Boolean(true)),
        "false" => values.push(Bson::Boolean(false)),
        _ => {}
    }
    values
}

fn job_status(field: &str, name: &str) -> Result<JobStatus, ApiError> {
    [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| {
        ApiError::invalid(
            field,
            "must be queued, running, succeeded, failed, dead or cancelled",
        )
    })
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    ctx.require(Right::Read)?;
    let id = object_id("id", &id)?;
    Ok(Json(reachable_job(&api, &ctx, id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    /// Why: kept in the audit log (1 to 500 characters).
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobActionResult {
    /// `cancelled` (it was queued), `cancel_requested` (it is running: its worker stops it at
    /// its next heartbeat), `requeued`.
    pub outcome: String,
    pub job: JobView,
}

/// Cancels one job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    request_body = ReasonBody, security(("bearer" = [])),
    responses((status = 200, body = JobActionResult), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<JobActionResult>, ApiError> {
    act_on_job(&api, &ctx, &id, body, "job.cancel", async |job| {
        let outcome = match api.queue.cancel(job.id).await? {
            CancelOutcome::Cancelled => "cancelled",
            CancelOutcome::Requested => "cancel_requested",
            CancelOutcome::AlreadyFinished(status) => {
                return Err(ApiError::Conflict(format!(
                    "job {} has finished ({}); there is nothing to cancel",
                    job.id,
                    status.as_str()
                )));
            }
            CancelOutcome::NotFound => return Err(no_such_job(job.id)),
        };
        Ok((
            outcome,
            Completion::new().detail(doc! { "outcome": outcome }),
        ))
    })
    .await
}

/// Puts a failed, dead or cancelled job back in the queue, to run now with fresh attempts.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)),
    request_body = ReasonBody, security(("bearer" = [])),
    responses((status = 200, body = JobActionResult), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn retry(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<JobActionResult>, ApiError> {
    act_on_job(&api, &ctx, &id, body, "job.retry", async |job| {
        match api.queue.retry_job(job.id).await? {
            RetryOutcome::Requeued => {}
            RetryOutcome::NotRetryable(status) => {
                return Err(ApiError::Conflict(format!(
                    "job {} is {}; only failed, dead or cancelled jobs are retried",
                    job.id,
                    status.as_str()
                )));
            }
            RetryOutcome::NotFound => return Err(no_such_job(job.id)),
        }
        let completion = Completion::new().change("status", job.status.as_str(), "queued");
        Ok(("requeued", completion))
    })
    .await
}

/// Acts on one job: the caller's right and reason checked, the job found among those its token
/// reaches, then `act` under the action's audit entry. The answer is the outcome `act` names
/// and the job as it is after.
async fn act_on_job(
    api: &AdminApi,
    ctx: &Ctx,
    id: &str,
    body: JsonBody,
    action: &'static str,
    act: impl AsyncFnOnce(&JobDoc) -> Result<(&'static str, Completion), ApiError>,
) -> Result<Json<JobActionResult>, ApiError> {
    ctx.require(Right::ActOnJobs)?;
    let body: ReasonBody = body.parse()?;
    let id = object_id("id", id)?;
    let reason = super::reason(&body.reason)?;
    let job = reachable_job(api, ctx, id).await?;
    let outcome = api
        .audit
        .around(ctx, job_action(action, &job, reason), act(&job))
        .await?;
    job_answer(api, &job, outcome).await
}

/// A job action's audit entry, before the action.
fn job_action<'a>(action: &'static str, job: &'a JobDoc, reason: &'a str) -> Action<'a> {
    Action {
        action,
        target_kind: "job",
        target_id: job.id.to_hex(),
        tenant_id: job.tenant_id.as_deref(),
        reason: Some(reason),
        detail: doc! { "kind": &job.kind, "status": job.status.as_str() },
    }
}

/// The answer to a job action: the outcome and the job as it is now.
async fn job_answer(
    api: &AdminApi,
    job: &JobDoc,
    outcome: &str,
) -> Result<Json<JobActionResult>, ApiError> {
    let now = api
        .queue
        .get(job.id)
        .await?
        .ok_or_else(|| no_such_job(job.id))?;
    Ok(Json(JobActionResult {
        outcome: outcome.to_string(),
        job: now.into(),
    }))
}

/// Which jobs a bulk action covers: exactly one of `ids` and `filter`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRequest {
    /// At most 1,000 job ids.
    #[serde(default)]
    #[schema(max_items = 1000)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    filter: Option<JobFilterBody>,
    /// Count what would change, by tenant and kind, and change nothing: the default. A real run
    /// (`false`) needs `ids`, a filter on `tenant_id`, `kinds` or `statuses`, or `expect`.
    #[serde(default = "dry_run_default")]
    #[schema(default = true)]
    dry_run: bool,
    /// The `matched` count of the dry run, for a real run: when as many jobs do not match now,
    /// the answer is 409 and nothing changes. It catches a filter that is stale or not the one
    /// meant; it cannot hold off jobs enqueued between its count and the action, which the
    /// action covers too.
    #[serde(default)]
    #[schema(minimum = 0)]
    expect: Option<u64>,
    /// Why: kept in the audit log (1 to 500 characters).
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// Every field narrows; at least one must be set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobFilterBody {
    #[serde(default)]
    #[schema(max_items = 64)]
    kinds: Vec<String>,
    /// Job statuses (`failed`, `dead`, …).
    #[serde(default)]
    #[schema(max_items = 16)]
    statuses: Vec<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    created_from: Option<String>,
    #[serde(default)]
    created_until: Option<String>,
    /// `{"<dotted path>": <value>}`: payload equality, at most 16 paths.
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: serde_json::Map<String, serde_json::Value>,
}

fn dry_run_default() -> bool {
    true
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkResult {
    pub dry_run: bool,
    /// Jobs the action applies to (on a dry run: would apply to): the total, and what `expect`
    /// is compared with.
    pub matched: u64,
    /// The jobs it applies to by tenant and kind, most first, at most 1,000 pairs; counted
    /// before the action on a real run.
    pub by_tenant_kind: Vec<BulkCount>,
    /// Pairs left out of `by_tenant_kind` past its 1,000.
    pub more_pairs: u64,
    /// Jobs changed: cancelled, or requeued.
    pub changed: u64,
    /// Running jobs asked to stop (cancel only).
    pub requested: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkCount {
    /// Absent for jobs enqueued without a tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub kind: String,
    pub jobs: u64,
}

impl BulkRequest {
    /// Whether a real run may be taken without `expect`: only ids, a tenant, a kind or a status
    /// keep it off other tenants' or other work's jobs. A group or a payload value is not
    /// counted as narrowing because nothing checks it names anything in particular.
    fn narrowed(&self) -> bool {
        match (&self.ids, &self.filter) {
            (Some(_), _) => true,
            (_, Some(f)) => !f.kinds.is_empty() || !f.statuses.is_empty() || f.tenant_id.is_some(),
            _ => false,
        }
    }

    fn filter(&self) -> Result<JobFilter, ApiError> {
        match (&self.ids, &self.filter) {
            (Some(ids), None) => {
                if ids.is_empty() || ids.len() > MAX_BULK_IDS {
                    return Err(ApiError::invalid(
                        "ids",
                        format!("name 1 to {MAX_BULK_IDS} jobs, or use a filter"),
                    ));
                }
                let ids = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| object_id(&format!("ids[{i}]"), id))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(JobFilter {
                    ids,
                    ..JobFilter::default()
                })
            }
            (None, Some(body)) => body.to_filter(),
            _ => Err(ApiError::invalid(
                "body",
                "give exactly one of `ids` and `filter`",
            )),
        }
    }
}

impl JobFilterBody {
    /// The lists bounded and the free text plain: the filter is kept in the audit log.
    fn check(&self) -> Result<(), ApiError> {
        for (field, len, max) in [
            ("filter.kinds", self.kinds.len(), MAX_FILTER_KINDS),
            ("filter.statuses", self.statuses.len(), MAX_FILTER_STATUSES),
            ("filter.payload", self.payload.len(), MAX_FILTER_PAYLOAD),
        ] {
            if len > max {
                return Err(ApiError::invalid(field, format!("at most {max} entries")));
            }
        }
        for (i, kind) in self.kinds.iter().enumerate() {
            super::text(&format!("filter.kinds[{i}]"), kind, 64)?;
        }
        if let Some(tenant_id) = &self.tenant_id {
            super::text("filter.tenant_id", tenant_id, 64)?;
        }
        if let Some(group_id) = &self.group_id {
            super::text("filter.group_id", group_id, 200)?;
        }
        for path in self.payload.keys() {
            super::text("filter.payload", path, 200)?;
        }
        Ok(())
    }

    fn to_filter(&self) -> Result<JobFilter, ApiError> {
        self.check()?;
        let payload = self
            .payload
            .iter()
            .map(|(path, value)| {
                let value = Bson::try_from(value.clone()).map_err(|e| {
                    ApiError::invalid(format!("filter.payload.{path}"), e.to_string())
                })?;
                Ok((path.clone(), vec![value]))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let filter = JobFilter {
            ids: Vec::new(),
            kinds: self.kinds.clone(),
            statuses: self
                .statuses
                .iter()
                .map(|s| job_status("filter.statuses", s))
                .collect::<Result<_, _>>()?,
            tenant_id: self.tenant_id.clone(),
            tenant_ids: Vec::new(),
            group_id: self.group_id.clone(),
            payload,
            created_from: optional_instant("filter.created_from", self.created_from.as_deref())?,
            created_until: optional_instant("filter.created_until", self.created_until.as_deref())?,
        };
        let narrowed = !filter.kinds.is_empty()
            || !filter.statuses.is_empty()
            || filter.tenant_id.is_some()
            || filter.group_id.is_some()
            || !filter.payload.is_empty()
            || filter.created_from.is_some()
            || filter.created_until.is_some();
        if !narrowed {
            return Err(ApiError::invalid(
                "filter",
                "set at least one field: a bulk action over every job is not taken",
            ));
        }
        Ok(filter)
    }
}

/// Cancels every job matching `ids` or `filter` (queued ones at once, running ones by request);
/// by default only counts them, by tenant and kind.
#[utoipa::path(post, path = "/api/v1/jobs/bulk/cancel", tag = "jobs", request_body = BulkRequest,
    security(("bearer" = [])),
    responses((status = 200, body = BulkResult), (status = 409, body = ErrorBody)))]
pub(crate) async fn bulk_cancel(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    body: JsonBody,
) -> Result<Json<BulkResult>, ApiError> {
    bulk(&api, &ctx, body, Bulk::Cancel).await
}

/// Requeues every failed, dead or cancelled job matching `ids` or `filter`; by default only
/// counts them, by tenant and kind.
#[utoipa::path(post, path = "/api/v1/jobs/bulk/retry", tag = "jobs", request_body = BulkRequest,
    security(("bearer" = [])),
    responses((status = 200, body = BulkResult), (status = 409, body = ErrorBody)))]
pub(crate) async fn bulk_retry(
    State(api): State<Arc<AdminApi>>,
    ctx: Ctx,
    body: JsonBody,
) -> Result<Json<BulkResult>, ApiError> {
    bulk(&api, &ctx, body, Bulk::Retry).await
}

#[derive(Clone, Copy)]
enum Bulk {
    Cancel,
    Retry,
}

/// A bulk action: the request checked, then counted (a dry run) or carried out, then audited.
async fn bulk(
    api: &AdminApi,
    ctx: &Ctx,
    body: JsonBody,
    action: Bulk,
) -> Result<Json<BulkResult>, ApiError> {
    ctx.require(Right::ActOnJobs)?;
    let body: BulkRequest = body.parse()?;
    let reason = super::reason(&body.reason)?.to_string();
    let mut filter = body.filter()?;
    limit_to_reach(ctx, &mut filter)?;
    if body.dry_run && body.expect.is_some() {
        return Err(ApiError::invalid(
            "expect",
            "only with dry_run: false; a dry run changes nothing and returns the count to expect",
        ));
    }
    if !body.dry_run && body.expect.is_none() && !body.narrowed() {
        return Err(ApiError::invalid(
            "filter",
            "a real run (dry_run: false) needs ids, a filter on tenant_id, kinds or statuses, or              `expect` with the dry run's matched count: a created range alone matches every              tenant's jobs",
        ));
    }
    let queue = &api.queue;
    let counts = match action {
        Bulk::Cancel => queue.count_cancellable_by_tenant_kind(&filter).await?,
        Bulk::Retry => queue.count_retryable_by_tenant_kind(&filter).await?,
    };
    let counted: u64 = counts.iter().map(|c| c.jobs).sum();
    if let Some(expect) = body.expect
        && expect != counted
    {
        return Err(ApiError::Conflict(format!(
            "{counted} jobs match now and expect is {expect}; nothing changed: run the dry run \
             again and check its counts"
        )));
    }
    let (by_tenant_kind, more_pairs) = listed(counts);
    let name = match action {
        Bulk::Cancel => "job.bulk_cancel",
        Bulk::Retry => "job.bulk_retry",
    };
    let result = api
        .audit
        .around(ctx, bulk_action(name, &body, &reason), async {
            let result = if body.dry_run {
                BulkResult {
                    dry_run: true,
                    matched: counted,
                    by_tenant_kind,
                    more_pairs,
                    changed: 0,
                    requested: 0,
                }
            } else {
                let done = match action {
                    Bulk::Cancel => queue.cancel_matching(&filter).await?,
                    Bulk::Retry => queue.retry_matching(&filter).await?,
                };
                BulkResult {
                    dry_run: false,
                    matched: done.matched,
                    by_tenant_kind,
                    more_pairs,
                    changed: done.changed,
                    requested: done.requested,
                }
            };
            let completion = Completion::new().detail(doc! {
                "matched": result.matched as i64,
                "changed": result.changed as i64,
                "requested": result.requested as i64,
            });
            Ok((result, completion))
        })
        .await?;
    Ok(Json(result))
}

fn listed(mut counts: Vec<TenantKindCount>) -> (Vec<BulkCount>, u64) {
    let more = counts.len().saturating_sub(MAX_BULK_COUNTS) as u64;
    counts.truncate(MAX_BULK_COUNTS);
    let listed = counts
        .into_iter()
        .map(|c| BulkCount {
            tenant_id: c.tenant_id,
            kind: c.kind,
            jobs: c.jobs,
        })
        .collect();
    (listed, more)
}

/// A bulk action's audit entry, before the action. A dry run changes nothing, and is recorded
/// all the same: it shows who looked, and why.
fn bulk_action<'a>(action: &'static str, body: &'a BulkRequest, reason: &'a str) -> Action<'a> {
    let mut detail = Document::new();
    match (&body.ids, &body.filter) {
        (Some(ids), _) => {
            detail.insert("ids", ids.len() as i64);
        }
        (_, Some(filter)) => {
            detail.insert("filter", filter_summary(filter));
        }
        _ => {}
    }
    detail.insert("dry_run", body.dry_run);
    if let Some(expect) = body.expect {
        detail.insert("expect", expect as i64);
    }
    Action {
        action,
        target_kind: "jobs",
        target_id: if body.ids.is_some() { "ids" } else { "filter" }.to_string(),
        tenant_id: body.filter.as_ref().and_then(|f| f.tenant_id.as_deref()),
        reason: Some(reason),
        detail,
    }
}

fn filter_summary(filter: &JobFilterBody) -> String {
    serde_json::json!({
        "kinds": filter.kinds,
        "statuses": filter.statuses,
        "tenant_id": filter.tenant_id,
        "group_id": filter.group_id,
        "created_from": filter.created_from,
        "created_until": filter.created_until,
        "payload": filter.payload,
    })
    .to_string()
}
