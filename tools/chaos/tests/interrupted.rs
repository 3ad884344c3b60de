//! A chaos run interrupted by SIGINT (an operator's Ctrl-C on the long profile, a CI runner's
//! cancel) kills every process it started before it exits: devdb and each `sv0` process.
//! Needs `sv0` and `sv0-demo-connector` built beside `sv0-chaos`, as `cargo test --workspace`
//! leaves them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The pids whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if stat(pid).is_some_and(|(_, ppid)| ppid == parent) {
            found.push(pid);
        }
    }
    found
}

/// `(state, parent pid)` of process `pid`, if it exists.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces, so read after its closing parenthesis.
    let mut rest = text[text.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Running, not merely a zombie waiting for a parent to reap it.
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

#[test]
fn an_interrupted_run_leaves_no_process_behind() {
    let chaos = std::path::Path::new(env!("CARGO_BIN_EXE_sv0-chaos"));
    let sv0 = chaos.with_file_name("sv0");
    assert!(
        sv0.is_file(),
        "{} is missing: build it first (cargo build -p sv0 -p sv0-demo-connector)",
        sv0.display()
    );
    let dir = std::env::temp_dir().join(format!("sv0-chaos-interrupted-{}", std::process::id()));
    let mut run = Command::new(chaos)
        .args(["--seconds", "120", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // devdb is up and provisioned once the workload line is printed; the sv0 processes follow.
    let mut stdout = BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("workload:") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "sv0-chaos ended before its workload began"
        );
    }
    // devdb, 3 workers, 2 schedulers and the admin API.
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let children = children_of(run.id());
        if children.len() >= 7 {
            break children;
        }
        assert!(Instant::now() < deadline, "only {children:?} started");
        std::thread::sleep(Duration::from_millis(200));
    };

    kill(Pid::from_raw(run.id() as i32), Signal::SIGINT).unwrap();
    let status = run.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<u32> = started.into_iter().filter(|pid| alive(*pid)).collect();
    for pid in &left {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        left.is_empty(),
        "still running after the interrupt: {left:?}"
    );
    assert_eq!(status.code(), Some(130), "exits as one ended by SIGINT");
}
