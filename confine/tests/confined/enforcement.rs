//! What `prepare` builds and reports, and what it refuses to build.

use std::path::PathBuf;

use nix::libc;
use sv0_confine::{ConfineError, Enforced, Mode, Support, prepare};

use crate::harness::{Feature, child_user, needs, open_dir, owned_dir, policy};

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

/// Only a read path that does not exist is nothing to grant: one that exists and cannot be opened
/// (a symbolic link loop, here) is the policy's mistake, reported rather than dropped.
#[test]
fn a_read_path_that_cannot_be_opened_fails_the_preparation() {
    if !needs(&[Feature::LandlockFilesystem]) {
        return;
    }
    let write = owned_dir();
    let dir = open_dir();
    let looping = dir.path().join("loop");
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    let mut policy = policy(write.path(), &[]);
    policy.read.push(looping.clone());
    match prepare(&policy, Mode::BestEffort) {
        Err(ConfineError::RulePath { path, source }) => {
            assert_eq!(path, looping);
            assert_eq!(source.raw_os_error(), Some(libc::ELOOP));
        }
        other => panic!("expected the looping read path to be refused, got {other:?}"),
    }
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
    let between = Support {
        landlock_abi: 5,
        seccomp: true,
    }
    .to_string();
    assert_eq!(
        between,
        "Landlock ABI 5 (filesystem, TCP ports), seccomp filter"
    );
}

#[test]
fn each_landlock_feature_comes_with_its_abi() {
    let features = |landlock_abi| {
        let support = Support {
            landlock_abi,
            seccomp: true,
        };
        (support.filesystem(), support.network(), support.scoping())
    };
    assert_eq!(features(0), (false, false, false));
    assert_eq!(features(1), (true, false, false));
    assert_eq!(features(3), (true, false, false));
    assert_eq!(features(4), (true, true, false));
    assert_eq!(features(5), (true, true, false));
    assert_eq!(features(6), (true, true, true));
}

#[test]
fn enforced_summary_names_each_layer() {
    let some = Enforced {
        landlock_filesystem: true,
        landlock_network: false,
        landlock_scoping: true,
        seccomp: false,
        other_user: true,
    };
    assert_eq!(
        some.to_string(),
        "Landlock filesystem yes, network no, scoping yes; seccomp no; other user yes"
    );
    let others = Enforced {
        landlock_filesystem: false,
        landlock_network: true,
        landlock_scoping: false,
        seccomp: true,
        other_user: false,
    };
    assert_eq!(
        others.to_string(),
        "Landlock filesystem no, network yes, scoping no; seccomp yes; other user no"
    );
}
