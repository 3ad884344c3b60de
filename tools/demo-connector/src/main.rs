//! `sv0-demo-connector`: a synthetic connector for the demo and the tests.
//!
//! It keeps the connector contract (docs/connector-contract.md) like any real connector: it reads
//! `--scope-json`, writes `--category-results-out` and `--graph-json`, and exits 0. But it scans
//! nothing: it draws a graph of identities, roles, machines and storage for each cloud of its scope
//! from a seeded RNG. Its graph is deterministic: the same scope gives a byte-identical
//! `graph.json` on every run and every platform; another seed gives another graph.
//!
//! Whatever the seed, for every size ≥ 8 each cloud holds at least one chain (an internet-exposed
//! machine that runs as an identity with a role, privileged, that can access sensitive storage),
//! one admin identity without MFA and one public storage, so the chain stage and every finding
//! rule have something to find. The first half of each cloud's identities are the same people in
//! every cloud (`user{i}@example.com`), so stitching has something to join.
//!
//! A scope may also say how far the clouds have drifted since that graph, for re-scans that find
//! some items changed: `"drift": {"percent": P, "round": R}` renames P % (0 to 100, rounded down)
//! of each cloud's entities for round R (`web-12` becomes `web-12-r3` in round 3). The entities
//! that drift depend on the seed, the cloud and P only, so every round changes the same ones and
//! round 0 is the graph as drawn; their ids, edges and properties stay, so the same items are seen
//! changed, and findings on them show the new names.
//!
//! Like a real connector it needs a credential: it refuses to run without `DEMO_CLOUD_TOKEN` (the
//! credential broker provides it). What it must not do: print that credential anywhere (it only
//! checks that it is there), or reach any network (it opens no socket; it reads and writes only
//! the three files it is given).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use graph::{EntityType, Graph};
use scope::Scope;

mod graph;
mod scope;

const NAME: &str = "sv0-demo-connector";
/// The credential this connector wants. Checked for, never printed.
const TOKEN_VAR: &str = "DEMO_CLOUD_TOKEN";

/// Exit code of a run refused before it started: no credential, an invalid scope.
const EXIT_REFUSED: u8 = 2;
/// Exit code of a run that could not write its output.
const EXIT_FAILED: u8 = 1;

/// The three arguments of the connector contract, all required.
#[derive(Debug, Parser)]
#[command(name = NAME, version, about = "A synthetic connector: a deterministic demo graph")]
struct Args {
    /// The scan scope's `scope` document: `{"clouds": [..], "size": N, "seed": N}`, and
    /// optionally `"drift": {"percent": P, "round": R}`.
    #[arg(long, value_name = "PATH")]
    scope_json: PathBuf,
    /// Where to write `category_results.json`.
    #[arg(long, value_name = "PATH")]
    category_results_out: PathBuf,
    /// Where to write `graph.json`.
    #[arg(long, value_name = "PATH")]
    graph_json: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os(TOKEN_VAR).is_none_or(|token| token.is_empty()) {
        eprintln!(
            "{NAME}: {TOKEN_VAR} is not set: the demo cloud needs a credential (the credential broker provides it)"
        );
        return ExitCode::from(EXIT_REFUSED);
    }
    let scope = match std::fs::read(&args.scope_json) {
        Err(e) => {
            eprintln!(
                "{NAME}: cannot read the scope {}: {e}",
                args.scope_json.display()
            );
            return ExitCode::from(EXIT_REFUSED);
        }
        Ok(bytes) => match Scope::from_json(&bytes) {
            Err(e) => {
                eprintln!("{NAME}: invalid scope: {e}");
                return ExitCode::from(EXIT_REFUSED);
            }
            Ok(scope) => scope,
        },
    };
    match run(&args, &scope) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{NAME}: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Draws the graph, writes both files, and returns the summary line.
fn run(args: &Args, scope: &Scope) -> anyhow::Result<String> {
    let started_at = now()?;
    let graph = Graph::generate(scope);
    let graph_bytes = graph.to_json();
    let ended_at = now()?;
    let results: BTreeMap<&str, CategoryResult> = EntityType::ALL
        .iter()
        .map(|&kind| {
            let result = CategoryResult {
                status: "succeeded",
                items_scanned: graph.count(kind),
                started_at: started_at.clone(),
                ended_at: ended_at.clone(),
                errors: Vec::new(),
            };
            (kind.category(), result)
        })
        .collect();
    let mut results_bytes = serde_json::to_vec(&results)?;
    results_bytes.push(b'\n');
    // The graph first: the category results are the last thing a run writes.
    write_file(&args.graph_json, &graph_bytes)?;
    write_file(&args.category_results_out, &results_bytes)?;
    let clouds = scope.clouds.len();
    Ok(format!(
        "demo connector: {clouds} {}, {} entities, {} edges",
        if clouds == 1 { "cloud" } else { "clouds" },
        graph.entities.len(),
        graph.edges.len()
    ))
}

/// Now, UTC, RFC 3339, to the second.
fn now() -> anyhow::Result<String> {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    Ok(now.format(&Rfc3339)?)
}

/// Writes a sibling temporary file, then renames it over `path`: a reader sees the whole file or
/// none.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[derive(Debug, Serialize)]
struct CategoryResult {
    status: &'static str,
    items_scanned: usize,
    started_at: String,
    ended_at: String,
    errors: Vec<String>,
}
