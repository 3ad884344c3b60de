//! `sv0 ctl`: the admin API from a shell or a CI step. The API's address and a token come from
//! the environment (`SV0_API_URL`, `SV0_API_TOKEN`) or a token file (`--api-token-file`), never
//! from a flag's value, which `ps` and shell history would keep; tables for people, `--json` for
//! scripts. An API refusal is printed with the field it names and exits 1.
//!
//! What the API returns was partly written by connectors and users (errors, stderr, names,
//! notes): it is printed with terminal control characters and bidi marks made visible, so that
//! it cannot move the cursor, clear the screen or reorder what the operator reads.
//!
//! `sv0 ctl rematerialize … --wait` is the CI step after a deploy: it starts (or, for a deploy
//! id seen before, finds) one deploy-gate run per tenant, reports progress on stderr, and exits
//! 0 only when every run succeeded (1 when one failed, timed out or was cancelled, 2 when
//! `--timeout` passed first).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The admin API's base URL.
    #[arg(long, env = "SV0_API_URL", default_value = "http://127.0.0.1:8080")]
    api_url: String,
    /// A file whose first line is the bearer token (`sv0 token create`); without it the token is
    /// read from `SV0_API_TOKEN`.
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<std::path::PathBuf>,
    /// Send the token over plain `http://` to a host other than this machine's loopback.
    #[arg(long)]
    insecure_http: bool,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// Scan runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Rebuild chains and/or stitched paths after a deploy: one deploy-gate run per tenant.
    Rematerialize(RematerializeArgs),
    /// Scan scopes and their schedules.
    #[command(subcommand)]
    Scopes(ScopesCommand),
    /// Connector instances.
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// The queue's jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// API tokens (created with `sv0 token create`).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
enum RunsCommand {
    /// Newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        trigger: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run with every cell.
    Show { id: String },
    /// A new run doing what a finished run did.
    Retry { id: String },
    /// Cancel a queued or running run.
    Cancel { id: String },
}

#[derive(Debug, clap::Args)]
struct RematerializeArgs {
    /// chains, stitched_paths, or both (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    stages: Vec<String>,
    /// A tenant (repeat for several); default: every active tenant.
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// The deploy's id: running the step again for the same deploy creates nothing new.
    #[arg(long)]
    deploy_id: String,
    #[arg(long)]
    commit: Option<String>,
    /// Wait for every run to finish; exit 0 only if all succeeded.
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
}

#[derive(Debug, clap::Subcommand)]
enum ScopesCommand {
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        paused: Option<bool>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        tenant: String,
        id: String,
    },
    /// Pause, with a note saying why.
    Pause {
        tenant: String,
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    Resume {
        tenant: String,
        id: String,
    },
    /// Set the schedule: `--every SECONDS`, or `--cron EXPR --time-zone ZONE`; or `--clear`.
    Edit {
        tenant: String,
        id: String,
        #[arg(long, conflicts_with_all = ["cron", "clear"])]
        every: Option<i64>,
        #[arg(long, requires = "time_zone", conflicts_with = "clear")]
        cron: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
        /// skip, buffer_one or allow.
        #[arg(long)]
        overlap: Option<String>,
        /// The catch-up window, in seconds.
        #[arg(long)]
        catch_up_window: Option<i64>,
        /// latest or all.
        #[arg(long)]
        catch_up_run: Option<String>,
        /// Remove the schedule: the scope runs only on request.
        #[arg(long)]
        clear: bool,
    },
    /// Run the scope now.
    Trigger {
        tenant: String,
        id: String,
    },
    /// Run every slot of the schedule between two RFC 3339 times, each once.
    Backfill {
        tenant: String,
        id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum InstancesCommand {
    List {
        tenant: String,
    },
    Show {
        tenant: String,
        id: String,
    },
    /// Enable or disable an instance (a disabled instance's scopes do not run).
    SetStatus {
        tenant: String,
        id: String,
        /// active or disabled.
        status: String,
    },
    Delete {
        tenant: String,
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum JobsCommand {
    /// Newest first; `--payload path=value` matches a payload field.
    List {
        #[command(flatten)]
        filter: JobFilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        id: String,
    },
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
    },
    Retry {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Cancel jobs by id (`--id`, repeat) or by filter: counts them by tenant and kind unless
    /// `--execute`.
    BulkCancel(BulkArgs),
    /// Retry failed, dead or cancelled jobs by id or by filter: counts them by tenant and kind
    /// unless `--execute`.
    BulkRetry(BulkArgs),
}

#[derive(Debug, clap::Args)]
struct JobFilterArgs {
    #[arg(long)]
    kind: Vec<String>,
    #[arg(long)]
    status: Vec<String>,
    #[arg(long)]
    tenant: Option<String>,
    /// The run the jobs belong to.
    #[arg(long)]
    group: Option<String>,
    /// `path=value` (repeat for several).
    #[arg(long)]
    payload: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct BulkArgs {
    #[arg(long = "id")]
    ids: Vec<String>,
    #[command(flatten)]
    filter: JobFilterArgs,
    #[arg(long)]
    reason: String,
    /// Act instead of counting. The API takes it with `--id`, `--tenant`, `--kind` or
    /// `--status`, or with `--expect`.
    #[arg(long)]
    execute: bool,
    /// The count the dry run printed (`matched`): if as many jobs do not match now, nothing is
    /// changed. It catches a stale or mistaken filter, not jobs enqueued since.
    #[arg(long, requires = "execute")]
    expect: Option<u64>,
    /// Count only (the default); kept so that scripts which asked for it still work.
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    List,
    Revoke { id: String },
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(
                method.clone(),
                format!("{}/api/v1{path}", self.base.trim_end_matches('/')),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.with_context(|| {
            format!(
                "{method} {path}: the API at {} did not answer",
                line(&self.base)
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = &value["error"];
            let message = error["message"].as_str().unwrap_or(text.as_str());
            match error["field"].as_str() {
                Some(field) => bail!(
                    "{method} {path}: {status}: field `{}`: {}",
                    line(field),
                    line(
                        message
                            .strip_prefix(&format!("{field}: "))
                            .unwrap_or(message)
                    )
                ),
                None => bail!("{method} {path}: {status}: {}", line(message)),
            }
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

pub async fn run(args: CtlArgs) -> anyhow::Result<std::process::ExitCode> {
    // Both checks come before the client exists, so a refused URL never sees a connection.
    check_api_url(&args.api_url, args.insecure_http)?;
    let client = Client {
        http: reqwest::Client::new(),
        base: args.api_url,
        token: api_token(args.api_token_file.as_deref())?,
    };
    let json = args.json;
    let print = |value: &Value, table: fn(&Value)| {
        if json {
            println!("{}", json_text(value));
        } else {
            table(value);
        }
    };
    match args.command {
        CtlCommand::Runs(command) => match command {
            RunsCommand::List {
                tenant,
                status,
                trigger,
                limit,
            } => {
                let mut query = vec![format!("limit={limit}")];
                push(&mut query, "tenant_id", tenant);
                push(&mut query, "status", status);
                push(&mut query, "trigger", trigger);
                let page = client
                    .get(&format!("/scan-runs?{}", query.join("&")))
                    .await?;
                print(&page, runs_table);
            }
            RunsCommand::Show { id } => print(
                &client.get(&format!("/scan-runs/{}", segment(&id)?)).await?,
                run_detail,
            ),
            RunsCommand::Retry { id } => print(
                &client
                    .post(&format!("/scan-runs/{}/retry", segment(&id)?), json!(null))
                    .await?,
                run_detail,
            ),
            RunsCommand::Cancel { id } => print(
                &client
                    .post(&format!("/scan-runs/{}/cancel", segment(&id)?), json!(null))
                    .await?,
                run_detail,
            ),
        },
        CtlCommand::Rematerialize(remat) => return rematerialize(&client, remat, json).await,
        CtlCommand::Scopes(command) => scopes(&client, command, &print).await?,
        CtlCommand::Instances(command) => match command {
            InstancesCommand::List { tenant } => print(
                &client
                    .get(&format!("/tenants/{}/instances", segment(&tenant)?))
                    .await?,
                instances_table,
            ),
            InstancesCommand::Show { tenant, id } => print(
                &client
                    .get(&format!(
                        "/tenants/{}/instances/{}",
                        segment(&tenant)?,
                        segment(&id)?
                    ))
                    .await?,
                plain,
            ),
            InstancesCommand::SetStatus { tenant, id, status } => print(
                &client
                    .call(
                        Method::PATCH,
                        &format!("/tenants/{}/instances/{}", segment(&tenant)?, segment(&id)?),
                        Some(json!({ "status": status })),
                    )
                    .await?,
                plain,
            ),
            InstancesCommand::Delete { tenant, id } => {
                client
                    .call(
                        Method::DELETE,
                        &format!("/tenants/{}/instances/{}", segment(&tenant)?, segment(&id)?),
                        None,
                    )
                    .await?;
                println!("deleted {}", line(&id));
            }
        },
        CtlCommand::Jobs(command) => jobs(&client, command, &print).await?,
        CtlCommand::Token(command) => match command {
            TokenCommand::List => print(&client.get("/tokens?limit=500").await?, plain),
            TokenCommand::Revoke { id } => print(
                &client
                    .post(&format!("/tokens/{}/revoke", segment(&id)?), json!(null))
                    .await?,
                plain,
            ),
        },
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn push(query: &mut Vec<String>, key: &str, value: Option<String>) {
    if let Some(value) = value {
        query.push(format!("{key}={}", encode(&value)));
    }
}

/// Everything but the unreserved characters: in a query value or a path segment, nothing the
/// caller typed can end the value, start another, or become a `/`.
const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, ENCODED).to_string()
}

/// One path segment, percent-encoded. `.`, `..` and the empty segment are refused: URL parsing
/// resolves them (even spelled `%2E%2E`) against the path before the request leaves, which would
/// send the caller's token to another route.
fn segment(value: &str) -> anyhow::Result<String> {
    if matches!(value, "" | "." | "..") {
        bail!("`{}` is not an id", line(value));
    }
    Ok(encode(value))
}

/// Refuses a plain `http://` URL to anything but this machine's loopback unless
/// `--insecure-http`: the bearer token would cross the network in clear.
fn check_api_url(api_url: &str, insecure_http: bool) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(api_url)
        .with_context(|| format!("--api-url {} is not a URL", line(api_url)))?;
    // The parser has already lowercased the host and turned every spelling of an IPv4 address
    // (`127.1`, `0x7f.0.0.1`) into dotted decimal, so these comparisons see what is connected to.
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback()),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || insecure_http => Ok(()),
        "http" => bail!(
            "--api-url {}: plain http:// to a host other than loopback would send the token in \
             clear; use https://, or pass --insecure-http to send it anyway",
            line(api_url)
        ),
        other => bail!(
            "--api-url {}: the scheme is `{}`: use https:// (or http:// to loopback)",
            line(api_url),
            line(other)
        ),
    }
}

/// The token from `--api-token-file` (its first line) if given, else from `SV0_API_TOKEN`.
fn api_token(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let token = match file {
        Some(file) => {
            let contents = std::fs::read_to_string(file)
                .with_context(|| format!("--api-token-file {}", file.display()))?;
            let token = contents.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                bail!(
                    "--api-token-file {}: the first line is empty",
                    file.display()
                );
            }
            token
        }
        None => match std::env::var("SV0_API_TOKEN") {
            Ok(token) if !token.trim().is_empty() => token.trim().to_string(),
            _ => bail!("no API token: set SV0_API_TOKEN or pass --api-token-file FILE"),
        },
    };
    Ok(token)
}

async fn rematerialize(
    client: &Client,
    args: RematerializeArgs,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut body = json!({
        "stages": args.stages,
        "deploy": {"id": args.deploy_id},
    });
    if let Some(commit) = args.commit {
        body["deploy"]["commit"] = json!(commit);
    }
    if !args.tenants.is_empty() {
        body["tenants"] = json!(args.tenants);
    }
    let started = client.post("/admin/rematerialize", body).await?;
    let runs: Vec<String> = started["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|r| r["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "deploy {}: {} deploy-gate run(s): {}",
        line(started["deploy_id"].as_str().unwrap_or("")),
        runs.len(),
        line(&runs.join(", "))
    );
    if !args.wait {
        if json {
            println!("{}", json_text(&started));
        } else {
            runs_table(&json!({ "items": started["runs"] }));
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last = Vec::new();
    loop {
        let mut finished = Vec::new();
        for id in &runs {
            finished.push(client.get(&format!("/scan-runs/{}", segment(id)?)).await?);
        }
        let statuses: Vec<String> = finished
            .iter()
            .map(|r| r["status"].as_str().unwrap_or("?").to_string())
            .collect();
        if statuses != last {
            let summary: Vec<String> = runs
                .iter()
                .zip(&statuses)
                .map(|(id, status)| format!("{id} {status}"))
                .collect();
            eprintln!("  {}", line(&summary.join(", ")));
            last = statuses.clone();
        }
        if statuses
            .iter()
            .all(|s| !matches!(s.as_str(), "queued" | "running"))
        {
            if json {
                println!("{}", json_text(&json!(finished)));
            } else {
                runs_table(&json!({ "items": finished }));
            }
            let failed: Vec<&Value> = finished
                .iter()
                .filter(|r| r["status"] != "succeeded")
                .collect();
            if failed.is_empty() {
                eprintln!("every run succeeded");
                return Ok(std::process::ExitCode::SUCCESS);
            }
            for run in failed {
                eprintln!(
                    "run {} {}: {}",
                    text(run, "id"),
                    text(run, "status"),
                    line(run["error"].as_str().unwrap_or(""))
                );
            }
            return Ok(std::process::ExitCode::from(1));
        }
        if Instant::now() >= deadline {
            eprintln!("--timeout {} s passed with runs still going", args.timeout);
            return Ok(std::process::ExitCode::from(2));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn scopes(
    client: &Client,
    command: ScopesCommand,
    print: &impl Fn(&Value, fn(&Value)),
) -> anyhow::Result<()> {
    let path = |tenant: &str, id: &str| -> anyhow::Result<String> {
        Ok(format!(
            "/tenants/{}/scopes/{}",
            segment(tenant)?,
            segment(id)?
        ))
    };
    match command {
        ScopesCommand::List {
            tenant,
            paused,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            push(&mut query, "tenant_id", tenant);
            push(&mut query, "paused", paused.map(|p| p.to_string()));
            print(
                &client.get(&format!("/scopes?{}", query.join("&"))).await?,
                scopes_table,
            );
        }
        ScopesCommand::Show { tenant, id } => {
            print(&client.get(&path(&tenant, &id)?).await?, plain)
        }
        ScopesCommand::Pause { tenant, id, note } => print(
            &client
                .post(
                    &format!("{}/pause", path(&tenant, &id)?),
                    json!({ "note": note }),
                )
                .await?,
            plain,
        ),
        ScopesCommand::Resume { tenant, id } => print(
            &client
                .post(&format!("{}/resume", path(&tenant, &id)?), json!(null))
                .await?,
            plain,
        ),
        ScopesCommand::Edit {
            tenant,
            id,
            every,
            cron,
            time_zone,
            overlap,
            catch_up_window,
            catch_up_run,
            clear,
        } => {
            let schedule = if clear {
                Value::Null
            } else {
                let cadence = match (every, cron) {
                    (Some(seconds), _) => json!({"type": "interval", "every_seconds": seconds}),
                    (None, Some(expression)) => {
                        json!({"type": "cron", "expression": expression, "time_zone": time_zone})
                    }
                    (None, None) => {
                        bail!("give --every SECONDS, --cron EXPR --time-zone ZONE, or --clear")
                    }
                };
                let mut schedule = json!({ "cadence": cadence });
                if let Some(overlap) = overlap {
                    schedule["overlap"] = json!(overlap);
                }
                if catch_up_window.is_some() || catch_up_run.is_some() {
                    let mut catch_up = json!({});
                    if let Some(window) = catch_up_window {
                        catch_up["window_seconds"] = json!(window);
                    }
                    if let Some(run) = catch_up_run {
                        catch_up["run"] = json!(run);
                    }
                    schedule["catch_up"] = catch_up;
                }
                schedule
            };
            print(
                &client
                    .call(
                        Method::PUT,
                        &format!("{}/schedule", path(&tenant, &id)?),
                        Some(json!({ "schedule": schedule })),
                    )
                    .await?,
                plain,
            );
        }
        ScopesCommand::Trigger { tenant, id } => print(
            &client
                .post(&format!("{}/trigger", path(&tenant, &id)?), json!(null))
                .await?,
            run_detail,
        ),
        ScopesCommand::Backfill {
            tenant,
            id,
            from,
            to,
        } => print(
            &client
                .post(
                    &format!("{}/backfill", path(&tenant, &id)?),
                    json!({ "from": from, "to": to }),
                )
                .await?,
            plain,
        ),
    }
    Ok(())
}

async fn jobs(
    client: &Client,
    command: JobsCommand,
    print: &impl Fn(&Value, fn(&Value)),
) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { filter, limit } => {
            let mut query = vec![format!("limit={limit}")];
            for kind in filter.kind {
                query.push(format!("kind={}", encode(&kind)));
            }
            for status in filter.status {
                query.push(format!("status={}", encode(&status)));
            }
            push(&mut query, "tenant_id", filter.tenant);
            push(&mut query, "group_id", filter.group);
            for pair in filter.payload {
                let (path, value) = payload_pair(&pair)?;
                query.push(format!("payload.{}={}", encode(path), encode(value)));
            }
            print(
                &client.get(&format!("/jobs?{}", query.join("&"))).await?,
                jobs_table,
            );
        }
        JobsCommand::Show { id } => print(
            &client.get(&format!("/jobs/{}", segment(&id)?)).await?,
            plain,
        ),
        JobsCommand::Cancel { id, reason } => print(
            &client
                .post(
                    &format!("/jobs/{}/cancel", segment(&id)?),
                    json!({ "reason": reason }),
                )
                .await?,
            plain,
        ),
        JobsCommand::Retry { id, reason } => print(
            &client
                .post(
                    &format!("/jobs/{}/retry", segment(&id)?),
                    json!({ "reason": reason }),
                )
                .await?,
            plain,
        ),
        JobsCommand::BulkCancel(args) => print(
            &client.post("/jobs/bulk/cancel", bulk_body(args)?).await?,
            plain,
        ),
        JobsCommand::BulkRetry(args) => print(
            &client.post("/jobs/bulk/retry", bulk_body(args)?).await?,
            plain,
        ),
    }
    Ok(())
}

fn payload_pair(pair: &str) -> anyhow::Result<(&str, &str)> {
    pair.split_once('=')
        .with_context(|| format!("--payload {pair:?}: write it as path=value"))
}

fn bulk_body(args: BulkArgs) -> anyhow::Result<Value> {
    let mut body = json!({ "reason": args.reason, "dry_run": args.dry_run || !args.execute });
    if let Some(expect) = args.expect {
        body["expect"] = json!(expect);
    }
    if !args.ids.is_empty() {
        body["ids"] = json!(args.ids);
    } else {
        let mut payload = serde_json::Map::new();
        for pair in &args.filter.payload {
            let (path, value) = payload_pair(pair)?;
            let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
            payload.insert(path.to_string(), value);
        }
        body["filter"] = json!({
            "kinds": args.filter.kind,
            "statuses": args.filter.status,
            "tenant_id": args.filter.tenant,
            "group_id": args.filter.group,
            "payload": payload,
        });
    }
    Ok(body)
}

/// `value[key]` for one line of a table or a summary, escaped.
fn text(value: &Value, key: &str) -> String {
    line(value[key].as_str().unwrap_or("-"))
}

/// Any JSON value for one line: a string as itself, anything else as JSON; escaped either way.
fn cell(value: &Value) -> String {
    match value.as_str() {
        Some(text) => line(text),
        None => line(&value.to_string()),
    }
}

/// Text for one line of output: every character a terminal would act on instead of showing
/// (C0 controls, DEL, C1 controls, bidi marks and overrides) becomes a visible escape such as
/// `\u{1b}`, newlines included.
fn line(text: &str) -> String {
    escape(text, false)
}

/// As [`line`], but newlines stay: for text printed on lines of its own.
fn lines(text: &str) -> String {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => escaped.push('\n'),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() || is_bidi(c) => {
                escaped.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => escaped.push(c),
        }
    }
    escaped
}

/// The marks and overrides that reorder how a terminal lays out the text around them.
fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{200e}' | '\u{200f}' | '\u{61c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// The value as indented JSON. serde_json escapes C0 controls in strings but writes DEL, C1
/// controls and bidi marks as they are; they are written here as `\uXXXX` instead, which parses
/// back to the same value, so `--json` read on a terminal is as inert as a table. Outside strings
/// JSON is ASCII and its only controls are the indentation's newlines, so every character
/// escaped here is inside a string, where the escape is valid.
fn json_text(value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut escaped = String::with_capacity(pretty.len());
    for c in pretty.chars() {
        if (c.is_control() && c >= '\u{7f}') || is_bidi(c) {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn runs_table(page: &Value) {
    println!(
        "{:<24}  {:<12}  {:<10}  {:<13}  {:<24}  error",
        "id", "tenant", "status", "trigger", "created"
    );
    for run in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<12}  {:<10}  {:<13}  {:<24}  {}",
            text(run, "id"),
            text(run, "tenant_id"),
            text(run, "status"),
            text(&run["trigger"], "type"),
            text(run, "created_at"),
            line(run["error"].as_str().unwrap_or(""))
        );
    }
}

fn run_detail(run: &Value) {
    println!(
        "run {} ({}) of tenant {}: {}",
        text(run, "id"),
        text(&run["trigger"], "type"),
        text(run, "tenant_id"),
        text(run, "status")
    );
    if let Some(error) = run["error"].as_str() {
        // Continuation lines are indented so that none can pass for a cell's line below.
        println!("  error: {}", lines(error).replace('\n', "\n         "));
    }
    for (name, result) in run["category_results"].as_object().into_iter().flatten() {
        println!(
            "  {:<16} {:<10} {:>8} items  {}",
            line(name),
            text(result, "status"),
            cell(&result["items_scanned"]),
            result["errors"]
                .as_array()
                .map(|e| e.iter().map(cell).collect::<Vec<_>>().join("; "))
                .unwrap_or_default()
        );
    }
}

fn scopes_table(page: &Value) {
    println!(
        "{:<24}  {:<12}  {:<20}  {:<7}  {:<24}  schedule",
        "id", "tenant", "name", "paused", "next run"
    );
    for scope in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<12}  {:<20}  {:<7}  {:<24}  {}",
            text(scope, "id"),
            text(scope, "tenant_id"),
            text(scope, "name"),
            cell(&scope["paused"]),
            text(scope, "next_run_at"),
            cell(&scope["schedule"]["cadence"])
        );
    }
}

fn instances_table(page: &Value) {
    println!("{:<24}  {:<10}  {:<10}  name", "id", "kind", "status");
    for instance in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<10}  {:<10}  {}",
            text(instance, "id"),
            text(instance, "kind"),
            text(instance, "status"),
            text(instance, "name")
        );
    }
}

fn jobs_table(page: &Value) {
    println!(
        "{:<24}  {:<20}  {:<10}  {:>8}  {:<24}  last error",
        "id", "kind", "status", "attempts", "created"
    );
    for job in page["items"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:<20}  {:<10}  {:>8}  {:<24}  {}",
            text(job, "id"),
            text(job, "kind"),
            text(job, "status"),
            format!("{}/{}", cell(&job["attempts"]), cell(&job["max_attempts"])),
            text(job, "created_at"),
            line(job["last_error"].as_str().unwrap_or(""))
        );
    }
}

/// Anything without a table of its own: its JSON, indented.
fn plain(value: &Value) {
    println!("{}", json_text(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_takes_plain_http() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://127.1",
            "http://0x7f.0.0.1",
            "http://[::1]:8080",
            "http://LocalHost:1",
            "https://sv0-admin.internal",
        ] {
            assert!(check_api_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://10.1.2.3:1",
            "http://128.0.0.1",
            "http://[::ffff:10.0.0.1]",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1:1@10.1.2.3",
            "ftp://127.0.0.1",
        ] {
            let refused = check_api_url(url, false).unwrap_err().to_string();
            assert!(
                refused.contains("--insecure-http") || refused.contains("scheme"),
                "{url}: {refused}"
            );
        }
        assert!(check_api_url("http://10.1.2.3:1", true).is_ok());
    }

    #[test]
    fn segments_cannot_leave_their_place_in_the_path() {
        assert_eq!(segment("../tenants").unwrap(), "..%2Ftenants");
        assert_eq!(segment("a b?c#d%").unwrap(), "a%20b%3Fc%23d%25");
        for dots in ["", ".", ".."] {
            assert!(segment(dots).is_err(), "{dots:?}");
        }
    }

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        let hostile = "a\x1b[2J\rb\tc\u{7f}\u{9b}\u{202e}\u{2066}\u{200f}\u{61c}é日\nz";
        assert_eq!(
            line(hostile),
            "a\\u{1b}[2J\\rb\\tc\\u{7f}\\u{9b}\\u{202e}\\u{2066}\\u{200f}\\u{61c}é日\\nz"
        );
        assert!(lines(hostile).ends_with("é日\nz"));
        let value = json!({ "error": hostile });
        let printed = json_text(&value);
        assert!(
            !printed.contains([
                '\u{7f}', '\u{9b}', '\u{202e}', '\u{2066}', '\u{200f}', '\u{61c}'
            ]),
            "{printed}"
        );
        assert_eq!(serde_json::from_str::<Value>(&printed).unwrap(), value);
    }
}
