//! Processes: limits, identity, signals, and the system calls the filter refuses.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::libc;

use crate::harness::{
    Feature, LIMITS, NOBODY, child_user, needs, owned_dir, policy, python, python_errno, sh,
    stderr, stdout,
};

#[test]
fn confined_child_cannot_signal_a_same_user_process_outside_its_sandbox() {
    if !needs(&[Feature::LandlockScoping]) {
        return;
    }
    let write = owned_dir();
    let mut outsider = Command::new("/bin/sleep");
    outsider.arg("30").stdout(Stdio::null());
    if let Some(user) = child_user() {
        outsider.uid(user.uid).gid(user.gid);
    }
    let mut outsider = outsider
        .spawn()
        .expect("start a process outside the sandbox");
    let script = format!("kill -0 {}", outsider.id());

    let mut unconfined = Command::new("/bin/sh");
    unconfined.args(["-c", &script]);
    if let Some(user) = child_user() {
        unconfined.uid(user.uid).gid(user.gid);
    }
    let control = unconfined.output().unwrap();
    let confined = sh(&policy(write.path(), &[]), &script);
    outsider.kill().unwrap();
    outsider.wait().unwrap();

    assert!(
        control.status.success(),
        "control run: {}",
        stderr(&control)
    );
    assert!(!confined.status.success(), "the signal was delivered");
    assert!(
        stderr(&confined).contains("Operation not permitted"),
        "{}",
        stderr(&confined)
    );
}

#[test]
fn confined_child_cannot_signal_its_parent() {
    if !needs(&[Feature::LandlockScoping]) {
        return;
    }
    let write = owned_dir();
    let output = sh(&policy(write.path(), &[]), "kill -0 $PPID");
    assert!(!output.status.success(), "the parent was signalled");
    assert!(
        stderr(&output).contains("Operation not permitted"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn limits_are_set_as_soft_and_hard_limits() {
    if !needs(&[Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    let code = r#"
import resource as r
for name in ["RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE"]:
    print(*r.getrlimit(getattr(r, name)))
"#;
    let expected = [
        LIMITS.data_bytes,
        LIMITS.cpu_seconds,
        LIMITS.open_files,
        LIMITS.file_size_bytes,
        0,
    ]
    .map(|limit| format!("{limit} {limit}"))
    .join("\n");
    assert_eq!(stdout(&python(&policy, code, &[])), expected);

    // dash counts file sizes in 512-byte blocks.
    let shell = sh(&policy, "ulimit -n; ulimit -c; ulimit -f");
    let expected = format!("{}\n0\n{}", LIMITS.open_files, LIMITS.file_size_bytes / 512);
    assert_eq!(stdout(&shell), expected);
}

#[test]
fn file_size_limit_stops_a_larger_write() {
    if !needs(&[Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let big = write.path().join("big");
    let code = r#"
def attempt():
    with open(sys.argv[1], "wb") as f:
        f.write(b"x" * (int(sys.argv[2]) + 1))
"#;
    let errno = python_errno(
        &policy(write.path(), &[]),
        code,
        &[
            &big.display().to_string(),
            &LIMITS.file_size_bytes.to_string(),
        ],
    );
    assert_eq!(errno, "EFBIG");
    assert_eq!(
        std::fs::metadata(&big).unwrap().len(),
        LIMITS.file_size_bytes
    );
}

#[test]
fn confined_child_runs_as_nobody_without_privileges() {
    if !needs(&[Feature::Root, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    let ids = python(
        &policy,
        "import os; print(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups())",
        &[],
    );
    let nobody = format!("{0} {0} {1} {1} []", NOBODY.uid, NOBODY.gid);
    assert_eq!(stdout(&ids), nobody);

    let chown = r#"
import os
def attempt():
    path = os.path.join(sys.argv[1], "mine")
    open(path, "w").close()
    os.chown(path, 0, 0)
"#;
    let errno = python_errno(&policy, chown, &[&write.path().display().to_string()]);
    assert_eq!(errno, "EPERM", "chown to root needs CAP_CHOWN");

    let shadow = python_errno(&policy, "def attempt(): open('/etc/shadow').read()", &[]);
    assert_eq!(
        shadow, "EACCES",
        "reading /etc/shadow needs its group or CAP_DAC_OVERRIDE"
    );
}

/// Calls `syscall(number, args...)` through ctypes and prints "ok" or the errno name; `pid`
/// stands for the caller's own pid. A clone that unexpectedly succeeds exits at once in the
/// child.
const SYSCALL: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for call in sys.argv[1:]:
    number, *args = [os.getpid() if w == "pid" else int(w, 0) for w in call.split()]
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    if result == 0 and number == {clone}:
        os._exit(0)
    print("ok" if result >= 0 else errno.errorcode[ctypes.get_errno()])
"#;

fn syscalls(calls: &[String]) -> String {
    let write = owned_dir();
    let code = SYSCALL.replace("{clone}", &libc::SYS_clone.to_string());
    let args: Vec<&str> = calls.iter().map(String::as_str).collect();
    stdout(&python(&policy(write.path(), &[]), &code, &args)).replace('\n', " ")
}

#[test]
fn namespace_creation_is_refused() {
    if !needs(&[Feature::Seccomp, Feature::Python]) {
        return;
    }
    let calls = [
        format!("{} {}", libc::SYS_unshare, libc::CLONE_NEWUSER),
        format!(
            "{} {} 0 0 0 0",
            libc::SYS_clone,
            libc::CLONE_NEWUSER | libc::SIGCHLD
        ),
        format!(
            "{} {} 0 0 0 0",
            libc::SYS_clone,
            libc::CLONE_NEWNET | libc::SIGCHLD
        ),
        // Unfiltered, clone3 with no arguments fails with EINVAL.
        format!("{} 0 0", libc::SYS_clone3),
    ];
    assert_eq!(syscalls(&calls), "EPERM EPERM EPERM ENOSYS");
}

#[test]
fn denied_system_calls_fail_with_eperm() {
    if !needs(&[Feature::Seccomp, Feature::Python]) {
        return;
    }
    const KEYCTL_GET_KEYRING_ID: i64 = 0;
    const KEY_SPEC_USER_KEYRING: i64 = -4;
    const KCMP_VM: i64 = 1;
    let calls = [
        // Unfiltered, each of these succeeds for any process.
        format!("{} pid 0 0 0 0 0", libc::SYS_process_vm_readv),
        format!("{} pid pid {KCMP_VM} 0 0", libc::SYS_kcmp),
        format!(
            "{} {KEYCTL_GET_KEYRING_ID} {KEY_SPEC_USER_KEYRING} 0",
            libc::SYS_keyctl
        ),
        // A plain fork still works.
        format!("{} {} 0 0 0 0", libc::SYS_clone, libc::SIGCHLD),
    ];
    assert_eq!(syscalls(&calls), "EPERM EPERM EPERM ok");
}
