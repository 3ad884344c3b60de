//! Why a confinement could not be prepared.

use std::path::PathBuf;

use crate::Support;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("required confinement unavailable on this kernel: {feature} ({support})")]
    Unsupported {
        feature: &'static str,
        support: Support,
    },
    #[error("cannot open {} for a Landlock rule: {source}", path.display())]
    RulePath {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Landlock ruleset: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("seccomp filter failed to compile: {0}")]
    SeccompCompile(#[from] seccompiler::BackendError),
    #[error("cannot read the current {resource} limit: {source}")]
    ReadLimit {
        resource: &'static str,
        source: nix::errno::Errno,
    },
}
