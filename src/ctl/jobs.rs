//! `sv0 ctl jobs`: list and show the queue's jobs, cancel or retry one, or many by id or filter
//! (counted first unless `--execute`).

use anyhow::Context;
use serde_json::{Value, json};

use super::args::{BulkArgs, JobsCommand};
use super::client::{Client, encode, push, segment};
use super::tables::{jobs_table, plain};

pub(super) async fn run(
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
