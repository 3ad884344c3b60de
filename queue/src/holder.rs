//! The lease holder's writes: heartbeat, complete, fail, release, and finishing a cancelled job.
//!
//! Each is fenced on `(_id, lease.owner, lease.token)` with `status: running`: a holder whose
//! lease was reaped (the reaper increments the token) or re-claimed (so does every claim) matches
//! nothing, changes nothing, and is told its lease is gone. Batches use one `$or` of per-job
//! fences, then read the jobs back by `_id` to learn which landed — only when some did not.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};

use crate::queue::{after, truncate_error};
use crate::{Claimed, JobStatus, LeaseRef, Queue, Result};

/// Whether a holder's write landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Committed,
    /// The lease was reaped or taken over: nothing was written.
    LeaseLost,
}

/// What a heartbeat learned about one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still held and extended; `cancel_requested` asks the holder to stop.
    Held {
        cancel_requested: bool,
    },
    Lost,
}

/// How a handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt after the backoff, while attempts remain.
    Retryable,
    /// Another attempt would fail the same way: the job is `failed` now.
    Permanent,
}

/// Where a failed job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Queued again, due at `run_at`.
    Retrying {
        run_at: DateTime,
    },
    /// Attempts spent.
    Dead,
    /// A permanent failure.
    Failed,
    /// A cancel was requested while the attempt ran: the job ends `cancelled`, never queued again.
    Cancelled,
    LeaseLost,
}

fn fence(lease: &LeaseRef) -> Document {
    doc! {
        "_id": lease.job_id,
        "status": JobStatus::Running.as_str(),
        "lease.owner": &lease.owner,
        "lease.token": lease.token,
    }
}

/// The fence of a batch. `status` and, when the leases share it, the owner come first: the stand
/// evaluates a filter's keys in order, so a job that is not running, or not this holder's, fails
/// at once instead of being compared with every branch of the `$or`. On MongoDB the extra
/// predicate costs nothing; the `$or` branches are planned on the `_id` index.
fn fence_all(leases: &[&LeaseRef]) -> Document {
    let [first, rest @ ..] = leases else {
        // An empty batch fences nothing in.
        return doc! {"_id": {"$in": []}};
    };
    if rest.is_empty() {
        return fence(first);
    }
    let mut filter = doc! {"status": JobStatus::Running.as_str()};
    if rest.iter().all(|l| l.owner == first.owner) {
        filter.insert("lease.owner", &first.owner);
    }
    let branches: Vec<Document> = leases
        .iter()
        .map(|l| doc! {"_id": l.job_id, "lease.owner": &l.owner, "lease.token": l.token})
        .collect();
    filter.insert("$or", branches);
    filter
}

impl Queue {
    /// Extends each lease by `ttl` from now, and says which are still held and which were asked
    /// to cancel.
    pub async fn heartbeat(&self, leases: &[&LeaseRef], ttl: Duration) -> Result<Vec<LeaseState>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let now = DateTime::now();
        self.jobs
            .update_many(
                fence_all(leases),
                doc! {"$set": {"lease.expires_at": after(now, ttl), "updated_at": now}},
            )
            .await?;
        let stored = self.read_back(leases).await?;
        Ok(leases
            .iter()
            .map(|lease| match stored.get(&lease.job_id) {
                Some(s) if s.holds(lease, JobStatus::Running) => LeaseState::Held {
                    cancel_requested: s.cancel_requested,
                },
                _ => LeaseState::Lost,
            })
            .collect())
    }

    /// Marks one job `succeeded`.
    pub async fn complete(&self, job: &Claimed) -> Result<Commit> {
        Ok(self.complete_many(&[job]).await?.remove(0))
    }

    /// Marks many jobs `succeeded` with one write per attempt number (one in the common case);
    /// each commits only under its own lease, and records its attempt as started, so a first run
    /// whose start was not written yet (see [`Queue::record_starts`]) costs no write of its own. A
    /// holder repeating its own commit (say, after a lost reply) is told `Committed` again.
    pub async fn complete_many(&self, jobs: &[&Claimed]) -> Result<Vec<Commit>> {
        let mut commits = vec![Commit::LeaseLost; jobs.len()];
        for (attempt, positions) in by_attempt(jobs) {
            let leases: Vec<&LeaseRef> = positions.iter().map(|&i| &jobs[i].lease).collect();
            let landed = self
                .finish(
                    &leases,
                    JobStatus::Succeeded,
                    doc! {"status": JobStatus::Succeeded.as_str(), "attempts": attempt},
                )
                .await?;
            for (i, landed) in positions.into_iter().zip(landed) {
                commits[i] = self.count_finish(jobs[i], landed, "succeeded");
            }
        }
        Ok(commits)
    }

    /// Records that these held jobs started: each one's attempt ([`Claimed::attempt`]) is spent
    /// from now on, so a worker that dies while running it costs the job that attempt. Fenced like
    /// every holder's write, one write per attempt number, and idempotent (it sets the number, it
    /// does not add to it). A claim spends nothing, so jobs leased ahead and never started cost
    /// nothing when they are given back or reaped.
    pub async fn record_starts(&self, jobs: &[&Claimed]) -> Result<Vec<Commit>> {
        let mut commits = vec![Commit::LeaseLost; jobs.len()];
        for (attempt, positions) in by_attempt(jobs) {
            let leases: Vec<&LeaseRef> = positions.iter().map(|&i| &jobs[i].lease).collect();
            let written = self
                .jobs
                .update_many(fence_all(&leases), doc! {"$set": {"attempts": attempt}})
                .await?;
            let all_landed = written.modified_count == leases.len() as u64;
            let stored = if all_landed {
                HashMap::new()
            } else {
                self.read_back(&leases).await?
            };
            for (i, lease) in positions.into_iter().zip(&leases) {
                let landed = all_landed
                    || stored.get(&lease.job_id).is_some_and(|s| {
                        s.holds(lease, JobStatus::Running) && s.attempts == Some(attempt)
                    });
                commits[i] = if landed {
                    Commit::Committed
                } else {
                    Commit::LeaseLost
                };
            }
        }
        Ok(commits)
    }

    /// Records a failed attempt: queued again after the backoff, `dead` when attempts are spent,
    /// or `failed` for a permanent error. `error` is stored truncated.
    pub async fn fail(&self, job: &Claimed, error: &str, failure: Failure) -> Result<FailOutcome> {
        let now = DateTime::now();
        let error = truncate_error(error);
        let attempt = job.attempt();
        let (update, outcome, label) = match failure {
            Failure::Permanent => (
                finished_update(JobStatus::Failed, now, &error, attempt),
                FailOutcome::Failed,
                "failed",
            ),
            Failure::Retryable if attempt >= job.job.max_attempts => (
                finished_update(JobStatus::Dead, now, &error, attempt),
                FailOutcome::Dead,
                "dead",
            ),
            Failure::Retryable => {
                let run_at = after(now, self.retry.delay_after(attempt));
                (
                    doc! {
                        "$set": {
                            "status": JobStatus::Queued.as_str(),
                            "run_at": run_at,
                            "last_error": &error,
                            "attempts": attempt,
                            "updated_at": now,
                        },
                        "$unset": {"lease.expires_at": ""},
                    },
                    FailOutcome::Retrying { run_at },
                    "retrying",
                )
            }
        };
        let requeue = matches!(outcome, FailOutcome::Retrying { .. });
        let mut filter = fence(&job.lease);
        if requeue {
            filter.insert("cancel_requested", doc! {"$ne": true});
        }
        if self.jobs.update_one(filter, update).await?.matched_count == 1 {
            self.count_failure(job, label);
            return Ok(outcome);
        }
        if requeue {
            // A cancel was requested during the attempt: end the job rather than run it again.
            let mut asked = fence(&job.lease);
            asked.insert("cancel_requested", true);
            let cancelled = finished_update(JobStatus::Cancelled, now, &error, attempt);
            if self.jobs.update_one(asked, cancelled).await?.matched_count == 1 {
                self.count_failure(job, "cancelled");
                return Ok(FailOutcome::Cancelled);
            }
        }
        // Nothing matched: this holder's own failure may have landed already (a retry after a
        // lost reply). Only this holding's fenced writes leave its owner and token in place.
        let stored = self.read_back(&[&job.lease]).await?;
        let landed = stored
            .get(&job.lease.job_id)
            .filter(|s| s.is_holding(&job.lease) && s.status.as_deref() != Some("running"));
        Ok(match landed.and_then(StoredLease::fail_outcome) {
            Some(outcome) => outcome,
            None => {
                self.metrics.lease_lost(job.kind());
                FailOutcome::LeaseLost
            }
        })
    }

    fn count_failure(&self, job: &Claimed, label: &'static str) {
        self.metrics.finished(job, label);
        if label == "retrying" {
            self.metrics.retried(job.kind());
        }
    }

    /// Marks a job whose cancellation its holder honoured as `cancelled`.
    pub async fn finish_cancelled(&self, job: &Claimed) -> Result<Commit> {
        let landed = self
            .finish(
                &[&job.lease],
                JobStatus::Cancelled,
                doc! {"status": JobStatus::Cancelled.as_str()},
            )
            .await?
            .remove(0);
        Ok(self.count_finish(job, landed, "cancelled"))
    }

    fn count_finish(&self, job: &Claimed, landed: Landed, outcome: &'static str) -> Commit {
        match landed {
            Landed::Now => self.metrics.finished(job, outcome),
            Landed::Before => {}
            Landed::Lost => self.metrics.lease_lost(job.kind()),
        }
        landed.into()
    }

    /// Gives back leases of jobs that never started (a draining worker's jobs leased ahead), so
    /// another worker can take them at once; they have spent no attempt. A job asked to cancel is
    /// cancelled instead of queued again. Returns how many leases were given up.
    pub async fn release(&self, leases: &[&LeaseRef]) -> Result<u64> {
        self.give_up(leases, doc! {}).await
    }

    /// Gives back a started job whose run was interrupted by its worker (the drain's grace ran
    /// out), refunding the attempt: the job did not fail, its worker went away. Fenced like every
    /// holder's write, so a start recorded late cannot charge the attempt again afterwards.
    pub async fn release_started(&self, job: &Claimed) -> Result<u64> {
        self.give_up(&[&job.lease], doc! {"attempts": job.job.attempts})
            .await
    }

    async fn give_up(&self, leases: &[&LeaseRef], mut set: Document) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let now = DateTime::now();
        set.insert("updated_at", now);
        let mut not_asked = fence_all(leases);
        not_asked.insert("cancel_requested", doc! {"$ne": true});
        let mut requeue = set.clone();
        requeue.insert("status", JobStatus::Queued.as_str());
        requeue.insert("run_at", now);
        let released = self
            .jobs
            .update_many(
                not_asked,
                doc! {
                    "$set": requeue,
                    "$unset": {"lease.expires_at": ""},
                    "$inc": {"lease.token": 1_i64},
                },
            )
            .await?
            .modified_count;
        if released == leases.len() as u64 {
            return Ok(released);
        }
        let mut asked = fence_all(leases);
        asked.insert("cancel_requested", true);
        let mut cancel = set;
        cancel.insert("status", JobStatus::Cancelled.as_str());
        cancel.insert("finished_at", now);
        let cancelled = self
            .jobs
            .update_many(
                asked,
                doc! {
                    "$set": cancel,
                    "$unset": {"lease.expires_at": ""},
                    "$inc": {"lease.token": 1_i64},
                },
            )
            .await?
            .modified_count;
        Ok(released + cancelled)
    }

    /// Moves fenced jobs to a final `status`, setting `set` too.
    async fn finish(
        &self,
        leases: &[&LeaseRef],
        status: JobStatus,
        mut set: Document,
    ) -> Result<Vec<Landed>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let now = DateTime::now();
        set.insert("finished_at", now);
        set.insert("updated_at", now);
        let result = self
            .jobs
            .update_many(
                fence_all(leases),
                doc! {"$set": set, "$unset": {"lease.expires_at": ""}},
            )
            .await?;
        if result.modified_count == leases.len() as u64 {
            return Ok(vec![Landed::Now; leases.len()]);
        }
        let stored = self.read_back(leases).await?;
        Ok(leases
            .iter()
            .map(|lease| match stored.get(&lease.job_id) {
                Some(s) if s.holds(lease, status) && s.finished_at == Some(now) => Landed::Now,
                Some(s) if s.holds(lease, status) => Landed::Before,
                _ => Landed::Lost,
            })
            .collect())
    }

    async fn read_back(&self, leases: &[&LeaseRef]) -> Result<HashMap<ObjectId, StoredLease>> {
        let ids: Vec<ObjectId> = leases.iter().map(|l| l.job_id).collect();
        let docs: Vec<Document> = self
            .collection()
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {
                "status": 1, "lease": 1, "cancel_requested": 1, "finished_at": 1, "run_at": 1,
                "attempts": 1,
            })
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| Some((d.get_object_id("_id").ok()?, StoredLease::from_doc(d))))
            .collect())
    }
}

/// Whether a fenced final write landed: by this call, by an earlier call of the same holder, or
/// not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    Now,
    Before,
    Lost,
}

impl From<Landed> for Commit {
    fn from(landed: Landed) -> Commit {
        match landed {
            Landed::Now | Landed::Before => Commit::Committed,
            Landed::Lost => Commit::LeaseLost,
        }
    }
}

fn finished_update(status: JobStatus, now: DateTime, error: &str, attempt: i32) -> Document {
    doc! {
        "$set": {
            "status": status.as_str(),
            "last_error": error,
            "attempts": attempt,
            "finished_at": now,
            "updated_at": now,
        },
        "$unset": {"lease.expires_at": ""},
    }
}

/// The lease fields of a stored job, read back after a batch write.
#[derive(Debug)]
struct StoredLease {
    status: Option<String>,
    owner: Option<String>,
    token: Option<i64>,
    cancel_requested: bool,
    finished_at: Option<DateTime>,
    run_at: Option<DateTime>,
    attempts: Option<i32>,
}

impl StoredLease {
    fn from_doc(d: &Document) -> StoredLease {
        let lease = d.get_document("lease").ok();
        StoredLease {
            status: d.get_str("status").ok().map(str::to_string),
            owner: lease
                .and_then(|l| l.get_str("owner").ok())
                .map(str::to_string),
            token: lease.and_then(|l| l.get_i64("token").ok()),
            cancel_requested: d.get_bool("cancel_requested").unwrap_or(false),
            finished_at: d.get_datetime("finished_at").ok().copied(),
            run_at: d.get_datetime("run_at").ok().copied(),
            attempts: d.get_i32("attempts").ok(),
        }
    }

    /// True when the stored lease is this holding's (whatever the status).
    fn is_holding(&self, lease: &LeaseRef) -> bool {
        self.owner.as_deref() == Some(lease.owner.as_str()) && self.token == Some(lease.token)
    }

    /// The outcome a holder's own landed `fail` left behind.
    fn fail_outcome(&self) -> Option<FailOutcome> {
        match self.status.as_deref()? {
            "queued" => Some(FailOutcome::Retrying {
                run_at: self.run_at?,
            }),
            "dead" => Some(FailOutcome::Dead),
            "failed" => Some(FailOutcome::Failed),
            "cancelled" => Some(FailOutcome::Cancelled),
            _ => None,
        }
    }

    /// True when this holding of the lease is the one stored, in `status`.
    fn holds(&self, lease: &LeaseRef, status: JobStatus) -> bool {
        self.status.as_deref() == Some(status.as_str()) && self.is_holding(lease)
    }
}

/// Positions of `jobs` grouped by the attempt each runs, so that one write serves each group.
fn by_attempt(jobs: &[&Claimed]) -> BTreeMap<i32, Vec<usize>> {
    let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        groups.entry(job.attempt()).or_default().push(i);
    }
    groups
}
