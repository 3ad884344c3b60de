//! The OS processes a benchmark starts (our workers, agenda's, its enqueuer): started with their
//! output read line by line, told apart by a readiness line, and killed when dropped, so a failed
//! run leaves nothing behind.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a process gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Output lines kept for an error message when a process fails.
const TAIL: usize = 20;

/// A line of output and the wall-clock time it was read: readiness times are compared with the
/// timestamps the jobs carry, which are wall-clock too.
type Line = (SystemTime, String);

/// A running child process. Dropping it kills the process (SIGKILL).
pub struct Proc {
    name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<Line>,
    tail: VecDeque<String>,
}

impl Proc {
    /// Starts `command` with stdout and stderr read as lines (both: our worker logs to one, node
    /// may complain on the other).
    pub fn spawn(name: impl Into<String>, mut command: Command) -> Result<Proc> {
        let name = name.into();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start {name}"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take(), tx.clone());
        forward(child.stderr.take(), tx);
        Ok(Proc {
            name,
            child,
            lines,
            tail: VecDeque::new(),
        })
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has exited", self.name))
    }

    /// Waits for a line containing `marker` and returns when it was read. Fails if the process
    /// closes its output first or `timeout` passes.
    pub async fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<SystemTime> {
        let found = tokio::time::timeout(timeout, async {
            while let Some((at, line)) = self.lines.recv().await {
                let hit = line.contains(marker);
                self.remember(line);
                if hit {
                    return Some(at);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(at)) => Ok(at),
            Ok(None) => bail!(
                "{} ended before printing {marker:?}; its last output:\n{}",
                self.name,
                self.tail()
            ),
            Err(_) => bail!(
                "{} did not print {marker:?} within {timeout:?}; its last output:\n{}",
                self.name,
                self.tail()
            ),
        }
    }

    /// Waits for the process to exit on its own and fails unless it succeeded.
    pub async fn finish(mut self, timeout: Duration) -> Result<()> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("{} did not finish within {timeout:?}", self.name))??;
        self.check(status)
    }

    /// SIGTERM, then a wait; killed if it does not stop within the grace period. Fails unless it
    /// exited cleanly.
    pub async fn stop(mut self) -> Result<()> {
        let pid = Pid::from_raw(self.pid()? as i32);
        kill(pid, Signal::SIGTERM).with_context(|| format!("could not signal {}", self.name))?;
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => self.check(status?),
            // The measurement is over by now; a peer that is slow to shut down (agenda unlocks
            // its jobs one query at a time, which on the stand scans the collection) is killed
            // rather than failing the cell.
            Err(_) => {
                eprintln!(
                    "{} did not stop within {STOP_GRACE:?} of SIGTERM; killed",
                    self.name
                );
                self.child.kill().await?;
                Ok(())
            }
        }
    }

    fn check(&mut self, status: std::process::ExitStatus) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        while let Ok((_, line)) = self.lines.try_recv() {
            self.remember(line);
        }
        bail!(
            "{} exited with {status}; its last output:\n{}",
            self.name,
            self.tail()
        )
    }

    fn remember(&mut self, line: String) {
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    fn tail(&self) -> String {
        self.tail.iter().map(|l| format!("  {l}\n")).collect()
    }
}

/// Reads `stream` line by line into `tx` until it closes. Lines nobody waits for any more are
/// dropped, but the pipe keeps being read so a chatty process never blocks on a full pipe.
fn forward(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    tx: mpsc::UnboundedSender<Line>,
) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send((SystemTime::now(), line));
        }
    });
}

/// Stops every process, all of them even when one fails; reports the first failure.
/// Waits until every process printed `marker`; returns when the first of them did.
pub async fn first_ready(
    procs: &mut [Proc],
    marker: &str,
    timeout: Duration,
) -> Result<SystemTime> {
    let mut first = None::<SystemTime>;
    for proc in procs.iter_mut() {
        let ready = proc.wait_for(marker, timeout).await?;
        first = Some(first.map_or(ready, |f| f.min(ready)));
    }
    first.context("no process to wait for")
}

pub async fn stop_all(procs: Vec<Proc>) -> Result<()> {
    let mut first_error = None;
    for proc in procs {
        if let Err(e) = proc.stop().await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Peak (VmHWM) and current (VmRSS) resident memory of a process, in MB (10⁶ bytes, the unit
/// of the target), from /proc.
pub fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed /proc status line")?
            .parse()?;
        Ok(kib * 1024.0 / 1e6)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}
