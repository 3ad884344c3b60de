//! What `prepare` builds and reports, and what it refuses to build.

use std::path::PathBuf;

use sv0_confine::{ConfineError, Enforced, Mode, Support, prepare};

use crate::harness::{Feature, child_user, needs, owned_dir, policy};

#[test]
fn required_confinement_enforces_everything_on_landlock_abi_6() {
    let support = Support::probe();
    if support.landlock_abi < 6 {
        crate::harness::skip(&format!("needs Landlock ABI 6; this host has {support}"));
        return;
    }
    if !needs(&[Feature::Seccomp]) {
        return;
    }
    let write = owned_dir();
    let prepared = prepare(&policy(write.path(), &[443]), Mode::Required)
        .expect("a required confinement on a kernel that has it all");
    assert_eq!(
        prepared.enforced(),
        Enforced {
            landlock_filesystem: true,
            landlock_network: true,
            landlock_scoping: true,
            seccomp: true,
            other_user: child_user().is_some(),
        }
    );
}

#[test]
fn missing_read_paths_are_skipped() {
    let write = owned_dir();
    let mut policy = policy(write.path(), &[]);
    policy.read.push(PathBuf::from("/nonexistent/sv0-confine"));
    prepare(&policy, Mode::BestEffort).expect("a read path that does not exist grants nothing");
}

#[test]
fn missing_write_dir_fails_the_preparation() {
    if !needs(&[Feature::LandlockFilesystem]) {
        return;
    }
    let write = owned_dir();
    let mut policy = policy(write.path(), &[]);
    let missing = write.path().join("never-created");
    policy.write.push(missing.clone());
    match prepare(&policy, Mode::BestEffort) {
        Err(ConfineError::RulePath { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a missing write dir to be refused, got {other:?}"),
    }
}

#[test]
fn support_summary_names_what_the_kernel_has() {
    let summary = Support {
        landlock_abi: 7,
        seccomp: true,
    }
    .to_string();
    assert_eq!(
        summary,
        "Landlock ABI 7 (filesystem, TCP ports, signal and abstract-socket scoping), seccomp filter"
    );
    let none = Support {
        landlock_abi: 0,
        seccomp: false,
    }
    .to_string();
    assert_eq!(none, "no Landlock, no seccomp filter");
}
