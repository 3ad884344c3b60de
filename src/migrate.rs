//! `sv0 migrate`: creates every collection's indexes, drops the `command` connector instances
//! stored when an API caller could set the program a connector runs, and, given the connector
//! registry, checks every stored instance's kind against it; then exits. The one-shot step a
//! deployment runs before its workers, schedulers and admin API start (each of them also creates
//! the indexes it needs at start-up, idempotently, so a missed migrate slows nothing but their
//! first start; a missed one leaves stored commands in place, which nothing reads any more).

use anyhow::Context;
use sv0_admin_api::AuditLog;
use sv0_domain::Domain;
use sv0_pipeline::ConnectorRegistry;

#[derive(Debug, clap::Args)]
#[command(mut_arg("connectors", |arg| arg.help(
    "The connector registry (TOML) the workers and the admin API read: every stored instance's \
     kind is checked against it. Without one, kinds are not checked")))]
#[command(after_help = "\
Exit status: 0 when done; 1 when something failed, and also when the connector registry was \
given and a stored instance names a kind it lacks: each such instance is listed on stdout \
(tenant, instance id, kind, the registered kinds), since its scans would fail. Without a \
registry, kinds are not checked (the output says so). Running it again is harmless.")]
pub struct MigrateArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    #[command(flatten)]
    connectors: crate::connectors::RegistryArgs,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    // Read first: a registry that does not load fails the step before it changes anything.
    let registry = match &args.connectors.connectors {
        Some(_) => Some(args.connectors.registry()?),
        None => None,
    };
    let db = args.db.connect().await?;
    crate::admin_api::ensure_indexes(&db).await?;
    AuditLog::new(&db)
        .ensure_indexes()
        .await
        .context("creating the audit log's indexes")?;
    println!("indexes ready in database {}", args.db.database);

    let domain = Domain::new(&db);
    let dropped = domain
        .drop_instance_commands()
        .await
        .context("dropping the connector instances' stored commands")?;
    println!(
        "dropped the stored command of {dropped} connector instance(s): the connector registry \
         says what each kind runs"
    );

    let forgotten = domain
        .forget_stored_sightings()
        .await
        .context("removing the live items' stored last_seen_at")?;
    println!(
        "removed the stored last_seen_at of {forgotten} live item(s): when a live item was last \
         seen is when its set was last written (its head says)"
    );

    let Some(registry) = registry else {
        println!(
            "connector kinds not checked: no connector registry given (--connectors FILE or {})",
            sv0_pipeline::registry::CONNECTORS_ENV
        );
        return Ok(());
    };
    let instances = domain
        .instance_kinds()
        .await
        .context("reading the connector instances' kinds")?;
    let unregistered = unregistered_kinds(&registry, &instances);
    if unregistered.is_empty() {
        println!(
            "every connector instance's kind is registered ({} instance(s); registered: {})",
            instances.len(),
            registered(&registry)
        );
        return Ok(());
    }
    for line in &unregistered {
        println!("{line}");
    }
    anyhow::bail!(
        "{} connector instance(s) listed above name a kind the connector registry lacks: their \
         scans would fail; register the kind, or delete the instance",
        unregistered.len()
    )
}

/// One line per instance whose kind `registry` lacks.
fn unregistered_kinds(
    registry: &ConnectorRegistry,
    instances: &[(String, mongodb::bson::oid::ObjectId, String)],
) -> Vec<String> {
    instances
        .iter()
        .filter(|(_, _, kind)| registry.kind(kind).is_err())
        .map(|(tenant, id, kind)| {
            format!(
                "unregistered kind: tenant {tenant} instance {id} kind {kind:?} (registered: {})",
                registered(registry)
            )
        })
        .collect()
}

fn registered(registry: &ConnectorRegistry) -> String {
    if registry.is_empty() {
        "none".to_string()
    } else {
        registry.names().collect::<Vec<_>>().join(", ")
    }
}
