//! Shared by the confinement tests: policies around temporary directories, running a program
//! confined, and skipping loudly what the kernel cannot enforce.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use sv0_confine::{Limits, Mode, Policy, SYSTEM_READ_PATHS, Support, User, prepare};
use tempfile::TempDir;

use crate::fork_guard::{self, ALLOCATED_AFTER_FORK};

pub const PYTHON: &str = "/usr/bin/python3";

/// The uid and gid a root test runs its confined children as, the way a root worker would.
pub const NOBODY: User = User {
    uid: 65534,
    gid: 65534,
};

pub const LIMITS: Limits = Limits {
    data_bytes: 512 << 20,
    cpu_seconds: 10,
    open_files: 64,
    file_size_bytes: 1 << 20,
};

/// A kernel feature a test needs to prove anything.
#[derive(Clone, Copy, Debug)]
pub enum Feature {
    LandlockFilesystem,
    LandlockNetwork,
    LandlockScoping,
    /// Landlock's rule on device ioctl commands (ABI 5).
    LandlockDeviceIoctl,
    Seccomp,
    Root,
    Python,
}

/// Whether the test can run; when not, says so on the terminal, past the test harness's output
/// capture, so a skipped case is never mistaken for a passed one.
pub fn needs(features: &[Feature]) -> bool {
    let support = Support::probe();
    for feature in features {
        let present = match feature {
            Feature::LandlockFilesystem => support.filesystem(),
            Feature::LandlockNetwork => support.network(),
            Feature::LandlockScoping => support.scoping(),
            Feature::LandlockDeviceIoctl => support.landlock_abi >= 5,
            Feature::Seccomp => support.seccomp,
            Feature::Root => nix::unistd::geteuid().is_root(),
            Feature::Python => Path::new(PYTHON).exists(),
        };
        if !present {
            skip(&format!("needs {feature:?}; this host has {support}"));
            return false;
        }
    }
    true
}

pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_owned();
    let _ = writeln!(std::io::stderr(), "\nSKIPPED: {test}: {reason}\n");
}

/// The user confined children run as: nobody under root, the caller's own otherwise.
pub fn child_user() -> Option<User> {
    nix::unistd::geteuid().is_root().then_some(NOBODY)
}

/// A directory anyone may enter and read, like most of a real filesystem.
pub fn open_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sv0-confine-")
        .tempdir()
        .expect("create a temporary directory");
    chmod(dir.path(), 0o755);
    dir
}

/// A directory the confined child's user owns, to be its write directory.
pub fn owned_dir() -> TempDir {
    let dir = open_dir();
    if let Some(user) = child_user() {
        std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid))
            .expect("chown the write directory");
    }
    dir
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The policy a connector would get: the system read paths, one write directory, some ports.
pub fn policy(write: &Path, connect_ports: &[u16]) -> Policy {
    Policy {
        read: SYSTEM_READ_PATHS.iter().map(Into::into).collect(),
        write: vec![write.to_path_buf()],
        connect_ports: connect_ports.to_vec(),
        limits: LIMITS,
        user: child_user(),
    }
}

/// How long a confined program may run before the test kills it and fails: a weakened
/// confinement can leave one waiting forever (a traced child stopped on a signal, say).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A command for `program` with only `PATH` in its environment, no input, and its output kept.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Required wherever the kernel can honour it, as a worker would run connectors.
pub fn mode() -> Mode {
    let support = Support::probe();
    if support.filesystem() && support.seccomp {
        Mode::Required
    } else {
        Mode::BestEffort
    }
}

/// Runs `program` confined by `policy`, with only `PATH` in its environment.
pub fn run(policy: &Policy, program: &str, args: &[&str]) -> Output {
    run_confined(policy, command(program, args))
}

/// Runs `command` confined by `policy`, after whatever `pre_exec` steps it already has.
pub fn run_confined(policy: &Policy, mut command: Command) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    fork_guard::arm(&mut command);
    prepare(policy, mode())
        .expect("prepare the confinement")
        .apply(&mut command);
    let child = command.spawn().expect("spawn the confined program");
    let pid = Pid::from_raw(child.id() as i32);
    let (finished, watched) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let timed_out = watched.recv_timeout(RUN_TIMEOUT) == Err(RecvTimeoutError::Timeout);
        if timed_out {
            let _ = kill(pid, Signal::SIGKILL);
        }
        timed_out
    });
    let output = child
        .wait_with_output()
        .expect("wait for the confined program");
    drop(finished);
    let timed_out = watchdog.join().unwrap();
    assert!(
        !timed_out,
        "{program} still ran after {RUN_TIMEOUT:?}: killed"
    );
    assert_ne!(
        output.status.code(),
        Some(ALLOCATED_AFTER_FORK),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn sh(policy: &Policy, script: &str) -> Output {
    run(policy, "/bin/sh", &["-c", script])
}

/// Runs a Python snippet confined; `args` land in `sys.argv[1:]`.
pub fn python(policy: &Policy, code: &str, args: &[&str]) -> Output {
    let mut all = vec!["-I", "-c", code];
    all.extend_from_slice(args);
    run(policy, PYTHON, &all)
}

/// The trimmed standard output of a program that must have succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "the confined program failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// Prints the errno name of the `OSError` the snippet's `attempt()` raises, or "ok".
pub const ERRNO_OF_ATTEMPT: &str = r#"
import errno, sys
try:
    attempt()
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

/// `body` defines `attempt()`; the program prints what it gave.
pub fn python_errno(policy: &Policy, body: &str, args: &[&str]) -> String {
    stdout(&run_confined(policy, python_errno_command(body, args)))
}

/// The program `python_errno` runs, as a command not yet confined.
pub fn python_errno_command(body: &str, args: &[&str]) -> Command {
    let code = format!("{body}\n{ERRNO_OF_ATTEMPT}");
    let mut all = vec!["-I", "-c", &code];
    all.extend_from_slice(args);
    command(PYTHON, &all)
}
