//! How this process confines the connectors it starts: what the kernel offers (probed once),
//! the user connectors run as when the worker is root, where their run directories go, and
//! whether running them unconfined is allowed. A worker builds one [`Sandbox`] at start; the
//! driver turns it and a kind into a `sv0_confine::Policy` for each run.
//!
//! Building it makes this process non-dumpable: a connector running as the same user could
//! otherwise read the worker's environment (every `env` credential, the database URI) and
//! memory through `/proc`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Uid, User as PasswdUser};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sv0_confine::{Enforced, Limits, Mode, Policy, Support, User};

use crate::registry::ConnectorKind;

/// The user connectors run as under a root worker when none is configured.
pub const DEFAULT_CONNECTOR_USER: &str = "nobody";

/// What the operator chose; [`Sandbox::new`] checks it against the kernel.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Run connectors even where the kernel has no Landlock (a warning at every run).
    pub allow_unconfined: bool,
    /// The user (a name, or `UID:GID`) connectors run as when this process is root.
    pub connector_user: String,
    /// Where each run's private directory is made; none: the system's temporary directory. A
    /// connector running as another user must be able to reach it (`o+x` on every parent).
    pub runs_dir: Option<PathBuf>,
}

impl Default for SandboxSettings {
    fn default() -> SandboxSettings {
        SandboxSettings {
            allow_unconfined: false,
            connector_user: DEFAULT_CONNECTOR_USER.to_string(),
            runs_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this kernel has no Landlock ({support}): connectors cannot be confined; \
         start with --allow-unconfined-connectors to run them anyway"
    )]
    NoLandlock { support: Support },
    #[error(
        "this kernel has no seccomp filters ({support}): connectors cannot be confined; \
             start with --allow-unconfined-connectors to run them anyway"
    )]
    NoSeccomp { support: Support },
    #[error("--connector-user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("making the worker non-dumpable: {0}")]
    Dumpable(std::io::Error),
    /// A trial confinement failed: a runs directory that does not exist, say.
    #[error("confining a connector: {0}")]
    Confine(#[from] sv0_confine::ConfineError),
}

/// The confinement every connector of this process gets.
#[derive(Debug, Clone)]
pub struct Sandbox {
    support: Support,
    /// What a trial confinement built at start enforced: what every run gets.
    enforced: Enforced,
    allow_unconfined: bool,
    user: Option<User>,
    runs_dir: PathBuf,
}

impl Sandbox {
    /// Probes the kernel, makes this process non-dumpable, and refuses a kernel that cannot
    /// confine unless `allow_unconfined` says otherwise.
    pub fn new(settings: SandboxSettings) -> Result<Sandbox, SandboxError> {
        sv0_confine::make_non_dumpable().map_err(SandboxError::Dumpable)?;
        let support = Support::probe();
        if !settings.allow_unconfined {
            if !support.filesystem() {
                return Err(SandboxError::NoLandlock { support });
            }
            if !support.seccomp {
                return Err(SandboxError::NoSeccomp { support });
            }
        }
        // A root connector keeps capabilities that get around every rule here.
        let user = if Uid::effective().is_root() {
            Some(resolve_user(&settings.connector_user)?)
        } else {
            None
        };
        let mut sandbox = Sandbox {
            support,
            enforced: Enforced {
                landlock_filesystem: false,
                landlock_network: false,
                landlock_scoping: false,
                seccomp: false,
                other_user: false,
            },
            allow_unconfined: settings.allow_unconfined,
            user,
            runs_dir: settings.runs_dir.unwrap_or_else(std::env::temp_dir),
        };
        // What is reported is what `prepare` builds for a run, not what the probe promises.
        let trial = sandbox.policy(
            &ConnectorKind::new("/", Vec::new()),
            &sandbox.runs_dir,
            Duration::from_secs(1),
        );
        sandbox.enforced = sv0_confine::prepare(&trial, sandbox.mode())?.enforced();
        Ok(sandbox)
    }

    /// What the kernel offers.
    pub fn support(&self) -> Support {
        self.support
    }

    /// The user connectors run as, when not this process's.
    pub fn user(&self) -> Option<User> {
        self.user
    }

    pub fn runs_dir(&self) -> &Path {
        &self.runs_dir
    }

    /// Whether connectors run without the confinement this kernel lacks.
    pub fn unconfined(&self) -> bool {
        !(self.enforced.landlock_filesystem && self.enforced.seccomp)
    }

    pub(crate) fn mode(&self) -> Mode {
        if self.allow_unconfined {
            Mode::BestEffort
        } else {
            Mode::Required
        }
    }

    /// What a connector of this process is confined by, feature by feature.
    pub fn enforced(&self) -> Enforced {
        self.enforced
    }

    /// One line for the worker's start-up log.
    pub fn describe(&self) -> String {
        let enforced = self.enforced();
        let user = match self.user {
            Some(user) => format!("uid {} gid {}", user.uid, user.gid),
            None => "the worker's own user (not root)".to_string(),
        };
        format!(
            "{}; Landlock files {}, TCP ports {}, signal and socket scoping {}; seccomp {}; \
             connectors run as {user}; run directories in {}",
            self.support,
            yes(enforced.landlock_filesystem),
            yes(enforced.landlock_network),
            yes(enforced.landlock_scoping),
            yes(enforced.seccomp),
            self.runs_dir.display(),
        )
    }

    /// `sv0_connector_confinement{feature}`: 1 where this process's connectors get the feature.
    /// Alert on a 0: a worker whose connectors could reach other tenants' credentials.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let family = Family::<Vec<(String, String)>, Gauge>::default();
        let enforced = self.enforced();
        let features = [
            ("landlock_filesystem", enforced.landlock_filesystem),
            ("landlock_network", enforced.landlock_network),
            ("landlock_scoping", enforced.landlock_scoping),
            ("seccomp", enforced.seccomp),
            (
                "unprivileged_user",
                enforced.other_user || !Uid::effective().is_root(),
            ),
            ("non_dumpable_worker", true),
        ];
        for (feature, on) in features {
            family
                .get_or_create(&vec![("feature".to_string(), feature.to_string())])
                .set(i64::from(on));
        }
        registry.register(
            "connector_confinement",
            "Whether this worker's connectors get each confinement feature (1) or not (0)",
            family,
        );
    }

    /// The confinement of one run of `kind` in `run_dir`.
    pub(crate) fn policy(
        &self,
        kind: &ConnectorKind,
        run_dir: &Path,
        time_limit: Duration,
    ) -> Policy {
        let mut read: Vec<PathBuf> = sv0_confine::SYSTEM_READ_PATHS
            .iter()
            .map(PathBuf::from)
            .collect();
        if let Some(directory) = kind.executable.parent() {
            read.push(directory.to_path_buf());
        }
        read.extend(kind.read_paths.iter().cloned());
        const MIB: u64 = 1024 * 1024;
        // The budget's own timer kills the connector first; the CPU limit is for a connector
        // that forks away from its group or spins between the timer's checks.
        let budget_seconds = time_limit.as_secs().saturating_add(1);
        Policy {
            read,
            write: vec![run_dir.to_path_buf()],
            connect_ports: kind.tcp_ports.clone(),
            limits: Limits {
                data_bytes: kind.limits.memory_mib.saturating_mul(MIB),
                cpu_seconds: kind.limits.cpu_seconds.min(budget_seconds),
                open_files: kind.limits.open_files,
                file_size_bytes: kind.limits.output_mib.saturating_mul(MIB),
            },
            user: self.user,
        }
    }
}

fn yes(on: bool) -> &'static str {
    if on { "on" } else { "OFF" }
}

/// `nobody`, or `65534:65534`; never root.
fn resolve_user(text: &str) -> Result<User, SandboxError> {
    let refuse = |reason: &str| SandboxError::User {
        user: text.to_string(),
        reason: reason.to_string(),
    };
    let user = if let Some((uid, gid)) = text.split_once(':') {
        let uid = uid.parse().map_err(|_| refuse("the uid is not a number"))?;
        let gid = gid.parse().map_err(|_| refuse("the gid is not a number"))?;
        User { uid, gid }
    } else {
        let entry = PasswdUser::from_name(text)
            .map_err(|e| refuse(&e.to_string()))?
            .ok_or_else(|| refuse("no such user (give UID:GID instead)"))?;
        User {
            uid: entry.uid.as_raw(),
            gid: entry.gid.as_raw(),
        }
    };
    if user.uid == 0 || user.gid == 0 {
        return Err(refuse(
            "connectors never run as root: a root connector can read the worker's memory",
        ));
    }
    Ok(user)
}
