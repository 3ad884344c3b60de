//! Makes the calling process non-dumpable.

/// Clears the calling process's dumpable flag, so that a child running under the same uid cannot
/// read its `/proc/<pid>/environ` or `mem`, nor attach to it. The flag is per process and stays
/// cleared until the process execs or changes credentials; it also disables core dumps.
pub fn make_non_dumpable() -> std::io::Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)
}
