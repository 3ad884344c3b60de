//! Kernels other than this one, played by `fake_kernel`: older ones, short of a feature, and one
//! that refuses a step of the confinement. Each case checks what `prepare` makes of the kernel
//! and what a confined spawn does on it.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::libc;
use sv0_confine::{ConfineError, Mode, Support, prepare};

use crate::fake_kernel::{Call, Reply, on_kernel};
use crate::fork_guard;
use crate::harness::{
    Feature, child_user, mode, needs, owned_dir, policy, python_errno, sh, stderr, stdout,
};

/// `landlock_create_ruleset`'s flag asking for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: u64 = 1;

/// A kernel without seccomp filters: a required confinement is refused, and a best-effort one
/// runs its program under Landlock alone and says so.
#[test]
fn without_seccomp_a_required_confinement_is_refused() {
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    let played = on_kernel(
        &[libc::SYS_seccomp],
        |_| Reply::Fails(libc::ENOSYS),
        || {
            assert!(!Support::probe().seccomp, "the probe found seccomp");
            match prepare(&policy, Mode::Required) {
                Err(ConfineError::Unsupported {
                    feature: "seccomp filter",
                    ..
                }) => {}
                other => panic!("expected a required confinement to be refused, got {other:?}"),
            }
            let prepared = prepare(&policy, Mode::BestEffort).expect("a best-effort confinement");
            assert!(!prepared.enforced().seccomp);
            assert_eq!(stdout(&sh(&policy, "echo ran")), "ran");
        },
    );
    // A kernel that hands calls to a supervisor (5.0) has both actions the probe asks for (4.14).
    if played.is_some() {
        assert!(
            Support::probe().seccomp,
            "the probe missed this kernel's seccomp"
        );
    }
}

/// A kernel with seccomp filters but before `SECCOMP_RET_KILL_PROCESS` (3.5 to 4.13), which the
/// filter returns for a call that must not fail quietly: it counts as one without seccomp.
#[test]
fn seccomp_without_the_kill_process_action_counts_as_none() {
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    on_kernel(
        &[libc::SYS_seccomp],
        |call| {
            let asks_for_kill_process = call.arg(0) == u64::from(libc::SECCOMP_GET_ACTION_AVAIL)
                && call
                    .read_u32(call.arg(2))
                    .is_ok_and(|action| action == libc::SECCOMP_RET_KILL_PROCESS);
            if asks_for_kill_process {
                Reply::Fails(libc::EOPNOTSUPP)
            } else {
                Reply::Proceeds
            }
        },
        || {
            assert!(!Support::probe().seccomp, "the probe found seccomp");
            let required = prepare(&policy, Mode::Required);
            assert!(
                matches!(required, Err(ConfineError::Unsupported { .. })),
                "expected a required confinement to be refused, got {required:?}"
            );
        },
    );
}

/// Before 5.11 `close_range` is missing (ENOSYS) or lacks `CLOSE_RANGE_CLOEXEC` (EINVAL). Such a
/// kernel has no Landlock either, so only a best-effort spawn meets one, and it must still start
/// its program.
#[test]
fn without_close_range_a_confined_program_still_starts() {
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    let missing = |_: &Call| Reply::Fails(libc::ENOSYS);
    let without_cloexec = |call: &Call| {
        if call.arg(2) & u64::from(libc::CLOSE_RANGE_CLOEXEC) != 0 {
            Reply::Fails(libc::EINVAL)
        } else {
            Reply::Proceeds
        }
    };
    let started = || stdout(&sh(&policy, "echo ran"));
    for ran in [
        on_kernel(&[libc::SYS_close_range], missing, started),
        on_kernel(&[libc::SYS_close_range], without_cloexec, started),
    ]
    .into_iter()
    .flatten()
    {
        assert_eq!(ran, "ran");
    }
}

/// A kernel that refuses the seccomp filter (ENOMEM: the process's filters would exceed the
/// kernel's total) fails the spawn with that errno; the program never runs unfiltered.
#[test]
fn a_refused_seccomp_filter_fails_the_spawn_with_the_kernels_errno() {
    if !needs(&[Feature::Seccomp]) {
        return;
    }
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    let marker = write.path().join("ran");
    on_kernel(
        &[libc::SYS_seccomp],
        |call| {
            if call.arg(0) == u64::from(libc::SECCOMP_SET_MODE_FILTER) {
                Reply::Fails(libc::ENOMEM)
            } else {
                Reply::Proceeds
            }
        },
        || {
            let mut command = Command::new("/usr/bin/touch");
            command.arg(&marker);
            fork_guard::arm(&mut command);
            prepare(&policy, mode())
                .expect("prepare the confinement")
                .apply(&mut command);
            let error = command.status().expect_err("the spawn went through");
            assert_eq!(error.raw_os_error(), Some(libc::ENOMEM), "{error}");
        },
    );
    assert!(!marker.exists(), "the program ran");
}

/// Kernels with Landlock ABI 3 (no TCP rules, no scoping) and 5 (TCP rules, no scoping): what
/// `prepare` reports is what the child gets.
#[test]
fn an_older_landlock_abi_is_reported_and_enforced_as_it_is() {
    if !needs(&[Feature::LandlockScoping, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let policy = policy(write.path(), &[]);
    let bind = r#"
import socket
def attempt():
    socket.socket().bind(("127.0.0.1", 0))
"#;
    // Outside the sandbox, and the child's own user: only scoping keeps it from the signal.
    let mut outsider = Command::new("/bin/sleep");
    outsider.arg("30").stdout(Stdio::null());
    if let Some(user) = child_user() {
        outsider.uid(user.uid).gid(user.gid);
    }
    let mut outsider = outsider
        .spawn()
        .expect("start a process outside the sandbox");
    let signal = format!("kill -0 {}", outsider.id());
    let mut outcomes = Vec::new();
    for abi in [3, 5] {
        let answer = |call: &Call| {
            if call.arg(2) == LANDLOCK_CREATE_RULESET_VERSION {
                Reply::Returns(abi)
            } else {
                Reply::Proceeds
            }
        };
        let played = on_kernel(&[libc::SYS_landlock_create_ruleset], answer, || {
            let enforced = prepare(&policy, mode())
                .expect("prepare the confinement")
                .enforced();
            let bound = python_errno(&policy, bind, &[]);
            let signalled = sh(&policy, &signal);
            (abi, enforced, bound, signalled)
        });
        outcomes.extend(played);
    }
    outsider.kill().unwrap();
    outsider.wait().unwrap();

    for (abi, enforced, bound, signalled) in outcomes {
        assert!(enforced.landlock_filesystem, "ABI {abi}: {enforced}");
        assert_eq!(enforced.landlock_network, abi >= 4, "ABI {abi}: {enforced}");
        assert!(!enforced.landlock_scoping, "ABI {abi}: {enforced}");
        let expected = if abi >= 4 { "EACCES" } else { "ok" };
        assert_eq!(bound, expected, "ABI {abi}: a TCP bind");
        assert!(
            signalled.status.success(),
            "ABI {abi}: the outsider could not be signalled: {}",
            stderr(&signalled)
        );
    }
}
