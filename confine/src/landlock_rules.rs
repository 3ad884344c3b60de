//! The Landlock ruleset of a policy, created in the parent: the child only has to enforce it.

use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};
use nix::libc;

use crate::{ConfineError, Mode, Policy, Support};

/// The newest Landlock ABI whose access rights this crate has been run against. On a newer
/// kernel the ruleset stays at this level: a right added later (UDP ports, pathname Unix
/// sockets) is refused to every confined program as soon as it is handled, so each is taken on
/// deliberately, once the tests have run on a kernel that has it.
const NEWEST_TESTED_ABI: u32 = 7;

/// Character devices programs expect to open whatever else they are refused.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Builds the ruleset `policy` describes at the level `support` allows: a ruleset file
/// descriptor for the child's `landlock_restrict_self`, or none when the kernel has no Landlock
/// and `mode` tolerates that. In [`Mode::Required`] every access right of the kernel's ABI (up
/// to [`NEWEST_TESTED_ABI`]) must be handled, so the compatibility level is a hard requirement: the crate errors instead of
/// quietly dropping a right.
pub(crate) fn create(
    policy: &Policy,
    mode: Mode,
    support: Support,
) -> Result<Option<OwnedFd>, ConfineError> {
    if !support.filesystem() {
        return match mode {
            Mode::Required => Err(ConfineError::Unsupported {
                feature: "Landlock filesystem rules",
                support,
            }),
            Mode::BestEffort => Ok(None),
        };
    }
    let abi = ABI::from(support.landlock_abi.min(NEWEST_TESTED_ABI) as i32);
    let level = match mode {
        Mode::Required => CompatLevel::HardRequirement,
        Mode::BestEffort => CompatLevel::BestEffort,
    };
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(all)?;
    if support.network() {
        ruleset = ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?;
    }
    if support.scoping() {
        ruleset = ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket)?;
    }
    let mut created = ruleset.create()?;

    let read = AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute;
    for path in &policy.read {
        created = add_path(created, path, read, Missing::Skip)?;
    }
    for path in &policy.write {
        created = add_path(created, path, all, Missing::Fail)?;
    }
    let device = (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate) & all;
    for path in DEVICES {
        created = add_path(created, Path::new(path), device, Missing::Skip)?;
    }
    if support.network() {
        for port in &policy.connect_ports {
            created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
        }
    }
    Ok(created.into())
}

/// What a rule's path missing means: a read path or device absent from this host (`/lib32`) is
/// nothing to grant, but a write directory the caller named and did not create is its mistake.
#[derive(Clone, Copy)]
enum Missing {
    Skip,
    Fail,
}

fn add_path(
    created: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
    missing: Missing,
) -> Result<RulesetCreated, ConfineError> {
    let Some((parent, is_dir)) = open_path(path, missing)? else {
        return Ok(created);
    };
    // A rule on a file may only name the rights a file has; the kernel rejects directory
    // rights there, and the crate under a hard requirement would report an error.
    let access = if is_dir {
        access
    } else {
        access & AccessFs::from_file(ABI::from(NEWEST_TESTED_ABI as i32))
    };
    Ok(created.add_rule(PathBeneath::new(parent, access))?)
}

/// Opens `path` with `O_PATH` and tells whether it is a directory, from the descriptor itself
/// so the answer concerns the very inode the rule will name.
fn open_path(path: &Path, missing: Missing) -> Result<Option<(File, bool)>, ConfineError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .and_then(|file| {
            let is_dir = file.metadata()?.is_dir();
            Ok((file, is_dir))
        });
    match (opened, missing) {
        (Ok(opened), _) => Ok(Some(opened)),
        (Err(error), Missing::Skip) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        (Err(source), _) => Err(ConfineError::RulePath {
            path: path.to_path_buf(),
            source,
        }),
    }
}
