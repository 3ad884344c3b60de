//! What a scan costs, stage by stage: the demo connector's graph of 10,000 entities (two clouds
//! of 5,000) scanned once by one `sv0 worker`, then scanned again unchanged, then again after 5 %
//! of each cloud's entities changed (the demo connector's `drift` in the scope's document: the
//! same items, renamed). Each stage's time comes from its cell (`ended_at − started_at`; the
//! scan's from its job), and what it wrote from the collection it keeps: the documents created
//! or changed by the run, found by comparing the collection before and after it. An unchanged
//! item is not written at all (its set's head records that it was seen), so the unchanged
//! re-scan writes none, and the drifted one writes the changed entities and what they change
//! downstream.
//!
//! The demo tenants, their workers and the stage timings are shared with `scans.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use serde::Serialize;
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_broker::{CredentialBroker, Provider};
use sv0_domain::{Domain, RunStatus, ScanRun, ScanScope, ScopeUpdate, TenantSetup, Trigger};
use sv0_pipeline::{ConnectorKind, ConnectorRegistry, Pipeline, RunRequest};
use sv0_queue::Queue;
use sv0_testkit::StagedConnectors;
use tokio::process::Command;

use crate::measure::thousands;
use crate::procs::{self, Proc};

/// Entities per cloud; two clouds.
pub const SIZE_PER_CLOUD: i64 = 5_000;
const TENANT: &str = "bench";
const REF: &str = "DEMO_CLOUD";
/// The connector kind every instance names.
const KIND: &str = "demo";
const RUN_CAP: Duration = Duration::from_secs(600);
/// The share of each cloud's entities the third scan finds changed, in per cent.
pub const DRIFT_PERCENT: i64 = 5;

/// One stage's cost in the first scan, in the unchanged re-scan, and in the re-scan that finds
/// [`DRIFT_PERCENT`] % of the entities changed.
#[derive(Debug, Clone, Serialize)]
pub struct StageCost {
    pub stage: &'static str,
    pub first: Cost,
    pub again: Cost,
    pub drifted: Cost,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cost {
    pub seconds: f64,
    /// Documents written (one statement each).
    pub written: u64,
}

/// The stages in order: the job kind (for `execute_scan`) or the cell, and the collection whose
/// documents the stage writes.
pub const STAGES: [(&str, &str); 6] = [
    ("execute_scan", "connector_syncs"),
    ("__sync", "entities"),
    ("__eval", "findings"),
    ("__chain", "chains"),
    ("__stitch", "stitched_paths"),
    ("__evidence", "evidence_packs"),
];

/// The tenant's documents of `collection`, by id.
async fn documents(db: &Database, collection: &str) -> Result<HashMap<String, Document>> {
    let mut cursor = db
        .collection::<Document>(collection)
        .find(doc! { "tenant_id": TENANT })
        .await?;
    let mut found = HashMap::new();
    while let Some(doc) = cursor.try_next().await? {
        found.insert(
            doc.get("_id").map(ToString::to_string).unwrap_or_default(),
            doc,
        );
    }
    Ok(found)
}

/// Scans the demo graph three times with one worker of `sv0` on `db` (first, unchanged, then
/// drifted) and returns each stage's cost.
pub async fn scan_costs(sv0: &Path, uri: &str, db: &Database) -> Result<Vec<StageCost>> {
    let mut demo = Demo::fresh(sv0, db).await?;
    let mut scope = demo.tenant(TENANT, SIZE_PER_CLOUD).await?;
    let (workers, _) = demo.workers(uri, 1).await?;
    let mut runs = Vec::new();
    let mut written = Vec::new();
    for scan in 0..3 {
        if scan == 2 {
            scope = demo.drift(&scope, DRIFT_PERCENT, 1).await?;
        }
        let mut before = Vec::new();
        for (_, collection) in STAGES {
            before.push(documents(db, collection).await?);
        }
        let run = demo.start_run(&scope).await?;
        let run = demo.finished(TENANT, run.id).await?;
        if run.status != RunStatus::Succeeded {
            bail!("the scan did not succeed: {:?}", run.error);
        }
        let mut counts = Vec::new();
        for ((_, collection), before) in STAGES.iter().zip(&before) {
            let after = documents(db, collection).await?;
            counts.push(
                after
                    .iter()
                    .filter(|(id, doc)| before.get(*id) != Some(*doc))
                    .count() as u64,
            );
        }
        written.push(counts);
        runs.push(run);
    }
    procs::stop_all(workers).await?;

    let mut costs = Vec::new();
    for (i, (stage, _)) in STAGES.iter().enumerate() {
        let mut each = [Cost {
            seconds: 0.0,
            written: 0,
        }; 3];
        for (n, run) in runs.iter().enumerate() {
            let seconds = stage_seconds(db, run, stage).await?;
            each[n] = Cost {
                seconds,
                written: written[n][i],
            };
        }
        let [first, again, drifted] = each;
        costs.push(StageCost {
            stage,
            first,
            again,
            drifted,
        });
    }
    db.drop().await?;
    Ok(costs)
}

/// A database set up for the pipeline, with demo-connector tenants on it and the `sv0` binary
/// that runs their scans.
pub struct Demo {
    sv0: PathBuf,
    db: Database,
    domain: Domain,
    pipeline: Pipeline,
    /// Each tenant's connector credential, where the broker's env provider looks for it.
    env: Vec<(String, String)>,
    connectors: Connectors,
}

impl Demo {
    /// Empties `db` and creates the domain's and the queue's indexes; deploys the demo connector
    /// (beside `sv0`) for the workers.
    pub async fn fresh(sv0: &Path, db: &Database) -> Result<Demo> {
        let connectors = Connectors::deploy(&sv0.with_file_name("sv0-demo-connector"))?;
        let registry = ConnectorRegistry::load(&connectors.registry)?;
        db.drop().await?;
        let domain = Domain::new(db);
        let queue = Queue::new(db);
        domain.ensure_indexes().await?;
        queue.ensure_indexes().await?;
        let broker = CredentialBroker::unobserved();
        Ok(Demo {
            sv0: sv0.to_path_buf(),
            db: db.clone(),
            pipeline: Pipeline::new(domain.clone(), queue, broker).with_connectors(registry),
            domain,
            env: Vec::new(),
            connectors,
        })
    }

    /// Provisions `tenant`: an instance of the demo connector's kind, and one scope of two
    /// clouds of `size_per_cloud` entities each, which it returns.
    pub async fn tenant(&mut self, tenant: &str, size_per_cloud: i64) -> Result<ScanScope> {
        let setup = TenantSetup::new(tenant)
            .kind(KIND)
            .instance_name("demo")
            .credentials(Provider::Env, REF)
            .scope(
                format!("{} entities", thousands(2 * size_per_cloud as usize)),
                doc! { "clouds": ["aws", "azure"], "size": size_per_cloud, "seed": 1_i64 },
            )
            .budget_seconds(RUN_CAP.as_secs() as i64);
        let scope = self.domain.set_up_tenant(&setup).await?.scope().clone();
        let variable = format!(
            "{}DEMO_CLOUD_TOKEN",
            env_prefix(
                &TenantId::parse(tenant).map_err(anyhow::Error::msg)?,
                &Ref::parse(REF).map_err(anyhow::Error::msg)?
            )
        );
        self.env.push((variable, "bench-token".into()));
        Ok(scope)
    }

    /// Edits `scope`'s document to drift `percent` % of each cloud's entities for `round` (the
    /// demo connector's `drift`), and returns the scope as it is now: its next run scans the
    /// same items, some of them changed.
    pub async fn drift(&self, scope: &ScanScope, percent: i64, round: i64) -> Result<ScanScope> {
        let mut document = scope.scope.clone();
        document.insert("drift", doc! { "percent": percent, "round": round });
        let update = ScopeUpdate {
            scope: Some(document),
            ..ScopeUpdate::default()
        };
        Ok(self
            .domain
            .update_scope_settings(&scope.tenant_id, scope.id, &update)
            .await?)
    }

    /// Starts `count` `sv0 worker` processes serving the pipeline's kinds, with every tenant's
    /// credential; returns them once all are ready, and when the first was.
    pub async fn workers(&self, uri: &str, count: usize) -> Result<(Vec<Proc>, SystemTime)> {
        let mut workers = Vec::new();
        for n in 0..count {
            let mut command = Command::new(&self.sv0);
            command
                .arg("worker")
                .args(["--mongodb-uri", uri, "--database", self.db.name()])
                .args(["--metrics-addr", "127.0.0.1:0", "--change-streams", "off"])
                .arg("--connectors")
                .arg(&self.connectors.registry)
                .arg("--connector-runs-dir")
                .arg(self.connectors.runs.path())
                .envs(self.env.iter().cloned());
            workers.push(Proc::spawn(format!("sv0 worker (pipeline) #{n}"), command)?);
        }
        let first =
            procs::first_ready(&mut workers, "worker started", Duration::from_secs(30)).await?;
        Ok((workers, first))
    }

    /// A manual run of `scope`, queued with its first job.
    pub async fn start_run(&self, scope: &ScanScope) -> Result<ScanRun> {
        Ok(self
            .pipeline
            .create_run(RunRequest {
                tenant_id: scope.tenant_id.clone(),
                scope_id: scope.id,
                trigger: Trigger::ManualApi {
                    requested_by: Some("sv0-bench".into()),
                },
            })
            .await?)
    }

    /// Waits until the run has finished, whatever its status.
    pub async fn finished(
        &self,
        tenant: &str,
        id: mongodb::bson::oid::ObjectId,
    ) -> Result<ScanRun> {
        let began = Instant::now();
        loop {
            let run = self.domain.run(tenant, id).await?;
            if run.status.is_finished() {
                return Ok(run);
            }
            if began.elapsed() > RUN_CAP {
                bail!("scan {id} unfinished after {RUN_CAP:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The demo connector deployed for `sv0 worker` as a deployment deploys a connector: the workers
/// run it confined, and under root as `nobody`, so it is staged where that user can run it, its
/// runs' directories go where that user can reach them, and a registry file names it. All of it
/// is removed on drop.
struct Connectors {
    registry: PathBuf,
    runs: tempfile::TempDir,
    /// Holds the registry file: apart from the staged executable, whose directory a confined
    /// connector may read.
    _config: tempfile::TempDir,
    _staged: StagedConnectors,
}

impl Connectors {
    fn deploy(connector: &Path) -> Result<Connectors> {
        anyhow::ensure!(
            connector.is_file(),
            "{} is missing (cargo build --release -p sv0-demo-connector)",
            connector.display()
        );
        let staged = StagedConnectors::new().context("staging the demo connector")?;
        let executable = staged.stage(connector)?;
        let config = tempfile::Builder::new().prefix("sv0-bench-").tempdir()?;
        let registry = config.path().join("connectors.toml");
        let kinds = [(KIND.to_string(), ConnectorKind::new(executable, Vec::new()))];
        std::fs::write(
            &registry,
            ConnectorRegistry::from_kinds(kinds.into())?.to_toml()?,
        )?;
        Ok(Connectors {
            registry,
            runs: sv0_testkit::connectors::runs_dir().context("creating the runs' directory")?,
            _config: config,
            _staged: staged,
        })
    }
}

/// A cell's duration, or for the scan its job's (`started_at` to `finished_at`).
pub async fn stage_seconds(db: &Database, run: &ScanRun, stage: &str) -> Result<f64> {
    let millis = if stage == "execute_scan" {
        let job = db
            .collection::<Document>("jobs")
            .find_one(doc! { "group_id": run.id.to_hex(), "kind": stage })
            .await?
            .context("the scan's job")?;
        let end = job.get_datetime("finished_at")?.timestamp_millis();
        end - job.get_datetime("started_at")?.timestamp_millis()
    } else {
        let cell = run
            .cell(stage)
            .with_context(|| format!("no {stage} cell"))?;
        let end = cell
            .ended_at
            .context("an unfinished cell")?
            .timestamp_millis();
        end - cell.started_at.timestamp_millis()
    };
    Ok(millis as f64 / 1000.0)
}
