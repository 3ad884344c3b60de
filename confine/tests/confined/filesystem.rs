//! Files: what a confined program may read and write, and the parent's secrets it may not.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::libc;
use sv0_confine::make_non_dumpable;

use crate::harness::{
    Feature, child_user, chmod, needs, open_dir, owned_dir, policy, python_errno,
    python_errno_command, run, run_confined, sh, skip, stderr, stdout,
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

#[test]
fn a_read_path_that_is_a_file_grants_that_file_alone() {
    if !needs(&[Feature::LandlockFilesystem]) {
        return;
    }
    let write = owned_dir();
    let dir = open_dir();
    let granted = dir.path().join("granted");
    let sibling = dir.path().join("sibling");
    for file in [&granted, &sibling] {
        std::fs::write(file, file.file_name().unwrap().as_encoded_bytes()).unwrap();
        chmod(file, 0o644);
    }
    let mut policy = policy(write.path(), &[]);
    policy.read.push(granted.clone());

    let read = sh(&policy, &format!("cat {}", granted.display()));
    assert_eq!(stdout(&read), "granted");
    let output = sh(&policy, &format!("cat {}", sibling.display()));
    assert!(
        !output.status.success(),
        "a file beside the granted one was read"
    );
    assert!(
        stderr(&output).ends_with("Permission denied"),
        "{}",
        stderr(&output)
    );
}

/// The devices are granted for reading and writing, not for their drivers' ioctl commands: those
/// are kernel code no program needs to reach through them.
#[test]
fn ioctl_commands_of_the_standard_devices_are_refused() {
    if !needs(&[Feature::LandlockDeviceIoctl, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    // RNDGETENTCNT: the entropy count, which any process may ask the random device for.
    let code = r#"
import fcntl
def attempt():
    with open("/dev/urandom", "rb") as device:
        fcntl.ioctl(device, 0x80045200, b"\0" * 4)
"#;
    let control = python_errno_command(code, &[]).output().unwrap();
    assert_eq!(stdout(&control), "ok", "control run");
    assert_eq!(
        python_errno(&policy(write.path(), &[]), code, &[]),
        "EACCES"
    );
}

/// A descriptor the parent holds without close-on-exec (another thread's, opened between its
/// `open` and its `fcntl`, or a library's that never asked for the flag) must not reach the
/// confined program, whose rules it would bypass: Landlock checks a file when it is opened.
#[test]
fn a_descriptor_the_parent_leaves_inheritable_does_not_reach_the_confined_program() {
    if !needs(&[Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let secrets = open_dir();
    let secret = secrets.path().join("token");
    std::fs::write(&secret, "hunter2").unwrap();
    let file = File::open(&secret).unwrap();
    let fd = file.as_raw_fd().to_string();
    let code = "import os\ndef attempt(): os.read(int(sys.argv[1]), 64)";
    let inheriting = || {
        let mut command = python_errno_command(code, &[&fd]);
        inherit(&mut command, file.as_raw_fd());
        command
    };

    let control = inheriting().output().unwrap();
    assert_eq!(stdout(&control), "ok", "control run");
    let confined = run_confined(&policy(write.path(), &[]), inheriting());
    assert_eq!(stdout(&confined), "EBADF");
}

/// Clears close-on-exec on `fd` in the forked child only: in this process the descriptor keeps
/// the flag, so the children other tests start meanwhile do not inherit it.
fn inherit(command: &mut Command, fd: RawFd) {
    // SAFETY: fcntl on a descriptor number is async-signal-safe and allocates nothing.
    unsafe {
        command.pre_exec(move || match libc::fcntl(fd, libc::F_SETFD, 0) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        });
    }
}
