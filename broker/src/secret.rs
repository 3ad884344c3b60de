//! Secret values and the bundle that carries them to a connector.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;
use zeroize::Zeroizing;

/// What every formatting or serialization of a secret value prints.
pub const REDACTED: &str = "[REDACTED]";

/// The OS variables a connector inherits from its parent; everything else comes from the bundle
/// (ADR-027 §b, DESIGN §7).
pub const OS_ENV_ALLOWLIST: [&str; 5] = ["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"];

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
    pub fn insert(&mut self, name: String, value: SecretValue) {
        self.0.insert(name, value);
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
    /// variables this process has, then the bundle layered on top (ADR-027 §b). The values are
    /// copied into `command`, which does not wipe them; keep the command short-lived.
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
