//! The connector driver: the only code that starts a connector (docs/connector-contract.md).
//!
//! One call of [`run_connector`] is one connector process: the registered kind's executable,
//! confined by the worker's [`Sandbox`] (its files limited to the system's, its executable's and
//! its private run directory; its TCP connects to the kind's ports; seccomp; rlimits; another
//! user under a root worker), a private directory with `scope.json` in it, a cleared
//! environment plus the broker's bundle, a process group of its own that is killed as a whole on
//! the time budget, a cancel, or when the connector is done, and the two output files read back
//! and validated. Nothing of the run outlives the call: not the directory, not a process of the
//! group.
//!
//! Secrets: the bundle's values go into the child's environment and nowhere else. The only
//! connector text the driver keeps is the tail of its stderr, and every bundle value in it is
//! replaced by `[REDACTED]` before it is returned. Logs carry the program, the exit status and
//! timings only.
//!
//! Here: the run's flow, from the private directory and the confined command to the output. The
//! process once started (the wait, the time limit, the group's kill) is in `process`; reading
//! and validating the output files in `outputs`; the stderr tail's redaction in `crate::redact`.

mod outputs;
mod process;

use std::collections::BTreeMap;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sv0_broker::SecretBundle;
use sv0_domain::category::CONNECTOR_CATEGORY_RULE;
use sv0_domain::{CategoryName, CategoryResult, Graph};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

pub use crate::redact::STDERR_TAIL_BYTES;
use crate::redact::{Redactor, StderrTail};
use crate::registry::ConnectorKind;
use crate::sandbox::Sandbox;
use outputs::read_outputs;
pub use outputs::{
    MAX_CATEGORIES, MAX_ERROR_CHARS, MAX_ERRORS_PER_CATEGORY, MAX_GRAPH_BYTES, MAX_RESULTS_BYTES,
};
use process::{Ending, ProcessGroup, supervise};

const SCOPE_FILE: &str = "scope.json";
const RESULTS_FILE: &str = "category_results.json";
const GRAPH_FILE: &str = "graph.json";

/// Connector text put into an error message (a category name, a parser's reason) is cut to this
/// many characters: the message is stored in the run's `__driver__` cell.
const MAX_MESSAGE_CHARS: usize = 300;

/// One run of a connector.
pub struct ConnectorRun<'a> {
    /// The kind's name, for logs.
    pub kind_name: &'a str,
    /// The registered program, its fixed arguments (the contract's three flags are appended)
    /// and its confinement.
    pub kind: &'a ConnectorKind,
    /// How this worker confines connectors.
    pub sandbox: &'a Sandbox,
    /// The scope's `scope` document, written to `scope.json`.
    pub scope: &'a serde_json::Value,
    /// The credentials the broker resolved for the instance: the connector's environment.
    pub bundle: &'a SecretBundle,
    /// The run's remaining budget; the connector is killed past it.
    pub time_limit: Duration,
    /// Fires on a lost lease or a cancel; the connector is killed.
    pub cancel: CancellationToken,
}

/// What a connector that exited 0 left behind, validated.
#[derive(Debug)]
pub struct ConnectorOutput {
    pub categories: BTreeMap<CategoryName, CategoryResult>,
    pub graph: Graph,
    /// The size of `graph.json` as written.
    pub graph_bytes: usize,
    /// The end of stderr, at most [`STDERR_TAIL_BYTES`], bundle values redacted.
    pub stderr_tail: String,
    pub elapsed: Duration,
}

/// Why a run produced no output. Each message is one line, fit for the `errors` of the run's
/// `__driver__` cell, and never holds a bundle value.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("connector {program:?} cannot be confined: {source}")]
    Confinement {
        program: String,
        #[source]
        source: sv0_confine::ConfineError,
    },
    #[error("connector {program:?} could not be started: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("connector {}", describe_exit(*status))]
    Exit {
        status: ExitStatus,
        stderr_tail: String,
    },
    #[error("connector timed out after {} and was killed", seconds(*after))]
    Timeout {
        after: Duration,
        stderr_tail: String,
    },
    #[error("connector was cancelled and killed")]
    Cancelled,
    #[error("connector exited 0 but did not write {file}")]
    MissingOutput { file: &'static str },
    /// The file exists but cannot be taken as output: not a regular file, too large, unreadable.
    #[error("connector's {file} cannot be read: {reason}")]
    UnreadableOutput { file: &'static str, reason: String },
    #[error("category_results.json is invalid: {reason}")]
    InvalidResults { reason: String },
    #[error("category name {name:?} is reserved for the platform")]
    ReservedCategory { name: String },
    #[error("category name {name:?} does not match {CONNECTOR_CATEGORY_RULE}")]
    MalformedCategory { name: String },
    #[error("graph.json is invalid: {reason}")]
    InvalidGraph { reason: String },
    /// The driver's own I/O: the working directory, `scope.json`, waiting on the process.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
}

impl DriverError {
    /// The redacted end of the connector's stderr, for the errors that come with one.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self {
            DriverError::Exit { stderr_tail, .. } | DriverError::Timeout { stderr_tail, .. } => {
                Some(stderr_tail)
            }
            _ => None,
        }
    }

    fn io(context: &'static str) -> impl FnOnce(io::Error) -> DriverError {
        move |source| DriverError::Io { context, source }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `5 s`, `1.5 s`: whole milliseconds, no trailing zeros.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_millis() as f64 / 1000.0)
}

/// Connector-supplied text made fit for a one-line message: control characters (a newline in a
/// JSON key) become spaces, and it is cut to [`MAX_MESSAGE_CHARS`].
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        line.push('…');
    }
    line
}

/// Runs the connector once, as the contract says, and returns its validated output.
pub async fn run_connector(run: ConnectorRun<'_>) -> Result<ConnectorOutput, DriverError> {
    let started = Instant::now();
    let program = run.kind_name;
    // A run cancelled before it started (the lease was lost while the bundle was resolved) has
    // nothing to kill: do not start it.
    if run.cancel.is_cancelled() {
        return Err(DriverError::Cancelled);
    }
    // 0700: other users of the machine cannot read the scope or the outputs; under a root
    // worker it belongs to the connector's user, who alone may then enter it. Dropping the
    // `TempDir` removes it on every path out of this function, an early return, a panic or the
    // future being dropped included.
    let dir = tempfile::Builder::new()
        .prefix("sv0-connector-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(run.sandbox.runs_dir())
        .map_err(DriverError::io(
            "creating the connector's working directory",
        ))?;
    if let Some(user) = run.sandbox.user() {
        std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).map_err(
            DriverError::io("giving the working directory to the connector's user"),
        )?;
    }
    let result = run_in(dir.path(), program, &run, started).await;
    // Closing it here (rather than on drop) only adds a log line when removal fails.
    if let Err(error) = dir.close() {
        tracing::warn!(%program, %error, "could not remove the connector's working directory");
    }
    result
}

async fn run_in(
    dir: &Path,
    program: &str,
    run: &ConnectorRun<'_>,
    started: Instant,
) -> Result<ConnectorOutput, DriverError> {
    let scope_path = dir.join(SCOPE_FILE);
    // A scope is a small document: writing it inline does not hold up the runtime.
    let scope = serde_json::to_vec(run.scope).expect("a JSON value always serializes");
    std::fs::write(&scope_path, scope).map_err(DriverError::io("writing scope.json"))?;

    let mut command = Command::new(&run.kind.executable);
    command
        .args(&run.kind.args)
        .arg("--scope-json")
        .arg(&scope_path)
        .arg("--category-results-out")
        .arg(dir.join(RESULTS_FILE))
        .arg("--graph-json")
        .arg(dir.join(GRAPH_FILE))
        .current_dir(dir)
        .stdin(Stdio::null())
        // Stdout is not part of the contract and not kept: a connector that needs to say
        // something says it on stderr, whose tail is kept.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that whatever it starts is killed with it.
        .process_group(0)
        // Should this future be dropped mid-run, `ProcessGroup` kills the group and tokio reaps
        // the connector in the background.
        .kill_on_drop(true);
    run.bundle.apply_to_command(command.as_std_mut());
    // The worker's own HOME and TMPDIR are out of the connector's reach: its private directory
    // stands for both.
    command.env("HOME", dir).env("TMPDIR", dir);
    // The bundle's own value of a name wins over the worker's.
    for name in run
        .kind
        .env
        .iter()
        .filter(|n| !run.bundle.names().any(|b| b == *n))
    {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let policy = run.sandbox.policy(run.kind, dir, run.time_limit);
    let confinement = sv0_confine::prepare(&policy, run.sandbox.mode()).map_err(|source| {
        DriverError::Confinement {
            program: program.to_string(),
            source,
        }
    })?;
    let enforced = confinement.enforced();
    confinement.apply(command.as_std_mut());

    if run.sandbox.unconfined() {
        tracing::warn!(
            %program,
            confinement = %run.sandbox.describe(),
            "starting the connector UNCONFINED (--allow-unconfined-connectors)"
        );
    } else {
        tracing::info!(%program, confinement = %enforced, "starting the connector");
    }
    let mut child = command.spawn().map_err(|source| DriverError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let mut group = ProcessGroup::of(&child);
    let secrets: Vec<&[u8]> = run
        .bundle
        .iter()
        .map(|(_, value)| value.expose().as_bytes())
        .filter(|value| !value.is_empty())
        .collect();
    let mut tail = StderrTail::new(&secrets);
    // The categories' errors are connector text stored on the run, like the stderr tail.
    let redactor = Redactor::new(&secrets);
    let ending = supervise(
        &mut child,
        &mut group,
        &mut tail,
        run.time_limit,
        &run.cancel,
    )
    .await?;
    let stderr_tail = tail.finish();
    let elapsed_ms = started.elapsed().as_millis() as u64;

    match ending {
        Ending::Exited(status) if status.success() => {
            tracing::info!(%program, %status, elapsed_ms, "the connector exited");
        }
        Ending::Exited(status) => {
            tracing::warn!(%program, %status, elapsed_ms, "the connector failed");
            return Err(DriverError::Exit {
                status,
                stderr_tail,
            });
        }
        Ending::TimedOut => {
            tracing::warn!(%program, elapsed_ms, "the connector timed out and was killed");
            return Err(DriverError::Timeout {
                after: run.time_limit,
                stderr_tail,
            });
        }
        Ending::Cancelled => {
            tracing::info!(%program, elapsed_ms, "the connector was cancelled and killed");
            return Err(DriverError::Cancelled);
        }
    }

    // Parsing a graph of tens of MiB takes a while: off the runtime's threads, so that the
    // worker's lease heartbeats keep going meanwhile.
    let dir = dir.to_path_buf();
    let (categories, graph, graph_bytes) =
        match tokio::task::spawn_blocking(move || read_outputs(&dir, &redactor)).await {
            Ok(outputs) => outputs?,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => {
                return Err(DriverError::Io {
                    context: "reading the connector's outputs",
                    source: io::Error::other(join),
                });
            }
        };
    Ok(ConnectorOutput {
        categories,
        graph,
        graph_bytes,
        stderr_tail,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_on_one_line_and_short() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = one_line(&"n".repeat(1000));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }
}
