//! The history pruner, one of the fleet-wide duties (the fleet's leader runs it): every ten
//! minutes, finished runs, connector syncs and evidence packs past their retention are deleted
//! (the domain says what is always kept), and audit entries past theirs.

use std::time::Duration;

use mongodb::bson::DateTime;
use sv0_admin_api::AuditLog;
use sv0_domain::{Domain, Retention};
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct HistoryPruner {
    pub domain: Domain,
    pub audit: AuditLog,
    pub retention: Retention,
    pub audit_retention: Duration,
}

impl HistoryPruner {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.pass().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// One pass; a failure is logged and the next pass tries again.
    async fn pass(&self) {
        let now = DateTime::now();
        match self.domain.prune_history(&self.retention, now).await {
            Ok(pruned) if pruned != Default::default() => tracing::info!(
                runs = pruned.runs,
                syncs = pruned.syncs,
                evidence_packs = pruned.evidence_packs,
                "pruned history past its retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning the history failed"),
        }
        let before = DateTime::from_millis(
            now.timestamp_millis()
                .saturating_sub(self.audit_retention.as_millis() as i64),
        );
        match self.audit.prune(before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned audit entries past their retention"),
            Err(error) => tracing::warn!(%error, "pruning the audit log failed"),
        }
    }
}
