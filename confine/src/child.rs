//! What the child runs between fork and exec. Another thread of the parent may have held the
//! allocator's lock at the fork, and the child has a copy of that lock that nobody will release:
//! nothing here allocates. It reads only what the parent built, makes system calls, and reports
//! a failure as a raw errno value, which is all std passes back to the parent's `spawn`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;
use seccompiler::BpfProgram;

use crate::limits::ResourceLimits;

/// Everything the child applies, built by the parent.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub(crate) limits: ResourceLimits,
    /// The Landlock ruleset; none only in best-effort mode on a kernel without Landlock, since
    /// [`crate::prepare`] refuses to build a required confinement the kernel cannot enforce.
    pub(crate) ruleset: Option<OwnedFd>,
    pub(crate) filters: Vec<BpfProgram>,
}

impl ChildPlan {
    /// Confines the calling process, least to most restrictive: limits, no_new_privs (which
    /// Landlock and seccomp require of an unprivileged caller), Landlock, then seccomp last so
    /// that its filter cannot be in the way of the calls before it. Any failure fails the spawn,
    /// in either mode: what [`crate::Prepared::enforced`] reports is then what the child got.
    pub(crate) fn confine(&self) -> io::Result<()> {
        mark_inherited_fds_cloexec()?;
        self.limits.apply()?;
        set_no_new_privs()?;
        if let Some(ruleset) = &self.ruleset {
            restrict_self(ruleset)?;
        }
        for filter in &self.filters {
            seccompiler::apply_filter(filter).map_err(seccomp_error)?;
        }
        Ok(())
    }
}

/// Descriptors the parent opened without close-on-exec (by another thread, or deliberately) must
/// not reach the confined program. They are marked rather than closed: std reports an exec
/// failure through a close-on-exec pipe it still needs. A kernel without `close_range` or its
/// `CLOSE_RANGE_CLOEXEC` (before 5.11) predates Landlock, so only an unconfined best-effort
/// spawn goes without.
fn mark_inherited_fds_cloexec() -> io::Result<()> {
    // SAFETY: close_range takes plain integers and only changes descriptor flags.
    let result = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOSYS | libc::EINVAL) => Ok(()),
        _ => Err(error),
    }
}

fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    match unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The raw `landlock_restrict_self` on a borrowed descriptor rather than the crate's
/// `RulesetCreated::restrict_self`: that one consumes the ruleset, so an `FnMut` closure could
/// only `take()` it out of an `Option` and a second spawn of the same command would find
/// nothing to enforce; and its status bookkeeping would need re-auditing for allocations on
/// every upgrade. One system call on a descriptor the parent keeps open does neither.
fn restrict_self(ruleset: &OwnedFd) -> io::Result<()> {
    // SAFETY: the descriptor is a Landlock ruleset owned by the closure and open for its whole
    // life; flags 0 asks for no optional behaviour.
    let result = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset.as_raw_fd(),
            0 as libc::c_uint,
        )
    };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `apply_filter` fails only with the errno of `prctl` or `seccomp`, or on an empty program,
/// which `compile` never produces.
fn seccomp_error(error: seccompiler::Error) -> io::Error {
    match error {
        seccompiler::Error::Prctl(error) | seccompiler::Error::Seccomp(error) => error,
        _ => io::Error::from_raw_os_error(libc::EINVAL),
    }
}
