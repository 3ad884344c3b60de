//! What a cell of the table holds, and the small helpers every peer's measurement shares.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use mongodb::bson::DateTime;
use serde::Serialize;

use crate::procs::{self, Proc};

/// How often a drain is checked for completion. Each check is a collection scan on the stand,
/// serialized with the workers' own operations, so not too often; the end time itself comes from
/// the jobs' timestamps, not from this poll.
const POLL: Duration = Duration::from_millis(250);

/// Jobs drained over a span of wall-clock time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub done: usize,
    pub total: usize,
    pub seconds: f64,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.done as f64 / self.seconds
    }

    /// The run hit its time cap before every job was done.
    pub fn capped(&self) -> bool {
        self.done < self.total
    }
}

/// Enqueue→start latency, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    /// Every sample, sorted: the report's plot draws their distribution.
    pub samples_ms: Vec<f64>,
}

impl Latency {
    pub fn of(mut samples_ms: Vec<f64>) -> Result<Latency> {
        anyhow::ensure!(!samples_ms.is_empty(), "no latency samples");
        Ok(Latency {
            p50: percentile(&mut samples_ms, 0.50),
            p99: percentile(&mut samples_ms, 0.99),
            p999: percentile(&mut samples_ms, 0.999),
            samples_ms,
        })
    }
}

/// The nearest-rank percentile `p` (0 to 1) of `samples`, which it sorts; NaN when empty.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = (p * samples.len() as f64).ceil() as usize;
    samples.get(rank.max(1) - 1).copied().unwrap_or(f64::NAN)
}

/// A worker process's resident memory after a drain, in MB (10⁶ bytes).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    pub peak_mb: f64,
    pub current_mb: f64,
    /// Resident before any job came, when measured: mostly the binary's pages that startup
    /// touched, so `peak_mb − at_rest_mb` is what the jobs cost.
    pub at_rest_mb: Option<f64>,
}

impl Memory {
    /// What draining the jobs added to the resident set, when the resting size is known.
    pub fn drain_mb(&self) -> Option<f64> {
        self.at_rest_mb.map(|rest| self.peak_mb - rest)
    }
}

/// Polls `remaining` until it reports 0 or `cap` passes; returns whether it reached 0.
pub async fn wait_until_done<F, Fut>(cap: Duration, mut remaining: F) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let deadline = Instant::now() + cap;
    loop {
        if remaining().await? == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The drain's span: from `start` (the first worker ready) to `last` (the last job finished, from
/// its own timestamp), or to `counted_at` when the run was capped.
pub fn throughput(
    start: SystemTime,
    last: Option<DateTime>,
    counted_at: SystemTime,
    done: usize,
    total: usize,
) -> Throughput {
    let end = match last {
        Some(last) if done == total => last.to_system_time(),
        _ => counted_at,
    };
    let seconds = end
        .duration_since(start)
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-3);
    Throughput {
        done,
        total,
        seconds,
    }
}

/// Sleeps until `start + i / per_second`, so a slow enqueue does not shift every later one.
pub async fn pace(start: Instant, i: usize, per_second: f64) {
    let due = start + Duration::from_secs_f64(i as f64 / per_second);
    tokio::time::sleep_until(due.into()).await;
}

/// A date a day ago: the finished time of the pre-filled history, well before any measured job.
pub fn a_day_ago() -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - 86_400_000)
}

/// Ends a drain that started at `start`: waits until `unfinished` says none is left or `cap`
/// passes, counts the `finished` jobs (with the last one's finish time) before the workers stop,
/// so a capped run counts what it did within the cap, then stops them. `history` finished jobs
/// were there before and do not count.
pub async fn end_drain<U, UF, C, CF>(
    workers: Vec<Proc>,
    start: SystemTime,
    (jobs, history, cap): (usize, usize, Duration),
    unfinished: U,
    finished: C,
) -> Result<Throughput>
where
    U: FnMut() -> UF,
    UF: Future<Output = Result<u64>>,
    C: FnOnce() -> CF,
    CF: Future<Output = Result<(usize, Option<DateTime>)>>,
{
    wait_until_done(cap, unfinished).await?;
    let (done, last) = finished().await?;
    let counted_at = SystemTime::now();
    procs::stop_all(workers).await?;
    Ok(throughput(start, last, counted_at, done - history, jobs))
}

/// `12345` → `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
