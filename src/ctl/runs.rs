//! `sv0 ctl runs`: list and show scan runs, retry a finished one, cancel a queued or running one.

use serde_json::{Value, json};

use super::args::RunsCommand;
use super::client::{Client, push, segment};
use super::tables::{run_detail, runs_table};

pub(super) async fn run(
    client: &Client,
    command: RunsCommand,
    print: &impl Fn(&Value, fn(&Value)),
) -> anyhow::Result<()> {
    match command {
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
    }
    Ok(())
}
