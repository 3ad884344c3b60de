//! The writes that move a scan run through its life: created (once per dedup key), started,
//! cells stamped, finished. A finished run's status never changes again; only a `__stitch`
//! cell may still be added to it, by a later run whose stitch it took part in.

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, Bson, DateTime, Document, doc};

use crate::Domain;
use crate::category::CategoryName;
use crate::error::{DomainError, Result};
use crate::run::{CategoryResult, RunStatus, ScanRun, cell_update};
use crate::run_fence::{ForRun, RunFence, RunWriter, TAKE_UP_TRIES};

impl Domain {
    /// Inserts `run`; if its `dedup_key` is taken, returns the run holding it instead, with
    /// `false`.
    pub async fn insert_run(&self, run: &ScanRun) -> Result<(ScanRun, bool)> {
        self.insert_runs(std::slice::from_ref(run)).await?.remove(0)
    }

    /// Inserts `runs` with one unordered insert, and reads the runs holding the dedup keys that
    /// were taken with one more. For each of `runs`, in order: the run and `true`; the run
    /// holding its dedup key and `false`; or why neither (the key belongs to another tenant's
    /// run, or its run went away before it could be read: a race, worth another try). The
    /// outer error is the batch's: nothing is known of which runs were written, and a retry
    /// finds them by their keys.
    pub async fn insert_runs(&self, runs: &[ScanRun]) -> Result<Vec<Result<(ScanRun, bool)>>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let taken = match self.runs().insert_many(runs).ordered(false).await {
            Ok(_) => Vec::new(),
            Err(error) => sv0_storage::duplicate_positions(&error).ok_or(error)?,
        };
        let keys: Vec<&str> = taken
            .iter()
            .filter_map(|&i| runs[i].dedup_key.as_deref())
            .collect();
        let mut holders: HashMap<String, ScanRun> = HashMap::new();
        if !keys.is_empty() {
            let mut found = self
                .runs()
                .find(doc! { "dedup_key": { "$in": keys } })
                .await?;
            while let Some(run) = found.try_next().await? {
                if let Some(key) = run.dedup_key.clone() {
                    holders.insert(key, run);
                }
            }
        }
        Ok(runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                if !taken.contains(&i) {
                    return Ok((run.clone(), true));
                }
                let Some(key) = &run.dedup_key else {
                    return Err(DomainError::Conflict(format!(
                        "run {} exists already",
                        run.id
                    )));
                };
                match holders.get(key) {
                    Some(holder) if holder.tenant_id == run.tenant_id => {
                        Ok((holder.clone(), false))
                    }
                    Some(_) => Err(DomainError::Conflict(format!(
                        "dedup key {key:?} belongs to another tenant's run"
                    ))),
                    None => Err(DomainError::Race(format!(
                        "run dedup key {key:?} was taken and then freed"
                    ))),
                }
            })
            .collect())
    }

    /// The run created under `dedup_key`, if there is one.
    pub async fn run_by_dedup_key(&self, dedup_key: &str) -> Result<Option<ScanRun>> {
        Ok(self
            .runs()
            .find_one(doc! { "dedup_key": dedup_key })
            .await?)
    }

    pub async fn run(&self, tenant_id: &str, id: ObjectId) -> Result<ScanRun> {
        self.runs()
            .find_one(doc! { "_id": id, "tenant_id": tenant_id })
            .await?
            .ok_or_else(|| DomainError::not_found("scan run", id, tenant_id))
    }

    /// A run by its id alone, whatever its tenant: for the admin API, whose callers address
    /// runs by id (the run names its tenant, and every later call filters by it).
    pub async fn run_by_id(&self, id: ObjectId) -> Result<ScanRun> {
        self.runs()
            .find_one(doc! { "_id": id })
            .await?
            .ok_or_else(|| DomainError::not_found("scan run", id, ""))
    }

    /// A stage holder takes the run up under `fence`: the run's fence is raised to it (a
    /// compare-and-set that never lowers it), `last_claimed_at` is stamped, and a queued run
    /// becomes running. Returns the run as it is now: when its `fence` is not `fence`, a newer
    /// holder (or a later stage) has it, and this holder must not write to it. A finished run is
    /// left as it is.
    pub async fn start_run(
        &self,
        tenant_id: &str,
        id: ObjectId,
        fence: RunFence,
    ) -> Result<ScanRun> {
        let holder = RunWriter::Holder(fence);
        let mut tries = 0;
        loop {
            let run = self.run(tenant_id, id).await?;
            // A fence already this high is a newer holder's, or this one's own earlier take-up:
            // either way there is nothing to write.
            if run.status.is_finished() || run.fence.is_some_and(|held| held >= fence) {
                return Ok(run);
            }
            let now = DateTime::now();
            let mut update = doc! { "$set": {
                "fence": fence, "last_claimed_at": now, "updated_at": now,
            } };
            holder.log(&mut update, "take_up");
            let mut filter = doc! { "_id": id, "tenant_id": tenant_id };
            filter.insert("fence", run.fence.map_or(Bson::Null, Bson::from));
            if self.runs().update_one(filter, update).await?.matched_count == 0 {
                tries += 1;
                if tries == TAKE_UP_TRIES {
                    return Err(DomainError::Race(format!(
                        "run {id}: its fence kept moving while {fence} took it up"
                    )));
                }
                continue;
            }
            self.runs()
                .update_one(
                    doc! { "_id": id, "tenant_id": tenant_id, "status": "queued" },
                    doc! { "$set": {
                        "status": "running", "started_at": now, "last_claimed_at": now,
                        "updated_at": now,
                    } },
                )
                .await?;
            return self.run(tenant_id, id).await;
        }
    }

    /// Writes one cell of the run, as `writer`.
    pub async fn stamp_cell(
        &self,
        tenant_id: &str,
        id: ObjectId,
        writer: RunWriter,
        name: &CategoryName,
        cell: &CategoryResult,
    ) -> Result<()> {
        let mut update = doc! { "$set": cell_update(name, cell)? };
        writer.log(&mut update, &format!("cell {name}"));
        self.write_run(tenant_id, id, writer, update).await
    }

    /// Writes several cells at once (a connector's categories), as `writer`.
    pub async fn stamp_cells<'a>(
        &self,
        tenant_id: &str,
        id: ObjectId,
        writer: RunWriter,
        cells: impl IntoIterator<Item = (&'a CategoryName, &'a CategoryResult)>,
    ) -> Result<()> {
        let mut set = doc! { "updated_at": DateTime::now() };
        for (name, cell) in cells {
            set.insert(format!("category_results.{name}"), bson::to_bson(cell)?);
        }
        let mut update = doc! { "$set": set };
        writer.log(&mut update, "cells");
        self.write_run(tenant_id, id, writer, update).await
    }

    /// Links the run to the `connector_syncs` record its data came from, as `writer`.
    pub async fn set_run_sync(
        &self,
        tenant_id: &str,
        id: ObjectId,
        writer: RunWriter,
        sync_id: ObjectId,
    ) -> Result<()> {
        let mut update = doc! { "$set": { "sync_id": sync_id, "updated_at": DateTime::now() } };
        writer.log(&mut update, "sync");
        self.write_run(tenant_id, id, writer, update).await
    }

    /// Refuses a write made for `by` (to its tenant's sets, its sync, its evidence pack) when `by`
    /// is a stage holder whose fence no longer holds its run.
    pub(crate) async fn check_holder(&self, tenant_id: &str, by: ForRun) -> Result<()> {
        let RunWriter::Holder(fence) = by.writer else {
            return Ok(());
        };
        let held = self
            .runs()
            .clone_with_type::<Document>()
            .find_one(by.writer.filter(tenant_id, by.run_id))
            .projection(doc! { "_id": 1 })
            .await?;
        match held {
            Some(_) => Ok(()),
            None => Err(DomainError::FencedOut(format!(
                "run {}: {fence} no longer holds the run; its write for the run was refused",
                by.run_id
            ))),
        }
    }

    /// One write to run `id` by `writer`: a holder whose fence no longer holds gets
    /// [`DomainError::FencedOut`].
    async fn write_run(
        &self,
        tenant_id: &str,
        id: ObjectId,
        writer: RunWriter,
        update: Document,
    ) -> Result<()> {
        let found = self
            .runs()
            .update_one(writer.filter(tenant_id, id), update)
            .await?;
        if found.matched_count == 1 {
            return Ok(());
        }
        match writer {
            RunWriter::Holder(fence) => Err(DomainError::FencedOut(format!(
                "run {id}: {fence} no longer holds the run (a newer holder or a later stage took \
                 it up, or the run is gone); the write was refused"
            ))),
            RunWriter::Outside => Err(DomainError::not_found("scan run", id, tenant_id)),
        }
    }

    /// Finishes an unfinished run with `status`; a finished run is left as it is. Returns whether
    /// this call finished it.
    pub async fn finish_run(
        &self,
        tenant_id: &str,
        id: ObjectId,
        writer: RunWriter,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<bool> {
        self.finish_run_from(
            tenant_id,
            id,
            writer,
            &[RunStatus::Queued, RunStatus::Running],
            status,
            error,
        )
        .await
    }

    /// Finishes the run with `status`, as `writer`, if it is in one of the statuses `from` (all
    /// unfinished); otherwise leaves it as it is. Returns whether this call finished it (a
    /// holder whose fence no longer holds does not).
    pub async fn finish_run_from(
        &self,
        tenant_id: &str,
        id: ObjectId,
        writer: RunWriter,
        from: &[RunStatus],
        status: RunStatus,
        error: Option<String>,
    ) -> Result<bool> {
        if let Some(finished) = from.iter().find(|s| s.is_finished()) {
            return Err(DomainError::invalid(
                "from",
                format!("{} is already a final status", finished.as_str()),
            ));
        }
        if !status.is_finished() {
            return Err(DomainError::invalid(
                "status",
                format!("{} is not a final status", status.as_str()),
            ));
        }
        let now = DateTime::now();
        let mut filter = writer.filter(tenant_id, id);
        filter.insert(
            "status",
            doc! { "$in": from.iter().map(|s| s.as_str()).collect::<Vec<_>>() },
        );
        // The fence closes with the run: a holder still at work lands nothing more on it.
        let mut update = doc! { "$set": {
            "status": status.as_str(), "error": error, "finished_at": now, "updated_at": now,
            "fence": RunFence::CLOSED,
        } };
        writer.log(&mut update, &format!("finish {}", status.as_str()));
        let finished = self.runs().update_one(filter, update).await?;
        Ok(finished.modified_count == 1)
    }

    /// Running runs that no worker has taken up for longer than their budget (`last_claimed_at` +
    /// `budget.max_runtime_seconds` before `now`): their worker is gone, or their jobs died.
    /// Budgets differ per run, so the query takes every running run idle for longer than the
    /// shortest budget and the rest is checked here; running runs are the pipeline's current work,
    /// not its history, so there are never many.
    pub async fn orphaned_runs(&self, now: DateTime) -> Result<Vec<ScanRun>> {
        let idle_since = DateTime::from_millis(now.timestamp_millis() - 1000);
        let running: Vec<ScanRun> = self
            .runs()
            .find(doc! { "status": "running", "last_claimed_at": { "$lt": idle_since } })
            .sort(doc! { "last_claimed_at": 1 })
            .await?
            .try_collect()
            .await?;
        Ok(running
            .into_iter()
            .filter(|run| {
                run.last_claimed_at.is_some_and(|at| {
                    at.timestamp_millis() + run.budget.max_runtime_seconds * 1000
                        < now.timestamp_millis()
                })
            })
            .collect())
    }

    /// Queued runs whose first job is due a check, oldest first, at most `limit`: those created
    /// before `created_before` that were never checked, and those last confirmed before
    /// `confirmed_before`. Where the orphaned-run reaper looks for runs whose creator lost the
    /// database between writing the run and enqueuing its first job, and for runs whose first
    /// job ended without taking them up.
    pub async fn queued_runs_to_check(
        &self,
        created_before: DateTime,
        confirmed_before: DateTime,
        limit: i64,
    ) -> Result<Vec<ScanRun>> {
        Ok(self
            .runs()
            .find(doc! {
                "status": "queued",
                "$or": [
                    { "first_job_confirmed_at": null, "created_at": { "$lt": created_before } },
                    { "first_job_confirmed_at": { "$lt": confirmed_before } },
                ],
            })
            .sort(doc! { "created_at": 1, "_id": 1 })
            .limit(limit.max(1))
            .await?
            .try_collect()
            .await?)
    }

    /// Records that the first jobs of the runs `ids` exist at `at`, so that the reaper looks at
    /// those runs again only much later.
    pub async fn confirm_first_jobs(&self, ids: &[ObjectId], at: DateTime) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.runs()
            .update_many(
                doc! { "_id": { "$in": ids } },
                doc! { "$set": { "first_job_confirmed_at": at } },
            )
            .await?;
        Ok(())
    }

    /// A tenant's newest runs, at most `limit` (1 to 1000).
    pub async fn recent_runs(&self, tenant_id: &str, limit: i64) -> Result<Vec<ScanRun>> {
        Ok(self
            .runs()
            .find(doc! { "tenant_id": tenant_id })
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(limit.clamp(1, 1000))
            .await?
            .try_collect()
            .await?)
    }
}
