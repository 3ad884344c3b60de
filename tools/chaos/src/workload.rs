//! The demo workload under fire: several tenants, each with the demo connector and scopes on a
//! 5 s schedule, and, through the admin API (`sv0 ctl`, as an operator or a CI step would),
//! manual runs, retries of finished runs and rematerializations arriving at random.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use mongodb::bson::{DateTime, doc};
use sv0_broker::Provider;
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_domain::{Domain, Schedule, TenantSetup};
use sv0_pipeline::{ConnectorKind, ConnectorRegistry};

pub const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
pub const SCOPES_PER_TENANT: usize = 2;
/// Every scope's schedule: the shortest interval a schedule may have.
pub const EVERY_SECONDS: i64 = 5;
const CREDENTIALS_REF: &str = "DEMO_CLOUD";

/// The credential planted for `tenant`: a canary searched for afterwards.
pub fn canary(tenant: &str) -> String {
    format!("chaos-canary-{tenant}-5e1d7c")
}

/// The environment a worker needs to reach every tenant's credential.
pub fn credential_env() -> anyhow::Result<Vec<(String, String)>> {
    TENANTS
        .iter()
        .map(|tenant| {
            let prefix = env_prefix(
                &TenantId::parse(tenant).map_err(anyhow::Error::msg)?,
                &Ref::parse(CREDENTIALS_REF).map_err(anyhow::Error::msg)?,
            );
            Ok((format!("{prefix}DEMO_CLOUD_TOKEN"), canary(tenant)))
        })
        .collect()
}

/// A scope of the workload.
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: String,
    pub id: String,
}

/// The connector kind every instance names.
const KIND: &str = "demo";
/// The connector registry the workers and the admin API read, in the run's directory.
const REGISTRY: &str = "connectors.toml";

/// Writes the run's connector registry into `dir`: [`KIND`] is the demo connector at
/// `executable`, on the default TCP port, 443. Returns the file's path.
pub fn write_registry(dir: &Path, executable: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(REGISTRY);
    let kinds = [(KIND.to_string(), ConnectorKind::new(executable, Vec::new()))];
    let text = ConnectorRegistry::from_kinds(kinds.into())?.to_toml()?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Tenants, their demo-connector instances and scopes on a 5 s schedule, written directly: the
/// set-up is not under test.
pub async fn provision(domain: &Domain) -> anyhow::Result<Vec<Scope>> {
    domain.ensure_indexes().await?;
    let mut scopes = Vec::new();
    for (t, tenant) in TENANTS.iter().enumerate() {
        let setup = (0..SCOPES_PER_TENANT).fold(
            TenantSetup::new(*tenant)
                .kind(KIND)
                .instance_name("demo-clouds")
                .credentials(Provider::Env, CREDENTIALS_REF)
                .budget_seconds(60),
            |setup, s| {
                setup.scope(
                    format!("scope {s}"),
                    doc! { "clouds": ["aws"], "size": 100_i64, "seed": (t * 10 + s) as i64 },
                )
            },
        );
        for scope in domain.set_up_tenant(&setup).await?.scopes {
            domain
                .set_schedule(
                    tenant,
                    scope.id,
                    Some(Schedule::every(EVERY_SECONDS)),
                    DateTime::now(),
                )
                .await?;
            scopes.push(Scope {
                tenant: tenant.to_string(),
                id: scope.id.to_hex(),
            });
        }
    }
    Ok(scopes)
}

/// Pauses every scope, so that the scheduler starts nothing more while the run settles.
pub async fn pause_all(domain: &Domain, scopes: &[Scope]) -> anyhow::Result<()> {
    for scope in scopes {
        let id = mongodb::bson::oid::ObjectId::parse_str(&scope.id)?;
        domain
            .pause_scope(
                &scope.tenant,
                id,
                Some("chaos run settling".into()),
                Some("sv0-chaos".into()),
                DateTime::now(),
            )
            .await?;
    }
    Ok(())
}

/// What the API actions did: accepted, and refused or failed (the API is cut off from the
/// database at times; a failed action is expected then and loses nothing).
#[derive(Debug, Default)]
pub struct ActionCounts {
    pub triggers: AtomicU64,
    pub retries: AtomicU64,
    pub rematerializations: AtomicU64,
    pub failed: AtomicU64,
}

/// The file, in the run's directory, where every API response the actions got is kept (for the
/// canary search).
pub const RESPONSES: &str = "api-responses.log";

/// Drives the API actions until `stop` is set.
pub struct Actions {
    pub sv0: PathBuf,
    pub api_log: PathBuf,
    pub responses: PathBuf,
    pub token: String,
    pub scopes: Vec<Scope>,
    pub counts: Arc<ActionCounts>,
    pub stop: Arc<AtomicBool>,
}

impl Actions {
    /// Returns the ids of the runs the API acknowledged (a 2xx answer naming them): a SIGKILLed
    /// devdb may lose some, and `loss` counts them.
    pub async fn run(self, seed: u64) -> Vec<String> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut deploys = 0;
        let mut acknowledged = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(rng.u64(1_500..4_000))).await;
            let Some(url) = api_url(&self.api_log) else {
                continue;
            };
            let done = match rng.u8(0..3) {
                0 => {
                    let scope = &self.scopes[rng.usize(..self.scopes.len())];
                    self.ctl(
                        &url,
                        &["--json", "scopes", "trigger", &scope.tenant, &scope.id],
                    )
                    .await
                    .map(|answer| (answer, &self.counts.triggers))
                }
                1 => match self.a_finished_run(&url, &mut rng).await {
                    Some(id) => self
                        .ctl(&url, &["--json", "runs", "retry", &id])
                        .await
                        .map(|answer| (answer, &self.counts.retries)),
                    None => continue,
                },
                _ => {
                    deploys += 1;
                    let deploy = format!("chaos-deploy-{seed}-{deploys}");
                    self.ctl(
                        &url,
                        &[
                            "--json",
                            "rematerialize",
                            "--stages",
                            "chains",
                            "--deploy-id",
                            &deploy,
                        ],
                    )
                    .await
                    .map(|answer| (answer, &self.counts.rematerializations))
                }
            };
            match done {
                Some((answer, counter)) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    acknowledged.extend(run_ids(&answer));
                }
                None => {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        acknowledged
    }

    async fn a_finished_run(&self, url: &str, rng: &mut fastrand::Rng) -> Option<String> {
        let listing = self
            .ctl(url, &["--json", "runs", "list", "--status", "succeeded"])
            .await?;
        let runs: serde_json::Value = serde_json::from_str(&listing).ok()?;
        let items = runs["items"].as_array()?;
        if items.is_empty() {
            return None;
        }
        items[rng.usize(..items.len())]["id"]
            .as_str()
            .map(String::from)
    }

    /// `sv0 ctl ARGS…`; its standard output when it succeeded.
    async fn ctl(&self, url: &str, args: &[&str]) -> Option<String> {
        let out = tokio::process::Command::new(&self.sv0)
            .arg("ctl")
            .args(args)
            .env("SV0_API_URL", url)
            .env("SV0_API_TOKEN", &self.token)
            .output()
            .await
            .ok()?;
        let kept = format!(
            "$ sv0 ctl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.responses)
        {
            let _ = std::io::Write::write_all(&mut file, kept.as_bytes());
        }
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The runs an action's `--json` answer names: the run itself (a trigger, a retry) or the
/// deploy-gate runs of a rematerialization.
fn run_ids(answer: &str) -> Vec<String> {
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(answer) else {
        return Vec::new();
    };
    let runs = match answer["runs"].as_array() {
        Some(runs) => runs.iter().collect(),
        None => vec![&answer],
    };
    runs.iter()
        .filter_map(|run| run["id"].as_str().map(String::from))
        .collect()
}

/// The admin API's base URL, from its log (it moves on a restart).
pub fn api_url(log: &Path) -> Option<String> {
    last_addr(log, "listening").map(|addr| format!("http://{addr}"))
}

/// Where a process serves `/metrics` now: a worker's or scheduler's status server, or the API.
pub fn status_addr(log: &Path) -> Option<String> {
    last_addr(log, "serving /metrics and /healthz").or_else(|| last_addr(log, "listening"))
}

/// The `addr` of the last JSON log line with this message.
fn last_addr(log: &Path, message: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        (event["message"] == message).then(|| event["addr"].as_str().map(String::from))?
    })
}

/// A `super_admin` token, created next to the database as an operator would.
pub fn create_token(sv0: &Path, uri: &str, database: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(sv0)
        .args([
            "token",
            "create",
            "--role",
            "super_admin",
            "--name",
            "chaos",
        ])
        .args(["--mongodb-uri", uri, "--database", database])
        .output()
        .context("running sv0 token create")?;
    anyhow::ensure!(
        out.status.success(),
        "sv0 token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
