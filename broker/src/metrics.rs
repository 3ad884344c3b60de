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

/// The `outcome` label: a closed set of values.
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
