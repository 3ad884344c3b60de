//! `sv0 demo`: the main job. Starts the stand, provisions a demo tenant (credentials from the
//! environment, through the broker), a connector instance and a scope, starts two worker
//! processes, runs one scan through every stage, and prints the run cell by cell with what it
//! found. Then it scans the unchanged clouds again, to show that this changes nothing, and starts
//! the admin API and takes the CI step after a deploy through it (`sv0 ctl rematerialize
//! --wait`, twice: the second time for the same deploy creates nothing). Last, it puts the scope
//! on a 5-second schedule and starts a scheduler process: scheduled runs appear one slot after
//! another. `--serve` keeps the stand, the workers, the API and the scheduler up afterwards.
//!
//! The instance names only a kind. Which program scans it is deployment configuration, here the
//! demo's own connector registry, and the workers run that program confined (under root, as
//! `nobody`).

use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;
use sv0_broker::Provider;
use sv0_broker::naming::{Ref, TenantId, env_prefix};
use sv0_devdb::DevDb;
use sv0_domain::{Domain, RunStatus, ScanRun, Schedule, SetUpTenant, TenantSetup, Trigger};
use sv0_pipeline::sandbox::DEFAULT_CONNECTOR_USER;
use sv0_pipeline::{
    ConnectorKind, ConnectorRegistry, Pipeline, RunRequest, Sandbox, SandboxSettings,
};
use sv0_queue::Queue;
use tokio::process::{Child, Command};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Entities per cloud in the demo connector's synthetic graph (8 to 12500).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(8..=12_500))]
    size: u32,
    /// Worker processes (1 to 8).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    workers: u8,
    /// The demo connector executable; default: `sv0-demo-connector` beside this binary.
    #[arg(long)]
    connector: Option<PathBuf>,
    /// Where the workers' logs go.
    #[arg(long, default_value = "target/demo")]
    logs: PathBuf,
    /// Let the workers run the connector unconfined on a kernel without Landlock or seccomp
    /// (they refuse to otherwise).
    #[arg(long)]
    allow_unconfined_connectors: bool,
    /// Keep the stand, the workers and the scheduler up afterwards, until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

const TENANT: &str = "demo";
/// The connector kind the instance names and the demo's registry maps to the demo connector.
const KIND: &str = "demo";
const CREDENTIALS_REF: &str = "DEMO_CLOUD";
/// The variable the demo connector refuses to run without.
const CONNECTOR_CREDENTIAL: &str = "DEMO_CLOUD_TOKEN";
const DATABASE: &str = "sv0_demo";
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let connector = match &args.connector {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("sv0-demo-connector"),
    };
    anyhow::ensure!(
        connector.is_file(),
        "--connector: {} does not exist (build it: cargo build -p sv0-demo-connector)",
        connector.display()
    );
    let deployment = Deployment::create(&connector)?;
    let registry = ConnectorRegistry::load(&deployment.registry)?;
    let kind = registry.kind(KIND)?.clone();
    // The sandbox each worker builds, built here too with the same settings: a kernel that
    // cannot confine fails the demo now, and its structured answer makes a short line. (It
    // also makes this process non-dumpable, which costs the demo nothing.)
    let sandbox = Sandbox::new(SandboxSettings {
        allow_unconfined: args.allow_unconfined_connectors,
        connector_user: DEFAULT_CONNECTOR_USER.to_string(),
        runs_dir: Some(deployment.runs.clone()),
    })
    .context("confining connectors")?;
    println!("sv0 pipeline demo: one tenant scanned end to end, every stage, on the local stand\n");

    let devdb = DevDb::builder().start().context("starting devdb")?;
    let uri = devdb.uri();
    let client = mongodb::Client::with_uri_str(&uri).await?;
    let db = client.database(DATABASE);
    let domain = Domain::new(&db);
    let queue = Queue::new(&db);
    domain.ensure_indexes().await?;
    queue.ensure_indexes().await?;
    println!("stand      devdb at {uri}, database {DATABASE}");

    // The tenant, its connector instance and a scope of two clouds.
    let setup = TenantSetup::new(TENANT)
        .tenant_name("Demo Corp")
        .kind(KIND)
        .instance_name("demo-clouds")
        .credentials(Provider::Env, CREDENTIALS_REF)
        .scope(
            "all of aws and azure",
            doc! { "clouds": ["aws", "azure"], "size": args.size as i64, "seed": 7_i64 },
        )
        .budget_seconds(120);
    let SetUpTenant {
        tenant,
        instance,
        scopes,
    } = domain.set_up_tenant(&setup).await?;
    let scope = scopes.into_iter().next().context("the demo's scope")?;
    println!("tenant     {TENANT} ({}), active", tenant.name);
    println!(
        "instance   {}: kind {} with credentials_ref {{provider: env, ref: {CREDENTIALS_REF}}}",
        instance.name, instance.kind
    );
    println!(
        "scope      {}: {} entities per cloud, seed 7, budget 120 s",
        scope.name, args.size
    );
    println!(
        "connectors registry {}: {KIND} → {}, {}",
        deployment.registry.display(),
        kind.executable.display(),
        reach(&kind)
    );

    // The credential lives only in the workers' environment, where the broker's env provider
    // finds it by the tenant's computed prefix; the demo itself never prints it.
    let variable = format!(
        "{}{CONNECTOR_CREDENTIAL}",
        env_prefix(
            &TenantId::parse(TENANT).map_err(anyhow::Error::msg)?,
            &Ref::parse(CREDENTIALS_REF).map_err(anyhow::Error::msg)?
        )
    );
    let token = format!("demo-token-{}", ObjectId::new().to_hex());
    std::fs::create_dir_all(&args.logs)
        .with_context(|| format!("--logs {}", args.logs.display()))?;
    let registry_file = deployment
        .registry
        .to_str()
        .context("a non-UTF-8 temporary directory")?;
    let runs_dir = deployment
        .runs
        .to_str()
        .context("a non-UTF-8 temporary directory")?;
    let mut worker_args = vec![
        // The stand runs without an oplog here: polling only (an idle change stream costs the
        // stand a core).
        "--change-streams",
        "off",
        "--metrics-addr",
        "127.0.0.1:0",
        "--connectors",
        registry_file,
        "--connector-runs-dir",
        runs_dir,
    ];
    if args.allow_unconfined_connectors {
        worker_args.push("--allow-unconfined-connectors");
    }
    let mut workers = Vec::new();
    for n in 1..=args.workers {
        let name = format!("worker-{n}");
        let worker = sv0_process(
            &uri,
            &args.logs,
            "worker",
            &name,
            &worker_args,
            Some((&variable, &token)),
        )?;
        workers.push(Process::new(name, &args.logs, worker));
    }
    println!(
        "workers    {} processes (logs in {}/worker-N.log); the credential reaches them as {variable}",
        workers.len(),
        args.logs.display()
    );
    // What the worker logged is the truth; the short line only stands for it when they agree.
    let first = &mut workers[0];
    let logged = logged_confinement(&first.log, &mut first.child).await?;
    let confinement = if logged == sandbox.describe() {
        confinement_line(&sandbox)
    } else {
        format!("as worker-1 logged it: {logged}")
    };
    let label = if sandbox.unconfined() {
        "UNCONFINED"
    } else {
        "confined"
    };
    println!("{label:<10} {confinement}\n");

    let broker = sv0_broker::CredentialBroker::new(sv0_broker::BrokerMetrics::new(
        &mut prometheus_client::registry::Registry::default(),
    ));
    let pipeline = Arc::new(Pipeline::new(domain.clone(), queue, broker).with_connectors(registry));
    let mut result = scenario(&pipeline, &domain, scope.id).await;
    let mut api_url = None;
    if result.is_ok() {
        match admin_api(&uri, &args.logs, registry_file).await {
            Ok((api, url)) => {
                workers.push(Process::new("admin-api".into(), &args.logs, api));
                result = ci_step(&db, &domain, &url).await;
                api_url = Some(url);
            }
            Err(error) => result = Err(error),
        }
    }
    if result.is_ok() {
        match sv0_process(
            &uri,
            &args.logs,
            "scheduler",
            "scheduler",
            &["--tick-ms", "1000", "--metrics-addr", "127.0.0.1:0"],
            None,
        ) {
            Ok(scheduler) => workers.push(Process::new("scheduler".into(), &args.logs, scheduler)),
            Err(error) => result = Err(error),
        }
    }
    if result.is_ok() {
        result = scheduled(&domain, scope.id).await;
    }

    if args.serve && result.is_ok() {
        let exe = std::env::current_exe()?;
        println!(
            "\nserving: devdb at {uri}, {} workers, a scheduler running the scope every 5 s, and the admin API at {}.\n\
             List its runs as they appear:\n  {} runs --mongodb-uri {uri} --database {DATABASE} --tenant {TENANT}\n\
             or through the API, with a token of your own:\n  \
             SV0_API_URL={} SV0_API_TOKEN=$({} token create --role read_only --name me --mongodb-uri {uri} --database {DATABASE}) {} ctl runs list\n\
             Ctrl-C stops everything.",
            args.workers,
            api_url.as_deref().unwrap_or("-"),
            exe.display(),
            api_url.as_deref().unwrap_or("-"),
            exe.display(),
            exe.display()
        );
        tokio::select! {
            signal = crate::shutdown_signal() => signal?,
            exited = first_exit(&mut workers) => {
                eprintln!("\n{exited:#}\nstopping the rest.");
                result = Err(exited);
            }
        }
    }
    for process in &mut workers {
        stop(&mut process.child).await;
    }
    drop(client);
    devdb.stop().context("stopping devdb")?;
    result
}

/// A process the demo started, by the name its log is under.
struct Process {
    name: String,
    log: PathBuf,
    child: Child,
}

impl Process {
    fn new(name: String, logs: &Path, child: Child) -> Process {
        let log = logs.join(format!("{name}.log"));
        Process { name, log, child }
    }
}

/// How often a serving demo looks whether its processes are still there.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How much of a dead process's log its report shows.
const LOG_TAIL_LINES: usize = 10;

/// Waits until one of `processes` exits and says which, how, and how its log ends. Each of them
/// is part of what a serving demo serves: one gone unnoticed (an admin API refusing every
/// connection, no scheduler) would leave a stand that looks up and is not.
async fn first_exit(processes: &mut [Process]) -> anyhow::Error {
    loop {
        for process in processes.iter_mut() {
            let status = match process.child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(error) => {
                    return anyhow::Error::new(error)
                        .context(format!("watching the {} process", process.name));
                }
            };
            let text = std::fs::read_to_string(&process.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n  ");
            return anyhow::anyhow!(
                "the {} process exited ({status}) while the demo was serving; the end of {}:\n  {tail}",
                process.name,
                process.log.display()
            );
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
    }
}

/// The demo's connector deployment, in a fresh directory of the system's temporary one, removed
/// on drop: the demo connector copied into `bin/`, the registry naming it (`connectors.toml`),
/// and `runs/`, where the workers make each run's private directory. Under a root worker the
/// connector runs as `nobody`, who must reach its executable and its run directory through
/// every parent directory, which a build tree under a private home does not allow: hence the
/// copy, and modes that let any user through (0755; 0711 for `runs/`: enter, not list). `bin/`
/// holds the executable alone because a confined connector may read its executable's whole
/// directory.
struct Deployment {
    dir: PathBuf,
    registry: PathBuf,
    runs: PathBuf,
}

impl Deployment {
    fn create(connector: &Path) -> anyhow::Result<Deployment> {
        let dir = std::env::temp_dir().join(format!("sv0-demo-{}", ObjectId::new().to_hex()));
        // `mkdir` refuses whatever is already there, a planted symbolic link included: nothing
        // below is written through another user's entry.
        make_dir(&dir, 0o755).with_context(|| format!("creating {}", dir.display()))?;
        let deployment = Deployment {
            registry: dir.join("connectors.toml"),
            runs: dir.join("runs"),
            dir,
        };
        let bin = deployment.dir.join("bin");
        make_dir(&bin, 0o755)?;
        make_dir(&deployment.runs, 0o711)?;
        let executable = bin.join("sv0-demo-connector");
        std::fs::copy(connector, &executable)
            .with_context(|| format!("copying {}", connector.display()))?;
        std::fs::set_permissions(&executable, Permissions::from_mode(0o755))?;
        // A JSON string is a TOML basic string: the same quotes and escapes.
        let executable = serde_json::to_string(
            executable
                .to_str()
                .context("a non-UTF-8 temporary directory")?,
        )?;
        std::fs::write(
            &deployment.registry,
            format!(
                "# sv0 demo's connector registry: the program for the one kind its instance names.\n\
                 [kinds.{KIND}]\n\
                 executable = {executable}\n\
                 tcp_ports = [443]\n"
            ),
        )?;
        Ok(deployment)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("removing {}: {error}", self.dir.display());
        }
    }
}

/// A directory of exactly `mode`, whatever the umask.
fn make_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    DirBuilder::new().mode(mode).create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(mode))
}

/// What a kind may reach and use, as the registry says: its TCP ports and its limits.
fn reach(kind: &ConnectorKind) -> String {
    let ports = match kind.tcp_ports.as_slice() {
        [] => "no TCP".to_string(),
        ports => {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!("TCP {} only", ports.join(", "))
        }
    };
    let limits = kind.limits;
    format!(
        "{ports}; at most {} MiB of data, {} s of CPU, {} open files, {} MiB per file",
        limits.memory_mib, limits.cpu_seconds, limits.open_files, limits.output_mib
    )
}

/// One line on what confines every connector of a worker with `sandbox`: what the kernel
/// enforces and what it lacks, the user connectors run as, and where their runs are.
fn confinement_line(sandbox: &Sandbox) -> String {
    let enforced = sandbox.enforced();
    let landlock = [
        (enforced.landlock_filesystem, "files"),
        (enforced.landlock_network, "TCP ports"),
        (enforced.landlock_scoping, "signals and sockets"),
    ];
    let on: Vec<&str> = landlock.iter().filter(|f| f.0).map(|f| f.1).collect();
    let mut by = Vec::new();
    if !on.is_empty() {
        by.push(format!("Landlock ({})", on.join(", ")));
    }
    if enforced.seccomp {
        by.push("seccomp".to_string());
    }
    by.push("rlimits".to_string());
    let mut lacking: Vec<String> = landlock
        .iter()
        .filter(|f| !f.0)
        .map(|f| format!("Landlock {}", f.1))
        .collect();
    if !enforced.seccomp {
        lacking.push("seccomp".to_string());
    }
    let lacking = if lacking.is_empty() {
        String::new()
    } else {
        format!(" (not on this kernel: {})", lacking.join(", "))
    };
    let user = match sandbox.user() {
        Some(user) => format!("run as {DEFAULT_CONNECTOR_USER} (uid {})", user.uid),
        None => "run as this user (not root)".to_string(),
    };
    format!(
        "by {}{lacking}; {user}, each run in a directory of its own under {}",
        by.join(", "),
        sandbox.runs_dir().display()
    )
}

/// The confinement the worker logging to `log` gives its connectors, as it logged it at start.
/// A worker that stops before (a registry it refuses, a kernel it will not run connectors on)
/// fails the demo with the end of its log.
async fn logged_confinement(log: &Path, worker: &mut Child) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let logged = text.lines().find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            event["confinement"].as_str().map(String::from)
        });
        if let Some(logged) = logged {
            return Ok(logged);
        }
        if let Some(status) = worker.try_wait()? {
            let lines: Vec<&str> = text.lines().collect();
            bail!(
                "{} stopped ({status}) before it ran any connector:\n  {}",
                log.display(),
                lines[lines.len().saturating_sub(3)..].join("\n  ")
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} logged no connector confinement in 30 s",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario(pipeline: &Pipeline, domain: &Domain, scope_id: ObjectId) -> anyhow::Result<()> {
    let began = Instant::now();
    let run = manual_scan(pipeline, scope_id).await?;
    println!(
        "scan run {} (trigger manual_api) enqueued: execute_scan → sync_ingestion → evaluate_findings → assemble_chains → stitch_paths → build_evidence_pack",
        run.id
    );
    let run = wait(domain, run.id).await?;
    print_run(&run, began.elapsed());
    print_results(domain, &run).await?;
    if run.status != RunStatus::Succeeded {
        bail!(
            "the demo scan did not succeed: {}",
            run.error.unwrap_or_default()
        );
    }

    println!("\nThe same clouds scanned again: nothing changed, so nothing is rewritten.");
    let began = Instant::now();
    let again = manual_scan(pipeline, scope_id).await?;
    let again = wait(domain, again.id).await?;
    print_run(&again, began.elapsed());
    Ok(())
}

/// `sv0 admin-api` on a free port, checking instances against the `registry` file: the
/// process, and its URL once it listens.
async fn admin_api(uri: &str, logs: &Path, registry: &str) -> anyhow::Result<(Child, String)> {
    let api = sv0_process(
        uri,
        logs,
        "admin-api",
        "admin-api",
        &["--listen", "127.0.0.1:0", "--connectors", registry],
        None,
    )?;
    let log = logs.join("admin-api.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let listening = text.lines().find_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["message"] == "listening").then(|| event["addr"].as_str().map(String::from))?
        });
        if let Some(addr) = listening {
            return Ok((api, format!("http://{addr}")));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the admin API did not start; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CI step after a deploy, exactly as a pipeline runs it: a `ci` token, then
/// `sv0 ctl rematerialize … --wait` against the admin API; then the same step again, as a
/// retried CI job would, which finds the same runs and creates none.
async fn ci_step(db: &mongodb::Database, domain: &Domain, api_url: &str) -> anyhow::Result<()> {
    // Limited to the demo's tenant and to an hour, as a deploy pipeline's token should be.
    let hour_from_now = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() + 3_600_000,
    );
    let token = sv0_admin_api::Tokens::new(db)
        .create(
            &sv0_admin_api::NewToken::new("demo-ci", sv0_admin_api::Role::Ci)
                .tenants([TENANT])
                .expires_at(hour_from_now),
        )
        .await
        .context("creating the demo's CI token")?;
    println!(
        "\nCI after a deploy, through the admin API at {api_url} (a `ci` token limited to tenant \
         {TENANT} for an hour, shown to no one):"
    );
    let step = [
        "ctl",
        "rematerialize",
        "--stages",
        "chains,stitched_paths",
        "--deploy-id",
        "demo-deploy-1",
        "--commit",
        "0a1b2c3",
        "--wait",
        "--timeout",
        "90",
    ];
    for attempt in [
        "",
        "# the same step again, as a retried CI job would run it\n",
    ] {
        println!("{attempt}$ sv0 {}", step.join(" "));
        let began = Instant::now();
        let output = Command::new(std::env::current_exe()?)
            .args(step)
            .env("SV0_API_URL", api_url)
            .env("SV0_API_TOKEN", &token.token)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running sv0 ctl rematerialize")?;
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("  {line}");
        }
        anyhow::ensure!(
            output.status.success(),
            "the CI step failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
        println!("  exit 0 after {:.1} s", began.elapsed().as_secs_f64());
    }
    let deploy_runs = domain
        .list_runs(
            &sv0_domain::RunFilter {
                trigger: Some("deploy_gate".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .await?;
    println!(
        "deploy-gate runs for demo-deploy-1: {} (the second step created none)",
        deploy_runs.len()
    );
    for run in deploy_runs {
        let took = run.finished_at.map_or(0, |end| {
            end.timestamp_millis() - run.created_at.timestamp_millis()
        });
        print_run(&run, Duration::from_millis(took.max(0) as u64));
    }
    Ok(())
}

/// The scope on a schedule: a scheduler process (started by the caller) turns its slots into
/// runs; two of them are waited for and shown.
async fn scheduled(domain: &Domain, scope_id: ObjectId) -> anyhow::Result<()> {
    let scope = domain
        .set_schedule(
            TENANT,
            scope_id,
            Some(Schedule::every(5)),
            mongodb::bson::DateTime::now(),
        )
        .await?;
    println!(
        "\nThe scope on a schedule: every 5 s (catch-up: the latest slot within a day; overlap: \
         skip), run by a scheduler process."
    );
    let first = scope
        .next_run_at
        .context("a scheduled scope has a next slot")?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut shown = Vec::new();
    while shown.len() < 2 {
        // Oldest first, so slots print in order.
        for run in domain.recent_runs(TENANT, 10).await?.into_iter().rev() {
            let Trigger::Scheduled { slot, .. } = run.trigger else {
                continue;
            };
            if slot < first || !run.status.is_finished() || shown.contains(&run.id) {
                continue;
            }
            let lag = run.created_at.timestamp_millis() - slot.timestamp_millis();
            let took = run.finished_at.map_or(0, |end| {
                end.timestamp_millis() - run.created_at.timestamp_millis()
            });
            println!(
                "  slot {}  run {}  created {} ms after its slot  {} in {:.2} s ({} cells)",
                slot.try_to_rfc3339_string().unwrap_or_default(),
                run.id,
                lag,
                run.status.as_str(),
                took as f64 / 1000.0,
                run.category_results.len()
            );
            shown.push(run.id);
        }
        if Instant::now() > deadline {
            bail!(
                "the scheduler started no runs in {RUN_TIMEOUT:?} (see target/demo/scheduler.log)"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A `manual_api` run of the demo scope, enqueued.
async fn manual_scan(pipeline: &Pipeline, scope_id: ObjectId) -> anyhow::Result<ScanRun> {
    Ok(pipeline
        .create_run(RunRequest {
            tenant_id: TENANT.into(),
            scope_id,
            trigger: Trigger::ManualApi {
                requested_by: Some("sv0 demo".into()),
            },
        })
        .await?)
}

async fn wait(domain: &Domain, run_id: ObjectId) -> anyhow::Result<ScanRun> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let run = domain.run(TENANT, run_id).await?;
        if run.status.is_finished() {
            return Ok(run);
        }
        if Instant::now() > deadline {
            bail!(
                "run {run_id} still {} after {RUN_TIMEOUT:?}",
                run.status.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What each cell counts, for the table.
fn meaning(cell: &str) -> &'static str {
    match cell {
        "__sync" => "entities in the source's state (unchanged ones not rewritten)",
        "__eval" => "findings created + updated + resolved",
        "__chain" => "chains created + updated",
        "__stitch" => "stitched paths the tenant holds",
        "__evidence" => "evidence packs built",
        "__driver__" => "the connector driver",
        _ => "connector category: items scanned",
    }
}

fn print_run(run: &ScanRun, took: Duration) {
    println!(
        "\nrun {}  trigger {}  status {}  ({:.2} s from enqueue)",
        run.id,
        run.trigger.type_name(),
        run.status.as_str(),
        took.as_secs_f64()
    );
    if let Some(error) = &run.error {
        println!("  error: {error}");
    }
    println!(
        "  {:<12} {:<10} {:>7} {:>9}  counts",
        "cell", "status", "items", "duration"
    );
    // Connector categories first, then the stages in pipeline order.
    let order = |name: &str| {
        sv0_domain::category::STAGE_CELLS
            .iter()
            .position(|s| *s == name)
            .map_or(0, |i| i + 1)
    };
    let mut cells: Vec<_> = run.category_results.iter().collect();
    cells.sort_by_key(|(name, _)| (order(name.as_str()), name.as_str().to_string()));
    for (name, cell) in cells {
        let duration = cell.ended_at.map(|end| {
            (end.timestamp_millis() - cell.started_at.timestamp_millis()) as f64 / 1000.0
        });
        println!(
            "  {:<12} {:<10} {:>7} {:>9}  {}",
            name.as_str(),
            format!("{:?}", cell.status).to_lowercase(),
            cell.items_scanned,
            duration.map_or("—".into(), |d| format!("{d:.2} s")),
            meaning(name.as_str())
        );
        for error in &cell.errors {
            println!(
                "               ! {}",
                error.lines().next().unwrap_or_default()
            );
        }
    }
}

async fn print_results(domain: &Domain, run: &ScanRun) -> anyhow::Result<()> {
    let findings = domain.open_findings(TENANT).await?;
    println!("\nfindings: {} open", findings.len());
    let mut sorted: Vec<_> = findings.iter().map(|k| &k.item).collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.entity_id.cmp(&b.entity_id))
    });
    for finding in sorted.iter().take(8) {
        println!(
            "  {:<9} {:<27} {}",
            format!("{:?}", finding.severity).to_lowercase(),
            finding.rule,
            finding.title
        );
    }
    if sorted.len() > 8 {
        println!("  … and {} more", sorted.len() - 8);
    }
    let mut chains = domain.live_chains(TENANT).await?;
    chains.sort_by(|a, b| a.item.path.cmp(&b.item.path));
    println!(
        "\nchains (internet-exposed machine → identity → role → sensitive storage): {}",
        chains.len()
    );
    for chain in chains.iter().take(5) {
        println!("  {}", chain.item.path.join(" → "));
    }
    if chains.len() > 5 {
        println!("  … and {} more", chains.len() - 5);
    }
    let mut stitched = domain.live_stitched_paths(TENANT).await?;
    stitched.sort_by(|a, b| a.item.path.cmp(&b.item.path));
    println!(
        "\nstitched paths (across clouds, through one principal): {}",
        stitched.len()
    );
    for path in stitched.iter().take(5) {
        let p = &path.item.path;
        println!(
            "  {} → {} ⇒ {} (as {})",
            p[0],
            p[1],
            p[2..].join(" → "),
            path.item.principal
        );
    }
    if stitched.len() > 5 {
        println!("  … and {} more", stitched.len() - 5);
    }
    if let Some(pack) = domain.evidence_pack_of_run(TENANT, run.id).await? {
        println!(
            "\nevidence pack {}: {} findings, {} chains, {} stitched paths, sha256 {}",
            pack.id,
            pack.findings.len(),
            pack.chains.len(),
            pack.stitched_paths.len(),
            &pack.hash[..16]
        );
    }
    Ok(())
}

/// `sv0 ROLE` (`worker`, `scheduler` or `admin-api`) on the demo database, logging to `logs/NAME.log`, with
/// `env` (the credential) in its environment.
fn sv0_process(
    uri: &str,
    logs: &Path,
    role: &str,
    name: &str,
    extra: &[&str],
    env: Option<(&str, &str)>,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg(role)
        .args(["--mongodb-uri", uri, "--database", DATABASE])
        .args(extra);
    if let Some((variable, value)) = env {
        command.env(variable, value);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(child)
}

/// SIGTERM (a worker drains), then wait a little; `kill_on_drop` covers the rest.
async fn stop(worker: &mut Child) {
    if let Some(pid) = worker.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), worker.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(logs: &Path, name: &str, script: &str) -> Process {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = Command::new("sh")
            .args(["-c", script])
            .stdout(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process::new(name.into(), logs, child)
    }

    #[tokio::test]
    async fn the_first_process_to_exit_is_named_with_its_status_and_the_end_of_its_log() {
        let logs = tempfile::tempdir().unwrap();
        let mut processes = vec![
            process(logs.path(), "worker-1", "sleep 30"),
            process(
                logs.path(),
                "admin-api",
                "seq 1 30 | sed 's/^/line /'; sleep 0.3; exit 3",
            ),
            process(logs.path(), "scheduler", "sleep 30"),
        ];
        let error = tokio::time::timeout(Duration::from_secs(10), first_exit(&mut processes))
            .await
            .expect("the exit was noticed")
            .to_string();
        assert!(
            error.starts_with(
                "the admin-api process exited (exit status: 3) while the demo was serving"
            ),
            "{error}"
        );
        let tail: Vec<&str> = error.lines().skip(1).map(str::trim).collect();
        let expected: Vec<String> = (21..=30).map(|n| format!("line {n}")).collect();
        assert_eq!(tail, expected);
        assert!(processes[0].child.try_wait().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_process_killed_by_a_signal_is_reported_so() {
        let logs = tempfile::tempdir().unwrap();
        let mut processes = vec![process(logs.path(), "admin-api", "sleep 30")];
        let pid = processes[0].child.id().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let error = first_exit(&mut processes).await.to_string();
        assert!(
            error.contains("admin-api process exited (signal: 9"),
            "{error}"
        );
    }
}
