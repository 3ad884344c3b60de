//! The resource limits of a confined process: computed in the parent, set in the child.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::{ConfineError, Limits};

/// Each limit as both its soft and hard value, in the order they are set.
#[derive(Debug)]
pub(crate) struct ResourceLimits([(Resource, u64); 5]);

impl ResourceLimits {
    /// The policy's limits, each lowered to the caller's current hard limit: by the time the
    /// child sets them it may already run as another uid, which can lower a hard limit but never
    /// raise one, so asking for more would fail the spawn instead of confining it.
    pub(crate) fn new(limits: &Limits) -> Result<Self, ConfineError> {
        let capped = |resource: Resource, name: &'static str, wanted: u64| {
            getrlimit(resource)
                .map(|(_, hard)| (resource, wanted.min(hard)))
                .map_err(|source| ConfineError::ReadLimit {
                    resource: name,
                    source,
                })
        };
        Ok(ResourceLimits([
            capped(Resource::RLIMIT_DATA, "RLIMIT_DATA", limits.data_bytes)?,
            capped(Resource::RLIMIT_CPU, "RLIMIT_CPU", limits.cpu_seconds)?,
            capped(Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.open_files)?,
            capped(
                Resource::RLIMIT_FSIZE,
                "RLIMIT_FSIZE",
                limits.file_size_bytes,
            )?,
            (Resource::RLIMIT_CORE, 0),
        ]))
    }

    /// Sets every limit on the calling process. Runs in the child between fork and exec:
    /// `setrlimit` on a fixed array, errors as raw errno values, nothing allocated.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        for &(resource, value) in &self.0 {
            setrlimit(resource, value, value).map_err(std::io::Error::from)?;
        }
        Ok(())
    }
}
