//! Secret values and the bundle that carries them to a connector.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;
use zeroize::Zeroizing;

/// What every formatting or serialization of a secret value prints.
pub const REDACTED: &str = "[REDACTED]";

/// The OS variables a connector inherits from its parent; everything else comes from the bundle
/// (ADR-027 §b, DESIGN §7). A bundle may not set them (see [`BundleName`]).
pub const OS_ENV_ALLOWLIST: [&str; 5] = ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"];

/// Prefixes of the dynamic loader's variables (glibc's `LD_*`, macOS's `DYLD_*`): whoever sets
/// `LD_PRELOAD` or `DYLD_INSERT_LIBRARIES` chooses code that runs inside the connector. A bundle may
/// not set them (see [`BundleName`]).
pub const LOADER_PREFIXES: [&str; 2] = ["LD_", "DYLD_"];

/// The name of a bundle entry, i.e. of a variable in the connector's environment. Never one of
/// [`OS_ENV_ALLOWLIST`] nor a name starting with one of [`LOADER_PREFIXES`]: a store's secret could
/// otherwise replace the connector's `PATH` or `HOME`, or preload a library into it. Compared
/// without case, as Windows' environment ignores case and no connector needs a lower-case `path`.
/// [`BundleName::parse`] is the only way to make one, and [`SecretBundle::insert`] takes only this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleName(String);

impl BundleName {
    pub fn parse(name: &str) -> Result<Self, ReservedName> {
        let upper = name.to_ascii_uppercase();
        let reserved = OS_ENV_ALLOWLIST.contains(&upper.as_str())
            || LOADER_PREFIXES.iter().any(|p| upper.starts_with(p));
        if reserved {
            return Err(ReservedName {
                name: name.to_owned(),
            });
        }
        Ok(BundleName(name.to_owned()))
    }
}

/// A bundle name that [`BundleName::parse`] refused. It holds the name only: names are not secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bundle name `{name}` is reserved (a bundle may not set the OS allowlist's variables or the \
     loader's `LD_*`/`DYLD_*`)"
)]
pub struct ReservedName {
    pub name: String,
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
    /// variables this process has, then the bundle (ADR-027 §b), whose names never overlap the
    /// allowlist's (see [`BundleName`]). The values are copied into `command`, which does not wipe
    /// them; keep the command short-lived.
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
                BundleName::parse(name),
                Err(ReservedName {
                    name: name.to_owned()
                })
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
}
