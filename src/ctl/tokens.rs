//! `sv0 ctl token`: list the API's tokens, revoke one (they are created with `sv0 token create`,
//! next to the database).

use serde_json::{Value, json};

use super::args::TokenCommand;
use super::client::{Client, segment};
use super::tables::plain;

pub(super) async fn run(
    client: &Client,
    command: TokenCommand,
    print: &impl Fn(&Value, fn(&Value)),
) -> anyhow::Result<()> {
    match command {
        TokenCommand::List => print(&client.get("/tokens?limit=500").await?, plain),
        TokenCommand::Revoke { id } => print(
            &client
                .post(&format!("/tokens/{}/revoke", segment(&id)?), json!(null))
                .await?,
            plain,
        ),
    }
    Ok(())
}
