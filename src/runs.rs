//! `sv0 runs`: a tenant's newest scan runs, one line each, read straight from the database
//! (the admin API will serve the same list with filters and paging).

use anyhow::Context;
use sv0_domain::{Domain, Trigger};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    /// The tenant whose runs to list.
    #[arg(long)]
    tenant: String,
    /// How many of the newest runs (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
    limit: i64,
}

pub async fn run(args: RunsArgs) -> anyhow::Result<()> {
    sv0_domain::validate_tenant_id(&args.tenant).context("--tenant")?;
    let db = args.db.connect().await?;
    let runs = Domain::new(&db)
        .recent_runs(&args.tenant, args.limit)
        .await
        .context("reading the runs")?;
    println!(
        "{:<24}  {:<20}  {:<14}  {:<20}  {:<9}  {:>5}  error",
        "run", "created", "trigger", "slot / detail", "status", "cells"
    );
    for run in runs {
        let detail = match &run.trigger {
            Trigger::Scheduled { slot, .. } => slot.try_to_rfc3339_string().unwrap_or_default(),
            Trigger::DeployGate { deploy_id, .. } => format!("deploy {deploy_id}"),
            Trigger::Retry { retry_of } => format!("retry of {retry_of}"),
            Trigger::ManualApi { requested_by } => requested_by.clone().unwrap_or_default(),
            Trigger::IacLifecycle { event } => event.clone().unwrap_or_default(),
        };
        let created = run.created_at.try_to_rfc3339_string().unwrap_or_default();
        println!(
            "{:<24}  {:<20}  {:<14}  {:<20}  {:<9}  {:>5}  {}",
            run.id.to_hex(),
            &created[..created.len().min(20)],
            run.trigger.type_name(),
            detail,
            run.status.as_str(),
            run.category_results.len(),
            run.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
