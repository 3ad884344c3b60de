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

use std::collections::BTreeMap;
use std::fs::{File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::DateTime;
use nix::libc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use sv0_broker::SecretBundle;
use sv0_domain::category::CONNECTOR_CATEGORY_RULE;
use sv0_domain::{CategoryName, CategoryNameError, CategoryResult, CellStatus, Graph};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub use crate::redact::STDERR_TAIL_BYTES;
use crate::redact::{Redactor, StderrTail};
use crate::registry::ConnectorKind;
use crate::sandbox::Sandbox;

/// The largest `category_results.json` read: a few hundred categories take a few KiB.
pub const MAX_RESULTS_BYTES: u64 = 1024 * 1024;
/// The largest `graph.json` read. A sync holds at most [`sv0_domain::graph::MAX_GRAPH_ENTITIES`]
/// entities in a 16 MiB document; the JSON of those, pretty-printed, stays well under this.
pub const MAX_GRAPH_BYTES: u64 = 64 * 1024 * 1024;

const SCOPE_FILE: &str = "scope.json";
const RESULTS_FILE: &str = "category_results.json";
const GRAPH_FILE: &str = "graph.json";

/// How long, once the process group is dead, the driver still waits for stderr to reach its end.
/// Only a process that left the group (`setsid`) can keep the pipe open that long; the driver
/// does not wait on it.
const STDERR_DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Connector text put into an error message (a category name, a parser's reason) is cut to this
/// many characters: the message is stored in the run's `__driver__` cell.
const MAX_MESSAGE_CHARS: usize = 300;
/// The most categories one `category_results.json` may hold: each becomes a cell of the run.
pub const MAX_CATEGORIES: usize = 256;
/// A category's errors as stored: at most this many, each at most [`MAX_ERROR_CHARS`]
/// characters; the rest is summarized in a last line, so a chatty connector still has its scan
/// recorded but cannot grow the run document without bound.
pub const MAX_ERRORS_PER_CATEGORY: usize = 32;
pub const MAX_ERROR_CHARS: usize = 2000;

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

/// How the connector's process ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// Waits for the connector to exit, the time limit, or the cancel, whichever comes first, while
/// reading its stderr; then kills the process group and reaps the connector.
async fn supervise(
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
struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// `process_group(0)` made the connector the leader of a new group: its pid is the group's id.
    fn of(child: &Child) -> ProcessGroup {
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

/// Reads and validates both output files (blocking: run on a blocking thread).
fn read_outputs(
    dir: &Path,
    redactor: &Redactor,
) -> Result<(BTreeMap<CategoryName, CategoryResult>, Graph, usize), DriverError> {
    let results = read_output(dir, RESULTS_FILE, MAX_RESULTS_BYTES)?;
    let categories = parse_results(&results, redactor)?;
    let graph_json = read_output(dir, GRAPH_FILE, MAX_GRAPH_BYTES)?;
    let graph = Graph::from_json(&graph_json).map_err(|e| DriverError::InvalidGraph {
        reason: one_line(&e.to_string()),
    })?;
    Ok((categories, graph, graph_json.len()))
}

/// One output file, which must be a regular file of at most `limit` bytes.
fn read_output(dir: &Path, file: &'static str, limit: u64) -> Result<Vec<u8>, DriverError> {
    let unreadable = |reason: String| DriverError::UnreadableOutput { file, reason };
    // O_NOFOLLOW: the output is the connector's own file, not one it points the worker at.
    // O_NONBLOCK: opening a FIFO left in its place would otherwise wait for a writer forever.
    let mut opened = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(file))
    {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DriverError::MissingOutput { file });
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unreadable("it is a symbolic link, not a file".into()));
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let metadata = opened.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("it is not a regular file".into()));
    }
    let too_large = |size: u64| unreadable(format!("{size} bytes; at most {limit} are read"));
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // `take`: the size checked above is not trusted to stay put while reading.
    (&mut opened)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A cell of `category_results.json`: the contract's form of a [`CategoryResult`], with times as
/// RFC 3339 strings and only the statuses a finished category can have.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCell {
    status: WireStatus,
    items_scanned: u64,
    started_at: String,
    ended_at: String,
    errors: Vec<String>,
}

/// `running` is a platform cell's state while a stage works; a connector's file holds only
/// finished categories.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireStatus {
    Succeeded,
    Failed,
}

fn parse_results(
    bytes: &[u8],
    redactor: &Redactor,
) -> Result<BTreeMap<CategoryName, CategoryResult>, DriverError> {
    let invalid = |reason: String| DriverError::InvalidResults {
        reason: one_line(&reason),
    };
    let cells: BTreeMap<String, WireCell> =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if cells.len() > MAX_CATEGORIES {
        return Err(invalid(format!(
            "{} categories; at most {MAX_CATEGORIES}",
            cells.len()
        )));
    }
    let mut categories = BTreeMap::new();
    for (name, cell) in cells {
        let category = CategoryName::connector(&name).map_err(|refusal| match refusal {
            CategoryNameError::Reserved(_) => DriverError::ReservedCategory {
                name: one_line(&name),
            },
            CategoryNameError::Malformed(_) => DriverError::MalformedCategory {
                name: one_line(&name),
            },
        })?;
        let time = |field: &str, text: &str| {
            DateTime::parse_rfc3339_str(text).map_err(|e| invalid(format!("{name}.{field}: {e}")))
        };
        let started_at = time("started_at", &cell.started_at)?;
        let ended_at = time("ended_at", &cell.ended_at)?;
        if ended_at < started_at {
            return Err(invalid(format!("{name}.ended_at is before started_at")));
        }
        let items_scanned = i64::try_from(cell.items_scanned).map_err(|_| {
            invalid(format!(
                "{name}.items_scanned: {} is too large",
                cell.items_scanned
            ))
        })?;
        let status = match cell.status {
            WireStatus::Succeeded => CellStatus::Succeeded,
            WireStatus::Failed => CellStatus::Failed,
        };
        categories.insert(
            category,
            CategoryResult {
                status,
                items_scanned,
                started_at,
                ended_at: Some(ended_at),
                errors: bounded_errors(cell.errors, redactor),
            },
        );
    }
    Ok(categories)
}

/// A category's errors as stored: secrets redacted, each cut to [`MAX_ERROR_CHARS`], at most
/// [`MAX_ERRORS_PER_CATEGORY`] of them with the rest counted in a last line.
fn bounded_errors(errors: Vec<String>, redactor: &Redactor) -> Vec<String> {
    let total = errors.len();
    let mut kept: Vec<String> = errors
        .into_iter()
        .take(MAX_ERRORS_PER_CATEGORY)
        .map(|error| {
            let mut error: String = error.chars().take(MAX_ERROR_CHARS).collect();
            error = redactor.redact(&error);
            error
        })
        .collect();
    if total > MAX_ERRORS_PER_CATEGORY {
        kept.push(format!(
            "… and {} more errors not kept",
            total - MAX_ERRORS_PER_CATEGORY
        ));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_categorys_errors_are_redacted_and_bounded() {
        let secret: &[u8] = b"canary-s3cr3t-7d1f";
        let redactor = Redactor::new(&[secret]);
        let mut errors = vec![
            "token canary-s3cr3t-7d1f refused".to_string(),
            "x".repeat(3 * MAX_ERROR_CHARS),
        ];
        errors.extend((0..40).map(|n| format!("account {n} unreachable")));
        let kept = bounded_errors(errors, &redactor);
        assert_eq!(kept[0], "token [REDACTED] refused");
        assert_eq!(kept[1].chars().count(), MAX_ERROR_CHARS);
        assert_eq!(kept.len(), MAX_ERRORS_PER_CATEGORY + 1);
        assert_eq!(
            kept[MAX_ERRORS_PER_CATEGORY],
            "… and 10 more errors not kept"
        );
    }

    #[test]
    fn too_many_categories_are_refused() {
        let cell = r#"{"status":"succeeded","items_scanned":1,"started_at":"2026-01-01T00:00:00Z","ended_at":"2026-01-01T00:00:01Z","errors":[]}"#;
        let file = |n: usize| {
            let cells: Vec<String> = (0..n).map(|i| format!("\"c{i}\": {cell}")).collect();
            format!("{{{}}}", cells.join(","))
        };
        let redactor = Redactor::new(&[]);
        assert_eq!(
            parse_results(file(MAX_CATEGORIES).as_bytes(), &redactor)
                .unwrap()
                .len(),
            MAX_CATEGORIES
        );
        let error = parse_results(file(MAX_CATEGORIES + 1).as_bytes(), &redactor).unwrap_err();
        assert!(error.to_string().contains("at most 256"), "{error}");
    }

    #[test]
    fn messages_stay_on_one_line_and_short() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = one_line(&"n".repeat(1000));
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }
}
