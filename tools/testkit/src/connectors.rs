//! Connector executables staged where a connector user can run them. Under a root worker a
//! connector runs as an unprivileged user (`nobody` by default), which cannot reach a binary in
//! a build tree under a private directory (`/root/…`); and a confined connector reads only its
//! executable's directory among non-system paths. So tests, the chaos run and the bench copy the
//! connectors they register into one world-readable directory of their own.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A world-readable directory holding copies of connector executables, removed on drop.
pub struct StagedConnectors {
    dir: tempfile::TempDir,
}

impl StagedConnectors {
    /// An empty staging directory (mode 0755) in the system's temporary directory.
    pub fn new() -> std::io::Result<StagedConnectors> {
        let dir = tempfile::Builder::new()
            .prefix("sv0-connectors-")
            .permissions(Permissions::from_mode(0o755))
            .tempdir()?;
        Ok(StagedConnectors { dir })
    }

    /// Copies `source` in (mode 0755) and returns the copy's absolute path.
    pub fn stage(&self, source: &Path) -> std::io::Result<PathBuf> {
        let name = source
            .file_name()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
        let target = self.dir.path().join(name);
        std::fs::copy(source, &target)?;
        std::fs::set_permissions(&target, Permissions::from_mode(0o755))?;
        Ok(target)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A directory for connectors' run directories that an unprivileged connector user can reach
/// (mode 0711: enter, not list), removed on drop.
pub fn runs_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("sv0-runs-")
        .permissions(Permissions::from_mode(0o711))
        .tempdir()
}
