//! Confinement of a child process with what an unprivileged Linux process can use: Landlock
//! (files, TCP ports, signal and abstract-socket scoping), a seccomp filter, rlimits, and another
//! uid/gid without capabilities when the caller is root; and the caller itself made non-dumpable.
//!
//! It owns how a [`Policy`] becomes kernel restrictions on a `std::process::Command`. It knows
//! nothing of connectors, tenants or the pipeline, and it must allocate nothing between fork and
//! exec: everything the child applies is built in the parent by [`prepare`].

mod child;
mod dumpable;
mod error;
mod landlock_rules;
mod limits;
mod prepared;
mod seccomp_filter;
mod support;

use std::path::PathBuf;

pub use dumpable::make_non_dumpable;
pub use error::ConfineError;
pub use prepared::{Enforced, Prepared, prepare};
pub use support::Support;

/// What a confined program may read of the system: binaries, shared libraries, and `/etc` (the
/// resolver, TLS roots, passwd and nsswitch). Deliberately absent: `/proc` (a rule on
/// `/proc/self` would be resolved in the parent when the ruleset is built and so grant the
/// parent's own entry), `/sys`, `/tmp`, `/home`, `/root`, `/var`, and `/run` (where secrets
/// mounts live). File permissions still apply on top: `/etc/shadow` stays unreadable to a
/// non-root uid.
pub const SYSTEM_READ_PATHS: &[&str] =
    &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"];

/// What a confined process may do. Everything not granted here is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Paths the process may read (and execute) beneath: files or directories.
    pub read: Vec<PathBuf>,
    /// Directories the process may read, write, create in and remove from beneath.
    pub write: Vec<PathBuf>,
    /// TCP ports the process may connect to; every other TCP connect and every TCP bind is
    /// refused (EACCES).
    pub connect_ports: Vec<u16>,
    pub limits: Limits,
    /// Run as this user, with no supplementary groups and no capabilities; none: the caller's.
    pub user: Option<User>,
}

/// Resource limits, set as both the soft and the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_DATA`: heap and data segments (not address space: runtimes reserve plenty).
    pub data_bytes: u64,
    /// `RLIMIT_CPU`: CPU seconds.
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`: the largest file it may write.
    pub file_size_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// How strictly [`prepare`] holds the kernel to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Landlock's filesystem rules in full, its TCP and scoping rules whenever the kernel has
    /// them, and the seccomp filter; a kernel short of any of these makes [`prepare`] fail.
    Required,
    /// Whatever of the above the kernel has; [`Prepared::enforced`] says what that is.
    BestEffort,
}
