//! `sv0 enqueue`: put jobs on the queue from a shell or a script. Prints one JSON line per job:
//! `{"id": …, "created": true|false}` (false: an existing job held the dedup key).

use anyhow::Context;
use mongodb::bson::Document;
use sv0_queue::{NewJob, Queue};

#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    db: crate::DbArgs,
    /// The job kind.
    #[arg(long)]
    kind: String,
    /// The payload, a JSON object.
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Higher runs first among due jobs.
    #[arg(long, default_value_t = 0)]
    priority: i32,
    /// Not before this many milliseconds from now.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Attempts before the job is dead.
    #[arg(long, default_value_t = 5)]
    max_attempts: i32,
    /// Enqueue only if no job holds this key; with --count, KEY-0 … KEY-(N-1).
    #[arg(long)]
    dedup_key: Option<String>,
    /// An opaque tenant label stored on the job.
    #[arg(long)]
    tenant_id: Option<String>,
    /// An opaque group label (e.g. a scan run); `cancel_group` acts on it.
    #[arg(long)]
    group_id: Option<String>,
    /// How many jobs, in one bulk insert.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

pub async fn run(args: EnqueueArgs) -> anyhow::Result<()> {
    let payload: serde_json::Value =
        serde_json::from_str(&args.payload).context("--payload is not JSON")?;
    anyhow::ensure!(payload.is_object(), "--payload must be a JSON object");
    let payload: Document = mongodb::bson::to_bson(&payload)?
        .as_document()
        .cloned()
        .context("--payload must be a JSON object")?;
    anyhow::ensure!(
        (1..=100_000).contains(&args.count),
        "--count must be 1 to 100000"
    );
    let jobs: Vec<NewJob> = (0..args.count)
        .map(|n| {
            let mut job = NewJob::new(&args.kind, payload.clone())
                .priority(args.priority)
                .delay(std::time::Duration::from_millis(args.delay_ms))
                .max_attempts(args.max_attempts);
            if let Some(key) = &args.dedup_key {
                job = job.dedup_key(if args.count == 1 {
                    key.clone()
                } else {
                    format!("{key}-{n}")
                });
            }
            if let Some(tenant) = &args.tenant_id {
                job = job.tenant_id(tenant);
            }
            if let Some(group) = &args.group_id {
                job = job.group_id(group);
            }
            job
        })
        .collect();
    for job in &jobs {
        job.validate()?;
    }
    let queue = Queue::new(&args.db.connect().await?);
    queue
        .ensure_indexes()
        .await
        .context("creating the queue's indexes")?;
    for enqueued in queue.enqueue_many(jobs).await? {
        println!(
            "{{\"id\":\"{}\",\"created\":{}}}",
            enqueued.id.to_hex(),
            enqueued.created
        );
    }
    Ok(())
}
