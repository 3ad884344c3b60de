//! The queue's background duties, one small file each. Every one is safe to run in every process
//! at once: each pass is a set of idempotent bulk writes or reads.
//!
//! - [`Reaper`]: expired leases go back to `queued` (or `dead`, or `cancelled` when asked).
//! - [`Pruner`]: finished jobs are deleted after their retention (the stand never expires TTL
//!   indexes, and pruning by code works the same on MongoDB).
//! - [`DepthSampler`]: queue depth and oldest-queued age per kind, for the metrics.

mod depth_sampler;
mod pruner;
mod reaper;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use depth_sampler::{DepthSampler, KindDepth};
pub use pruner::Pruner;
pub use reaper::{ReapReport, Reaper};

/// Runs `pass` every `every` until `shutdown`, logging failures and carrying on: a maintenance
/// duty must outlive a database that is briefly away.
pub(crate) async fn every<F, Fut, T>(
    duty: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::Result<T>>,
{
    loop {
        if let Err(error) = pass().await {
            tracing::warn!(duty, %error, "queue maintenance pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
