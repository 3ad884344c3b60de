//! Real `sv0` processes for the end-to-end suites of the root package and of the worker: the
//! binary found beside the test executable (and refused when older than the sources it is built
//! from), workers, schedulers and admin APIs started with test-friendly flags, their JSON log
//! lines collected for assertions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The source folders the `sv0` binary is built from.
const SV0_SOURCES: &[&str] = &[
    "src",
    "admin-api/src",
    "broker/src",
    "confine/src",
    "domain/src",
    "pipeline/src",
    "queue/src",
    "scheduler/src",
    "storage/src",
    "worker/src",
];

/// The `sv0` binary of this build: beside the test executable's folder (`target/<profile>/`),
/// where `cargo test --workspace` (or a plain `cargo test` at the root) builds it. A test of
/// one crate alone (`cargo test -p sv0-worker`) does not build it, and would otherwise run an
/// old binary without a word: a binary older than any of its sources is refused with the command
/// that builds it.
pub fn sv0() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let test = std::env::current_exe().expect("the test executable's path");
        let profile = test
            .parent()
            .and_then(Path::parent)
            .expect("the test executable is in target/<profile>/deps");
        let binary = profile.join("sv0");
        let built = std::fs::metadata(&binary)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| {
                panic!(
                    "{} is missing: build it with `cargo build -p sv0`, or run `cargo test --workspace`",
                    binary.display()
                )
            });
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("the test kit is in tools/testkit");
        if let Some(newer) = SV0_SOURCES
            .iter()
            .find_map(|dir| newer_file(&root.join(dir), built))
        {
            panic!(
                "{} is older than {}: rebuild it with `cargo build -p sv0`, or run `cargo test --workspace`",
                binary.display(),
                newer.display()
            );
        }
        binary
    })
}

/// A file under `dir` modified after `than`, if any.
fn newer_file(dir: &Path, than: SystemTime) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.map_while(Result::ok) {
        let path = entry.path();
        let found = if path.is_dir() {
            newer_file(&path, than)
        } else {
            let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
            (modified > than).then_some(path)
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// A running `sv0` process (a worker, a scheduler, the admin API or `sv0 all`), its JSON log
/// lines collected. Killed on drop.
pub struct Sv0Process {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Sv0Process {
    /// Starts `sv0 worker --diagnostics` on `uri`/`database` with `extra` arguments, and
    /// test-friendly defaults for the flags `extra` does not set.
    pub fn worker(uri: &str, database: &str, extra: &[&str]) -> Sv0Process {
        Sv0Process::worker_with_env(uri, database, extra, &[])
    }

    /// The same, with extra environment variables for the process.
    pub fn worker_with_env(
        uri: &str,
        database: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Sv0Process {
        let defaults = [
            ("--metrics-addr", "127.0.0.1:0"),
            ("--change-streams", "off"),
            ("--poll-max-ms", "200"),
            ("--reap-every-ms", "250"),
        ];
        let mut args = vec!["worker", "--diagnostics"];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(extra);
        Sv0Process::spawn(uri, database, &args, env)
    }

    /// `sv0 scheduler` on `uri`/`database`, ticking at least every 200 ms, with `extra`.
    pub fn scheduler(uri: &str, database: &str, extra: &[&str]) -> Sv0Process {
        let mut args = vec![
            "scheduler",
            "--metrics-addr",
            "127.0.0.1:0",
            "--tick-ms",
            "200",
        ];
        args.extend(extra);
        Sv0Process::spawn(uri, database, &args, &[])
    }

    /// `sv0 admin-api` on `uri`/`database`, on a free port (see [`Sv0Process::api_url`]),
    /// with `extra` arguments.
    pub fn admin_api(
        uri: &str,
        database: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Sv0Process {
        let mut args = vec!["admin-api", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        Sv0Process::spawn(uri, database, &args, env)
    }

    /// `sv0 all` (a worker, a scheduler and the admin API in one process), every port free,
    /// with `extra` arguments.
    pub fn all(uri: &str, database: &str, extra: &[&str], env: &[(&str, &str)]) -> Sv0Process {
        let mut args = vec![
            "all",
            "--listen",
            "127.0.0.1:0",
            "--worker-metrics-addr",
            "127.0.0.1:0",
            "--scheduler-metrics-addr",
            "127.0.0.1:0",
        ];
        args.extend(extra);
        Sv0Process::spawn(uri, database, &args, env)
    }

    /// An admin API process's base URL, once it listens.
    pub fn api_url(&self) -> String {
        let listening = self.wait_for_event("listening", Duration::from_secs(30));
        format!("http://{}", listening["addr"].as_str().unwrap())
    }

    /// `sv0 ARGS… --mongodb-uri URI --database DATABASE`, its JSON log lines collected.
    fn spawn(uri: &str, database: &str, args: &[&str], env: &[(&str, &str)]) -> Sv0Process {
        let mut command = Command::new(sv0());
        command.args(args);
        command.args(["--mongodb-uri", uri, "--database", database]);
        // The per-job "job committed" line is at debug; the tests count commits by it.
        command.env("RUST_LOG", "info,sv0_worker=debug");
        command.envs(env.iter().copied());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sv0 starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Sv0Process { child, lines }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Every log event so far.
    pub fn all_events(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Log events with this message.
    pub fn events(&self, message: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    /// Waits until an event with this message was logged.
    pub fn wait_for_event(&self, message: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events(message).into_iter().next() {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} event within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it serves /metrics and /healthz.
    pub fn status_addr(&self) -> String {
        let serving = self.wait_for_event("serving /metrics and /healthz", Duration::from_secs(20));
        serving["addr"].as_str().unwrap().to_string()
    }

    /// The value of one series on its /metrics (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = http_get(&self.status_addr(), "/metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    /// The worker id (the lease owner it writes).
    pub fn id(&self) -> String {
        let started = self.wait_for_event("worker started", Duration::from_secs(20));
        started["worker"].as_str().unwrap().to_string()
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sv0 did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for the drain to end.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "sv0 exited with {status}");
    }
}

impl Drop for Sv0Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    write!(socket, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
