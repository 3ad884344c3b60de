//! Files: what a confined program may read and write, and the parent's secrets it may not.

use std::os::unix::process::CommandExt;
use std::process::Command;

use sv0_confine::make_non_dumpable;

use crate::harness::{
    Feature, child_user, chmod, needs, open_dir, owned_dir, policy, run, sh, skip, stderr, stdout,
};

#[test]
fn confined_child_cannot_read_the_parents_environ() {
    if !needs(&[Feature::LandlockFilesystem]) {
        return;
    }
    make_non_dumpable().expect("make the test process non-dumpable");
    let write = owned_dir();
    let output = sh(&policy(write.path(), &[]), "cat /proc/$PPID/environ");
    assert!(!output.status.success(), "the parent's environ was read");
    assert!(
        stderr(&output).ends_with("Permission denied"),
        "{}",
        stderr(&output)
    );
}

/// Set in the copy of this test binary the test runs as an ordinary user.
const ENVIRON_PROBE: &str = "SV0_CONFINE_ENVIRON_PROBE";

/// A process's environ is readable by a child of the same uid until the process is made
/// non-dumpable. The check runs in a fresh copy of this test binary, since other tests make this
/// one non-dumpable; under root, as nobody, since root reads any environ.
#[test]
fn same_uid_child_cannot_read_a_non_dumpable_processes_environ() {
    if std::env::var_os(ENVIRON_PROBE).is_some() {
        return environ_unreadable_once_non_dumpable();
    }
    let test = "filesystem::same_uid_child_cannot_read_a_non_dumpable_processes_environ";
    let exe = std::env::current_exe().expect("this test binary");
    let mut probe = Command::new(exe);
    probe
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ENVIRON_PROBE, "1");
    if let Some(user) = child_user() {
        probe.uid(user.uid).gid(user.gid);
    }
    match probe.output() {
        Ok(output) => assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => skip(&format!("cannot run a copy of this test binary: {error}")),
    }
}

fn environ_unreadable_once_non_dumpable() {
    let environ = format!("/proc/{}/environ", std::process::id());
    let read = || Command::new("/bin/cat").arg(&environ).output().unwrap();
    let before = read();
    assert!(
        before.status.success(),
        "a dumpable process's environ should be readable by its own uid: {}",
        stderr(&before)
    );
    make_non_dumpable().expect("make this process non-dumpable");
    let after = read();
    assert!(!after.status.success(), "the environ was read");
    assert!(
        stderr(&after).ends_with("Permission denied"),
        "{}",
        stderr(&after)
    );
}

#[test]
fn confined_child_cannot_read_a_file_outside_its_read_paths() {
    if !needs(&[Feature::LandlockFilesystem]) {
        return;
    }
    let write = owned_dir();
    let secrets = open_dir();
    let secret = secrets.path().join("token");
    std::fs::write(&secret, "hunter2").unwrap();
    chmod(&secret, 0o644);
    let script = format!("cat {}", secret.display());

    let mut granted = policy(write.path(), &[]);
    granted.read.push(secrets.path().to_path_buf());
    assert_eq!(stdout(&sh(&granted, &script)), "hunter2", "control run");

    let output = sh(&policy(write.path(), &[]), &script);
    assert!(!output.status.success(), "the secret was read");
    assert!(
        stderr(&output).ends_with("Permission denied"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn confined_child_cannot_write_outside_its_write_dir() {
    if !needs(&[Feature::LandlockFilesystem]) {
        return;
    }
    let write = owned_dir();
    let elsewhere = open_dir();
    chmod(elsewhere.path(), 0o777);
    let target = elsewhere.path().join("dropped");
    let output = sh(
        &policy(write.path(), &[]),
        &format!("echo x > {}", target.display()),
    );
    assert!(!output.status.success(), "wrote outside the write dir");
    assert!(
        stderr(&output).contains("Permission denied"),
        "{}",
        stderr(&output)
    );
    assert!(!target.exists());
}

#[test]
fn confined_child_writes_creates_and_removes_inside_its_write_dir() {
    let write = owned_dir();
    let script = "cd \"$1\" && mkdir sub && echo hello > sub/kept && echo bye > gone && rm gone \
                  && cat sub/kept";
    let output = run(
        &policy(write.path(), &[]),
        "/bin/sh",
        &["-c", script, "sh", &write.path().display().to_string()],
    );
    assert_eq!(stdout(&output), "hello");
    let kept = std::fs::read_to_string(write.path().join("sub/kept")).unwrap();
    assert_eq!(kept, "hello\n");
    assert!(!write.path().join("gone").exists());
}

#[test]
fn confined_child_uses_the_standard_character_devices() {
    let write = owned_dir();
    let script = "echo discarded > /dev/null && head -c 8 /dev/zero | wc -c \
                  && head -c 8 /dev/urandom | wc -c";
    let output = sh(&policy(write.path(), &[]), script);
    assert_eq!(
        stdout(&output).split_whitespace().collect::<Vec<_>>(),
        ["8", "8"]
    );
}
