//! The `env` provider: bundles from variables named `SV0_TENANT_{TENANT SLUG}_{REF SLUG}_{NAME}`
//! (see [`crate::naming`]).

use crate::error::BrokerError;
use crate::naming::{Ref, TenantId, env_prefix};
use crate::secret::{BundleName, SecretBundle, SecretValue};
use std::ffi::OsString;

/// Every variable the provider may ever return starts with this; nothing else is kept.
const KEPT_PREFIX: &str = "SV0_TENANT_";

/// A snapshot of the `SV0_TENANT_*` variables, taken once at construction: restart the process to
/// pick up changed credentials. Other variables are not kept.
pub struct EnvProvider {
    vars: Vec<(String, SecretValue)>,
}

impl EnvProvider {
    /// Snapshots this process's environment. Variables whose name or value is not UTF-8 are
    /// skipped with a warning that names the variable only.
    pub fn from_process_env() -> Self {
        Self::from_os_vars(std::env::vars_os())
    }

    /// Builds the provider from any `(name, value)` source (tests inject one here).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(KEPT_PREFIX))
            .map(|(k, v)| (k, SecretValue::new(v)))
            .collect();
        EnvProvider { vars }
    }

    fn from_os_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let utf8 = vars.into_iter().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            if !k.starts_with(KEPT_PREFIX) {
                return None;
            }
            match v.into_string() {
                Ok(v) => Some((k, v)),
                Err(_) => {
                    tracing::warn!(variable = %k, "skipping a credential variable whose value is not UTF-8");
                    None
                }
            }
        });
        Self::from_vars(utf8)
    }

    /// Every variable under [`env_prefix`], prefix stripped. A variable named exactly the prefix
    /// has no bundle name and is skipped; one whose bundle name is reserved fails the resolve.
    pub fn resolve(&self, tenant: &TenantId, reference: &Ref) -> Result<SecretBundle, BrokerError> {
        let prefix = env_prefix(tenant, reference);
        let mut bundle = SecretBundle::default();
        for (name, value) in &self.vars {
            let Some(rest) = name.strip_prefix(&prefix).filter(|rest| !rest.is_empty()) else {
                continue;
            };
            let bundle_name =
                BundleName::parse(rest).map_err(|reason| BrokerError::ReservedName {
                    secret: name.clone(),
                    reason,
                })?;
            bundle.insert(bundle_name, value.clone());
        }
        if bundle.is_empty() {
            return Err(BrokerError::NotFound {
                tenant_id: tenant.to_string(),
                reference: reference.to_string(),
                looked_for: prefix,
            });
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn non_utf8_and_foreign_variables_are_not_kept() {
        let provider = EnvProvider::from_os_vars([
            (
                "SV0_TENANT_ACME_AWS_KEY".into(),
                OsString::from_vec(vec![0xff, 0xfe]),
            ),
            ("SV0_TENANT_ACME_AWS_ID".into(), "id".into()),
            ("HOME".into(), "/root".into()),
        ]);
        assert_eq!(provider.vars.len(), 1);
        assert_eq!(provider.vars[0].0, "SV0_TENANT_ACME_AWS_ID");
    }
}
