//! A policy turned into kernel objects in the parent, and their installation on a command.

use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::child::ChildPlan;
use crate::limits::ResourceLimits;
use crate::{ConfineError, Mode, Policy, Support, User, landlock_rules, seccomp_filter};

/// A confinement ready to be applied to a command: the Landlock ruleset already created, the
/// seccomp programs already compiled, the limits already computed.
#[derive(Debug)]
pub struct Prepared {
    user: Option<User>,
    child: ChildPlan,
    enforced: Enforced,
}

/// What a prepared confinement enforces on this kernel, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    pub landlock_filesystem: bool,
    pub landlock_network: bool,
    pub landlock_scoping: bool,
    pub seccomp: bool,
    /// The child runs as a uid other than the caller's effective one.
    pub other_user: bool,
}

/// Builds, in the calling process, everything the child of a command will apply to itself.
/// In [`Mode::Required`] it fails when the kernel lacks Landlock's filesystem rules or seccomp
/// filters, and when any access right of the kernel's Landlock ABI cannot be handled.
pub fn prepare(policy: &Policy, mode: Mode) -> Result<Prepared, ConfineError> {
    let support = Support::probe();
    if mode == Mode::Required && !support.seccomp {
        return Err(ConfineError::Unsupported {
            feature: "seccomp filter",
            support,
        });
    }
    let ruleset = landlock_rules::create(policy, mode, support)?;
    let filters = if support.seccomp {
        seccomp_filter::compile()?
    } else {
        Vec::new()
    };
    let landlock = ruleset.is_some();
    let euid = nix::unistd::geteuid().as_raw();
    let enforced = Enforced {
        landlock_filesystem: landlock,
        landlock_network: landlock && support.network(),
        landlock_scoping: landlock && support.scoping(),
        seccomp: !filters.is_empty(),
        other_user: policy.user.is_some_and(|user| user.uid != euid),
    };
    Ok(Prepared {
        user: policy.user,
        child: ChildPlan {
            limits: ResourceLimits::new(&policy.limits)?,
            ruleset,
            filters,
        },
        enforced,
    })
}

impl Prepared {
    /// Makes `command` start its program confined. The uid and gid are std's to switch (and,
    /// from root, to drop supplementary groups, which takes every capability with it); the rest
    /// is one `pre_exec` closure run after that switch.
    ///
    /// The confinement is applied in the forked child itself rather than by a helper program
    /// the child would exec first: every object is built before the fork, so the child only
    /// makes system calls and allocates nothing, and no second binary has to be shipped beside
    /// every worker and test harness that starts confined programs.
    pub fn apply(self, command: &mut Command) {
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
        let child = self.child;
        // SAFETY: the closure runs between fork and exec, where only async-signal-safe work is
        // sound; `ChildPlan::confine` makes system calls on data the closure owns and allocates
        // nothing, takes no lock and touches no other state of the parent.
        unsafe {
            command.pre_exec(move || child.confine());
        }
    }

    pub fn enforced(&self) -> Enforced {
        self.enforced
    }
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        write!(
            f,
            "Landlock filesystem {}, network {}, scoping {}; seccomp {}; other user {}",
            yes_no(self.landlock_filesystem),
            yes_no(self.landlock_network),
            yes_no(self.landlock_scoping),
            yes_no(self.seccomp),
            yes_no(self.other_user),
        )
    }
}
