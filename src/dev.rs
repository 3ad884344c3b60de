//! `sv0 dev`: the local stand. Starts devdb, prints its URI and version, checks a write and a
//! read, and stops it (or serves until Ctrl-C).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use mongodb::Client;
use mongodb::bson::{Document, doc};
use sv0_devdb::DevDb;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address to serve on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Persist to this H2 file instead of memory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Turn the oplog on (change streams); an idle watcher then costs a server core.
    #[arg(long)]
    oplog: bool,
    /// Keep serving until Ctrl-C or SIGTERM instead of stopping after the check.
    #[arg(long)]
    serve: bool,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut builder = DevDb::builder().listen(args.listen).oplog(args.oplog);
    if let Some(data) = &args.data {
        builder = builder.data(data);
    }
    let devdb = builder.start().context("starting devdb")?;
    let uri = devdb.uri();
    let client = Client::with_uri_str(&uri)
        .await
        .with_context(|| format!("connecting to {uri}"))?;

    let info = client
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await
        .context("asking devdb for its version")?;
    let version = info.get_str("version").unwrap_or("unknown");
    let wire = client
        .database("admin")
        .run_command(doc! {"isMaster": 1})
        .await
        .context("asking devdb for its wire version")?
        .get_i32("maxWireVersion")
        .unwrap_or_default();
    println!("devdb listening: {uri}");
    println!("reports MongoDB {version} (wire version {wire})");

    let checks = client
        .database("sv0_dev")
        .collection::<Document>("stand_checks");
    let written = checks
        .insert_one(doc! {"checked_at": mongodb::bson::DateTime::now()})
        .await
        .context("writing a check document")?
        .inserted_id;
    let read = checks
        .find_one(doc! {"_id": &written})
        .await
        .context("reading the check document back")?;
    anyhow::ensure!(
        read.is_some(),
        "the check document written to devdb could not be read back"
    );
    println!("write and read back: ok");

    if args.serve {
        println!("serving until Ctrl-C");
        crate::shutdown_signal().await?;
    }
    drop(client);
    devdb.stop().context("stopping devdb")?;
    Ok(())
}
