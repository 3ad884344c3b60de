//! `sv0 ctl`: the admin API from a shell or a CI step. The API's address and a token come from
//! the environment (`SV0_API_URL`, `SV0_API_TOKEN`) or a token file (`--api-token-file`), never
//! from a flag's value, which `ps` and shell history would keep; tables for people, `--json` for
//! scripts. An API refusal is printed with the field it names and exits 1.
//!
//! Here: the entry point, which checks the URL and reads the token before any request, and the
//! dispatch. Each command's flow has a file of its own, named as the API's route file for the
//! same resource (`admin-api/src/routes/`); `args` holds the clap types, `client` the HTTP
//! client, `tables` the printing.

mod args;
mod client;
mod instances;
mod jobs;
mod rematerialize;
mod runs;
mod scopes;
mod tables;
mod tokens;

use serde_json::Value;

pub use args::CtlArgs;
use args::CtlCommand;
use client::{Client, api_token, check_api_url};
use tables::json_text;

pub async fn run(args: CtlArgs) -> anyhow::Result<std::process::ExitCode> {
    // Both checks come before the client exists, so a refused URL never sees a connection.
    check_api_url(&args.api_url, args.insecure_http)?;
    let client = Client {
        http: reqwest::Client::new(),
        base: args.api_url,
        token: api_token(args.api_token_file.as_deref())?,
    };
    let json = args.json;
    let print = |value: &Value, table: fn(&Value)| {
        if json {
            println!("{}", json_text(value));
        } else {
            table(value);
        }
    };
    match args.command {
        CtlCommand::Runs(command) => runs::run(&client, command, &print).await?,
        CtlCommand::Rematerialize(remat) => return rematerialize::run(&client, remat, json).await,
        CtlCommand::Scopes(command) => scopes::run(&client, command, &print).await?,
        CtlCommand::Instances(command) => instances::run(&client, command, &print).await?,
        CtlCommand::Jobs(command) => jobs::run(&client, command, &print).await?,
        CtlCommand::Token(command) => tokens::run(&client, command, &print).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}
