//! Operator actions, for an admin API: list and count jobs by a filter, retry failed ones, and
//! cancel or retry every job a filter matches, with a dry run of each, in total or by tenant and
//! kind.
//!
//! Every call validates its filter first and refuses it with [`QueueError::InvalidFilter`], which
//! names the field, so an API can answer 400 with it. A payload search is bounded: payload paths
//! have no index, so it runs only when the other filters leave at most [`PAYLOAD_SCAN_LIMIT`] jobs
//! to examine. On MongoDB those are indexed when they name ids, statuses (with or without kinds),
//! a group, or a tenant; a kind or a created range alone is not.

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::cancel::{cancel_queued, request_cancel};
use crate::{JobDoc, JobStatus, Queue, QueueError, Result};

/// How many jobs matching the other filters a payload search may examine.
pub const PAYLOAD_SCAN_LIMIT: u64 = 10_000;

/// The most ids, kinds or payload values one filter lists, and the largest page.
const MAX_ITEMS: usize = 1_000;
const MAX_PAYLOAD_FILTERS: usize = 8;
const MAX_PATH_SEGMENTS: usize = 8;

const CANCELLABLE: [JobStatus; 2] = [JobStatus::Queued, JobStatus::Running];
/// Retrying a succeeded job would run its work twice; queued and running ones will run anyway.
const RETRYABLE: [JobStatus; 3] = [JobStatus::Failed, JobStatus::Dead, JobStatus::Cancelled];

/// Which jobs an operator means: every set field narrows (AND); empty vecs mean "any".
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// At most 1,000.
    pub ids: Vec<ObjectId>,
    /// At most 1,000.
    pub kinds: Vec<String>,
    pub statuses: Vec<JobStatus>,
    pub tenant_id: Option<String>,
    /// Only these tenants' jobs, when not empty (a job without a tenant is not among them).
    /// At most 1,000.
    pub tenant_ids: Vec<String>,
    pub group_id: Option<String>,
    /// `payload.<path>` equality: the path's value equals any of the given values (as in any
    /// MongoDB query, an array matches when one of its elements does). At most 8 paths, each
    /// named once, of 1 to 8 segments of `[A-Za-z0-9_-]` joined by `.`; 1 to 1,000 values each,
    /// strings, numbers, booleans, null, ids or dates.
    pub payload: Vec<(String, Vec<Bson>)>,
    /// `created_at >=` this.
    pub created_from: Option<DateTime>,
    /// `created_at <` this; after `created_from` when both are given.
    pub created_until: Option<DateTime>,
}

/// What [`Queue::retry_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It is queued again, due now, with its attempts reset.
    Requeued,
    /// Only `failed`, `dead` and `cancelled` jobs are retried; this one is in the given status.
    NotRetryable(JobStatus),
    NotFound,
}

/// What a bulk action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkOutcome {
    /// Jobs matching the filter in a status the action applies to (cancel: queued or running;
    /// retry: failed, dead or cancelled).
    pub matched: u64,
    /// Jobs moved now: cancelled, or queued again.
    pub changed: u64,
    /// Running jobs asked to stop (cancel only): their workers stop them at the next heartbeat.
    pub requested: u64,
}

/// How many jobs of one tenant and kind a bulk action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKindCount {
    /// `None` for jobs enqueued without a tenant.
    pub tenant_id: Option<String>,
    pub kind: String,
    pub jobs: u64,
}

impl Queue {
    /// Jobs matching `filter`, newest first by `_id`, strictly before `after` when given (the last
    /// id of the previous page), at most `limit` (1 to 1,000).
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        after: Option<ObjectId>,
        limit: i64,
    ) -> Result<Vec<JobDoc>> {
        self.list_jobs_bounded(filter, after, limit, PAYLOAD_SCAN_LIMIT)
            .await
    }

    /// [`Queue::list_jobs`] with the caller's bound on a payload search instead of
    /// [`PAYLOAD_SCAN_LIMIT`]: a batch tool may afford more, a test a small one.
    pub async fn list_jobs_bounded(
        &self,
        filter: &JobFilter,
        after: Option<ObjectId>,
        limit: i64,
        scan_limit: u64,
    ) -> Result<Vec<JobDoc>> {
        if !(1..=MAX_ITEMS as i64).contains(&limit) {
            return Err(invalid("limit", format!("must be 1 to {MAX_ITEMS}")));
        }
        let selection = Selection::new(filter, after)?;
        let query = self.bounded(&selection, scan_limit).await?;
        let stored: Vec<Document> = self
            .lists
            .find(query)
            .sort(doc! {"_id": -1})
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        // Read field by field, so that a job that does not fit is named instead of failing the
        // page with a bare deserialization error.
        stored
            .into_iter()
            .map(|raw| {
                let id = raw.get("_id").map_or_else(String::new, Bson::to_string);
                JobDoc::from_raw(raw).map_err(|reason| QueueError::Malformed { id, reason })
            })
            .collect()
    }

    /// How many jobs match `filter`.
    pub async fn count_jobs(&self, filter: &JobFilter) -> Result<u64> {
        self.count_selected(Selection::new(filter, None)?).await
    }

    /// Puts a failed, dead or cancelled job back in the queue to run again now, as a fresh job
    /// would be (attempts and claims at 0, no lease, no cancel request, not started or finished),
    /// except that it keeps its `last_error` (why it failed last, until a new attempt says
    /// otherwise), its dedup key (it is the same job) and its fencing token (which only grows).
    /// The status is re-checked as it is written: a job that changed meanwhile is not touched.
    pub async fn retry_job(&self, id: ObjectId) -> Result<RetryOutcome> {
        let retryable = doc! {"_id": id, "status": {"$in": status_names(&RETRYABLE)}};
        let updated = self
            .jobs
            .update_one(retryable, requeue(DateTime::now()))
            .await?;
        if updated.matched_count == 1 {
            return Ok(RetryOutcome::Requeued);
        }
        Ok(match self.get(id).await? {
            Some(job) => RetryOutcome::NotRetryable(job.status),
            None => RetryOutcome::NotFound,
        })
    }

    /// Cancels every queued or running job matching `filter`, in the two steps of
    /// [`Queue::cancel_group`]: all are marked `cancel_requested` first (a marked job is never
    /// claimed, and a running one that fails, is given back or is reaped ends `cancelled`), then
    /// the queued ones are cancelled. So a job that moves between queued and running meanwhile is
    /// still caught; running ones stop at their worker's next heartbeat.
    pub async fn cancel_matching(&self, filter: &JobFilter) -> Result<BulkOutcome> {
        let selection = Selection::new(filter, None)?.within(&CANCELLABLE);
        let unfinished = self.bounded(&selection, PAYLOAD_SCAN_LIMIT).await?;
        let now = DateTime::now();
        let matched = self
            .jobs
            .update_many(unfinished, request_cancel(now))
            .await?
            .matched_count;
        let mut marked_queued = selection.within(&[JobStatus::Queued]).query();
        marked_queued.insert("cancel_requested", true);
        let changed = self
            .jobs
            .update_many(marked_queued, cancel_queued(now))
            .await?
            .modified_count;
        Ok(BulkOutcome {
            matched,
            changed,
            requested: matched.saturating_sub(changed),
        })
    }

    /// Requeues every failed, dead or cancelled job matching `filter`, as [`Queue::retry_job`]
    /// does. Each job's status is re-checked as it is written: one that changed meanwhile is not
    /// touched.
    pub async fn retry_matching(&self, filter: &JobFilter) -> Result<BulkOutcome> {
        let selection = Selection::new(filter, None)?.within(&RETRYABLE);
        let retryable = self.bounded(&selection, PAYLOAD_SCAN_LIMIT).await?;
        let updated = self
            .jobs
            .update_many(retryable, requeue(DateTime::now()))
            .await?;
        Ok(BulkOutcome {
            matched: updated.matched_count,
            changed: updated.modified_count,
            requested: 0,
        })
    }

    /// The dry run of [`Queue::cancel_matching`]: how many jobs it would cancel or ask to stop
    /// (its `matched`). Nothing is written.
    pub async fn count_cancellable(&self, filter: &JobFilter) -> Result<u64> {
        self.count_selected(Selection::new(filter, None)?.within(&CANCELLABLE))
            .await
    }

    /// The dry run of [`Queue::retry_matching`]: how many jobs it would requeue. Nothing is
    /// written.
    pub async fn count_retryable(&self, filter: &JobFilter) -> Result<u64> {
        self.count_selected(Selection::new(filter, None)?.within(&RETRYABLE))
            .await
    }

    /// [`Queue::count_cancellable`] by tenant and kind, most jobs first: a dry run's answer shows
    /// whose work an action would touch, not just how much.
    pub async fn count_cancellable_by_tenant_kind(
        &self,
        filter: &JobFilter,
    ) -> Result<Vec<TenantKindCount>> {
        self.count_by_tenant_kind(Selection::new(filter, None)?.within(&CANCELLABLE))
            .await
    }

    /// [`Queue::count_retryable`] by tenant and kind, most jobs first.
    pub async fn count_retryable_by_tenant_kind(
        &self,
        filter: &JobFilter,
    ) -> Result<Vec<TenantKindCount>> {
        self.count_by_tenant_kind(Selection::new(filter, None)?.within(&RETRYABLE))
            .await
    }

    async fn count_by_tenant_kind(&self, selection: Selection) -> Result<Vec<TenantKindCount>> {
        let query = self.bounded(&selection, PAYLOAD_SCAN_LIMIT).await?;
        let groups: Vec<Document> = self
            .collection()
            .aggregate(vec![
                doc! {"$match": query},
                doc! {"$group": {
                    "_id": {"tenant_id": "$tenant_id", "kind": "$kind"},
                    "jobs": {"$sum": 1},
                }},
            ])
            .await?
            .try_collect()
            .await?;
        let mut counts: Vec<TenantKindCount> = groups
            .iter()
            .filter_map(|group| {
                let key = group.get_document("_id").ok()?;
                let jobs = match group.get("jobs")? {
                    Bson::Int32(n) => u64::try_from(*n).ok()?,
                    Bson::Int64(n) => u64::try_from(*n).ok()?,
                    Bson::Double(n) => *n as u64,
                    _ => return None,
                };
                Some(TenantKindCount {
                    tenant_id: key.get_str("tenant_id").ok().map(str::to_string),
                    kind: key.get_str("kind").ok()?.to_string(),
                    jobs,
                })
            })
            .collect();
        counts.sort_by(|a, b| {
            b.jobs
                .cmp(&a.jobs)
                .then_with(|| a.tenant_id.cmp(&b.tenant_id))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        Ok(counts)
    }

    async fn count_selected(&self, selection: Selection) -> Result<u64> {
        let query = self.bounded(&selection, PAYLOAD_SCAN_LIMIT).await?;
        Ok(self.jobs.count_documents(query).await?)
    }

    /// The selection's query, once a payload search is known to examine at most `scan_limit`
    /// jobs: those matching everything else, counted no further than past the limit.
    async fn bounded(&self, selection: &Selection, scan_limit: u64) -> Result<Document> {
        if !selection.payload.is_empty() {
            let examined = self
                .jobs
                .count_documents(selection.without_payload())
                .limit(scan_limit.saturating_add(1))
                .await?;
            if examined > scan_limit {
                return Err(invalid(
                    "payload",
                    format!(
                        "a payload search examines at most {scan_limit} jobs and the other \
                         filters match more: narrow it by kind, status, tenant or created range"
                    ),
                ));
            }
        }
        Ok(selection.query())
    }
}

/// Back to the queue, due now, in a fresh job's shape. The fencing token is kept, not reset: it
/// must only grow, or the next claim could hand out an `(owner, token)` pair that an earlier
/// holding of this job still holds. No holding is current (the job is final), so it needs no
/// increment either; with the owner cleared, an earlier holder's repeated write reads the job as
/// lost to it.
fn requeue(now: DateTime) -> Document {
    doc! {
        "$set": {
            "status": JobStatus::Queued.as_str(),
            "run_at": now,
            "attempts": 0,
            "claims": 0,
            "cancel_requested": false,
            "updated_at": now,
        },
        "$unset": {
            "lease.owner": "",
            "lease.expires_at": "",
            "lease.claim": "",
            "started_at": "",
            "finished_at": "",
        },
    }
}

/// A validated filter, kept in parts: an action narrows its statuses, and the payload bound
/// counts without the payload conditions.
struct Selection {
    /// `None` is any status; an empty list matches nothing.
    statuses: Option<Vec<JobStatus>>,
    /// Every other condition but the payload ones: what indexes serve on MongoDB.
    others: Document,
    payload: Document,
}

impl Selection {
    fn new(filter: &JobFilter, after: Option<ObjectId>) -> Result<Selection> {
        at_most_items("ids", filter.ids.len())?;
        at_most_items("kinds", filter.kinds.len())?;
        at_most_items("tenant_ids", filter.tenant_ids.len())?;
        if let (Some(from), Some(until)) = (filter.created_from, filter.created_until)
            && from >= until
        {
            return Err(invalid("created_until", "must be after created_from"));
        }
        if filter.payload.len() > MAX_PAYLOAD_FILTERS {
            return Err(invalid(
                "payload",
                format!("at most {MAX_PAYLOAD_FILTERS} payload filters"),
            ));
        }

        // The stand evaluates a filter's keys in order on every job it scans, so the cheap ones
        // go first: `status` (see `without_payload`), these, and the payload paths last.
        let mut others = Document::new();
        if !filter.kinds.is_empty() {
            others.insert("kind", doc! {"$in": filter.kinds.as_slice()});
        }
        let mut tenant = Document::new();
        if let Some(one) = &filter.tenant_id {
            tenant.insert("$eq", one);
        }
        if !filter.tenant_ids.is_empty() {
            tenant.insert("$in", filter.tenant_ids.as_slice());
        }
        if !tenant.is_empty() {
            others.insert("tenant_id", tenant);
        }
        if let Some(group) = &filter.group_id {
            others.insert("group_id", group);
        }
        let mut id = Document::new();
        if !filter.ids.is_empty() {
            id.insert("$in", filter.ids.as_slice());
        }
        if let Some(after) = after {
            id.insert("$lt", after);
        }
        if !id.is_empty() {
            others.insert("_id", id);
        }
        let mut created = Document::new();
        if let Some(from) = filter.created_from {
            created.insert("$gte", from);
        }
        if let Some(until) = filter.created_until {
            created.insert("$lt", until);
        }
        if !created.is_empty() {
            others.insert("created_at", created);
        }

        let mut payload = Document::new();
        for (path, values) in &filter.payload {
            let field = format!("payload.{path}");
            check_payload(path, values).map_err(|reason| invalid(&field, reason))?;
            // A second condition on the same path would replace the first in the query.
            if payload.contains_key(&field) {
                return Err(invalid(field, "given twice: list all its values once"));
            }
            payload.insert(field, doc! {"$in": values.as_slice()});
        }

        Ok(Selection {
            statuses: (!filter.statuses.is_empty()).then(|| filter.statuses.clone()),
            others,
            payload,
        })
    }

    /// Narrowed to the statuses an action applies to.
    fn within(&self, allowed: &[JobStatus]) -> Selection {
        let statuses = match &self.statuses {
            None => allowed.to_vec(),
            Some(asked) => asked
                .iter()
                .copied()
                .filter(|s| allowed.contains(s))
                .collect(),
        };
        Selection {
            statuses: Some(statuses),
            others: self.others.clone(),
            payload: self.payload.clone(),
        }
    }

    fn without_payload(&self) -> Document {
        let mut query = match &self.statuses {
            Some(statuses) => doc! {"status": {"$in": status_names(statuses)}},
            None => Document::new(),
        };
        query.extend(self.others.clone());
        query
    }

    fn query(&self) -> Document {
        let mut query = self.without_payload();
        query.extend(self.payload.clone());
        query
    }
}

fn check_payload(path: &str, values: &[Bson]) -> std::result::Result<(), String> {
    let segments: Vec<&str> = path.split('.').collect();
    let plain = |segment: &&str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if segments.len() > MAX_PATH_SEGMENTS || !segments.iter().all(plain) {
        return Err(format!(
            "a path is 1 to {MAX_PATH_SEGMENTS} segments of A-Z, a-z, 0-9, _ and -, joined by '.'"
        ));
    }
    if values.is_empty() || values.len() > MAX_ITEMS {
        return Err(format!("1 to {MAX_ITEMS} values"));
    }
    // Equality with a value at the path: a regular expression would make it a pattern match, and
    // a document or an array compares whole, by its exact encoding (field order included).
    let comparable = |value: &&Bson| {
        matches!(
            value,
            Bson::String(_)
                | Bson::Int32(_)
                | Bson::Int64(_)
                | Bson::Double(_)
                | Bson::Decimal128(_)
                | Bson::Boolean(_)
                | Bson::Null
                | Bson::ObjectId(_)
                | Bson::DateTime(_)
        )
    };
    match values.iter().find(|v| !comparable(v)) {
        Some(value) => Err(format!(
            "values are strings, numbers, booleans, null, ids or dates, not {:?}",
            value.element_type()
        )),
        None => Ok(()),
    }
}

fn status_names(statuses: &[JobStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

fn at_most_items(field: &str, count: usize) -> Result<()> {
    if count > MAX_ITEMS {
        return Err(invalid(field, format!("at most {MAX_ITEMS}, got {count}")));
    }
    Ok(())
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> QueueError {
    QueueError::InvalidFilter {
        field: field.into(),
        reason: reason.into(),
    }
}
