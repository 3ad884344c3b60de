//! A tenant set up in one call: the tenant, one connector instance and its scopes. The demo, the
//! chaos run, the benchmarks and the tests all start from this, so it is written once here.

use mongodb::bson::Document;
use sv0_broker::{CredentialsRef, Provider};

use crate::Domain;
use crate::error::{DomainError, Result};
use crate::run::Budget;
use crate::tenancy::{ConnectorInstance, ScanScope, Tenant};

/// What to set up. By default: the tenant named as its id, one `demo` instance reading the
/// `env` credentials `DEMO_CLOUD`, and one empty scope named `scope` with the default budget.
#[derive(Debug, Clone)]
pub struct TenantSetup {
    tenant_id: String,
    tenant_name: Option<String>,
    instance_name: Option<String>,
    kind: String,
    credentials_ref: CredentialsRef,
    scopes: Vec<(String, Document)>,
    budget: Budget,
}

/// What [`Domain::set_up_tenant`] wrote (the tenant as stored, when it existed already).
#[derive(Debug, Clone)]
pub struct SetUpTenant {
    pub tenant: Tenant,
    pub instance: ConnectorInstance,
    pub scopes: Vec<ScanScope>,
}

impl SetUpTenant {
    /// The first scope: the one a set-up of one scope has.
    pub fn scope(&self) -> &ScanScope {
        &self.scopes[0]
    }
}

impl TenantSetup {
    pub fn new(tenant_id: impl Into<String>) -> TenantSetup {
        TenantSetup {
            tenant_id: tenant_id.into(),
            tenant_name: None,
            instance_name: None,
            kind: "demo".into(),
            credentials_ref: CredentialsRef {
                provider: Provider::Env,
                reference: "DEMO_CLOUD".into(),
            },
            scopes: Vec::new(),
            budget: Budget::default(),
        }
    }

    /// The tenant's display name (default: its id).
    pub fn tenant_name(mut self, name: impl Into<String>) -> TenantSetup {
        self.tenant_name = Some(name.into());
        self
    }

    /// The instance's name (default: its kind).
    pub fn instance_name(mut self, name: impl Into<String>) -> TenantSetup {
        self.instance_name = Some(name.into());
        self
    }

    /// The instance's connector kind (default `demo`).
    pub fn kind(mut self, kind: impl Into<String>) -> TenantSetup {
        self.kind = kind.into();
        self
    }

    /// Where the instance's credentials live (default `env` `DEMO_CLOUD`).
    pub fn credentials(mut self, provider: Provider, reference: impl Into<String>) -> TenantSetup {
        self.credentials_ref = CredentialsRef {
            provider,
            reference: reference.into(),
        };
        self
    }

    /// A scope of the instance; the first call replaces the default one. Repeat for several.
    pub fn scope(mut self, name: impl Into<String>, scope: Document) -> TenantSetup {
        self.scopes.push((name.into(), scope));
        self
    }

    /// Every scope's run budget.
    pub fn budget_seconds(mut self, seconds: i64) -> TenantSetup {
        self.budget = Budget {
            max_runtime_seconds: seconds,
        };
        self
    }
}

impl Domain {
    /// Writes `setup`: the tenant (kept as it is when it exists), a new instance and its new
    /// scopes. Each call adds an instance, so one tenant may be set up several times.
    pub async fn set_up_tenant(&self, setup: &TenantSetup) -> Result<SetUpTenant> {
        let tenant = match self.tenant(&setup.tenant_id).await {
            Ok(tenant) => tenant,
            Err(DomainError::NotFound { .. }) => {
                let name = setup.tenant_name.as_deref().unwrap_or(&setup.tenant_id);
                let tenant = Tenant::new(&setup.tenant_id, name)?;
                self.put_tenant(&tenant).await?;
                tenant
            }
            Err(error) => return Err(error),
        };
        let instance = ConnectorInstance::new(
            &setup.tenant_id,
            setup.instance_name.as_deref().unwrap_or(&setup.kind),
            &setup.kind,
            setup.credentials_ref.clone(),
        )?;
        self.insert_instance(&instance).await?;
        let default = [("scope".to_string(), Document::new())];
        let wanted = if setup.scopes.is_empty() {
            &default[..]
        } else {
            &setup.scopes[..]
        };
        let mut scopes = Vec::with_capacity(wanted.len());
        for (name, document) in wanted {
            let scope = ScanScope::new(&instance, name, document.clone(), setup.budget)?;
            self.insert_scope(&scope).await?;
            scopes.push(scope);
        }
        Ok(SetUpTenant {
            tenant,
            instance,
            scopes,
        })
    }
}
