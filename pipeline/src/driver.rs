//! The connector driver: the only code that starts a connector (docs/connector-contract.md,
//! ADR-027 §b).
//!
//! One call of [`run_connector`] is one connector process: a private directory with
//! `scope.json` in it, a cleared environment plus the broker's bundle, a process group of its
//! own that is killed as a whole on the time budget, a cancel, or when the connector is done,
//! and the two output files read back and validated. Nothing of the run outlives the call: not
//! the directory, not a process of the group.
//!
//! Secrets: the bundle's values go into the child's environment and nowhere else. The only
//! connector text the driver keeps is the tail of its stderr, and every bundle value in it is
//! replaced by [`REDACTED`] before it is returned. Logs carry the program, the exit status and
//! timings only.

use std::collections::BTreeMap;
use std::fs::{File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::DateTime;
use nix::libc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use sv0_broker::{REDACTED, SecretBundle};
use sv0_domain::category::CONNECTOR_CATEGORY_RULE;
use sv0_domain::{CategoryName, CategoryNameError, CategoryResult, CellStatus, Graph};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio_util::sync::CancellationToken;

/// How much of the connector's stderr a run keeps: the end of it, where the reason for a failure
/// usually is.
pub const STDERR_TAIL_BYTES: usize = 16 * 1024;
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

/// One run of a connector.
pub struct ConnectorRun<'a> {
    /// The program and its fixed arguments (`ConnectorInstance.command`); the contract's three
    /// flags are appended. A relative program path is taken from the worker's current directory.
    pub command: &'a [String],
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
    let Some(program) = run.command.first() else {
        return Err(DriverError::Spawn {
            program: String::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"),
        });
    };
    // A run cancelled before it started (the lease was lost while the bundle was resolved) has
    // nothing to kill: do not start it.
    if run.cancel.is_cancelled() {
        return Err(DriverError::Cancelled);
    }
    // 0700: other users of the machine cannot read the scope or the outputs. Dropping the
    // `TempDir` removes it on every path out of this function, an early return, a panic or the
    // future being dropped included.
    let dir = tempfile::Builder::new()
        .prefix("sv0-connector-")
        .permissions(Permissions::from_mode(0o700))
        .tempdir()
        .map_err(DriverError::io(
            "creating the connector's working directory",
        ))?;
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

    let mut command = Command::new(program_path(program));
    command
        .args(&run.command[1..])
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

    tracing::info!(%program, "starting the connector");
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
    let ending = supervise(
        &mut child,
        &mut group,
        &mut tail,
        run.time_limit,
        &run.cancel,
    )
    .await?;
    let stderr_tail = tail.finish(&secrets);
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
        match tokio::task::spawn_blocking(move || read_outputs(&dir)).await {
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

/// The working directory is the connector's private one, so a relative program path (as a
/// developer might configure, `target/debug/…`) would be looked up there and never found; it is
/// meant from where the worker runs. Bare names are left to the `PATH` lookup.
fn program_path(program: &str) -> PathBuf {
    let path = Path::new(program);
    if path.is_relative()
        && program.contains('/')
        && let Ok(current) = std::env::current_dir()
    {
        return current.join(path);
    }
    path.to_path_buf()
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

/// The end of the connector's stderr, raw. It keeps [`STDERR_TAIL_BYTES`] plus the longest
/// secret's length: a secret that straddles where the tail will be cut is then still whole in
/// the raw bytes, and found.
struct StderrTail {
    raw: Vec<u8>,
    keep: usize,
    /// Whether bytes before `raw` were dropped.
    truncated: bool,
}

impl StderrTail {
    fn new(secrets: &[&[u8]]) -> StderrTail {
        let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
        StderrTail {
            raw: Vec::new(),
            keep: STDERR_TAIL_BYTES + longest,
            truncated: false,
        }
    }

    async fn read_from(&mut self, mut stderr: ChildStderr) {
        let mut chunk = [0u8; 8192];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => self.push(&chunk[..n]),
                Err(error) => {
                    tracing::debug!(%error, "reading the connector's stderr failed");
                    return;
                }
            }
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.raw.extend_from_slice(chunk);
        // Trimming only past twice the size keeps the copying amortized.
        if self.raw.len() > 2 * self.keep {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.raw.len() > self.keep {
            self.raw.drain(..self.raw.len() - self.keep);
            self.truncated = true;
        }
    }

    /// The tail as kept: secrets redacted, then cut to [`STDERR_TAIL_BYTES`].
    fn finish(mut self, secrets: &[&[u8]]) -> String {
        self.trim();
        redact_tail(&self.raw, self.truncated, secrets)
    }
}

/// Replaces every occurrence of every secret in `raw` with [`REDACTED`] and returns at most the
/// last [`STDERR_TAIL_BYTES`] of the result, cut on a character boundary.
///
/// Occurrences are marked byte by byte before anything is replaced, so that overlapping secrets
/// (one inside another, or one's end another's start) are redacted whole. When `raw` is itself a
/// cut (`truncated`), its first `longest - 1` bytes may hold the end of a secret whose start was
/// dropped, which no search can recognize: those bytes are dropped too. Every byte kept then
/// belongs only to occurrences that start inside `raw`, and are found.
fn redact_tail(raw: &[u8], truncated: bool, secrets: &[&[u8]]) -> String {
    let mut secret = vec![false; raw.len()];
    for value in secrets.iter().filter(|value| !value.is_empty()) {
        for start in 0..raw.len().saturating_sub(value.len() - 1) {
            if raw[start..].starts_with(value) {
                secret[start..start + value.len()].fill(true);
            }
        }
    }
    let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut at = if truncated {
        longest.saturating_sub(1).min(raw.len())
    } else {
        0
    };
    let mut redacted = Vec::with_capacity(raw.len());
    while at < raw.len() {
        if secret[at] {
            redacted.extend_from_slice(REDACTED.as_bytes());
            while at < raw.len() && secret[at] {
                at += 1;
            }
        } else {
            redacted.push(raw[at]);
            at += 1;
        }
    }
    // Lossy: a connector's stderr need not be UTF-8, and the raw cut may split a character.
    let text = String::from_utf8_lossy(&redacted);
    let mut start = text.len().saturating_sub(STDERR_TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Reads and validates both output files (blocking: run on a blocking thread).
fn read_outputs(
    dir: &Path,
) -> Result<(BTreeMap<CategoryName, CategoryResult>, Graph, usize), DriverError> {
    let results = read_output(dir, RESULTS_FILE, MAX_RESULTS_BYTES)?;
    let categories = parse_results(&results)?;
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

fn parse_results(bytes: &[u8]) -> Result<BTreeMap<CategoryName, CategoryResult>, DriverError> {
    let invalid = |reason: String| DriverError::InvalidResults {
        reason: one_line(&reason),
    };
    let cells: BTreeMap<String, WireCell> =
        serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
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
                errors: cell.errors,
            },
        );
    }
    Ok(categories)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"canary-s3cr3t-7d1f";

    #[test]
    fn every_occurrence_is_redacted_and_short_tails_are_kept_whole() {
        let raw = b"start canary-s3cr3t-7d1f middle canary-s3cr3t-7d1fcanary-s3cr3t-7d1f end";
        assert_eq!(
            redact_tail(raw, false, &[SECRET, b""]),
            "start [REDACTED] middle [REDACTED] end"
        );
    }

    #[test]
    fn overlapping_secrets_are_redacted_whole() {
        assert_eq!(
            redact_tail(b"x abcdef y", false, &[b"abcd", b"cdef"]),
            "x [REDACTED] y"
        );
        assert_eq!(
            redact_tail(b"x abcd y", false, &[b"bc", b"abcd"]),
            "x [REDACTED] y"
        );
    }

    /// A secret straddling the stream's last [`STDERR_TAIL_BYTES`], and one straddling the start
    /// of the raw window with more copies after it (whose redaction shortens the text, so that
    /// the final cut would not drop the remnant by itself): no part of either survives, and the
    /// result stays within the bound.
    #[test]
    fn a_secret_at_either_cut_leaves_no_remnant() {
        let cases = [
            (STDERR_TAIL_BYTES - 9, 0),
            (STDERR_TAIL_BYTES + SECRET.len() - 9 - 4 * SECRET.len(), 4),
        ];
        for (after, repeats) in cases {
            let mut tail = StderrTail::new(&[SECRET]);
            tail.push(b"token=");
            tail.push(SECRET);
            tail.push(&vec![b'x'; after]);
            tail.push(&SECRET.repeat(repeats));
            let kept = tail.finish(&[SECRET]);
            assert!(
                kept.len() <= STDERR_TAIL_BYTES,
                "{after}: {} bytes",
                kept.len()
            );
            assert!(
                !kept.contains("cr3t-7d1f"),
                "{after}: a remnant of the secret survived"
            );
            let end = if repeats > 0 { "x[REDACTED]" } else { "xx" };
            assert!(kept.ends_with(end), "{after}: the end was not kept");
        }
    }

    #[test]
    fn the_cut_falls_on_a_character_boundary() {
        let raw = "é".repeat(STDERR_TAIL_BYTES);
        let kept = redact_tail(raw.as_bytes(), true, &[]);
        assert_eq!(kept.len(), STDERR_TAIL_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
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
