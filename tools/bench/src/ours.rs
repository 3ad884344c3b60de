//! Our side: `sv0 worker` processes serving the built-in no-op kind, fed through `sv0-queue`.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Collection, Database};
use sv0_queue::{JobDoc, JobStatus, LeaseDoc, NewJob, Queue};
use tokio::process::Command;

use crate::measure::{self, Latency, Memory, Throughput};
use crate::procs::{self, Proc};

/// The diagnostic kind `sv0 worker --diagnostics` serves: it returns at once.
const KIND: &str = "noop";
/// What `sv0 worker` logs once it is about to claim.
pub const READY: &str = "worker started";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Jobs per `insert_many` when filling the queue.
const INSERT_BATCH: usize = 5_000;

/// How to run our worker binary against one server.
pub struct Ours {
    pub bin: PathBuf,
    pub uri: String,
}

impl Ours {
    /// Starts `processes` workers of `concurrency` each and waits until all are ready; returns
    /// them and when the first became ready (from then on jobs are being claimed).
    async fn start(
        &self,
        db: &Database,
        processes: usize,
        concurrency: usize,
        change_streams: bool,
    ) -> Result<(Vec<Proc>, SystemTime)> {
        let mut workers = Vec::new();
        for i in 0..processes {
            let mut command = Command::new(&self.bin);
            command
                .arg("worker")
                .args(["--mongodb-uri", &self.uri])
                .args(["--database", db.name()])
                .arg("--diagnostics")
                .args(["--concurrency", &concurrency.to_string()])
                .args(["--metrics-addr", "127.0.0.1:0"])
                .args([
                    "--change-streams",
                    if change_streams { "auto" } else { "off" },
                ]);
            workers.push(Proc::spawn(format!("sv0 worker #{i}"), command)?);
        }
        let first = procs::first_ready(&mut workers, READY, START_TIMEOUT).await?;
        Ok((workers, first))
    }

    /// Pre-enqueues `jobs` no-op jobs (after `history` finished ones), then drains them with
    /// `processes` × `concurrency`.
    pub async fn drain(
        &self,
        db: &Database,
        jobs: usize,
        history: usize,
        processes: usize,
        concurrency: usize,
        cap: Duration,
    ) -> Result<Throughput> {
        let queue = fresh_queue(db).await?;
        insert_history(db, history).await?;
        enqueue(&queue, jobs).await?;

        let (workers, start) = self.start(db, processes, concurrency, false).await?;
        let jobs_coll = db.collection::<Document>("jobs");
        measure::end_drain(
            workers,
            start,
            (jobs, history, cap),
            || unfinished(&jobs_coll),
            || succeeded(&jobs_coll),
        )
        .await
    }

    /// Enqueues `count` jobs one by one at `per_second` to idle workers (2 × 8) and returns the
    /// spread of `started_at − created_at`.
    pub async fn latency(
        &self,
        db: &Database,
        count: usize,
        per_second: f64,
        change_streams: bool,
    ) -> Result<Latency> {
        let queue = fresh_queue(db).await?;
        let (workers, _) = self.start(db, 2, 8, change_streams).await?;
        // Idle for a moment first, so the workers are in their idle wake-up mode when jobs come.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let begin = Instant::now();
        for i in 0..count {
            measure::pace(begin, i, per_second).await;
            queue.enqueue(NewJob::new(KIND, doc! {})).await?;
        }
        let jobs_coll = db.collection::<Document>("jobs");
        let all_done =
            measure::wait_until_done(Duration::from_secs(30), || unfinished(&jobs_coll)).await?;
        procs::stop_all(workers).await?;
        anyhow::ensure!(
            all_done,
            "latency run: jobs were left unfinished after 30 s"
        );

        let samples: Vec<f64> = db
            .collection::<JobDoc>("jobs")
            .find(doc! {})
            .await?
            .try_filter_map(|job| async move {
                Ok(job
                    .started_at
                    .map(|s| (s.timestamp_millis() - job.created_at.timestamp_millis()) as f64))
            })
            .try_collect()
            .await?;
        Latency::of(samples)
    }

    /// Drains `jobs` with one worker of `concurrency` and reads its memory before stopping it.
    /// Its resident size at rest is read first, before any job is enqueued: the binary carries
    /// more than the queue (the pipeline's stages, the broker), and the pages its startup touches
    /// are not what the jobs cost.
    pub async fn memory(&self, db: &Database, jobs: usize, concurrency: usize) -> Result<Memory> {
        let queue = fresh_queue(db).await?;
        let (workers, _) = self.start(db, 1, concurrency, false).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, at_rest_mb) = procs::memory_mb(workers[0].pid()?)?;
        enqueue(&queue, jobs).await?;
        let jobs_coll = db.collection::<Document>("jobs");
        let all_done =
            measure::wait_until_done(Duration::from_secs(120), || unfinished(&jobs_coll)).await?;
        let (peak_mb, current_mb) = procs::memory_mb(workers[0].pid()?)?;
        procs::stop_all(workers).await?;
        anyhow::ensure!(
            all_done,
            "memory run: jobs were left unfinished after 120 s"
        );
        Ok(Memory {
            peak_mb,
            current_mb,
            at_rest_mb: Some(at_rest_mb),
        })
    }
}

/// An empty `jobs` collection in `db`, with the queue's indexes.
pub async fn fresh_queue(db: &Database) -> Result<Queue> {
    db.drop().await?;
    let queue = Queue::new(db);
    queue.ensure_indexes().await?;
    Ok(queue)
}

/// Enqueues `count` no-op jobs through the queue's bulk enqueue; returns their ids.
pub async fn enqueue(queue: &Queue, count: usize) -> Result<Vec<ObjectId>> {
    let mut ids = Vec::with_capacity(count);
    for start in (0..count).step_by(INSERT_BATCH) {
        let batch = (start..count.min(start + INSERT_BATCH))
            .map(|_| NewJob::new(KIND, doc! {}))
            .collect();
        ids.extend(queue.enqueue_many(batch).await?.into_iter().map(|e| e.id));
    }
    Ok(ids)
}

/// Inserts `count` jobs that succeeded a day ago, the way the queue leaves them until pruned.
pub async fn insert_history(db: &Database, count: usize) -> Result<()> {
    let at = measure::a_day_ago();
    let jobs = db.collection::<JobDoc>("jobs");
    for start in (0..count).step_by(INSERT_BATCH) {
        let batch: Vec<JobDoc> = (start..count.min(start + INSERT_BATCH))
            .map(|_| JobDoc {
                id: ObjectId::new(),
                kind: KIND.into(),
                tenant_id: None,
                group_id: None,
                payload: doc! {},
                status: JobStatus::Succeeded,
                priority: 0,
                run_at: at,
                attempts: 1,
                max_attempts: 5,
                claims: 1,
                timeout_ms: None,
                lease: LeaseDoc {
                    owner: Some("history".into()),
                    token: 1,
                    expires_at: None,
                    claim: None,
                },
                dedup_key: None,
                last_error: None,
                cancel_requested: false,
                created_at: at,
                updated_at: at,
                started_at: Some(at),
                finished_at: Some(at),
            })
            .collect();
        jobs.insert_many(batch).await?;
    }
    Ok(())
}

/// Jobs not yet in a final state.
pub async fn unfinished(jobs: &Collection<Document>) -> Result<u64> {
    let open = [JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
    Ok(jobs
        .count_documents(doc! {"status": {"$in": open.as_slice()}})
        .await?)
}

/// How many jobs succeeded, and when the last of them finished.
pub async fn succeeded(jobs: &Collection<Document>) -> Result<(usize, Option<DateTime>)> {
    let filter = doc! {"status": JobStatus::Succeeded.as_str()};
    let done = jobs.count_documents(filter.clone()).await? as usize;
    let last = jobs
        .find_one(filter)
        .sort(doc! {"finished_at": -1})
        .projection(doc! {"finished_at": 1})
        .await?
        .and_then(|d| d.get_datetime("finished_at").ok().copied());
    Ok((done, last))
}
