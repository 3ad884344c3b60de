//! A persistent, lease-based job queue on MongoDB.
//!
//! This crate owns the `jobs` collection: its document shape, its indexes, and every write to it.
//! Producers enqueue; workers claim jobs in batches, hold each under a lease (an owner, an expiry
//! and a fencing token), heartbeat it, and complete or fail it; the reaper gives expired leases
//! back; the pruner deletes finished jobs after their retention; operators list, count, cancel and
//! retry jobs by a [`JobFilter`]. Every write a lease holder makes is fenced on
//! `(_id, owner, token)`, so a holder whose lease was reaped can never overwrite the job's new
//! state: execution is at least once, the commit exactly once.
//!
//! Two semantics a producer must know. An attempt is spent when a job *starts*
//! ([`Queue::record_starts`], or the outcome of a run), never when it is claimed: a job leased
//! ahead and given back or reaped unstarted costs nothing. A `dedup_key` is global to the queue
//! collection and held by its job until the pruner deletes it, whatever the job's status; an
//! enqueue that finds it returns that job with `created: false` and its status.
//!
//! It must stay generic: no knowledge of what a job does. Kinds and payloads are opaque, and the
//! two grouping fields (`tenant_id`, `group_id`) are labels it stores and filters by, nothing more.
//! It uses no multi-document transactions and no pipeline-style updates, so it runs on a
//! standalone MongoDB, a replica set, and the devdb stand alike.

mod backoff;
mod cancel;
mod claim;
mod enqueue;
mod error;
mod holder;
mod indexes;
mod job;
pub mod maintenance;
mod metrics;
mod operator;
mod queue;

pub use backoff::RetryPolicy;
pub use cancel::{CancelOutcome, GroupCancel};
pub use claim::{Candidate, ClaimRequest};
pub use enqueue::{Enqueued, MAX_JOB_TIMEOUT, NewJob};
pub use error::{QueueError, Result};
pub use holder::{Commit, FailOutcome, Failure, LeaseState};
pub use job::{Claimed, JobDoc, JobStatus, LeaseDoc, LeaseRef};
pub use metrics::QueueMetrics;
pub use operator::{BulkOutcome, JobFilter, PAYLOAD_SCAN_LIMIT, RetryOutcome, TenantKindCount};
pub use queue::Queue;
