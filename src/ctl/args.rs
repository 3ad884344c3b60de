//! `sv0 ctl`'s command line: the clap types, one subcommand per resource of the admin API. The
//! token is never among them: a flag's value is kept by `ps` and shell history.

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The admin API's base URL.
    #[arg(long, env = "SV0_API_URL", default_value = "http://127.0.0.1:8080")]
    pub(super) api_url: String,
    /// A file whose first line is the bearer token (`sv0 token create`); without it the token is
    /// read from `SV0_API_TOKEN`.
    #[arg(long, value_name = "FILE")]
    pub(super) api_token_file: Option<std::path::PathBuf>,
    /// Send the token over plain `http://` to a host other than this machine's loopback.
    #[arg(long)]
    pub(super) insecure_http: bool,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum CtlCommand {
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
pub(super) enum RunsCommand {
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
pub(super) struct RematerializeArgs {
    /// chains, stitched_paths, or both (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(super) stages: Vec<String>,
    /// A tenant (repeat for several); default: every active tenant.
    #[arg(long = "tenant")]
    pub(super) tenants: Vec<String>,
    /// The deploy's id: running the step again for the same deploy creates nothing new.
    #[arg(long)]
    pub(super) deploy_id: String,
    #[arg(long)]
    pub(super) commit: Option<String>,
    /// Wait for every run to finish; exit 0 only if all succeeded.
    #[arg(long)]
    pub(super) wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(super) timeout: u64,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum ScopesCommand {
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
pub(super) enum InstancesCommand {
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
pub(super) enum JobsCommand {
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
pub(super) struct JobFilterArgs {
    #[arg(long)]
    pub(super) kind: Vec<String>,
    #[arg(long)]
    pub(super) status: Vec<String>,
    #[arg(long)]
    pub(super) tenant: Option<String>,
    /// The run the jobs belong to.
    #[arg(long)]
    pub(super) group: Option<String>,
    /// `path=value` (repeat for several).
    #[arg(long)]
    pub(super) payload: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(super) struct BulkArgs {
    #[arg(long = "id")]
    pub(super) ids: Vec<String>,
    #[command(flatten)]
    pub(super) filter: JobFilterArgs,
    #[arg(long)]
    pub(super) reason: String,
    /// Act instead of counting. The API takes it with `--id`, `--tenant`, `--kind` or
    /// `--status`, or with `--expect`.
    #[arg(long)]
    pub(super) execute: bool,
    /// The count the dry run printed (`matched`): if as many jobs do not match now, nothing is
    /// changed. It catches a stale or mistaken filter, not jobs enqueued since.
    #[arg(long, requires = "execute")]
    pub(super) expect: Option<u64>,
    /// Count only (the default); kept so that scripts which asked for it still work.
    #[arg(long, conflicts_with = "execute")]
    pub(super) dry_run: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum TokenCommand {
    List,
    Revoke { id: String },
}
