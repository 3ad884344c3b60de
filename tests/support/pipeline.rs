//! The pipeline's test fixture: a tenant provisioned through the domain's API, a connector
//! registry handed to every worker and API process it starts, connectors from
//! `tests/connectors/wrap.sh` around the demo connector, and snapshots of the domain's
//! collections to compare runs by.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mongodb::Database;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, Document, doc};
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_broker::{CredentialBroker, Provider};
use sv0_domain::{Domain, ScanRun, ScanScope, TenantSetup, Trigger};
use sv0_pipeline::{ConnectorKind, ConnectorRegistry, Pipeline, RunRequest};
use sv0_queue::Queue;
use sv0_testkit::{StagedConnectors, TestDb};

use super::Sv0Process;

pub const CREDENTIALS_REF: &str = "DEMO_CLOUD";

/// The kind every fixture registers: the demo connector, run as it is.
pub const DEMO_KIND: &str = "demo";

/// The longest kind name the domain takes.
const MAX_KIND_CHARS: usize = 64;

/// The demo connector, built beside `sv0` by `cargo test --workspace`.
fn demo_connector() -> PathBuf {
    let path = PathBuf::from(sv0_testkit::sv0()).with_file_name("sv0-demo-connector");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p sv0-demo-connector` (the workspace's tests do)",
        path.display()
    );
    path
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

/// A test database with the domain and the queue set up, a pipeline handle for starting runs,
/// and the connector registry its processes are started with.
pub struct Fixture {
    pub tdb: TestDb,
    pub domain: Domain,
    pub pipeline: Pipeline,
    connectors: Connectors,
}

/// The fixture's connector registry, written to a file each time a kind is registered; the
/// executables staged where the connector user (`nobody` under a root test) can run them; and
/// the directory the workers make their connectors' run directories in.
struct Connectors {
    /// Held for its directory, which holds `demo` and `wrap`.
    _staged: StagedConnectors,
    demo: PathBuf,
    wrap: PathBuf,
    kinds: Mutex<BTreeMap<String, ConnectorKind>>,
    /// Whether a process was started with the registry: it read the file then, and never again.
    handed_out: AtomicBool,
    file_dir: tempfile::TempDir,
    runs: tempfile::TempDir,
    /// The runs directory's modification time before any process could use it.
    runs_created: SystemTime,
}

impl Connectors {
    fn new() -> Connectors {
        let staged = StagedConnectors::new().unwrap();
        // One directory for both: the confined wrap.sh may execute the demo connector because
        // its own directory is readable to it.
        let demo = staged.stage(&demo_connector()).unwrap();
        let wrap = staged
            .stage(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/connectors/wrap.sh"
            )))
            .unwrap();
        let runs = sv0_testkit::connectors::runs_dir().unwrap();
        let runs_created = modified(runs.path());
        Connectors {
            _staged: staged,
            demo,
            wrap,
            kinds: Mutex::default(),
            handed_out: AtomicBool::new(false),
            file_dir: tempfile::tempdir().unwrap(),
            runs,
            runs_created,
        }
    }

    fn file(&self) -> PathBuf {
        self.file_dir.path().join("connectors.toml")
    }

    /// The registry file's path, for a process about to start.
    fn hand_out(&self) -> String {
        self.handed_out.store(true, Ordering::SeqCst);
        self.file().display().to_string()
    }

    fn register(&self, name: &str, kind: ConnectorKind) {
        assert!(
            !self.handed_out.load(Ordering::SeqCst),
            "kind {name:?} registered after a process read the registry: register every kind \
             before starting workers"
        );
        let mut kinds = self.kinds.lock().unwrap();
        kinds.insert(name.to_string(), kind);
        let text = ConnectorRegistry::from_kinds(kinds.clone())
            .unwrap()
            .to_toml()
            .unwrap();
        // The file must say exactly what was registered, as the processes will read it.
        let read = ConnectorRegistry::from_toml(&text)
            .unwrap_or_else(|e| panic!("the fixture's registry does not read back: {e}\n{text}"));
        assert_eq!(read, ConnectorRegistry::from_kinds(kinds.clone()).unwrap());
        std::fs::write(self.file(), text).unwrap();
    }
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

impl Fixture {
    /// A fixture whose registry has the demo connector as kind [`DEMO_KIND`].
    pub async fn new(label: &str) -> Fixture {
        let tdb = TestDb::new(label).await;
        let domain = Domain::new(&tdb.db);
        domain.ensure_indexes().await.unwrap();
        let queue = Queue::new(&tdb.db);
        queue.ensure_indexes().await.unwrap();
        let broker = CredentialBroker::unobserved();
        let pipeline = Pipeline::new(domain.clone(), queue, broker);
        let connectors = Connectors::new();
        connectors.register(DEMO_KIND, ConnectorKind::new(&connectors.demo, Vec::new()));
        Fixture {
            tdb,
            domain,
            pipeline,
            connectors,
        }
    }

    pub fn db(&self) -> &Database {
        &self.tdb.db
    }

    /// Registers `kind` as `name` for the processes started after this (they read the registry
    /// when they start; registering after one started panics).
    pub fn register(&self, name: &str, kind: ConnectorKind) {
        self.connectors.register(name, kind);
    }

    /// The kind `tests/connectors/wrap.sh BEHAVIOUR <demo connector>` (see the script for the
    /// behaviours), not registered: for a test to adjust first.
    pub fn wrapped(&self, behaviour: &str) -> ConnectorKind {
        let demo = self.connectors.demo.display().to_string();
        ConnectorKind::new(&self.connectors.wrap, vec![behaviour.to_string(), demo])
    }

    /// Registers [`Fixture::wrapped`]`(behaviour)` under a name made of the behaviour
    /// (`sleep:1:started` is `wrap_sleep_1_started`) and returns the name.
    pub fn wrap_kind(&self, behaviour: &str) -> String {
        let mut name: String = std::iter::once("wrap_")
            .chain([behaviour])
            .flat_map(str::chars)
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '_',
            })
            .collect();
        name.truncate(MAX_KIND_CHARS);
        self.register(&name, self.wrapped(behaviour));
        name
    }

    /// Where the fixture's workers make their connectors' run directories.
    pub fn runs_dir(&self) -> &Path {
        self.connectors.runs.path()
    }

    /// `file` in a connector's run directory (`<runs dir>/sv0-connector-*/file`), while the
    /// run lasts (the worker removes the directory after it).
    pub fn connector_file(&self, file: &str) -> Option<PathBuf> {
        std::fs::read_dir(self.runs_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|dir| {
                dir.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("sv0-connector-"))
            })
            .map(|dir| dir.join(file))
            .find(|path| path.exists())
    }

    /// Whether a connector was ever started by the fixture's workers: each run gets a directory
    /// in the runs directory before its connector starts, removed afterwards, so the runs
    /// directory's modification time moved.
    pub fn connector_started(&self) -> bool {
        modified(self.runs_dir()) != self.connectors.runs_created
    }

    /// An active tenant with one instance of the connector kind `kind` and one scope of it, its
    /// credentials from the `env` provider.
    pub async fn provision(
        &self,
        tenant: &str,
        kind: &str,
        scope: Document,
        budget_seconds: i64,
    ) -> ScanScope {
        self.provision_from(Provider::Env, tenant, kind, scope, budget_seconds)
            .await
    }

    /// [`Fixture::provision`], the instance's credentials from `provider` (ref [`CREDENTIALS_REF`]).
    pub async fn provision_from(
        &self,
        provider: Provider,
        tenant: &str,
        kind: &str,
        scope: Document,
        budget_seconds: i64,
    ) -> ScanScope {
        let setup = TenantSetup::new(tenant)
            .kind(kind)
            .credentials(provider, CREDENTIALS_REF)
            .scope("test scope", scope)
            .budget_seconds(budget_seconds);
        let set_up = self.domain.set_up_tenant(&setup).await.unwrap();
        set_up.scope().clone()
    }

    /// A worker serving every pipeline kind, with the fixture's registry and runs directory and
    /// the credentials of `tenants`.
    pub fn worker(&self, tenants: &[&str], extra: &[&str]) -> Sv0Process {
        self.worker_with_env(tenants, extra, &[])
    }

    /// [`Fixture::worker`] with `env` added to its environment.
    pub fn worker_with_env(
        &self,
        tenants: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Sv0Process {
        let vars: Vec<(String, String)> = tenants.iter().map(|t| credential_var(t)).collect();
        let env: Vec<(&str, &str)> = vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(env.iter().copied())
            .collect();
        let file = self.connectors.hand_out();
        let runs = self.runs_dir().display().to_string();
        let mut args = vec!["--connectors", &file, "--connector-runs-dir", &runs];
        args.extend(extra);
        Sv0Process::worker_with_env(self.tdb.uri(), self.tdb.name(), &args, &env)
    }

    /// `sv0 admin-api` with the fixture's registry, on a free port.
    pub fn admin_api(&self, env: &[(&str, &str)]) -> Sv0Process {
        let file = self.connectors.hand_out();
        Sv0Process::admin_api(
            self.tdb.uri(),
            self.tdb.name(),
            &["--connectors", &file],
            env,
        )
    }

    /// `sv0 all` with the fixture's registry and runs directory.
    pub fn all(&self, env: &[(&str, &str)]) -> Sv0Process {
        let file = self.connectors.hand_out();
        let runs = self.runs_dir().display().to_string();
        let args = ["--connectors", &file, "--connector-runs-dir", &runs];
        Sv0Process::all(self.tdb.uri(), self.tdb.name(), &args, env)
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
pub fn token(fixture: &Fixture, role: &str, name: &str) -> String {
    let output = std::process::Command::new(sv0_testkit::sv0())
        .args(["token", "create", "--role", role, "--name", name])
        .args([
            "--mongodb-uri",
            fixture.tdb.uri(),
            "--database",
            fixture.tdb.name(),
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
    std::process::Command::new(sv0_testkit::sv0())
        .arg("ctl")
        .args(args)
        .env("SV0_API_URL", url)
        .env("SV0_API_TOKEN", token)
        .output()
        .unwrap()
}
