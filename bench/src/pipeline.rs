//! What a scan costs, stage by stage: the demo connector's graph of 10,000 entities (two clouds
//! of 5,000) scanned once by one `sv0 worker`, then scanned again unchanged. Each stage's time
//! comes from its cell (`ended_at − started_at`; the scan's from its job), and what it wrote from
//! the collections it keeps: every stage writes one statement per document of its set, batched
//! 1,000 to an `update` command, and on the unchanged re-scan each of those only sets
//! `last_seen_at`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mongodb::Database;
use mongodb::bson::{Document, doc};
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_broker::{BrokerMetrics, CredentialBroker, CredentialsRef, Provider};
use sv0_domain::{Budget, ConnectorInstance, Domain, ScanRun, ScanScope, Tenant, Trigger};
use sv0_pipeline::{Pipeline, RunRequest};
use sv0_queue::Queue;
use tokio::process::Command;

use crate::procs::{self, Proc};

/// Entities per cloud; two clouds.
pub const SIZE_PER_CLOUD: i64 = 5_000;
const TENANT: &str = "bench";
const REF: &str = "DEMO_CLOUD";
const RUN_CAP: Duration = Duration::from_secs(600);

/// One stage's cost in the first scan and in the unchanged re-scan.
#[derive(Debug, Clone)]
pub struct StageCost {
    pub stage: &'static str,
    pub first: Cost,
    pub again: Cost,
}

#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub seconds: f64,
    /// Documents written (one statement each).
    pub written: u64,
}

/// The stages in order: the job kind (for `execute_scan`) or the cell, and the collection whose
/// documents the stage writes.
const STAGES: [(&str, &str); 6] = [
    ("execute_scan", "connector_syncs"),
    ("__sync", "entities"),
    ("__eval", "findings"),
    ("__chain", "chains"),
    ("__stitch", "stitched_paths"),
    ("__evidence", "evidence_packs"),
];

/// Scans the demo graph twice with one worker of `sv0` on `db` and returns each stage's cost.
pub async fn scan_costs(sv0: &Path, uri: &str, db: &Database) -> Result<Vec<StageCost>> {
    db.drop().await?;
    let domain = Domain::new(db);
    let queue = Queue::new(db);
    domain.ensure_indexes().await?;
    queue.ensure_indexes().await?;
    let connector = sv0.with_file_name("sv0-demo-connector");
    anyhow::ensure!(
        connector.is_file(),
        "{} is missing (cargo build --release -p sv0-demo-connector)",
        connector.display()
    );
    domain.put_tenant(&Tenant::new(TENANT, "bench")?).await?;
    let instance = ConnectorInstance::new(
        TENANT,
        "demo",
        "demo",
        vec![connector.display().to_string()],
        CredentialsRef {
            provider: Provider::Env,
            reference: REF.into(),
        },
    )?;
    domain.insert_instance(&instance).await?;
    let scope = ScanScope::new(
        &instance,
        "10,000 entities",
        doc! { "clouds": ["aws", "azure"], "size": SIZE_PER_CLOUD, "seed": 1_i64 },
        Budget {
            max_runtime_seconds: RUN_CAP.as_secs() as i64,
        },
    )?;
    domain.insert_scope(&scope).await?;

    let variable = format!(
        "{}DEMO_CLOUD_TOKEN",
        env_prefix(
            &TenantId::parse(TENANT).map_err(anyhow::Error::msg)?,
            &Ref::parse(REF).map_err(anyhow::Error::msg)?
        )
    );
    let mut command = Command::new(sv0);
    command
        .arg("worker")
        .args(["--mongodb-uri", uri, "--database", db.name()])
        .args(["--metrics-addr", "127.0.0.1:0", "--change-streams", "off"])
        .env(variable, "bench-token");
    let mut workers = vec![Proc::spawn("sv0 worker (pipeline)", command)?];
    procs::first_ready(&mut workers, "worker started", Duration::from_secs(30)).await?;

    let broker = CredentialBroker::new(BrokerMetrics::new(&mut Default::default()));
    let pipeline = Arc::new(Pipeline::new(domain.clone(), queue, broker));
    let mut runs = Vec::new();
    let mut written = Vec::new();
    for _ in 0..2 {
        let run = pipeline
            .create_run(RunRequest {
                tenant_id: TENANT.into(),
                scope_id: scope.id,
                trigger: Trigger::ManualApi {
                    requested_by: Some("sv0-bench".into()),
                },
            })
            .await?;
        let run = finished(&domain, run.id).await?;
        if run.status != sv0_domain::RunStatus::Succeeded {
            bail!("the scan did not succeed: {:?}", run.error);
        }
        let mut counts = Vec::new();
        for (_, collection) in STAGES {
            counts.push(
                db.collection::<Document>(collection)
                    .count_documents(doc! { "tenant_id": TENANT })
                    .await?,
            );
        }
        written.push(counts);
        runs.push(run);
    }
    procs::stop_all(workers).await?;

    let mut costs = Vec::new();
    for (i, (stage, _)) in STAGES.iter().enumerate() {
        let mut pair = [Cost {
            seconds: 0.0,
            written: 0,
        }; 2];
        for (n, run) in runs.iter().enumerate() {
            let seconds = stage_seconds(db, run, stage).await?;
            // One sync and one pack per run; the other sets are rewritten whole.
            let written = match *stage {
                "execute_scan" | "__evidence" => 1,
                _ => written[n][i],
            };
            pair[n] = Cost { seconds, written };
        }
        costs.push(StageCost {
            stage,
            first: pair[0],
            again: pair[1],
        });
    }
    db.drop().await?;
    Ok(costs)
}

async fn finished(domain: &Domain, id: mongodb::bson::oid::ObjectId) -> Result<ScanRun> {
    let began = Instant::now();
    loop {
        let run = domain.run(TENANT, id).await?;
        if run.status.is_finished() {
            return Ok(run);
        }
        if began.elapsed() > RUN_CAP {
            bail!("scan {id} unfinished after {RUN_CAP:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cell's duration, or for the scan its job's (`started_at` to `finished_at`).
async fn stage_seconds(db: &Database, run: &ScanRun, stage: &str) -> Result<f64> {
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
