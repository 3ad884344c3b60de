//! The connector options shared by the subcommands that run connectors (`worker`, `all`) or
//! check instances against the registry (`admin-api`, `migrate`): the registry file, and how a
//! worker confines what it runs.

use std::path::PathBuf;

use anyhow::Context;
use sv0_pipeline::registry::CONNECTORS_ENV;
use sv0_pipeline::sandbox::DEFAULT_CONNECTOR_USER;
use sv0_pipeline::{ConnectorRegistry, Sandbox, SandboxSettings};

/// Where the connector registry is.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// The connector registry (TOML): which executable runs each connector kind, its fixed
    /// arguments, TCP ports, limits and extra environment (docs/connector-contract.md).
    /// Without one, no kind is registered: instances cannot be created and scans fail.
    #[arg(long = "connectors", env = CONNECTORS_ENV, value_name = "FILE")]
    pub connectors: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn registry(&self) -> anyhow::Result<ConnectorRegistry> {
        match &self.connectors {
            Some(path) => ConnectorRegistry::load(path).context("--connectors"),
            None => {
                tracing::warn!(
                    "no connector registry (--connectors or {CONNECTORS_ENV}): no connector kind is registered"
                );
                Ok(ConnectorRegistry::default())
            }
        }
    }
}

/// How a worker confines the connectors it starts.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The user connectors run as when the worker runs as root: a name or UID:GID, never root.
    #[arg(long, default_value = DEFAULT_CONNECTOR_USER)]
    pub connector_user: String,
    /// Where each run's private directory is made (default: the system's temporary directory);
    /// the connector user must be able to reach it.
    #[arg(long)]
    pub connector_runs_dir: Option<PathBuf>,
    /// Run connectors even on a kernel without Landlock or seccomp, unconfined (a warning is
    /// logged at every run). Never in production: a connector could then read every tenant's
    /// credentials.
    #[arg(long)]
    pub allow_unconfined_connectors: bool,
}

impl SandboxArgs {
    /// The registry and the sandbox, checked against the kernel; the confinement obtained is
    /// logged.
    pub fn load(&self) -> anyhow::Result<(ConnectorRegistry, Sandbox)> {
        let registry = self.registry.registry()?;
        let sandbox = Sandbox::new(SandboxSettings {
            allow_unconfined: self.allow_unconfined_connectors,
            connector_user: self.connector_user.clone(),
            runs_dir: self.connector_runs_dir.clone(),
        })
        .context("confining connectors")?;
        let kinds: Vec<&str> = registry.names().collect();
        if sandbox.unconfined() {
            tracing::warn!(
                confinement = %sandbox.describe(),
                ?kinds,
                "connectors will run UNCONFINED (--allow-unconfined-connectors)"
            );
        } else {
            tracing::info!(confinement = %sandbox.describe(), ?kinds, "connector confinement");
        }
        Ok((registry, sandbox))
    }
}
