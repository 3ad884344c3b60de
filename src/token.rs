//! `sv0 token`: the admin API's bearer tokens, managed next to the database (so the first token
//! needs no API): create one for a role, optionally limited to tenants and to a lifetime
//! (printed once, never again), list them with their last use, revoke one. Creating and
//! revoking are audited like the API's actions, as the OS user who ran the command; an action
//! whose audit entry cannot be written is not taken.

use std::time::Duration;

use anyhow::{Context, bail};
use mongodb::bson::DateTime;
use mongodb::bson::doc;
use sv0_admin_api::{
    Action, Actor, AuditLog, Completion, MAX_TOKEN_TENANTS, NewToken, Role, TokenInfo, Tokens,
};
use sv0_domain::{Domain, DomainError};

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
        /// Limit the token to this tenant (repeat for several, at most 100): it then sees and
        /// acts on their runs, jobs, scopes and instances only. Without it: every tenant.
        #[arg(long = "tenant", value_name = "TENANT_ID")]
        tenants: Vec<String>,
        /// Refuse the token after this long: a number and a unit, `d`, `h` or `m` (`30d`,
        /// `12h`). Without it, the token lives until revoked.
        #[arg(long, value_parser = parse_lifetime, value_name = "DURATION")]
        expires_in: Option<Duration>,
        #[command(flatten)]
        db: crate::DbArgs,
    },
    /// List every token: id, role, tenants, created, expires, last used (to the minute),
    /// revoked, name.
    List {
        #[command(flatten)]
        db: crate::DbArgs,
    },
    /// Revoke a token by its id: refused from the next request on.
    Revoke {
        /// The token's id, as `sv0 token list` shows it.
        id: String,
        #[command(flatten)]
        db: crate::DbArgs,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| "must be super_admin, operator, ci or read_only".to_string())
}

/// `30d`, `12h`, `45m`: from a minute to ten years.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    const RULE: &str = "must be a whole number and a unit: d (days), h (hours) or m (minutes), \
                        e.g. 30d; from 1m to 3650d";
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at_checked(split).ok_or(RULE)?;
    let number: u64 = number.parse().map_err(|_| RULE)?;
    let unit_seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => return Err(RULE.into()),
    };
    let seconds = number.checked_mul(unit_seconds).ok_or(RULE)?;
    if !(60..=3650 * 86_400).contains(&seconds) {
        return Err(RULE.into());
    }
    Ok(Duration::from_secs(seconds))
}

/// The OS user running the command, as the audit log names it: plain characters only.
fn os_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let plain: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-@".contains(*c))
        .take(64)
        .collect();
    if plain.is_empty() {
        "unknown".into()
    } else {
        plain
    }
}

/// A request id for a command's audit entry, as the API gives its requests.
fn command_id() -> String {
    format!("cli-{}", mongodb::bson::oid::ObjectId::new().to_hex())
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        TokenAction::Create {
            role,
            name,
            tenants,
            expires_in,
            db,
        } => create(role, name, tenants, expires_in, &db.connect().await?).await,
        TokenAction::List { db } => list(&Tokens::new(&db.connect().await?)).await,
        TokenAction::Revoke { id, db } => revoke(&id, &db.connect().await?).await,
    }
}

async fn create(
    role: Role,
    name: String,
    mut tenants: Vec<String>,
    expires_in: Option<Duration>,
    db: &mongodb::Database,
) -> anyhow::Result<()> {
    tenants.sort();
    tenants.dedup();
    if tenants.len() > MAX_TOKEN_TENANTS {
        bail!("--tenant: at most {MAX_TOKEN_TENANTS} tenants; leave it out for every tenant");
    }
    // A tenant that does not exist is most likely a typo: a token limited to it reaches nothing.
    let domain = Domain::new(db);
    for tenant in &tenants {
        match domain.tenant(tenant).await {
            Ok(_) => {}
            Err(DomainError::Invalid { reason, .. }) => bail!("--tenant {tenant:?}: {reason}"),
            Err(DomainError::NotFound { .. }) => {
                bail!("--tenant {tenant}: no such tenant (create it first)")
            }
            Err(error) => return Err(error).context("reading the tenants"),
        }
    }
    let mut token = NewToken::new(&name, role).tenants(tenants.clone());
    if let Some(lifetime) = expires_in {
        let millis = i64::try_from(lifetime.as_millis()).context("--expires-in")?;
        token = token.expires_at(DateTime::from_millis(
            DateTime::now().timestamp_millis() + millis,
        ));
    }
    let audit = AuditLog::new(db);
    let action = Action {
        action: "token.create",
        target_kind: "token",
        target_id: String::new(),
        tenant_id: None,
        reason: None,
        detail: doc! { "name": &name, "role": role.as_str(), "tenants": &tenants },
    };
    let pending = audit
        .begin(&Actor::local(&os_user()), &command_id(), None, action)
        .await
        .context("writing the audit entry; no token was created")?;
    let issued = Tokens::new(db)
        .create(&token)
        .await
        .context("creating the token")?;
    pending
        .done(
            Completion::new()
                .target(&issued.info.id)
                .detail(doc! { "expires_at": issued.info.expires_at }),
        )
        .await;
    eprintln!(
        "token {} ({}, {}, {}, {}): shown once, keep it now",
        issued.info.id,
        issued.info.name,
        role.as_str(),
        tenants_text(&issued.info),
        issued
            .info
            .expires_at
            .map(|at| format!("expires {}", time_text(Some(at))))
            .unwrap_or_else(|| "never expires".into()),
    );
    println!("{}", issued.token);
    Ok(())
}

async fn list(tokens: &Tokens) -> anyhow::Result<()> {
    println!(
        "{:<24}  {:<11}  {:<20}  {:<20}  {:<20}  {:<20}  {:<20}  name",
        "id", "role", "tenants", "created", "expires", "last used", "revoked"
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
                "{:<24}  {:<11}  {:<20}  {:<20}  {:<20}  {:<20}  {:<20}  {}",
                token.id,
                token.role.as_str(),
                tenants_text(&token),
                time_text(Some(token.created_at)),
                time_text(token.expires_at),
                time_text(token.last_used_at),
                time_text(token.revoked_at),
                token.name
            );
        }
        if !full || after.is_none() {
            break;
        }
    }
    Ok(())
}

async fn revoke(id: &str, db: &mongodb::Database) -> anyhow::Result<()> {
    if mongodb::bson::oid::ObjectId::parse_str(id).is_err() {
        bail!("id: must be a token id (24 hex digits), as `sv0 token list` shows it");
    }
    let action = Action {
        action: "token.revoke",
        target_kind: "token",
        target_id: id.to_string(),
        tenant_id: None,
        reason: None,
        detail: doc! {},
    };
    let pending = AuditLog::new(db)
        .begin(&Actor::local(&os_user()), &command_id(), None, action)
        .await
        .context("writing the audit entry; the token was not revoked")?;
    let token = Tokens::new(db)
        .revoke(id)
        .await
        .context("revoking the token")?;
    pending
        .done(Completion::new().detail(doc! { "name": &token.name }))
        .await;
    println!("revoked {} ({})", token.id, token.name);
    Ok(())
}

fn tenants_text(token: &TokenInfo) -> String {
    if token.tenants.is_empty() {
        "every tenant".into()
    } else {
        token.tenants.join(",")
    }
}

/// A time to the second, or `-`.
fn time_text(at: Option<DateTime>) -> String {
    at.and_then(|t| t.try_to_rfc3339_string().ok())
        .map(|t| t.chars().take(19).collect::<String>() + "Z")
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_written_and_odd_ones_are_refused() {
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_lifetime("1m"), Ok(Duration::from_secs(60)));
        for odd in [
            "",
            "d",
            "30",
            "30s",
            "0m",
            "-1d",
            "1.5d",
            "3651d",
            "99999999999999999999d",
        ] {
            assert!(parse_lifetime(odd).is_err(), "{odd:?} was accepted");
        }
    }
}
