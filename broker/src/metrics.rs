//! Prometheus metrics of the broker. Labels are the provider and the outcome only: never a tenant,
//! a ref or a name, which keeps cardinality bounded and secrets structurally out.

use crate::Provider;
use crate::error::BrokerError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResolveLabels {
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: &'static str,
}

/// `sv0_broker_resolves_total{provider, outcome}` and
/// `sv0_broker_resolve_duration_seconds{provider}`. Cloning shares the same series.
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    resolves: Family<ResolveLabels, Counter>,
    duration: Family<ProviderLabel, Histogram>,
}

impl BrokerMetrics {
    /// Registers the broker's metrics in the process's one registry, under its prefix
    /// (`sv0_` in the binary).
    pub fn new(registry: &mut Registry) -> Self {
        let resolves = Family::<ResolveLabels, Counter>::default();
        // 1 ms … ≈16 s: env lookups land in the first bucket, vault round trips in the middle,
        // timeouts at the top.
        let duration = Family::<ProviderLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let registry = registry.sub_registry_with_prefix("broker");
        registry.register(
            "resolves",
            "Credential resolves, by provider and outcome",
            resolves.clone(),
        );
        registry.register(
            "resolve_duration_seconds",
            "Time to resolve credentials, by provider",
            duration.clone(),
        );
        // Every series starts at 0, so that `increase()` sees a provider's first error.
        for provider in Provider::ALL {
            for outcome in OUTCOMES {
                let _ = resolves.get_or_create(&ResolveLabels {
                    provider: provider.as_str(),
                    outcome,
                });
            }
        }
        BrokerMetrics { resolves, duration }
    }

    pub(crate) fn observe(
        &self,
        provider: Provider,
        result: &Result<crate::SecretBundle, BrokerError>,
        elapsed: Duration,
    ) {
        let provider = provider.as_str();
        self.resolves
            .get_or_create(&ResolveLabels {
                provider,
                outcome: outcome(result),
            })
            .inc();
        self.duration
            .get_or_create(&ProviderLabel { provider })
            .observe(elapsed.as_secs_f64());
    }
}

/// Every value of the `outcome` label.
const OUTCOMES: [&str; 8] = [
    "ok",
    "invalid",
    "refused",
    "not_found",
    "reserved_name",
    "vault_error",
    "credential_error",
    "transient",
];

/// The `outcome` label: one of [`OUTCOMES`].
fn outcome(result: &Result<crate::SecretBundle, BrokerError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(BrokerError::InvalidTenantId(_) | BrokerError::InvalidRef(_)) => "invalid",
        Err(BrokerError::ProviderRefused { .. } | BrokerError::NotConfigured(_)) => "refused",
        Err(BrokerError::NotFound { .. }) => "not_found",
        Err(BrokerError::ReservedName { .. }) => "reserved_name",
        Err(BrokerError::Vault { .. }) => "vault_error",
        Err(BrokerError::Credential { .. }) => "credential_error",
        Err(BrokerError::Transient(_)) => "transient",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TransientError;
    use crate::naming::Refusal;

    #[test]
    fn every_outcome_is_one_of_the_labels_created_at_start() {
        let errors = [
            BrokerError::InvalidTenantId(Refusal::Empty),
            BrokerError::InvalidRef(Refusal::Empty),
            BrokerError::NotConfigured(Provider::Op),
            BrokerError::NotFound {
                tenant_id: "t".into(),
                reference: "r".into(),
                looked_for: "l".into(),
            },
            BrokerError::Vault {
                what: "w".into(),
                detail: "d".into(),
            },
            BrokerError::Credential {
                what: "w".into(),
                detail: "d".into(),
            },
            BrokerError::Transient(TransientError::Throttled { what: "w".into() }),
        ];
        for error in errors {
            let label = outcome(&Err(error));
            assert!(OUTCOMES.contains(&label), "{label}");
        }
    }
}
