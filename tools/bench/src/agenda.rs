//! The agenda side: `tools/bench/agenda/peer.mjs` runs the real npm `agenda` 6 with
//! `@agendajs/mongo-backend` (processEvery 100 ms, a no-op job definition) in node processes.
//! Jobs live in agenda's own collection, `agendaJobs`; a job is done once `lastFinishedAt` is set.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::{Collection, Database};
use tokio::process::Command;

use crate::measure::{self, Latency, Memory, Throughput};
use crate::procs::{self, Proc};

const COLLECTION: &str = "agendaJobs";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const FILL_TIMEOUT: Duration = Duration::from_secs(300);

/// How to run the agenda peer against one server.
pub struct Agenda {
    pub dir: PathBuf,
    pub uri: String,
}

impl Agenda {
    fn peer(&self, db: &Database, mode: &str, args: &[String]) -> Command {
        let mut command = Command::new("node");
        command
            .arg(self.dir.join("peer.mjs"))
            .args([mode, &self.uri, db.name()])
            .args(args);
        command
    }

    /// Runs the peer in `mode` to completion (enqueue, history).
    async fn run(&self, db: &Database, mode: &str, args: &[String]) -> Result<()> {
        let name = format!("agenda {mode}");
        Proc::spawn(name, self.peer(db, mode, args))?
            .finish(FILL_TIMEOUT)
            .await
    }

    /// Starts `processes` agenda workers of `concurrency` each; returns them and when the first
    /// was ready (its processing loop had begun).
    async fn start(
        &self,
        db: &Database,
        processes: usize,
        concurrency: usize,
    ) -> Result<(Vec<Proc>, SystemTime)> {
        let mut workers = Vec::new();
        for i in 0..processes {
            let command = self.peer(db, "worker", &[concurrency.to_string()]);
            workers.push(Proc::spawn(format!("agenda worker #{i}"), command)?);
        }
        let first = procs::first_ready(&mut workers, "ready", START_TIMEOUT).await?;
        Ok((workers, first))
    }

    pub async fn drain(
        &self,
        db: &Database,
        jobs: usize,
        history: usize,
        processes: usize,
        concurrency: usize,
        cap: Duration,
    ) -> Result<Throughput> {
        db.drop().await?;
        if history > 0 {
            self.run(db, "history", &[history.to_string()]).await?;
        }
        self.run(db, "enqueue", &[jobs.to_string()]).await?;

        let (workers, start) = self.start(db, processes, concurrency).await?;
        let coll = db.collection::<Document>(COLLECTION);
        measure::end_drain(
            workers,
            start,
            (jobs, history, cap),
            || unfinished(&coll),
            || finished(&coll),
        )
        .await
    }

    /// `count` jobs enqueued through agenda at `per_second` to idle workers (2 × 8); the spread
    /// of `lastRunAt − enqueued_ms`.
    pub async fn latency(&self, db: &Database, count: usize, per_second: f64) -> Result<Latency> {
        db.drop().await?;
        let (workers, _) = self.start(db, 2, 8).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.run(db, "enqueue", &[count.to_string(), per_second.to_string()])
            .await?;
        let coll = db.collection::<Document>(COLLECTION);
        let all_done =
            measure::wait_until_done(Duration::from_secs(30), || unfinished(&coll)).await?;
        procs::stop_all(workers).await?;
        anyhow::ensure!(
            all_done,
            "agenda latency run: jobs left unfinished after 30 s"
        );

        let samples: Vec<f64> = coll
            .find(doc! {})
            .await?
            .try_filter_map(|job| async move {
                let ran = job.get_datetime("lastRunAt").ok();
                let enqueued = job
                    .get_document("data")
                    .ok()
                    .and_then(|d| number(d, "enqueued_ms"));
                Ok(ran
                    .zip(enqueued)
                    .map(|(ran, enq)| ran.timestamp_millis() as f64 - enq))
            })
            .try_collect()
            .await?;
        Latency::of(samples)
    }

    /// Drains `jobs` with one agenda process of `concurrency`; its memory before it stops.
    pub async fn memory(&self, db: &Database, jobs: usize, concurrency: usize) -> Result<Memory> {
        db.drop().await?;
        self.run(db, "enqueue", &[jobs.to_string()]).await?;
        let (workers, _) = self.start(db, 1, concurrency).await?;
        let coll = db.collection::<Document>(COLLECTION);
        let all_done =
            measure::wait_until_done(Duration::from_secs(120), || unfinished(&coll)).await?;
        let (peak_mb, current_mb) = procs::memory_mb(workers[0].pid()?)?;
        procs::stop_all(workers).await?;
        anyhow::ensure!(
            all_done,
            "agenda memory run: jobs left unfinished after 120 s"
        );
        Ok(Memory {
            peak_mb,
            current_mb,
            at_rest_mb: None,
        })
    }
}

/// A number the node driver may have stored as a double or an integer.
fn number(doc: &Document, key: &str) -> Option<f64> {
    doc.get_f64(key)
        .ok()
        .or_else(|| doc.get_i64(key).ok().map(|n| n as f64))
        .or_else(|| doc.get_i32(key).ok().map(f64::from))
}

async fn unfinished(jobs: &Collection<Document>) -> Result<u64> {
    Ok(jobs.count_documents(doc! {"lastFinishedAt": null}).await?)
}

/// How many jobs finished without failing, and when the last of them finished.
async fn finished(jobs: &Collection<Document>) -> Result<(usize, Option<DateTime>)> {
    let filter = doc! {"lastFinishedAt": {"$ne": null}, "failedAt": null};
    let done = jobs.count_documents(filter.clone()).await? as usize;
    let last = jobs
        .find_one(filter)
        .sort(doc! {"lastFinishedAt": -1})
        .projection(doc! {"lastFinishedAt": 1})
        .await?
        .and_then(|d| d.get_datetime("lastFinishedAt").ok().copied());
    Ok((done, last))
}
