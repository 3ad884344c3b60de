//! What confinement the running kernel offers.

use std::fmt;

use nix::libc;

/// `landlock_create_ruleset` flag asking for the highest supported ABI instead of a ruleset.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The confinement features of the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// The highest Landlock ABI the kernel accepts; 0 when Landlock is absent or disabled.
    pub landlock_abi: u32,
    /// Seccomp filter mode with the actions the filter uses (errno returns, process kill).
    pub seccomp: bool,
}

impl Support {
    pub fn probe() -> Support {
        // SAFETY: with a null attribute, a zero size and the version flag the call only returns
        // a number; it reads and writes no memory.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        Support {
            landlock_abi: u32::try_from(abi).unwrap_or(0),
            seccomp: seccomp_action_available(libc::SECCOMP_RET_ERRNO)
                && seccomp_action_available(libc::SECCOMP_RET_KILL_PROCESS),
        }
    }

    /// Landlock filesystem rules (ABI 1).
    pub fn filesystem(&self) -> bool {
        self.landlock_abi >= 1
    }

    /// Landlock TCP bind and connect rules by port (ABI 4).
    pub fn network(&self) -> bool {
        self.landlock_abi >= 4
    }

    /// Landlock scoping of signals and abstract Unix sockets (ABI 6).
    pub fn scoping(&self) -> bool {
        self.landlock_abi >= 6
    }
}

/// Asks the kernel whether a seccomp filter may return `action`: this fails on a kernel without
/// filter mode as well as on one too old to know the action, which is what the filter needs.
fn seccomp_action_available(action: u32) -> bool {
    // SAFETY: the kernel reads one u32 through the pointer, which outlives the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &action as *const u32,
        )
    };
    result == 0
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.filesystem() {
            write!(f, "Landlock ABI {} (filesystem", self.landlock_abi)?;
            if self.network() {
                f.write_str(", TCP ports")?;
            }
            if self.scoping() {
                f.write_str(", signal and abstract-socket scoping")?;
            }
            f.write_str(")")?;
        } else {
            f.write_str("no Landlock")?;
        }
        f.write_str(if self.seccomp {
            ", seccomp filter"
        } else {
            ", no seccomp filter"
        })
    }
}
