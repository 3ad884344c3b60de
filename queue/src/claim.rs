//! Claiming: up to K due jobs per scan of the queue, atomically, each under a fresh lease.
//!
//! Three steps, none of them a transaction:
//! 1. find up to K due candidates, in claim order (`priority` desc, `run_at` asc); the claim index
//!    serves exactly this filter and sort;
//! 2. one `update_many` over those ids, re-checking the full filter, sets `running`, the lease and a
//!    per-call nonce, and increments the fencing token and the claim count — per document this is
//!    atomic, so two workers racing for the same candidates each win a disjoint subset;
//! 3. read the candidates back by `_id` and keep those carrying this call's nonce.
//!
//! A claim spends no attempt: a worker may lease a job ahead of running it, and an attempt is
//! spent when the job starts ([`Queue::record_starts`]). If anything fails after step 2 (a lost
//! reply, the read-back), the call gives the whole batch back by its nonce before it returns the
//! error, so no job waits under a lease nobody heartbeats. A job that does not read back into its
//! type (say `priority: 1.5`) is failed on its own, with the field named; its neighbours are
//! claimed as usual.
//!
//! On the stand this costs two collection scans per batch instead of one sorted scan per job (a
//! sorted scan costs 22–77 ms at 10,000 queued jobs; see docs/design.md, "The test stand and its
//! cost model"), and the re-check is written so that its scan stays cheap (see [`recheck`]); on
//! MongoDB every step is served by an index and the batch saves round trips.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, RawDocumentBuf, doc};

use crate::queue::{after, truncate_error};
use crate::{Claimed, JobDoc, JobStatus, LeaseRef, Queue, QueueError, Result};

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The lease owner: a worker id unique to one process's lifetime.
    pub owner: String,
    /// The kinds this worker serves (at least one).
    pub kinds: Vec<String>,
    /// At most this many jobs.
    pub limit: usize,
    /// The lease's time to live; heartbeats extend it.
    pub lease_ttl: Duration,
}

impl Queue {
    /// Claims up to `request.limit` due jobs. An empty result means none was due, or every
    /// candidate was taken by another worker first.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>> {
        let candidates: Vec<ObjectId> = self
            .candidates(&request.kinds, request.limit)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        self.claim_candidates(request, &candidates).await
    }

    /// Step 1 alone: up to `limit` due jobs of `kinds`, in claim order. A worker may fetch more
    /// candidates than it can run now and claim them over several calls of
    /// [`Queue::claim_candidates`]: the sorted query is the dearest step, and the re-check makes
    /// stale candidates harmless (a job taken meanwhile is simply not claimed).
    pub async fn candidates(&self, kinds: &[String], limit: usize) -> Result<Vec<Candidate>> {
        if kinds.is_empty() || limit == 0 {
            return Err(QueueError::Invalid(
                "a claim needs at least one kind and a limit above 0".into(),
            ));
        }
        self.metrics.claim_query();
        Ok(self
            .collection()
            .find(due(kinds, DateTime::now()))
            .sort(doc! {"priority": -1, "run_at": 1})
            .limit(limit as i64)
            .projection(doc! {"_id": 1, "kind": 1, "priority": 1})
            .await?
            .try_filter_map(|d| async move {
                Ok(d.get_object_id("_id").ok().map(|id| Candidate {
                    id,
                    kind: d.get_str("kind").unwrap_or_default().to_string(),
                    priority: d.get_i32("priority").unwrap_or_default(),
                }))
            })
            .try_collect()
            .await?)
    }

    /// Steps 2 and 3: claims those of `candidates` that are still due and of `request.kinds`, at
    /// most `request.limit` of them (the first ones).
    pub async fn claim_candidates(
        &self,
        request: &ClaimRequest,
        candidates: &[ObjectId],
    ) -> Result<Vec<Claimed>> {
        if request.kinds.is_empty() || request.limit == 0 {
            return Err(QueueError::Invalid(
                "a claim needs at least one kind and a limit above 0".into(),
            ));
        }
        let candidates = &candidates[..candidates.len().min(request.limit)];
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let now = DateTime::now();
        let nonce = ObjectId::new();
        self.metrics.claim_query();
        let written = self
            .jobs
            .update_many(
                recheck(candidates, &request.kinds, now),
                doc! {
                    "$set": {
                        "status": JobStatus::Running.as_str(),
                        "lease.owner": &request.owner,
                        "lease.expires_at": after(now, request.lease_ttl),
                        "lease.claim": nonce,
                        "started_at": now,
                        "updated_at": now,
                    },
                    "$inc": {"lease.token": 1_i64, "claims": 1},
                },
            )
            .await;
        if let Ok(result) = &written {
            let missed = (candidates.len() as u64).saturating_sub(result.modified_count);
            self.metrics.claim_collisions(missed);
        }
        let won = match written {
            Ok(result) if result.modified_count == 0 => return Ok(Vec::new()),
            Ok(_) => self.read_back_claimed(candidates, nonce).await,
            // The write may have landed and its reply been lost.
            Err(error) => Err(error.into()),
        };
        let won = match won {
            Ok(won) => won,
            Err(error) => {
                self.give_back_claim(nonce).await;
                return Err(error);
            }
        };
        let claimed_at = Instant::now();
        Ok(won
            .into_iter()
            .map(|job| {
                self.metrics.claimed(&job.kind);
                Claimed {
                    lease: LeaseRef {
                        job_id: job.id,
                        owner: request.owner.clone(),
                        token: job.lease.token,
                    },
                    job,
                    claimed_at,
                }
            })
            .collect())
    }

    /// Step 3: the jobs this claim's nonce won, in candidate order. Read as raw BSON, so that one
    /// malformed job is failed alone instead of failing the read for the whole batch; a job reads
    /// straight from its bytes, and only one that does not fit is read again, field by field, to
    /// name the field (that slower reader cost a tenth of the drain rate at 10,000 queued jobs).
    async fn read_back_claimed(
        &self,
        candidates: &[ObjectId],
        nonce: ObjectId,
    ) -> Result<Vec<JobDoc>> {
        // By `_id` alone: the stand serves a query from the unique `_id` index only when `_id` is
        // its one key (with the nonce in the filter it would scan the collection); jobs others
        // won are told apart by their nonce below.
        let stored: Vec<RawDocumentBuf> = self
            .jobs
            .clone_with_type::<RawDocumentBuf>()
            .find(doc! {"_id": {"$in": candidates}})
            .await?
            .try_collect()
            .await?;
        let mut won = Vec::with_capacity(stored.len());
        for raw in stored {
            let claim = raw
                .get_document("lease")
                .ok()
                .and_then(|l| l.get_object_id("claim").ok());
            let ours = raw.get_str("status").ok() == Some(JobStatus::Running.as_str())
                && claim == Some(nonce);
            if !ours {
                continue;
            }
            match mongodb::bson::from_slice::<JobDoc>(raw.as_bytes()) {
                Ok(job) => won.push(job),
                Err(_) => {
                    let id = raw.get_object_id("_id").map_or(Bson::Null, Bson::ObjectId);
                    let reason = match raw.to_document() {
                        Ok(document) => JobDoc::from_raw(document)
                            .err()
                            .unwrap_or_else(|| "it reads only field by field".into()),
                        Err(error) => format!("not valid BSON: {error}"),
                    };
                    self.fail_malformed(&id, nonce, &reason).await?;
                }
            }
        }
        won.sort_by_key(|job| candidates.iter().position(|id| *id == job.id));
        Ok(won)
    }

    /// Fails a job this claim won but cannot read: retrying would read it the same way.
    async fn fail_malformed(&self, id: &Bson, nonce: ObjectId, reason: &str) -> Result<()> {
        let now = DateTime::now();
        let message = truncate_error(&format!("malformed job document: {reason}"));
        tracing::error!(job_id = %id, reason, "claimed a malformed job; failing it");
        self.jobs
            .update_one(
                doc! {"_id": id, "status": JobStatus::Running.as_str(), "lease.claim": nonce},
                doc! {
                    "$set": {
                        "status": JobStatus::Failed.as_str(),
                        "last_error": message,
                        "finished_at": now,
                        "updated_at": now,
                    },
                    "$unset": {"lease.expires_at": ""},
                    "$inc": {"lease.token": 1_i64},
                },
            )
            .await?;
        self.metrics.malformed();
        Ok(())
    }

    /// Gives back every job a failed claim call may have leased, by its nonce, spending nothing.
    /// If this fails too, the leases expire and the reaper requeues the jobs, unstarted.
    async fn give_back_claim(&self, nonce: ObjectId) {
        let now = DateTime::now();
        let result = self
            .jobs
            .update_many(
                doc! {"status": JobStatus::Running.as_str(), "lease.claim": nonce},
                doc! {
                    "$set": {"status": JobStatus::Queued.as_str(), "updated_at": now},
                    "$unset": {"lease.expires_at": ""},
                    "$inc": {"lease.token": 1_i64, "claims": -1},
                },
            )
            .await;
        match result {
            Ok(given) => tracing::warn!(
                jobs = given.modified_count,
                "a claim failed after its write; its batch was given back"
            ),
            Err(error) => {
                tracing::warn!(%error, "a claim failed after its write and giving its batch back failed too; the leases will expire")
            }
        }
    }
}

/// The claim filter over `candidates`, in an order chosen for the stand, which evaluates a
/// filter's keys in order and scans: `status` first, a string comparison that turns away finished
/// jobs at once; then `_id`, bounded by the candidates' range before the `$in`, because the stand
/// compares a value with each element of an `$in` (with `_id $in` last, every queued job was
/// compared with every candidate: 200 ms for 256 candidates among 10,000 jobs, 17 ms with the
/// range). MongoDB plans the same filter on the `_id` index, intersecting the range with the
/// `$in`: key order and the range cost it nothing.
fn recheck(candidates: &[ObjectId], kinds: &[String], now: DateTime) -> Document {
    let lowest = candidates.iter().min();
    let highest = candidates.iter().max();
    let mut filter = doc! {
        "status": JobStatus::Queued.as_str(),
        "_id": {"$gte": lowest, "$lte": highest, "$in": candidates},
    };
    filter.extend(due(kinds, now));
    // A job marked for cancelling is never claimed. The mark is checked here, on the batch, and
    // not in `due`: on the stand every predicate of the candidate query is evaluated on every
    // queued job, and this one cost a tenth of the drain rate at 10,000 queued. A marked job is
    // queued only for a moment (the canceller's second write, or the reaper, finishes it).
    filter.insert("cancel_requested", doc! {"$ne": true});
    filter
}

/// A due job found by [`Queue::candidates`], with its kind and the priority it is ordered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: ObjectId,
    pub kind: String,
    pub priority: i32,
}

/// The claim filter: queued, of one of `kinds`, due by `now`, and not asked to cancel (a cancel
/// marks a job before it cancels it, so a job moving between the two writes is never claimed). The
/// `claim` index serves it with the claim order's sort; the cancel flag is a residual check.
fn due(kinds: &[String], now: DateTime) -> Document {
    doc! {
        "status": JobStatus::Queued.as_str(),
        "kind": {"$in": kinds},
        "run_at": {"$lte": now},
    }
}
