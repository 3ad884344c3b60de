//! `sv0 dev`, the README's stand command, run as a user runs it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn dev_starts_devdb_prints_its_uri_and_version_and_stops_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_sv0"))
        .arg("dev")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("reports MongoDB 6.0.0 (wire version 17)"),
        "{stdout}"
    );
    assert!(stdout.contains("write and read back: ok"), "{stdout}");
    let addr = listen_addr(stdout.lines().next().unwrap());
    assert!(
        TcpStream::connect(addr).is_err(),
        "devdb was stopped on exit"
    );
}

#[test]
fn devdb_stops_when_the_process_that_started_it_is_killed() {
    let mut sv0 = Command::new(env!("CARGO_BIN_EXE_sv0"))
        .args(["dev", "--serve"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader stays open: sv0 keeps printing, and a closed pipe would kill it first.
    let mut lines = BufReader::new(sv0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = listen_addr(&first);
    TcpStream::connect(addr).expect("devdb is serving");

    kill(Pid::from_raw(sv0.id() as i32), Signal::SIGKILL).unwrap();
    sv0.wait().unwrap();
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "devdb outlived its parent by 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `devdb listening: mongodb://HOST:PORT/?directConnection=true` → `HOST:PORT`.
fn listen_addr(line: &str) -> SocketAddr {
    let rest = line
        .split("mongodb://")
        .nth(1)
        .unwrap_or_else(|| panic!("no URI in {line:?}"));
    rest.split('/').next().unwrap().parse().unwrap()
}
