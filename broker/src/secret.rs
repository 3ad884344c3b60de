//! Secret values and the bundle that carries them to a connector.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;
use zeroize::Zeroizing;

/// What every formatting or serialization of a secret value prints.
pub const REDACTED: &str = "[REDACTED]";

/// The OS variables a connector inherits from its parent; everything else comes from the bundle. A
/// bundle may not set them (see [`BundleName`]).
pub const OS_ENV_ALLOWLIST: [&str; 5] = ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"];

/// Prefixes of the dynamic loader's variables (glibc's `LD_*`, macOS's `DYLD_*`): whoever sets
/// `LD_PRELOAD` or `DYLD_INSERT_LIBRARIES` chooses code that runs inside the connector. A bundle may
/// not set them (see [`BundleName`]).
pub const LOADER_PREFIXES: [&str; 2] = ["LD_", "DYLD_"];

/// Proxy variables, which most HTTP clients (curl, Go's `net/http`, Python `requests`, Node's
/// agents) honour in either case: a tenant's secret that set one would route the connector's
/// traffic, credentials included, through a host of the tenant's choosing, or (`NO_PROXY`) around
/// the deployment's own proxy. A bundle may not set them (see [`BundleName`]); a deployment still
/// may, through the connector registry.
pub const PROXY_ENV_NAMES: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
];

/// Variables that make an interpreter, a shell, libc or a TLS or git client inside the connector
/// load code, trust, or send secrets where the setter chooses, rather than what the connector
/// ships. A bundle may not set them (see [`BundleName`]):
///
/// - code on start: `NODE_OPTIONS` (`--require`), `NODE_PATH`, `PYTHONPATH`, `PYTHONSTARTUP`,
///   `PYTHONHOME`, `PYTHONUSERBASE` (whose `site-packages` is imported), `PYTHONWARNINGS` (a
///   warning category is imported by name), `BASH_ENV` and `ENV` (sourced by non-interactive
///   bash and by POSIX shells), `SHELLOPTS` with `PS4` (xtrace expands `PS4`, command
///   substitutions included, and prints every command with its arguments), `IFS` (re-splits
///   every unquoted expansion of a script), `JAVA_TOOL_OPTIONS`, `_JAVA_OPTIONS`,
///   `JDK_JAVA_OPTIONS` (`-javaagent`), `CLASSPATH`, `PERL5OPT`, `PERL5LIB`, `PERLLIB`,
///   `RUBYOPT`, `RUBYLIB`, `OPENSSL_CONF`, `OPENSSL_ENGINES`, `OPENSSL_MODULES` (engines and
///   providers are shared objects);
/// - libc: `GCONV_PATH` (iconv loads its converters from there), `LOCPATH` and `NLSPATH` (locale
///   and message files parsed from there), `GLIBC_TUNABLES` (parsed by the loader itself, and
///   the way in for a known loader overflow), `HOSTALIASES` and `LOCALDOMAIN` (which host a name
///   resolves to, like a proxy without one);
/// - trust and secrets: `SSL_CERT_FILE`, `SSL_CERT_DIR`, `CURL_CA_BUNDLE`, `REQUESTS_CA_BUNDLE`,
///   `NODE_EXTRA_CA_CERTS` (which certificate authorities the connector's TLS trusts),
///   `SSLKEYLOGFILE` (where TLS libraries write the session keys);
/// - git, which runs commands it is told to: `GIT_SSH_COMMAND`, `GIT_SSH`, `GIT_ASKPASS`,
///   `GIT_PROXY_COMMAND`, `GIT_EXEC_PATH`, and every `GIT_CONFIG*` (a config sets hooks,
///   `core.sshCommand`, `credential.helper`).
///
/// `MALLOC_*` (glibc's `MALLOC_CHECK_`, `MALLOC_PERTURB_`, `MALLOC_ARENA_MAX`) are left out:
/// they tune the allocator and make it stricter, never load code or redirect anything, and the
/// tunables behind them that the loader parses go through `GLIBC_TUNABLES`, which is reserved.
pub const HOOK_ENV_NAMES: [&str; 42] = [
    "NODE_OPTIONS",
    "NODE_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONWARNINGS",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "PS4",
    "IFS",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "OPENSSL_MODULES",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "SSLKEYLOGFILE",
    "GIT_SSH_COMMAND",
    "GIT_SSH",
    "GIT_ASKPASS",
    "GIT_PROXY_COMMAND",
    "GIT_EXEC_PATH",
    "GIT_CONFIG",
];

/// Prefixes of further hook variables: git reads `GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_<n>`,
/// `GIT_CONFIG_VALUE_<n>`, `GIT_CONFIG_GLOBAL`, `GIT_CONFIG_SYSTEM` and `GIT_CONFIG_PARAMETERS`
/// as configuration (see [`HOOK_ENV_NAMES`]).
pub const HOOK_ENV_PREFIXES: [&str; 1] = ["GIT_CONFIG_"];

/// The name of a bundle entry, i.e. of a variable in the connector's environment. Never one of
/// [`OS_ENV_ALLOWLIST`], [`PROXY_ENV_NAMES`] or [`HOOK_ENV_NAMES`], nor a name starting with one
/// of [`LOADER_PREFIXES`] or [`HOOK_ENV_PREFIXES`]: a store's secret could otherwise replace the
/// connector's `PATH` or `HOME`, preload a library or a module into it, or send its traffic
/// elsewhere. Compared without case, as Windows' environment ignores case, most clients read
/// `https_proxy` as well as `HTTPS_PROXY`, and no connector needs a lower-case `path`.
/// [`BundleName::parse`] is the only way to make one, and [`SecretBundle::insert`] takes only this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleName(String);

impl BundleName {
    pub fn parse(name: &str) -> Result<Self, ReservedName> {
        let upper = name.to_ascii_uppercase();
        let upper = upper.as_str();
        let why = if OS_ENV_ALLOWLIST.contains(&upper) {
            Some("the connector inherits it from the OS")
        } else if LOADER_PREFIXES.iter().any(|p| upper.starts_with(p)) {
            Some("the dynamic loader acts on it")
        } else if PROXY_ENV_NAMES.contains(&upper) {
            Some("it routes the connector's traffic")
        } else if HOOK_ENV_NAMES.contains(&upper)
            || HOOK_ENV_PREFIXES.iter().any(|p| upper.starts_with(p))
        {
            Some("it makes the connector's runtime load code, trust or send secrets elsewhere")
        } else {
            None
        };
        match why {
            Some(why) => Err(ReservedName {
                name: name.to_owned(),
                why,
            }),
            None => Ok(BundleName(name.to_owned())),
        }
    }
}

/// A bundle name that [`BundleName::parse`] refused, and why. It holds the name only: names are
/// not secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle name `{name}` is reserved: {why}")]
pub struct ReservedName {
    pub name: String,
    pub why: &'static str,
}

/// One secret value. `Debug`, `Display` and `Serialize` print [`REDACTED`]; the bytes are
/// overwritten when the value is dropped. Read it only with [`SecretValue::expose`], at the point
/// where it leaves the process (a child's environment).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// A resolved bundle: environment variable name → secret value. Names are not secret (they show
/// in `Debug` and logs); values always print as [`REDACTED`].
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretBundle(BTreeMap<String, SecretValue>);

impl SecretBundle {
    pub fn insert(&mut self, name: BundleName, value: SecretValue) {
        self.0.insert(name.0, value);
    }

    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.0.get(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Gives `command` exactly the connector environment: cleared, then the [`OS_ENV_ALLOWLIST`]
    /// variables this process has, then the bundle, whose names never overlap the allowlist's (see
    /// [`BundleName`]). The values are copied into `command`, which does not wipe them; keep the
    /// command short-lived.
    pub fn apply_to_command(&self, command: &mut Command) {
        command.env_clear();
        for name in OS_ENV_ALLOWLIST {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        for (name, value) in self.iter() {
            command.env(name, value.expose());
        }
    }
}

impl fmt::Debug for SecretBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_names_refuse_the_allowlist_and_the_loaders_variables_in_any_case() {
        for name in OS_ENV_ALLOWLIST.into_iter().chain([
            "LD_PRELOAD",
            "LD_",
            "DYLD_INSERT_LIBRARIES",
            "path",
            "Ld_Preload",
            "dyld_x",
        ]) {
            assert_eq!(
                BundleName::parse(name).map_err(|refused| refused.name),
                Err(name.to_owned())
            );
        }
        for name in [
            "PATHS",
            "OLD_PATH",
            "LD",
            "MY_LD_PRELOAD",
            "LANGUAGE",
            "KEY",
        ] {
            assert_eq!(BundleName::parse(name), Ok(BundleName(name.to_owned())));
        }
    }

    #[test]
    fn bundle_names_refuse_proxies_and_runtime_hooks_in_any_case_saying_why() {
        let hooks = HOOK_ENV_NAMES.into_iter().chain([
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_KEY_0",
            "git_config_parameters",
            "node_options",
            "Java_Tool_Options",
        ]);
        for name in hooks {
            let refused = BundleName::parse(name).unwrap_err();
            assert_eq!(refused.name, name);
            assert!(refused.why.contains("load code"), "{name}: {refused}");
        }
        for name in PROXY_ENV_NAMES
            .into_iter()
            .chain(["https_proxy", "No_Proxy"])
        {
            let refused = BundleName::parse(name).unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!("bundle name `{name}` is reserved: it routes the connector's traffic")
            );
        }
        for name in [
            "PROXY",
            "HTTPS_PROXY_PASSWORD",
            "MY_NODE_OPTIONS",
            "ENVIRONMENT",
            "GIT_TOKEN",
            "PYTHONPATH2",
            "MALLOC_ARENA_MAX",
            "JAVA_OPTIONS",
        ] {
            assert_eq!(BundleName::parse(name), Ok(BundleName(name.to_owned())));
        }
    }
}
