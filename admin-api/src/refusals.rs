//! Refused requests (401, 403): every one counted in `sv0_api_refusals_total{status, reason}`,
//! and recorded in the audit log as `auth.refused` at a bounded rate, so that someone guessing
//! tokens or probing routes shows up in both without being able to fill the log. Past the rate,
//! refusals are counted but not written; the next entry written says how many were skipped.
//!
//! The entry is written off the request's path: a refusal answers at once, and a flood of them
//! costs at most the rate's writes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, doc};

use crate::audit::{AuditEntry, AuditLog};
use crate::error::Refusal;
use crate::metrics::{ApiMetrics, RefusalLabels};
use crate::tokens::Caller;

/// At most this many refusal entries per window, per API process.
const ENTRIES_PER_WINDOW: u32 = 30;
const WINDOW: Duration = Duration::from_secs(60);

/// What the refused request was.
pub(crate) struct Request<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub request_id: &'a str,
    pub caller_request_id: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub(crate) struct Refusals {
    audit: AuditLog,
    metrics: ApiMetrics,
    window: Arc<Mutex<Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    /// Refusals not written since the last entry that was.
    skipped: u64,
}

impl Refusals {
    pub fn new(audit: AuditLog, metrics: ApiMetrics) -> Refusals {
        Refusals {
            audit,
            metrics,
            window: Arc::new(Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                skipped: 0,
            })),
        }
    }

    /// Counts a refusal and, within the rate, records it. `caller` is the verified caller of a
    /// 403; a 401 has none.
    pub fn note(&self, refusal: Refusal, caller: Option<&Caller>, request: Request<'_>) {
        self.metrics
            .refusals
            .get_or_create(&RefusalLabels {
                status: refusal.status(),
                reason: refusal.as_str().to_string(),
            })
            .inc();
        let Some(skipped) = self.admit() else {
            return;
        };
        let mut detail = doc! {
            "status": i32::from(refusal.status()),
            "reason": refusal.as_str(),
            "method": request.method,
        };
        if skipped > 0 {
            detail.insert("skipped_before", skipped as i64);
        }
        let entry = AuditEntry {
            id: ObjectId::new(),
            at: DateTime::now(),
            token_id: caller.map(|c| c.token_id.clone()).unwrap_or_default(),
            token_name: caller.map(|c| c.name.clone()).unwrap_or_default(),
            role: caller
                .map(|c| c.role.as_str().to_string())
                .unwrap_or_default(),
            action: "auth.refused".to_string(),
            target_kind: "route".to_string(),
            target_id: request.route.to_string(),
            tenant_id: None,
            reason: None,
            request_id: request.request_id.to_string(),
            caller_request_id: request.caller_request_id.map(str::to_string),
            outcome: "refused".to_string(),
            completed_at: Some(DateTime::now()),
            error: None,
            changes: Default::default(),
            detail,
        };
        let audit = self.audit.clone();
        tokio::spawn(async move {
            if let Err(error) = audit.write(&entry).await {
                tracing::warn!(%error, "a refused request's audit entry could not be written");
            }
        });
    }

    /// Whether this refusal is written, and then how many were skipped before it.
    fn admit(&self) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.started.elapsed() >= WINDOW {
            window.started = Instant::now();
            window.written = 0;
        }
        if window.written >= ENTRIES_PER_WINDOW {
            window.skipped += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.skipped))
    }
}
