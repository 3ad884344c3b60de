//! The job document and the handles a lease holder works with.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document};
use serde::{Deserialize, Serialize};

/// Where a job is in its life. `succeeded`, `failed` (a permanent error), `dead` (attempts spent)
/// and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

impl JobStatus {
    pub const FINAL: [JobStatus; 4] = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        JobStatus::FINAL.contains(&self)
    }
}

/// The lease part of a job. `token` is the fencing token: it only ever grows, by one at every
/// claim and at every move out of `running` by anyone but the holder's own fenced writes, so a
/// `(owner, token)` pair names one holding of one job, once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeaseDoc {
    /// The worker that holds (or last held) the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub token: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    /// A nonce per claim call, so a batch claim can tell its own wins from others'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ObjectId>,
}

/// A job as stored in the `jobs` collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    pub payload: Document,
    pub status: JobStatus,
    pub priority: i32,
    pub run_at: DateTime,
    /// Attempts started (a lease taken ahead and given back, or reaped unstarted, is none).
    pub attempts: i32,
    pub max_attempts: i32,
    /// Times the job was claimed, started or not.
    #[serde(default)]
    pub claims: i32,
    /// How long one attempt may run, in milliseconds, before it is cancelled and fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub lease: LeaseDoc,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default)]
    pub cancel_requested: bool,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    /// When the latest claim leased the job (a worker may lease a job shortly before it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime>,
}

impl JobDoc {
    /// Reads a stored job, naming the field that does not fit (`priority: invalid type …`).
    pub fn from_raw(raw: Document) -> std::result::Result<JobDoc, String> {
        let deserializer = mongodb::bson::Deserializer::new(mongodb::bson::Bson::Document(raw));
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            format!("field `{path}`: {}", error.into_inner())
        })
    }
}

/// One holding of one job: what every fenced write names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    pub job_id: ObjectId,
    pub owner: String,
    pub token: i64,
}

/// A job this worker claimed, with its lease.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub lease: LeaseRef,
    pub job: JobDoc,
    /// When the claim returned, for the job-duration histogram.
    pub claimed_at: std::time::Instant,
}

impl Claimed {
    pub fn kind(&self) -> &str {
        &self.job.kind
    }

    /// The number of the attempt this holding runs (or would run), 1 for the first: the
    /// attempts started before it, plus this one. A claim spends none; see `record_starts`.
    pub fn attempt(&self) -> i32 {
        self.job.attempts + 1
    }

    /// This holding's time bound, if the job carries one.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.job
            .timeout_ms
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64))
    }
}
