//! `sv0 ctl scopes`: list, show, pause and resume scan scopes, edit their schedules, trigger
//! and backfill them.

use anyhow::bail;
use reqwest::Method;
use serde_json::{Value, json};

use super::args::ScopesCommand;
use super::client::{Client, push, segment};
use super::tables::{plain, run_detail, scopes_table};

pub(super) async fn run(
    client: &Client,
    command: ScopesCommand,
    print: &impl Fn(&Value, fn(&Value)),
) -> anyhow::Result<()> {
    let path = |tenant: &str, id: &str| -> anyhow::Result<String> {
        Ok(format!(
            "/tenants/{}/scopes/{}",
            segment(tenant)?,
            segment(id)?
        ))
    };
    match command {
        ScopesCommand::List {
            tenant,
            paused,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            push(&mut query, "tenant_id", tenant);
            push(&mut query, "paused", paused.map(|p| p.to_string()));
            print(
                &client.get(&format!("/scopes?{}", query.join("&"))).await?,
                scopes_table,
            );
        }
        ScopesCommand::Show { tenant, id } => {
            print(&client.get(&path(&tenant, &id)?).await?, plain)
        }
        ScopesCommand::Pause { tenant, id, note } => print(
            &client
                .post(
                    &format!("{}/pause", path(&tenant, &id)?),
                    json!({ "note": note }),
                )
                .await?,
            plain,
        ),
        ScopesCommand::Resume { tenant, id } => print(
            &client
                .post(&format!("{}/resume", path(&tenant, &id)?), json!(null))
                .await?,
            plain,
        ),
        ScopesCommand::Edit {
            tenant,
            id,
            every,
            cron,
            time_zone,
            overlap,
            catch_up_window,
            catch_up_run,
            clear,
        } => {
            let schedule = if clear {
                Value::Null
            } else {
                let cadence = match (every, cron) {
                    (Some(seconds), _) => json!({"type": "interval", "every_seconds": seconds}),
                    (None, Some(expression)) => {
                        json!({"type": "cron", "expression": expression, "time_zone": time_zone})
                    }
                    (None, None) => {
                        bail!("give --every SECONDS, --cron EXPR --time-zone ZONE, or --clear")
                    }
                };
                let mut schedule = json!({ "cadence": cadence });
                if let Some(overlap) = overlap {
                    schedule["overlap"] = json!(overlap);
                }
                if catch_up_window.is_some() || catch_up_run.is_some() {
                    let mut catch_up = json!({});
                    if let Some(window) = catch_up_window {
                        catch_up["window_seconds"] = json!(window);
                    }
                    if let Some(run) = catch_up_run {
                        catch_up["run"] = json!(run);
                    }
                    schedule["catch_up"] = catch_up;
                }
                schedule
            };
            print(
                &client
                    .call(
                        Method::PUT,
                        &format!("{}/schedule", path(&tenant, &id)?),
                        Some(json!({ "schedule": schedule })),
                    )
                    .await?,
                plain,
            );
        }
        ScopesCommand::Trigger { tenant, id } => print(
            &client
                .post(&format!("{}/trigger", path(&tenant, &id)?), json!(null))
                .await?,
            run_detail,
        ),
        ScopesCommand::Backfill {
            tenant,
            id,
            from,
            to,
        } => print(
            &client
                .post(
                    &format!("{}/backfill", path(&tenant, &id)?),
                    json!({ "from": from, "to": to }),
                )
                .await?,
            plain,
        ),
    }
    Ok(())
}
