//! The pipeline's test bench: a tenant provisioned through the domain's API, workers with its
//! credential in their environment, connectors from `tests/connectors/wrap.sh` around the demo
//! connector, and snapshots of the domain's collections to compare runs by.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_broker::{BrokerMetrics, CredentialBroker, CredentialsRef, Provider};
use sv0_domain::{Budget, ConnectorInstance, Domain, ScanRun, ScanScope, Tenant, Trigger};
use sv0_pipeline::{Pipeline, RunRequest};
use sv0_queue::Queue;
use sv0_testkit::TestDb;

use super::WorkerProcess;

pub const CREDENTIALS_REF: &str = "DEMO_CLOUD";

/// The demo connector, built beside `sv0` by `cargo test --workspace`.
pub fn demo_connector() -> String {
    let path = PathBuf::from(super::SV0).with_file_name("sv0-demo-connector");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p sv0-demo-connector` (the workspace's tests do)",
        path.display()
    );
    path.display().to_string()
}

/// `tests/connectors/wrap.sh BEHAVIOUR <demo connector>`: see the script for the behaviours.
pub fn wrapped(behaviour: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/connectors/wrap.sh");
    vec![script.to_string(), behaviour.to_string(), demo_connector()]
}

/// The credential value planted for `tenant`: a canary the tests search for everywhere.
pub fn canary(tenant: &str) -> String {
    format!("canary-{tenant}-7f3a9c1e55d0")
}

/// The variable the env provider reads `tenant`'s demo credential from, and its value.
pub fn credential_var(tenant: &str) -> (String, String) {
    let prefix = env_prefix(
        &TenantId::parse(tenant).unwrap(),
        &Ref::parse(CREDENTIALS_REF).unwrap(),
    );
    (format!("{prefix}DEMO_CLOUD_TOKEN"), canary(tenant))
}

/// A test database with the domain and the queue set up, and a pipeline handle for starting runs.
pub struct Bench {
    pub tdb: TestDb,
    pub domain: Domain,
    pub pipeline: Pipeline,
}

impl Bench {
    pub async fn new(label: &str) -> Bench {
        let tdb = TestDb::new(label).await;
        let domain = Domain::new(&tdb.db);
        domain.ensure_indexes().await.unwrap();
        let queue = Queue::new(&tdb.db);
        queue.ensure_indexes().await.unwrap();
        let broker = CredentialBroker::new(BrokerMetrics::new(&mut Default::default()));
        let pipeline = Pipeline::new(domain.clone(), queue, broker);
        Bench {
            tdb,
            domain,
            pipeline,
        }
    }

    pub fn db(&self) -> &Database {
        &self.tdb.db
    }

    /// An active tenant with one instance running `command` and one scope of it.
    pub async fn provision(
        &self,
        tenant: &str,
        command: Vec<String>,
        scope: Document,
        budget_seconds: i64,
    ) -> ScanScope {
        if self.domain.tenant(tenant).await.is_err() {
            self.domain
                .put_tenant(&Tenant::new(tenant, tenant).unwrap())
                .await
                .unwrap();
        }
        let instance = ConnectorInstance::new(
            tenant,
            "demo",
            "demo",
            command,
            CredentialsRef {
                provider: Provider::Env,
                reference: CREDENTIALS_REF.into(),
            },
        )
        .unwrap();
        self.domain.insert_instance(&instance).await.unwrap();
        let scope = ScanScope::new(
            &instance,
            "test scope",
            scope,
            Budget {
                max_runtime_seconds: budget_seconds,
            },
        )
        .unwrap();
        self.domain.insert_scope(&scope).await.unwrap();
        scope
    }

    /// A worker serving every pipeline kind, with the credentials of `tenants`.
    pub fn worker(&self, tenants: &[&str], extra: &[&str]) -> WorkerProcess {
        let vars: Vec<(String, String)> = tenants.iter().map(|t| credential_var(t)).collect();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        WorkerProcess::start_with_env(self.tdb.uri(), self.tdb.name(), extra, &env)
    }

    /// A `manual_api` run of `scope`, enqueued.
    pub async fn scan(&self, scope: &ScanScope) -> ScanRun {
        self.pipeline
            .create_run(RunRequest {
                tenant_id: scope.tenant_id.clone(),
                scope_id: scope.id,
                trigger: Trigger::ManualApi {
                    requested_by: Some("test".into()),
                },
            })
            .await
            .unwrap()
    }

    /// Waits until the run is finished and returns it.
    pub async fn finished(&self, tenant: &str, run_id: ObjectId, timeout: Duration) -> ScanRun {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.domain.run(tenant, run_id).await.unwrap();
            if run.status.is_finished() {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} still {} after {timeout:?}: {run:#?}",
                run.status.as_str()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The run's jobs, once none is queued or running. A handler finishes the run before its
    /// worker settles the job, so a job can still be `running` just after its run finished.
    pub async fn settled_jobs(&self, run_id: ObjectId, timeout: Duration) -> Vec<Document> {
        let group = doc! {"group_id": run_id.to_hex()};
        let deadline = Instant::now() + timeout;
        loop {
            let jobs = super::all(self.db(), "jobs", group.clone()).await;
            let unsettled = |j: &Document| matches!(j.get_str("status"), Ok("queued" | "running"));
            if !jobs.iter().any(unsettled) {
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id}'s jobs unsettled after {timeout:?}: {jobs:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tenant's documents in every result collection, without what differs between two
    /// equal runs (ids, timestamps, run and sync ids), sorted: two snapshots are equal when
    /// the runs left the same results.
    pub async fn snapshot(&self, tenant: &str) -> BTreeMap<&'static str, Vec<String>> {
        let mut out = BTreeMap::new();
        for collection in [
            "entities",
            "findings",
            "chains",
            "stitched_paths",
            "evidence_packs",
        ] {
            let mut docs: Vec<String> =
                super::all(self.db(), collection, doc! {"tenant_id": tenant})
                    .await
                    .into_iter()
                    .map(|d| strip(d).to_string())
                    .collect();
            docs.sort();
            out.insert(collection, docs);
        }
        out
    }
}

/// The fields that differ between equal results (`gen`: the set write that staged the item last;
/// `fence`: the holder that stored the pack).
const VOLATILE: [&str; 12] = [
    "gen",
    "fence",
    "_id",
    "first_seen_at",
    "updated_at",
    "last_seen_at",
    "created_at",
    "gone_at",
    "resolved_at",
    "scan_run_id",
    "sync_id",
    "source",
];

fn strip(mut d: Document) -> Document {
    for field in VOLATILE {
        d.remove(field);
    }
    d
}

/// Every document of every collection of `db`, as extended JSON text: what a canary must never
/// appear in.
pub async fn dump(db: &Database) -> String {
    let mut text = String::new();
    for name in db.list_collection_names().await.unwrap() {
        for d in super::all(db, &name, doc! {}).await {
            text += &Bson::Document(d).into_relaxed_extjson().to_string();
            text.push('\n');
        }
    }
    text
}

/// `sv0 token create`: the token, printed once on stdout.
pub fn token(bench: &Bench, role: &str, name: &str) -> String {
    let output = std::process::Command::new(super::SV0)
        .args(["token", "create", "--role", role, "--name", name])
        .args([
            "--mongodb-uri",
            bench.tdb.uri(),
            "--database",
            bench.tdb.name(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// `sv0 ctl ARGS…` against `url` with `token`.
pub fn ctl(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(super::SV0)
        .arg("ctl")
        .args(args)
        .env("SV0_API_URL", url)
        .env("SV0_API_TOKEN", token)
        .output()
        .unwrap()
}
