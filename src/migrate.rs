//! `sv0 migrate`: creates every collection's indexes, then exits. The one-shot step a
//! deployment runs before its workers, schedulers and admin API start (each of them also creates
//! the indexes it needs at start-up, idempotently, so a missed migrate slows nothing but their
//! first start).

use anyhow::Context;
use sv0_admin_api::AuditLog;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    db: crate::DbArgs,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let db = args.db.connect().await?;
    crate::admin_api::ensure_indexes(&db).await?;
    AuditLog::new(&db)
        .ensure_indexes()
        .await
        .context("creating the audit log's indexes")?;
    println!("indexes ready in database {}", args.db.database);
    Ok(())
}
