//! `sv0 ctl instances`: list and show a tenant's connector instances, enable or disable one,
//! delete one.

use reqwest::Method;
use serde_json::{Value, json};

use super::args::InstancesCommand;
use super::client::{Client, segment};
use super::tables::{instances_table, line, plain};

pub(super) async fn run(
    client: &Client,
    command: InstancesCommand,
    print: &impl Fn(&Value, fn(&Value)),
) -> anyhow::Result<()> {
    match command {
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
    }
    Ok(())
}
