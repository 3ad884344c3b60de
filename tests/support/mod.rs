//! Real `sv0` processes for the end-to-end tests: workers and enqueuers, with their JSON log
//! lines collected for assertions.
#![allow(dead_code)] // each test file uses a different part of this

pub mod pipeline;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Document, doc};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use sv0_queue::{NewJob, Queue};
use sv0_testkit::{Stand, TestDb, stand};

pub const SV0: &str = env!("CARGO_BIN_EXE_sv0");

/// A running `sv0 worker` (or `sv0 scheduler`). Killed on drop.
pub struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl WorkerProcess {
    /// Starts `sv0 worker --diagnostics` on `uri`/`database` with `extra` arguments, and
    /// test-friendly defaults for the flags `extra` does not set.
    pub fn start(uri: &str, database: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::start_with_env(uri, database, extra, &[])
    }

    /// The same, with extra environment variables for the process.
    pub fn start_with_env(
        uri: &str,
        database: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
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
        WorkerProcess::spawn(uri, database, &args, env)
    }

    /// `sv0 scheduler` on `uri`/`database`, ticking at least every 200 ms, with `extra`.
    pub fn scheduler(uri: &str, database: &str, extra: &[&str]) -> WorkerProcess {
        let mut args = vec![
            "scheduler",
            "--metrics-addr",
            "127.0.0.1:0",
            "--tick-ms",
            "200",
        ];
        args.extend(extra);
        WorkerProcess::spawn(uri, database, &args, &[])
    }

    /// `sv0 admin-api` on `uri`/`database`, on a free port (see [`WorkerProcess::api_url`]),
    /// with `extra` arguments.
    pub fn admin_api(
        uri: &str,
        database: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let mut args = vec!["admin-api", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        WorkerProcess::spawn(uri, database, &args, env)
    }

    /// `sv0 all` (a worker, a scheduler and the admin API in one process), every port free,
    /// with `extra` arguments.
    pub fn all(uri: &str, database: &str, extra: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
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
        WorkerProcess::spawn(uri, database, &args, env)
    }

    /// An admin API process's base URL, once it listens.
    pub fn api_url(&self) -> String {
        let listening = self.wait_for_event("listening", Duration::from_secs(30));
        format!("http://{}", listening["addr"].as_str().unwrap())
    }

    /// `sv0 ARGS… --mongodb-uri URI --database DATABASE`, its JSON log lines collected.
    fn spawn(uri: &str, database: &str, args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let mut command = Command::new(SV0);
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
        WorkerProcess { child, lines }
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
                "worker did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for the drain to end.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "worker exited with {status}");
    }
}

impl Drop for WorkerProcess {
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

/// Polls `probe` until it returns true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !probe().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until exactly `n` documents of `collection` match `filter`.
pub async fn wait_count(
    db: &Database,
    collection: &str,
    filter: Document,
    n: u64,
    timeout: Duration,
) {
    let what = format!("{n} documents in {collection} matching {filter}");
    eventually(&what, timeout, || {
        let (db, filter) = (db.clone(), filter.clone());
        async move { count(&db, collection, filter).await == n }
    })
    .await;
}

pub async fn count(db: &Database, collection: &str, filter: Document) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

pub async fn all(db: &Database, collection: &str, filter: Document) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

pub async fn job(db: &Database, id: ObjectId) -> Document {
    db.collection::<Document>("jobs")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .expect("the job exists")
}

/// A fresh test database on the shared stand, with the queue's indexes made.
pub async fn setup(label: &str) -> (TestDb, Queue) {
    setup_on(stand(), label).await
}

/// The same on a given stand (say, the one with an oplog).
pub async fn setup_on(stand: &Stand, label: &str) -> (TestDb, Queue) {
    let test = TestDb::on(stand, label).await;
    let queue = Queue::new(&test.db);
    queue.ensure_indexes().await.unwrap();
    (test, queue)
}

/// How long a job waited between its enqueue and its claim, in milliseconds.
pub async fn start_latency_ms(db: &Database, id: ObjectId) -> i64 {
    let stored = job(db, id).await;
    let at = |field| stored.get_datetime(field).unwrap().timestamp_millis();
    at("started_at") - at("created_at")
}

/// Enqueues `jobs` in one call and returns their ids, in order.
pub async fn enqueue_ids(queue: &Queue, jobs: Vec<NewJob>) -> Vec<ObjectId> {
    let enqueued = queue.enqueue_many(jobs).await.unwrap();
    enqueued.into_iter().map(|e| e.id).collect()
}
