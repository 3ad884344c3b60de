//! Enqueueing: one job or many, idempotent by `dedup_key`.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};

use crate::queue::after;
use crate::{JobDoc, JobStatus, LeaseDoc, Queue, QueueError, Result};

/// A job to enqueue, built with its setters.
#[derive(Debug, Clone)]
pub struct NewJob {
    kind: String,
    payload: Document,
    priority: i32,
    run_at: Option<DateTime>,
    delay: Duration,
    max_attempts: i32,
    dedup_key: Option<String>,
    tenant_id: Option<String>,
    group_id: Option<String>,
    timeout: Option<Duration>,
}

/// The longest per-job time bound accepted.
pub const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Document) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            delay: Duration::ZERO,
            max_attempts: 5,
            dedup_key: None,
            tenant_id: None,
            group_id: None,
            timeout: None,
        }
    }

    /// Higher runs first among due jobs.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not before this time.
    pub fn run_at(mut self, at: DateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Not before this long from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Attempts before the job is `dead` (at least 1).
    pub fn max_attempts(mut self, max: i32) -> Self {
        self.max_attempts = max;
        self
    }

    /// Idempotency. The key is global to the queue collection: across kinds and tenants, so
    /// put the kind and tenant in it when they matter (`"execute_scan:acme:2026-11-29T10:00"`).
    /// It is held by the job that carries it for as long as that job is stored, whatever its
    /// status: queued, running, and also finished (succeeded, failed, dead, cancelled) until the
    /// pruner deletes it after the retention. Meanwhile an enqueue with the same key creates
    /// nothing and returns that job, with `created: false` and the job's status, so a producer
    /// can tell "already queued" from "already failed".
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    pub fn tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant.into());
        self
    }

    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// How long one attempt may run; past it the worker cancels the handler and the attempt
    /// fails as timed out. Overrides the worker's per-kind bound.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the job without touching the database; `enqueue` does this too.
    pub fn validate(&self) -> Result<()> {
        if self.kind.is_empty() || self.kind.len() > 100 {
            return Err(QueueError::Invalid("kind must be 1 to 100 bytes".into()));
        }
        if self.max_attempts < 1 {
            return Err(QueueError::Invalid(format!(
                "max_attempts must be at least 1, got {}",
                self.max_attempts
            )));
        }
        if let Some(timeout) = self.timeout
            && (timeout.is_zero() || timeout > MAX_JOB_TIMEOUT)
        {
            return Err(QueueError::Invalid(format!(
                "timeout must be above 0 and at most {} s",
                MAX_JOB_TIMEOUT.as_secs()
            )));
        }
        if let Some(key) = &self.dedup_key
            && (key.is_empty() || key.len() > 512)
        {
            return Err(QueueError::Invalid(
                "dedup_key must be 1 to 512 bytes".into(),
            ));
        }
        Ok(())
    }

    fn into_doc(self, now: DateTime) -> JobDoc {
        JobDoc {
            id: ObjectId::new(),
            run_at: self.run_at.unwrap_or_else(|| after(now, self.delay)),
            kind: self.kind,
            tenant_id: self.tenant_id,
            group_id: self.group_id,
            payload: self.payload,
            status: JobStatus::Queued,
            priority: self.priority,
            attempts: 0,
            max_attempts: self.max_attempts,
            claims: 0,
            timeout_ms: self.timeout.map(|t| t.as_millis() as i64),
            lease: LeaseDoc::default(),
            dedup_key: self.dedup_key,
            last_error: None,
            cancel_requested: false,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        }
    }
}

/// What an enqueue did: `created` is false when a job with the same dedup key already existed;
/// `id` and `status` are then that job's (which may have finished: see [`NewJob::dedup_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: ObjectId,
    pub created: bool,
    pub status: JobStatus,
}

impl Queue {
    /// Enqueues one job.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut results = self.enqueue_many(vec![job]).await?;
        Ok(results.remove(0))
    }

    /// Enqueues many jobs with one unordered insert; duplicates by dedup key resolve to the
    /// existing jobs. The results are in the order of `jobs`.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        for job in &jobs {
            job.validate()?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = DateTime::now();
        let docs: Vec<JobDoc> = jobs.into_iter().map(|j| j.into_doc(now)).collect();
        let mut results: Vec<Enqueued> = docs
            .iter()
            .map(|d| Enqueued {
                id: d.id,
                created: true,
                status: JobStatus::Queued,
            })
            .collect();

        // Each pass inserts what is left; a duplicate resolves to the job holding its key. A job
        // pruned between the two steps leaves its key free, so the next pass inserts ours.
        let mut pending: Vec<usize> = (0..docs.len()).collect();
        for _ in 0..3 {
            let batch: Vec<&JobDoc> = pending.iter().map(|&i| &docs[i]).collect();
            let duplicates = match self.jobs.insert_many(batch).ordered(false).await {
                Ok(_) => Vec::new(),
                Err(error) => sv0_storage::duplicate_positions(&error)
                    .ok_or(error)?
                    .into_iter()
                    .map(|p| pending[p])
                    .collect(),
            };
            for &i in &pending {
                if !duplicates.contains(&i) {
                    self.metrics.enqueued(&docs[i].kind);
                }
            }
            let existing = self.jobs_by_key(&duplicates, &docs).await?;
            pending = Vec::new();
            for i in duplicates {
                let key = docs[i].dedup_key.as_deref();
                match key.and_then(|k| existing.get(k)) {
                    Some(&(id, status)) => {
                        results[i] = Enqueued {
                            id,
                            created: false,
                            status,
                        };
                    }
                    None => pending.push(i),
                }
            }
            if pending.is_empty() {
                return Ok(results);
            }
        }
        Err(QueueError::Invalid(
            "dedup key kept colliding with a job that then disappeared".into(),
        ))
    }

    async fn jobs_by_key(
        &self,
        positions: &[usize],
        docs: &[JobDoc],
    ) -> Result<HashMap<String, (ObjectId, JobStatus)>> {
        let keys: Vec<&str> = positions
            .iter()
            .filter_map(|&i| docs[i].dedup_key.as_deref())
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let found: Vec<Document> = self
            .collection()
            .find(doc! {"dedup_key": {"$in": keys}})
            .projection(doc! {"dedup_key": 1, "status": 1})
            .await?
            .try_collect()
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|d| {
                let status = mongodb::bson::from_bson(d.get("status")?.clone()).ok()?;
                Some((
                    d.get_str("dedup_key").ok()?.to_string(),
                    (d.get_object_id("_id").ok()?, status),
                ))
            })
            .collect())
    }
}
