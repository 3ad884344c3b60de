//! `sv0 enqueue`: put jobs on the queue from a shell or a script. Prints one JSON line per job:
//! `{"id": …, "created": true|false}` (false: an existing job held the dedup key).

use anyhow::Context;
use mongodb::bson::Document;
use sv0_domain::DomainError;
use sv0_domain::limits::{self, MAX_DEPTH};
use sv0_queue::{NewJob, Queue};

/// The largest payload, as BSON: a payload names what to work on (the pipeline's own jobs carry
/// a run id), not the work's data, so it is bounded as a scan scope is.
const MAX_PAYLOAD_BYTES: usize = limits::MAX_SCOPE_BYTES;

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
    // What the flags carry ends up in job lists, terminals and log lines.
    limits::check_text("--kind", &args.kind)?;
    for (flag, value) in [
        ("--tenant-id", &args.tenant_id),
        ("--group-id", &args.group_id),
        ("--dedup-key", &args.dedup_key),
    ] {
        if let Some(value) = value {
            limits::check_text(flag, value)?;
        }
    }
    // Measured on the text first: parsing recurses per level.
    if let Some(path) = limits::json_text_too_deep(args.payload.as_bytes()) {
        let field = match path.chars().next() {
            None => "--payload".to_string(),
            Some('[') => format!("--payload{path}"),
            Some(_) => format!("--payload.{path}"),
        };
        return Err(
            DomainError::invalid(field, format!("nested deeper than {MAX_DEPTH} levels")).into(),
        );
    }
    let payload: serde_json::Value =
        serde_json::from_str(&args.payload).context("--payload is not JSON")?;
    anyhow::ensure!(payload.is_object(), "--payload must be a JSON object");
    let payload: Document = mongodb::bson::to_bson(&payload)
        .context("--payload")?
        .as_document()
        .cloned()
        .context("--payload must be a JSON object")?;
    limits::check_document("--payload", &payload, MAX_PAYLOAD_BYTES)?;
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
