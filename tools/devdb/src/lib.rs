//! Starts and stops devdb, the MongoDB-wire server sv0 develops and tests against.
//!
//! This crate owns the devdb process: where its jar is, how it is launched, how its bound address
//! is read back, and how it is stopped. The server itself is the Java program in `tools/devdb/java`,
//! built by `tools/devdb/install`. This crate must not know any sv0 collection or speak the MongoDB
//! protocol: callers connect with the driver to [`DevDb::uri`].
//!
//! A started devdb watches its standard input and stops when it closes, so an instance never
//! outlives the process that started it, even when that process is killed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where `tools/devdb/install` puts the jar, relative to this crate.
const DEFAULT_JAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/java/target/devdb.jar");

/// Overrides the jar's location, e.g. for a binary installed away from the source tree.
pub const JAR_ENV: &str = "SV0_DEVDB_JAR";

/// How long a stop waits for the H2 file to be flushed before killing the process.
const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DevDbError {
    #[error("devdb jar not found at {0}: build it with tools/devdb/install")]
    JarMissing(PathBuf),
    #[error("could not run java for devdb: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("devdb exited before printing its address (its error output is above)")]
    NoAddress,
    #[error("devdb printed {0:?} where its listen address was expected")]
    BadAddress(String),
    #[error("could not stop devdb: {0}")]
    Stop(String),
}

/// How to start a devdb instance; see [`DevDb::builder`].
#[derive(Debug, Clone)]
pub struct DevDbBuilder {
    listen: SocketAddr,
    data: Option<PathBuf>,
    oplog: bool,
    verbose: bool,
}

impl DevDbBuilder {
    /// The address to serve on; port 0 (the default, on 127.0.0.1) picks a free port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Persist to this H2 file instead of memory.
    pub fn data(mut self, file: impl Into<PathBuf>) -> Self {
        self.data = Some(file.into());
        self
    }

    /// Turn the oplog on so change streams work. Off by default: on this server an idle change
    /// stream busy-polls and costs about one server core.
    pub fn oplog(mut self, on: bool) -> Self {
        self.oplog = on;
        self
    }

    /// Log every connection to stderr (default: errors only).
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// Starts devdb and waits until it listens.
    pub fn start(self) -> Result<DevDb, DevDbError> {
        let jar = jar_path();
        if !jar.is_file() {
            return Err(DevDbError::JarMissing(jar));
        }
        let mut command = Command::new("java");
        command
            // G1's default 200 ms pause target let young collections stall every client of the
            // stand for 20–150 ms, the tail of an idle queue's latency (docs/benchmarks.md); ZGC
            // removed the pauses but slowed the stand's scans by half.
            .arg("-XX:MaxGCPauseMillis=5")
            .arg("-jar")
            .arg(&jar)
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--stop-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(data) = &self.data {
            command.arg("--data").arg(data);
        }
        if self.oplog {
            command.arg("--oplog");
        }
        if self.verbose {
            command.arg("--verbose");
        }
        let mut child = command.spawn().map_err(DevDbError::Spawn)?;
        let stdin = child.stdin.take();
        let addr = match read_address(&mut child) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(DevDb { child, stdin, addr })
    }
}

fn jar_path() -> PathBuf {
    std::env::var_os(JAR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(DEFAULT_JAR).to_path_buf())
}

fn read_address(child: &mut Child) -> Result<SocketAddr, DevDbError> {
    let stdout = child.stdout.take().ok_or(DevDbError::NoAddress)?;
    let mut line = String::new();
    let read = BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|_| DevDbError::NoAddress)?;
    if read == 0 {
        return Err(DevDbError::NoAddress);
    }
    let line = line.trim();
    line.parse()
        .map_err(|_| DevDbError::BadAddress(line.to_string()))
}

/// A running devdb process. Dropping it stops the server (SIGTERM, then a wait).
#[derive(Debug)]
pub struct DevDb {
    child: Child,
    /// Held open for the server's lifetime: devdb stops when this pipe closes.
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl DevDb {
    pub fn builder() -> DevDbBuilder {
        DevDbBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: None,
            oplog: false,
            verbose: false,
        }
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection string for the driver. `directConnection` because devdb is a single server
    /// that reports no replica set.
    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    /// The server's process id, for tests that signal it themselves.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server cleanly (SIGTERM), waiting until its H2 file, if any, is flushed.
    pub fn stop(mut self) -> Result<(), DevDbError> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<(), DevDbError> {
        if self.child.try_wait().map_err(stop_error)?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGTERM).map_err(|e| DevDbError::Stop(e.to_string()))?;
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().map_err(stop_error)?.is_some() {
                self.stdin.take();
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().map_err(stop_error)?;
        self.child.wait().map_err(stop_error)?;
        Err(DevDbError::Stop(format!(
            "devdb did not stop within {STOP_GRACE:?} of SIGTERM and was killed"
        )))
    }
}

fn stop_error(e: std::io::Error) -> DevDbError {
    DevDbError::Stop(e.to_string())
}

impl Drop for DevDb {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
