//! A test database with a tenant, a connector instance and scopes, the pipeline handle the
//! scheduler starts runs through, and replicas of the scheduler at injected times; and what a
//! test does around a tick by hand: claiming scopes, starting a scope slot's run, finishing runs,
//! reading the slot log.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use sv0_broker::CredentialBroker;
use sv0_domain::{
    Domain, RunStatus, RunWriter, ScanRun, ScanScope, Schedule, TenantSetup, Trigger,
};
use sv0_pipeline::Pipeline;
use sv0_queue::Queue;
use sv0_scheduler::controls::Controls;
use sv0_scheduler::{Scheduler, SchedulerConfig, SchedulerMetrics, SlotLog, SlotOutcome};
use sv0_testkit::TestDb;
use sv0_testkit::commands::{SentCommands, recording_client};

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

    /// A replica like [`Fixture::replica`] whose every command to the database is recorded.
    pub async fn recorded_replica(&self, owner: &str) -> (Scheduler, SentCommands) {
        let (client, sent) = recording_client(self.tdb.uri()).await;
        let db = client.database(self.tdb.name());
        let pipeline = Pipeline::new(
            Domain::new(&db),
            Queue::new(&db),
            CredentialBroker::unobserved(),
        );
        let mut config = SchedulerConfig::new(owner);
        config.batch = 50;
        let replica = Scheduler::new(
            Arc::new(pipeline),
            SlotLog::new(&db),
            SchedulerMetrics::default(),
            config,
        );
        (replica, sent)
    }

    pub async fn scope_now(&self, scope: &ScanScope) -> ScanScope {
        self.domain.scope(&scope.tenant_id, scope.id).await.unwrap()
    }

    /// The due scopes replica `owner` claims at `now` for `lease`, ten at most, as a tick does
    /// before deciding them.
    pub async fn claim(&self, owner: &str, now: DateTime, lease: Duration) -> Vec<ScanScope> {
        self.domain
            .claim_due_scopes(owner, now, lease, 10, &[])
            .await
            .unwrap()
            .scopes
    }

    /// `scope`'s run of scope slot `slot`, started under the slot's key as a tick starts it, and
    /// recorded nowhere else: what a tick that failed right after starting it leaves.
    pub async fn start_slot_run(&self, scope: &ScanScope, slot: DateTime) -> ScanRun {
        let trigger = Trigger::Scheduled {
            scope_id: scope.id,
            slot,
        };
        let (started, _) = self
            .pipeline
            .start_scan(
                &scope.tenant_id,
                scope.id,
                trigger,
                Some(sv0_scheduler::slot_key(scope.id, slot)),
            )
            .await
            .unwrap();
        started
    }

    /// Finishes run `run_id` of `scope` from outside the pipeline, as `status` with `error`.
    pub async fn finish_run(
        &self,
        scope: &ScanScope,
        run_id: ObjectId,
        status: RunStatus,
        error: Option<String>,
    ) {
        self.domain
            .finish_run(&scope.tenant_id, run_id, RunWriter::Outside, status, error)
            .await
            .unwrap();
    }

    /// `scope`'s recorded slot outcomes, newest first, at most `limit`.
    pub async fn slot_outcomes(&self, scope: &ScanScope, limit: i64) -> Vec<SlotOutcome> {
        self.slot_log
            .for_scope(&scope.tenant_id, scope.id, limit)
            .await
            .unwrap()
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
        sv0_testkit::all(&self.tdb.db, "jobs", filter).await
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
