//! A test database with a tenant, a connector instance and scopes, the pipeline handle the
//! scheduler starts runs through, and replicas of the scheduler at injected times.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{DateTime, Document, doc};
use sv0_broker::CredentialBroker;
use sv0_domain::{Domain, ScanRun, ScanScope, Schedule, TenantSetup};
use sv0_pipeline::Pipeline;
use sv0_queue::Queue;
use sv0_scheduler::controls::Controls;
use sv0_scheduler::{Scheduler, SchedulerConfig, SchedulerMetrics, SlotLog};
use sv0_testkit::TestDb;

pub struct Fixture {
    pub tdb: TestDb,
    pub domain: Domain,
    pub pipeline: Arc<Pipeline>,
    pub slot_log: SlotLog,
}

impl Fixture {
    pub async fn new(label: &str) -> Fixture {
        let tdb = TestDb::new(label).await;
        let domain = Domain::new(&tdb.db);
        domain.ensure_indexes().await.unwrap();
        let queue = Queue::new(&tdb.db);
        queue.ensure_indexes().await.unwrap();
        let slot_log = SlotLog::new(&tdb.db);
        slot_log.ensure_indexes().await.unwrap();
        let broker = CredentialBroker::unobserved();
        let pipeline = Arc::new(Pipeline::new(domain.clone(), queue, broker));
        Fixture {
            tdb,
            domain,
            pipeline,
            slot_log,
        }
    }

    /// A scope of tenant `tenant` (created if new) on `schedule`, set at the real now.
    pub async fn scope(&self, tenant: &str, schedule: Schedule) -> ScanScope {
        let set_up = self
            .domain
            .set_up_tenant(&TenantSetup::new(tenant))
            .await
            .unwrap();
        let scope = set_up.scope();
        self.domain
            .set_schedule(tenant, scope.id, Some(schedule), DateTime::now())
            .await
            .unwrap()
    }

    /// A scheduler replica named `owner` (ticks are driven by the test).
    pub fn replica(&self, owner: &str) -> Scheduler {
        let mut config = SchedulerConfig::new(owner);
        config.claim_lease = Duration::from_secs(60);
        config.batch = 50;
        Scheduler::new(
            self.pipeline.clone(),
            self.slot_log.clone(),
            SchedulerMetrics::default(),
            config,
        )
    }

    pub async fn scope_now(&self, scope: &ScanScope) -> ScanScope {
        self.domain.scope(&scope.tenant_id, scope.id).await.unwrap()
    }

    /// The schedule controls, counting into `metrics`.
    pub fn controls(&self, metrics: &SchedulerMetrics) -> Controls {
        Controls {
            pipeline: self.pipeline.clone(),
            slot_log: self.slot_log.clone(),
            metrics: metrics.clone(),
        }
    }

    /// Every run of `scope`, oldest slot first.
    pub async fn runs(&self, scope: &ScanScope) -> Vec<ScanRun> {
        use futures::TryStreamExt;
        let mut runs: Vec<ScanRun> = self
            .tdb
            .db
            .collection::<ScanRun>("scan_runs")
            .find(doc! { "tenant_id": &scope.tenant_id, "scope_id": scope.id })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        runs.sort_by_key(|r| slot_of(r).unwrap_or(r.created_at));
        runs
    }

    /// The slots of `scope`'s scheduled runs, in order.
    pub async fn run_slots(&self, scope: &ScanScope) -> Vec<DateTime> {
        self.runs(scope).await.iter().filter_map(slot_of).collect()
    }

    pub async fn jobs(&self, filter: Document) -> Vec<Document> {
        use futures::TryStreamExt;
        self.tdb
            .db
            .collection::<Document>("jobs")
            .find(filter)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }
}

pub fn slot_of(run: &ScanRun) -> Option<DateTime> {
    match run.trigger {
        sv0_domain::Trigger::Scheduled { slot, .. } => Some(slot),
        _ => None,
    }
}

pub fn plus(at: DateTime, millis: i64) -> DateTime {
    DateTime::from_millis(at.timestamp_millis() + millis)
}
