//! The connector's process once started: waiting for it to exit while its stderr is read, under
//! the run's time limit and cancel, and its process group killed whatever ended the run, even
//! when the driver's future is dropped first.

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::DriverError;
use crate::redact::StderrTail;

/// How long, once the process group is dead, the driver still waits for stderr to reach its end.
/// Only a process that left the group (`setsid`) can keep the pipe open that long; the driver
/// does not wait on it.
const STDERR_DRAIN_GRACE: Duration = Duration::from_secs(1);

/// How the connector's process ended.
pub(super) enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// Waits for the connector to exit, the time limit, or the cancel, whichever comes first, while
/// reading its stderr; then kills the process group and reaps the connector.
pub(super) async fn supervise(
    child: &mut Child,
    group: &mut ProcessGroup,
    tail: &mut StderrTail,
    time_limit: Duration,
    cancel: &CancellationToken,
) -> Result<Ending, DriverError> {
    let stderr = child.stderr.take().expect("stderr is piped");
    // Read concurrently with the wait: a connector that fills the pipe would block on it.
    let reading = tail.read_from(stderr);
    tokio::pin!(reading);
    let mut read_done = false;
    let deadline = tokio::time::sleep(time_limit);
    tokio::pin!(deadline);

    let ending = loop {
        tokio::select! {
            // An exit that comes with the deadline or the cancel still counts as an exit.
            biased;
            status = child.wait() => {
                break Ending::Exited(status.map_err(DriverError::io("waiting for the connector"))?);
            }
            () = &mut deadline => break Ending::TimedOut,
            () = cancel.cancelled() => break Ending::Cancelled,
            () = &mut reading, if !read_done => read_done = true,
        }
    };

    // Whatever ended the run, no process of the group may outlive it: after a timeout or a
    // cancel that is the connector and its children, after an exit whatever it left running in
    // the background (which would also hold stderr open).
    group.kill();
    if !matches!(ending, Ending::Exited(_)) {
        child
            .wait()
            .await
            .map_err(DriverError::io("reaping the killed connector"))?;
    }
    group.disarm();

    if !read_done
        && tokio::time::timeout(STDERR_DRAIN_GRACE, &mut reading)
            .await
            .is_err()
    {
        tracing::warn!("a process outside the connector's group holds its stderr open");
    }
    Ok(ending)
}

/// The connector's process group, killed with SIGKILL when the run ends or when the driver's
/// future is dropped before that (the guard).
pub(super) struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// `process_group(0)` made the connector the leader of a new group: its pid is the group's id.
    pub(super) fn of(child: &Child) -> ProcessGroup {
        ProcessGroup {
            pgid: child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (nobody left in the group) is the usual answer after a clean exit.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// Once the group is killed and its leader reaped, the group id may eventually name another
    /// process's group: never signal it again. (Between reaping the leader and the kill that
    /// follows an exit, the id stays taken as long as any member lives; with no member left, it
    /// could only be reused after the pid space wrapped around in those microseconds.)
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
