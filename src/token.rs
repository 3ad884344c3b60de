//! `sv0 token`: the admin API's bearer tokens, managed next to the database (so the first token
//! needs no API): create one for a role (printed once, never again), list them, revoke one.

use anyhow::Context;
use sv0_admin_api::{Role, Tokens};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, clap::Subcommand)]
enum TokenAction {
    /// Create a token; it is printed once on stdout, and only its digest is stored.
    Create {
        /// super_admin, operator, ci or read_only.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Whose token this is (shown in the audit log and on runs it starts).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: crate::DbArgs,
    },
    /// List every token: id, name, role, created, revoked.
    List {
        #[command(flatten)]
        db: crate::DbArgs,
    },
    /// Revoke a token by its id: refused from the next request on.
    Revoke {
        id: String,
        #[command(flatten)]
        db: crate::DbArgs,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| "must be super_admin, operator, ci or read_only".to_string())
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        TokenAction::Create { role, name, db } => {
            let tokens = Tokens::new(&db.connect().await?);
            let issued = tokens
                .create(&name, role)
                .await
                .context("creating the token")?;
            eprintln!(
                "token {} ({}, {}): shown once, keep it now",
                issued.info.id,
                issued.info.name,
                role.as_str()
            );
            println!("{}", issued.token);
        }
        TokenAction::List { db } => {
            let tokens = Tokens::new(&db.connect().await?);
            println!(
                "{:<24}  {:<12}  {:<24}  {:<24}  name",
                "id", "role", "created", "revoked"
            );
            const PAGE: usize = 500;
            let mut after = None;
            loop {
                let page = tokens
                    .list(after, PAGE as i64)
                    .await
                    .context("listing tokens")?;
                let full = page.len() == PAGE;
                after = page
                    .last()
                    .and_then(|t| mongodb::bson::oid::ObjectId::parse_str(&t.id).ok());
                for token in page {
                    println!(
                        "{:<24}  {:<12}  {:<24}  {:<24}  {}",
                        token.id,
                        token.role.as_str(),
                        token.created_at.try_to_rfc3339_string().unwrap_or_default(),
                        token
                            .revoked_at
                            .and_then(|t| t.try_to_rfc3339_string().ok())
                            .unwrap_or_else(|| "-".into()),
                        token.name
                    );
                }
                if !full || after.is_none() {
                    break;
                }
            }
        }
        TokenAction::Revoke { id, db } => {
            let tokens = Tokens::new(&db.connect().await?);
            let token = tokens.revoke(&id).await.context("revoking the token")?;
            println!("revoked {} ({})", token.id, token.name);
        }
    }
    Ok(())
}
