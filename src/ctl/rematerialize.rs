//! `sv0 ctl rematerialize … --wait` is the CI step after a deploy: it starts (or, for a deploy
//! id seen before, finds) one deploy-gate run per tenant, reports progress on stderr, and exits
//! 0 only when every run succeeded (1 when one failed, timed out or was cancelled, 2 when
//! `--timeout` passed first).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::args::RematerializeArgs;
use super::client::{Client, segment};
use super::tables::{json_text, line, runs_table, text};

pub(super) async fn run(
    client: &Client,
    args: RematerializeArgs,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut body = json!({
        "stages": args.stages,
        "deploy": {"id": args.deploy_id},
    });
    if let Some(commit) = args.commit {
        body["deploy"]["commit"] = json!(commit);
    }
    if !args.tenants.is_empty() {
        body["tenants"] = json!(args.tenants);
    }
    let started = client.post("/admin/rematerialize", body).await?;
    let runs: Vec<String> = started["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|r| r["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "deploy {}: {} deploy-gate run(s): {}",
        line(started["deploy_id"].as_str().unwrap_or("")),
        runs.len(),
        line(&runs.join(", "))
    );
    if !args.wait {
        if json {
            println!("{}", json_text(&started));
        } else {
            runs_table(&json!({ "items": started["runs"] }));
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last = Vec::new();
    loop {
        let mut finished = Vec::new();
        for id in &runs {
            finished.push(client.get(&format!("/scan-runs/{}", segment(id)?)).await?);
        }
        let statuses: Vec<String> = finished
            .iter()
            .map(|r| r["status"].as_str().unwrap_or("?").to_string())
            .collect();
        if statuses != last {
            let summary: Vec<String> = runs
                .iter()
                .zip(&statuses)
                .map(|(id, status)| format!("{id} {status}"))
                .collect();
            eprintln!("  {}", line(&summary.join(", ")));
            last = statuses.clone();
        }
        if statuses
            .iter()
            .all(|s| !matches!(s.as_str(), "queued" | "running"))
        {
            if json {
                println!("{}", json_text(&json!(finished)));
            } else {
                runs_table(&json!({ "items": finished }));
            }
            let failed: Vec<&Value> = finished
                .iter()
                .filter(|r| r["status"] != "succeeded")
                .collect();
            if failed.is_empty() {
                eprintln!("every run succeeded");
                return Ok(std::process::ExitCode::SUCCESS);
            }
            for run in failed {
                eprintln!(
                    "run {} {}: {}",
                    text(run, "id"),
                    text(run, "status"),
                    line(run["error"].as_str().unwrap_or(""))
                );
            }
            return Ok(std::process::ExitCode::from(1));
        }
        if Instant::now() >= deadline {
            eprintln!("--timeout {} s passed with runs still going", args.timeout);
            return Ok(std::process::ExitCode::from(2));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
