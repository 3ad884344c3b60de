//! A scope's schedule state and the scheduler's claims on it. The scheduler decides what a due
//! slot becomes; these are the writes that hold a scope while it decides (a claim with a lease
//! and a nonce, fenced like a job's lease) and that record the decision.
//!
//! An edit (a new schedule, a pause) drops any claim on the scope, so a replica that decided
//! from the old state cannot write it back over the new one: its settle matches nothing.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, DateTime, Document, RawDocumentBuf, doc};

use crate::Domain;
use crate::batch;
use crate::error::{DomainError, Result};
use crate::run::RunStatus;
use crate::schedule::Schedule;
use crate::tenancy::{Pause, ScanScope, read_scope};

/// What one claim round got: the scopes this replica now holds, and how many due scopes it found
/// (more than it holds when other replicas won some of them: there may be more to claim).
#[derive(Debug, Clone, Default)]
pub struct ClaimedScopes {
    pub scopes: Vec<ScanScope>,
    pub candidates: usize,
}

/// What a claim's holder decided for one scope: the schedule state to write back.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeSettlement {
    pub scope_id: ObjectId,
    /// The claim this decision was made under: the settlement lands only if it still holds.
    pub nonce: ObjectId,
    pub next_run_at: Option<DateTime>,
    pub due_at: Option<DateTime>,
    pub buffered_slot: Option<DateTime>,
    pub last_run_id: Option<ObjectId>,
}

impl Domain {
    /// Sets (or, with `None`, clears) a scope's schedule. The schedule is validated; its first
    /// slot is the first after `now`; a slot waiting under the old schedule is dropped.
    pub async fn set_schedule(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        schedule: Option<Schedule>,
        now: DateTime,
    ) -> Result<ScanScope> {
        let next = match &schedule {
            Some(schedule) => {
                schedule.validate()?;
                schedule.slots()?.next_after(now)
            }
            None => None,
        };
        self.update_scope(
            tenant_id,
            scope_id,
            doc! {
                "$set": {
                    "schedule": bson::to_bson(&schedule)?,
                    "next_run_at": next, "due_at": next, "buffered_slot": null,
                },
                "$unset": { "claim": "" },
            },
        )
        .await
    }

    /// Pauses a scope: no slot of it runs until it is resumed. `note` says why, `by` who.
    pub async fn pause_scope(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        note: Option<String>,
        by: Option<String>,
        now: DateTime,
    ) -> Result<ScanScope> {
        if let Some(note) = &note {
            if note.len() > 1000 {
                return Err(DomainError::invalid("note", "at most 1000 characters"));
            }
            crate::limits::check_text("note", note)?;
        }
        let pause = Pause { note, by, at: now };
        self.update_scope(
            tenant_id,
            scope_id,
            doc! {
                "$set": { "paused": true, "pause": bson::to_bson(&pause)? },
                "$unset": { "claim": "" },
            },
        )
        .await
    }

    /// Resumes a paused scope: its schedule goes on from the first slot after `now`. Returns the
    /// scope as it was (its `next_run_at` and `buffered_slot` say which slots the pause
    /// skipped) and as it is now; `None` if it was not paused.
    pub async fn resume_scope(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        now: DateTime,
    ) -> Result<Option<(ScanScope, ScanScope)>> {
        let before = self.scope(tenant_id, scope_id).await?;
        if !before.paused {
            return Ok(None);
        }
        let next = match &before.schedule {
            Some(schedule) => schedule.slots()?.next_after(now),
            None => None,
        };
        let resumed = self
            .scopes()
            .update_one(
                doc! { "_id": scope_id, "tenant_id": tenant_id, "paused": true },
                doc! {
                    "$set": {
                        "paused": false, "next_run_at": next, "due_at": next,
                        "buffered_slot": null,
                    },
                    "$unset": { "pause": "", "claim": "" },
                },
            )
            .await?;
        if resumed.modified_count == 0 {
            // Resumed by someone else in between: theirs is the resume that counts the skips.
            return Ok(None);
        }
        let after = self.scope(tenant_id, scope_id).await?;
        Ok(Some((before, after)))
    }

    /// Records the run a trigger-now started, so the schedule's next slot sees it running.
    pub async fn set_last_run(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        run_id: ObjectId,
    ) -> Result<()> {
        self.update_scope(
            tenant_id,
            scope_id,
            doc! { "$set": { "last_run_id": run_id } },
        )
        .await
        .map(|_| ())
    }

    async fn update_scope(
        &self,
        tenant_id: &str,
        scope_id: ObjectId,
        update: Document,
    ) -> Result<ScanScope> {
        let found = self
            .scopes()
            .update_one(doc! { "_id": scope_id, "tenant_id": tenant_id }, update)
            .await?;
        if found.matched_count == 0 {
            return Err(DomainError::not_found("scan scope", scope_id, tenant_id));
        }
        self.scope(tenant_id, scope_id).await
    }

    /// Claims up to `limit` scopes that are due at `now`: scheduled, not paused, not of a
    /// tenant in `suspended`, and not held by an unexpired claim. Each claimed scope is held by
    /// `owner` for `lease` under one new nonce, which the scopes returned carry.
    ///
    /// Two steps, as the queue's claim: read the candidates, then claim them with a write that
    /// repeats the due condition, so of two replicas racing for a scope exactly one wins it;
    /// the claimed scopes are read back by the nonce.
    pub async fn claim_due_scopes(
        &self,
        owner: &str,
        now: DateTime,
        lease: Duration,
        limit: usize,
        suspended: &[String],
    ) -> Result<ClaimedScopes> {
        let due = doc! {
            "paused": false,
            "due_at": { "$lte": now },
            "tenant_id": { "$nin": suspended },
            "$or": [ { "claim": null }, { "claim.expires_at": { "$lte": now } } ],
        };
        let candidates: Vec<ObjectId> = self
            .db
            .collection::<Document>("scan_scopes")
            .find(due.clone())
            .projection(doc! { "_id": 1 })
            .sort(doc! { "due_at": 1 })
            .limit(limit as i64)
            .await?
            .try_filter_map(|d| async move { Ok(d.get_object_id("_id").ok()) })
            .try_collect()
            .await?;
        if candidates.is_empty() {
            return Ok(ClaimedScopes::default());
        }
        let found = candidates.len();
        let nonce = ObjectId::new();
        let expires_at = DateTime::from_millis(now.timestamp_millis() + lease.as_millis() as i64);
        let mut filter = due;
        filter.insert("_id", doc! { "$in": candidates });
        self.scopes()
            .update_many(
                filter,
                doc! { "$set": { "claim": { "owner": owner, "nonce": nonce, "expires_at": expires_at } } },
            )
            .await?;
        // Read back as raw documents: one that does not read as a scope (written by hand, or by
        // another version) is parked on its own rather than failing every tick it is due in.
        let raw: Vec<RawDocumentBuf> = self
            .raw_scopes()
            .find(doc! { "claim.nonce": nonce })
            .sort(doc! { "due_at": 1 })
            .await?
            .try_collect()
            .await?;
        let mut claimed = Vec::with_capacity(raw.len());
        for document in raw {
            let id = document.get_object_id("_id").ok();
            match read_scope(&document) {
                Ok(scope) => claimed.push(scope),
                Err(error) => {
                    tracing::error!(scope_id = ?id, %error,
                        "a scan scope does not read back; parked until it is edited");
                    if let Some(id) = id {
                        self.park_scope(id, nonce).await?;
                    }
                }
            }
        }
        Ok(ClaimedScopes {
            scopes: claimed,
            candidates: found,
        })
    }

    /// Takes a scope the scheduler cannot follow out of every claim (no `due_at`) until an edit
    /// sets its schedule again; `nonce` is the claim it was found under.
    async fn park_scope(&self, scope_id: ObjectId, nonce: ObjectId) -> Result<()> {
        self.db
            .collection::<Document>("scan_scopes")
            .update_one(
                doc! { "_id": scope_id, "claim.nonce": nonce },
                doc! { "$set": { "due_at": null }, "$unset": { "claim": "" } },
            )
            .await?;
        Ok(())
    }

    /// Writes back what the holders decided and drops their claims, in one round trip. Each
    /// settlement lands only while its claim holds; returns how many landed.
    pub async fn settle_scopes(&self, settlements: &[ScopeSettlement]) -> Result<u64> {
        let statements = settlements
            .iter()
            .map(|s| {
                batch::statement(
                    doc! { "_id": s.scope_id, "claim.nonce": s.nonce },
                    doc! {
                        "$set": {
                            "next_run_at": s.next_run_at, "due_at": s.due_at,
                            "buffered_slot": s.buffered_slot, "last_run_id": s.last_run_id,
                        },
                        "$unset": { "claim": "" },
                    },
                    false,
                )
            })
            .collect();
        batch::update_all(&self.db, "scan_scopes", statements).await
    }

    /// Gives claimed scopes back undecided (a tick that failed half-way): they are due again.
    pub async fn release_scopes(&self, nonce: ObjectId) -> Result<()> {
        self.scopes()
            .update_many(
                doc! { "claim.nonce": nonce },
                doc! { "$unset": { "claim": "" } },
            )
            .await?;
        Ok(())
    }

    /// When the earliest scheduled, unpaused scope of an active tenant is due: how long a
    /// scheduler may sleep before its next tick.
    pub async fn next_due_at(&self, suspended: &[String]) -> Result<Option<DateTime>> {
        let next = self
            .db
            .collection::<Document>("scan_scopes")
            .find_one(doc! {
                "paused": false,
                "due_at": { "$ne": null },
                "tenant_id": { "$nin": suspended },
            })
            .projection(doc! { "due_at": 1 })
            .sort(doc! { "due_at": 1 })
            .await?;
        Ok(next.and_then(|d| d.get_datetime("due_at").ok().copied()))
    }

    /// The ids of suspended tenants (few: their scopes are left out of every claim).
    pub async fn suspended_tenants(&self) -> Result<Vec<String>> {
        Ok(self
            .db
            .collection::<Document>("tenants")
            .find(doc! { "status": "suspended" })
            .projection(doc! { "_id": 1 })
            .await?
            .try_filter_map(|d| async move { Ok(d.get_str("_id").ok().map(str::to_string)) })
            .try_collect()
            .await?)
    }

    /// The status of each of `ids` that exists.
    pub async fn run_statuses(&self, ids: &[ObjectId]) -> Result<HashMap<ObjectId, RunStatus>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut statuses = HashMap::new();
        let mut found = self
            .db
            .collection::<Document>("scan_runs")
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "status": 1 })
            .await?;
        while let Some(run) = found.try_next().await? {
            let id = run.get_object_id("_id").map_err(|e| {
                DomainError::Write(format!("a scan run without an ObjectId _id: {e}"))
            })?;
            let status = run
                .get("status")
                .cloned()
                .ok_or_else(|| DomainError::malformed("scan run", id, "no status"))?;
            let status: RunStatus =
                bson::from_bson(status).map_err(|e| DomainError::malformed("scan run", id, e))?;
            statuses.insert(id, status);
        }
        Ok(statuses)
    }
}
