//! `sv0 demo --serve`, run as a user runs it, losing one of the processes it serves with.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Before, the demo waited for Ctrl-C alone: with its admin API dead it went on "serving" a URL
/// that refused every connection. Now it notices, names the process, and exits non-zero.
#[test]
fn a_serving_demo_exits_non_zero_naming_its_admin_api_when_that_dies() {
    let sv0 = env!("CARGO_BIN_EXE_sv0");
    let connector = Path::new(sv0).with_file_name("sv0-demo-connector");
    assert!(
        connector.is_file(),
        "{} is missing: build it with `cargo build -p sv0-demo-connector` (the workspace's tests do)",
        connector.display()
    );
    let logs = tempfile::tempdir().unwrap();
    let mut demo = Command::new(sv0)
        .args(["demo", "--serve", "--workers", "1", "--size", "8"])
        // Whether the kernel confines connectors is not this test's matter.
        .arg("--allow-unconfined-connectors")
        .arg("--logs")
        .arg(logs.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let demo_pid = demo.id();
    let (lines, printed) = mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = demo.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match printed.recv_timeout(left) {
            Ok(line) if line.starts_with("serving:") => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = demo.kill();
                panic!(
                    "the demo did not serve: {}\n{}",
                    seen.join("\n"),
                    stderr.join().unwrap()
                );
            }
        }
    }

    let started = children(demo_pid);
    let api = started
        .iter()
        .copied()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"admin-api"))
        })
        .expect("the demo runs its admin API as a child process");
    kill(Pid::from_raw(api), Signal::SIGKILL).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = demo.kill();
            for pid in &started {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            panic!("the demo went on serving 60 s after its admin API died");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = stderr.join().unwrap();
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("the admin-api process exited (signal: 9"),
        "{stderr}"
    );
    // The rest were stopped, not left behind.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = started
        .iter()
        .find(|pid| Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "process {left} outlived the demo"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so read after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}
