//! The API's metrics: requests by route template (never a concrete path: ids would make the
//! label unbounded), method and status, their latency, and refused credentials and rights by
//! reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (`/api/v1/scan-runs/{id}`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// 401 or 403.
    pub status: u16,
    /// `missing_token`, `unknown_token`, `revoked_token`, `expired_token`, `role`, `tenant`.
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub refusals: Family<RefusalLabels, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> ApiMetrics {
        ApiMetrics {
            requests: Family::default(),
            // 1 ms to about 16 s.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            refusals: Family::default(),
        }
    }
}

impl ApiMetrics {
    /// Registers under `registry`'s prefix (`sv0_` in the binary): `sv0_api_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "requests",
            "API requests by route template, method and status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "API request latency by route template and method",
            self.duration.clone(),
        );
        r.register(
            "refusals",
            "Requests refused for their credentials (401) or rights (403), by reason",
            self.refusals.clone(),
        );
    }
}
