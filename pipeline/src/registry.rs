//! The connector registry: which program scans each connector kind, and what that program may
//! touch. It is deployment configuration, a TOML file the worker and the admin API read at start
//! (`--connectors FILE`); an API caller names a kind and nothing else about the program.
//!
//! ```toml
//! [kinds.demo]
//! executable = "/usr/local/bin/sv0-demo-connector"  # absolute
//! args = []                    # fixed arguments, before the contract's three
//! tcp_ports = [443]            # the TCP ports it may connect to (default: 443)
//! env = []                     # names of the worker's variables it also receives (default none)
//! read_paths = []              # extra paths it may read beneath (default none)
//! [kinds.demo.limits]          # each optional, defaults below
//! memory_mib = 2048            # RLIMIT_DATA
//! cpu_seconds = 3600           # RLIMIT_CPU (also at most the run's budget)
//! open_files = 1024            # RLIMIT_NOFILE
//! output_mib = 128             # RLIMIT_FSIZE: the largest file it may write
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sv0_broker::{LOADER_PREFIXES, OS_ENV_ALLOWLIST};

/// The registry file's variable, read when `--connectors` is not given.
pub const CONNECTORS_ENV: &str = "SV0_CONNECTORS";

/// Prefixes of variables that belong to the worker itself (its database URI, every tenant's `env`
/// credentials, the Key Vault provider's identity): a kind may never be given one of them.
pub const WORKER_ONLY_ENV_PREFIXES: [&str; 4] = ["SV0_", "AZURE_", "IDENTITY_", "MSI_"];

const MAX_KINDS: usize = 1000;
const MAX_ARGS: usize = 64;
const MAX_LIST: usize = 64;

/// Every registered connector kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorRegistry {
    kinds: BTreeMap<String, ConnectorKind>,
}

/// One kind's program and its confinement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorKind {
    /// The connector executable: an absolute path.
    pub executable: PathBuf,
    /// Fixed arguments, given before the contract's `--scope-json`, `--category-results-out`
    /// and `--graph-json`.
    #[serde(default)]
    pub args: Vec<String>,
    /// The TCP ports the connector may connect to, on any address.
    #[serde(default = "default_tcp_ports")]
    pub tcp_ports: Vec<u16>,
    /// Names of the worker's environment variables the connector also receives, beside the
    /// OS allowlist and its bundle.
    #[serde(default)]
    pub env: Vec<String>,
    /// Extra absolute paths the connector may read beneath (its executable's directory and the
    /// system's are always readable).
    #[serde(default)]
    pub read_paths: Vec<PathBuf>,
    #[serde(default)]
    pub limits: ConnectorLimits,
}

/// The kind's resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorLimits {
    pub memory_mib: u64,
    pub cpu_seconds: u64,
    pub open_files: u64,
    pub output_mib: u64,
}

impl Default for ConnectorLimits {
    fn default() -> ConnectorLimits {
        ConnectorLimits {
            memory_mib: 2048,
            cpu_seconds: 3600,
            open_files: 1024,
            // Above the largest graph.json the driver reads.
            output_mib: 128,
        }
    }
}

fn default_tcp_ports() -> Vec<u16> {
    vec![443]
}

/// Why a registry file cannot be used. Every message names the file's problem and, where there
/// is one, the kind.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("connector registry {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connector registry: {0}")]
    Parse(String),
    #[error("connector registry: kind {kind:?}: {reason}")]
    InvalidKind { kind: String, reason: String },
}

/// A kind an instance names that the registry does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connector kind {kind:?} is not registered{}", registered_list(.registered))]
pub struct UnknownKind {
    pub kind: String,
    pub registered: Vec<String>,
}

fn registered_list(registered: &[String]) -> String {
    if registered.is_empty() {
        " (the connector registry is empty)".to_string()
    } else {
        format!(" (registered: {})", registered.join(", "))
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    kinds: BTreeMap<String, ConnectorKind>,
}

impl ConnectorRegistry {
    /// Reads and validates the registry file at `path`.
    pub fn load(path: &Path) -> Result<ConnectorRegistry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ConnectorRegistry::from_toml(&text)
    }

    /// Parses and validates a registry's TOML text.
    pub fn from_toml(text: &str) -> Result<ConnectorRegistry, RegistryError> {
        let file: RegistryFile = toml::from_str(text)
            .map_err(|e| RegistryError::Parse(e.to_string().trim_end().to_string()))?;
        ConnectorRegistry::from_kinds(file.kinds)
    }

    /// A registry of `kinds`, validated as a file's would be.
    pub fn from_kinds(
        kinds: BTreeMap<String, ConnectorKind>,
    ) -> Result<ConnectorRegistry, RegistryError> {
        if kinds.len() > MAX_KINDS {
            return Err(RegistryError::Parse(format!(
                "{} kinds; at most {MAX_KINDS}",
                kinds.len()
            )));
        }
        for (name, kind) in &kinds {
            let invalid = |reason: String| RegistryError::InvalidKind {
                kind: name.clone(),
                reason,
            };
            sv0_domain::validate_kind(name).map_err(|e| invalid(e.to_string()))?;
            kind.validate().map_err(invalid)?;
        }
        Ok(ConnectorRegistry { kinds })
    }

    /// The registry as a file [`ConnectorRegistry::load`] reads back equal, every field written
    /// out: what the demo, the tests, the chaos run and the bench hand their processes. Fails
    /// only on a path that is not UTF-8.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(&RegistryFile {
            kinds: self.kinds.clone(),
        })
    }

    /// The kind `name`, or why an instance of it cannot run here.
    pub fn kind(&self, name: &str) -> Result<&ConnectorKind, UnknownKind> {
        self.kinds.get(name).ok_or_else(|| UnknownKind {
            kind: name.to_string(),
            registered: self.kinds.keys().cloned().collect(),
        })
    }

    /// The registered kinds' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

impl ConnectorKind {
    /// A kind running `executable` with `args`, everything else at its default.
    pub fn new(executable: impl Into<PathBuf>, args: Vec<String>) -> ConnectorKind {
        ConnectorKind {
            executable: executable.into(),
            args,
            tcp_ports: default_tcp_ports(),
            env: Vec::new(),
            read_paths: Vec::new(),
            limits: ConnectorLimits::default(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !self.executable.is_absolute() {
            return Err(format!(
                "executable {:?} must be an absolute path",
                self.executable
            ));
        }
        if self.args.len() > MAX_ARGS || self.args.iter().any(|a| a.contains('\0')) {
            return Err(format!(
                "args: at most {MAX_ARGS}, none holding a NUL character"
            ));
        }
        if self.tcp_ports.len() > MAX_LIST || self.tcp_ports.contains(&0) {
            return Err(format!(
                "tcp_ports: at most {MAX_LIST} ports, each 1 to 65535"
            ));
        }
        if self.read_paths.len() > MAX_LIST || self.read_paths.iter().any(|p| !p.is_absolute()) {
            return Err(format!(
                "read_paths: at most {MAX_LIST}, each an absolute path"
            ));
        }
        if self.env.len() > MAX_LIST {
            return Err(format!("env: at most {MAX_LIST} names"));
        }
        for name in &self.env {
            check_env_name(name)?;
        }
        let ConnectorLimits {
            memory_mib,
            cpu_seconds,
            open_files,
            output_mib,
        } = self.limits;
        let bounds = [
            ("memory_mib", memory_mib, 16, 1 << 20),
            ("cpu_seconds", cpu_seconds, 1, 7 * 24 * 3600),
            ("open_files", open_files, 16, 1 << 20),
            ("output_mib", output_mib, 1, 1 << 20),
        ];
        for (field, value, low, high) in bounds {
            if !(low..=high).contains(&value) {
                return Err(format!("limits.{field}: {value}; must be {low} to {high}"));
            }
        }
        Ok(())
    }
}

/// A variable a kind may receive from the worker: a plain name, not one the connector gets
/// anyway, not one a loader acts on, and never one of the worker's own.
fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("env: {name:?} is not a variable name"));
    }
    let upper = name.to_ascii_uppercase();
    if let Some(prefix) = WORKER_ONLY_ENV_PREFIXES
        .iter()
        .find(|prefix| upper.starts_with(*prefix))
    {
        return Err(format!(
            "env: {name:?} is the worker's own ({prefix}…): never passed to a connector"
        ));
    }
    if OS_ENV_ALLOWLIST.iter().any(|allowed| upper == *allowed) {
        return Err(format!("env: {name:?} is given to every connector already"));
    }
    // Not the bundle's rule: the registry is the deployment's, which may mean to give a kind
    // its proxy or its runtime's options; no deployment means a preloaded library.
    if let Some(prefix) = LOADER_PREFIXES
        .iter()
        .find(|prefix| upper.starts_with(*prefix))
    {
        return Err(format!(
            "env: {name:?} is the dynamic loader's ({prefix}…): never passed to a connector"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_kind_reads_and_defaults_fill_the_rest() {
        let registry = ConnectorRegistry::from_toml(
            r#"
            [kinds.demo]
            executable = "/usr/local/bin/sv0-demo-connector"

            [kinds.aws]
            executable = "/opt/aws/connector"
            args = ["--fast"]
            tcp_ports = [443, 8443]
            env = ["HTTPS_PROXY"]
            read_paths = ["/opt/aws/data"]
            limits = { memory_mib = 512, output_mib = 16 }
            "#,
        )
        .unwrap();
        assert_eq!(registry.names().collect::<Vec<_>>(), ["aws", "demo"]);
        let demo = registry.kind("demo").unwrap();
        assert_eq!(demo.tcp_ports, [443]);
        assert!(demo.env.is_empty() && demo.args.is_empty());
        assert_eq!(demo.limits, ConnectorLimits::default());
        let aws = registry.kind("aws").unwrap();
        assert_eq!(aws.limits.memory_mib, 512);
        assert_eq!(aws.limits.cpu_seconds, 3600);
        assert_eq!(aws.tcp_ports, [443, 8443]);
        assert_eq!(aws.env, ["HTTPS_PROXY"]);
    }

    #[test]
    fn a_deployment_may_pass_proxies_and_runtime_options_but_never_the_loaders() {
        let registry = ConnectorRegistry::from_toml(
            r#"
            [kinds.aws]
            executable = "/opt/aws/connector"
            env = ["HTTPS_PROXY", "no_proxy", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS"]
            "#,
        )
        .unwrap();
        assert_eq!(registry.kind("aws").unwrap().env.len(), 4);
        for name in ["LD_PRELOAD", "ld_audit", "DYLD_INSERT_LIBRARIES"] {
            let text = format!("[kinds.aws]\nexecutable = \"/bin/true\"\nenv = [\"{name}\"]");
            let error = ConnectorRegistry::from_toml(&text).unwrap_err().to_string();
            assert!(error.contains("dynamic loader's"), "{name}: {error}");
        }
    }

    #[test]
    fn a_registry_written_out_reads_back_equal() {
        let mut aws = ConnectorKind::new(
            "/opt/aws \"connector\"",
            vec!["--a b".into(), "\u{1b}".into()],
        );
        aws.tcp_ports = vec![443, 8443];
        aws.env = vec!["HTTPS_PROXY".into()];
        aws.read_paths = vec!["/opt/aws/data".into()];
        aws.limits.memory_mib = 512;
        let registry = ConnectorRegistry::from_kinds(BTreeMap::from([
            ("aws".to_string(), aws),
            (
                "demo".to_string(),
                ConnectorKind::new("/bin/true", Vec::new()),
            ),
        ]))
        .unwrap();
        let text = registry.to_toml().unwrap();
        assert_eq!(
            ConnectorRegistry::from_toml(&text).unwrap(),
            registry,
            "{text}"
        );
    }

    #[test]
    fn an_unknown_kind_names_the_registered_ones() {
        let registry =
            ConnectorRegistry::from_toml("[kinds.demo]\nexecutable = \"/bin/true\"").unwrap();
        let error = registry.kind("aws").unwrap_err();
        assert_eq!(
            error.to_string(),
            "connector kind \"aws\" is not registered (registered: demo)"
        );
        assert!(
            ConnectorRegistry::default()
                .kind("aws")
                .unwrap_err()
                .to_string()
                .ends_with("(the connector registry is empty)")
        );
    }

    #[test]
    fn bad_entries_are_refused_naming_the_kind_and_field() {
        let cases = [
            ("[kinds.Demo]\nexecutable = \"/bin/true\"", "\"Demo\""),
            ("[kinds.demo]\nexecutable = \"bin/true\"", "absolute"),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\ncommand = []",
                "unknown field",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\ntcp_ports = [0]",
                "tcp_ports",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nenv = [\"SV0_MONGODB_URI\"]",
                "worker's own",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nenv = [\"sv0_tenant_acme_x\"]",
                "worker's own",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nenv = [\"AZURE_CLIENT_SECRET\"]",
                "worker's own",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nenv = [\"LD_PRELOAD\"]",
                "env",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nenv = [\"PATH\"]",
                "already",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nenv = [\"A=B\"]",
                "not a variable",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nread_paths = [\"data\"]",
                "read_paths",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nlimits = { memory_mib = 0 }",
                "limits.memory_mib",
            ),
            (
                "[kinds.demo]\nexecutable = \"/bin/true\"\nlimits = { cpu_seconds = 99999999 }",
                "limits.cpu_seconds",
            ),
            ("kinds = 3", "line 1"),
        ];
        for (text, expected) in cases {
            let error = ConnectorRegistry::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
