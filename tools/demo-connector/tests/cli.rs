//! The built binary, run the way the connector driver runs it: a private directory, a cleared
//! environment, the credential in `DEMO_CLOUD_TOKEN`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sv0-demo-connector");
/// A value that cannot appear in any output by chance.
const TOKEN: &str = "demo-tok-7c1e5a9b-SECRET";

/// Runs the connector in `dir` on `scope`, with `token` as its credential (none if `None`).
fn run(dir: &Path, scope: &str, token: Option<&str>) -> Output {
    std::fs::write(dir.join("scope.json"), scope).unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .args(["--scope-json", "scope.json"])
        .args(["--category-results-out", "category_results.json"])
        .args(["--graph-json", "graph.json"]);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    if let Some(token) = token {
        command.env("DEMO_CLOUD_TOKEN", token);
    }
    let output = command.output().unwrap();
    for stream in [&output.stdout, &output.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(TOKEN),
            "the token was printed"
        );
    }
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Only what the test wrote: the connector wrote nothing.
fn nothing_written(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["scope.json"]);
}

fn graph_bytes(scope: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), scope, Some(TOKEN));
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::read(dir.path().join("graph.json")).unwrap()
}

#[test]
fn a_scan_writes_both_files_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        dir.path(),
        r#"{"clouds": ["aws", "azure"], "size": 200, "seed": 7}"#,
        Some(TOKEN),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let graph: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("graph.json")).unwrap()).unwrap();
    let entities = graph["entities"].as_array().unwrap();
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(entities.len(), 400);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        stdout,
        format!(
            "demo connector: 2 clouds, 400 entities, {} edges\n",
            edges.len()
        )
    );

    let results: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("category_results.json")).unwrap())
            .unwrap();
    let results = results.as_object().unwrap();
    let mut keys: Vec<&str> = results.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["identities", "machines", "roles", "storage"]);
    for (category, count) in [
        ("identities", 120),
        ("roles", 40),
        ("machines", 120),
        ("storage", 120),
    ] {
        let result = results[category].as_object().unwrap();
        // Sorted: whether serde_json keeps insertion order depends on features other crates of
        // the workspace turn on.
        let mut fields: Vec<&str> = result.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "ended_at",
                "errors",
                "items_scanned",
                "started_at",
                "status"
            ]
        );
        assert_eq!(result["status"], "succeeded");
        assert_eq!(result["items_scanned"], count);
        assert_eq!(result["errors"], serde_json::json!([]));
        for time in ["started_at", "ended_at"] {
            let time = result[time].as_str().unwrap();
            // RFC 3339, UTC, to the second: 2026-11-29T08:00:00Z
            assert_eq!(time.len(), 20, "{time}");
            assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        }
    }
    // Nothing left behind but the two outputs.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["category_results.json", "graph.json", "scope.json"]);
}

#[test]
fn the_same_scope_gives_the_same_graph_and_another_seed_another() {
    let a = graph_bytes(r#"{"seed": 7}"#);
    assert_eq!(
        a,
        graph_bytes(r#"{"size": 200, "seed": 7, "clouds": ["aws", "azure"]}"#)
    );
    assert_ne!(a, graph_bytes(r#"{"seed": 8}"#));
    // The defaults: aws and azure, 200 each, seed 1.
    assert_eq!(graph_bytes("{}"), graph_bytes(r#"{"seed": 1}"#));
}

#[test]
fn a_drifted_scope_renames_some_entities_and_keeps_their_ids() {
    let entities = |scope: &str| -> Vec<Value> {
        let graph: Value = serde_json::from_slice(&graph_bytes(scope)).unwrap();
        graph["entities"].as_array().unwrap().clone()
    };
    let drawn = entities(r#"{"seed": 7}"#);
    let drifted = entities(r#"{"seed": 7, "drift": {"percent": 5, "round": 1}}"#);
    assert_eq!(
        drifted,
        entities(r#"{"seed": 7, "drift": {"round": 1, "percent": 5}}"#)
    );
    assert_eq!(drawn.len(), drifted.len());
    let renamed = drawn
        .iter()
        .zip(&drifted)
        .filter(|(a, b)| {
            assert_eq!(a["id"], b["id"]);
            a != b
        })
        .count();
    // 5 % of each cloud's 200.
    assert_eq!(renamed, 20);
}

#[test]
fn every_edge_joins_entities_of_the_graph() {
    let graph: Value =
        serde_json::from_slice(&graph_bytes(r#"{"clouds": ["gcp"], "size": 9, "seed": 3}"#))
            .unwrap();
    let ids: std::collections::HashSet<&str> = graph["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 9);
    for edge in graph["edges"].as_array().unwrap() {
        assert!(ids.contains(edge["from"].as_str().unwrap()), "{edge}");
        assert!(ids.contains(edge["to"].as_str().unwrap()), "{edge}");
    }
}

#[test]
fn without_its_credential_it_refuses_to_run() {
    for token in [None, Some("")] {
        let dir = tempfile::tempdir().unwrap();
        let output = run(dir.path(), "{}", token);
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(
            stderr(&output),
            "sv0-demo-connector: DEMO_CLOUD_TOKEN is not set: the demo cloud needs a credential \
             (the credential broker provides it)\n"
        );
        assert!(output.stdout.is_empty());
        nothing_written(dir.path());
    }
}

#[test]
fn an_invalid_scope_is_refused_naming_its_field() {
    for (scope, field) in [
        (r#"{"size": 3}"#, "size"),
        (r#"{"size": 10, "colour": "blue"}"#, "colour"),
        (r#"{"clouds": ["aws", "AWS"]}"#, "clouds[1]"),
        (r#"{"seed": "seven"}"#, "seed"),
        (
            r#"{"drift": {"percent": 101, "round": 1}}"#,
            "drift.percent",
        ),
        (r#"{"drift": {"percent": 5, "round": -1}}"#, "drift.round"),
        (r#"{"drift": {"percent": 5}}"#, "drift"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = run(dir.path(), scope, Some(TOKEN));
        assert_eq!(output.status.code(), Some(2), "{scope}");
        let message = stderr(&output);
        assert!(
            message.starts_with("sv0-demo-connector: invalid scope: "),
            "{message}"
        );
        assert!(message.contains(field), "{scope}: {message}");
        nothing_written(dir.path());
    }
}

#[test]
fn all_three_arguments_are_required() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scope.json"), "{}").unwrap();
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .env("DEMO_CLOUD_TOKEN", TOKEN)
        .args(["--scope-json", "scope.json", "--graph-json", "graph.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--category-results-out"));
    nothing_written(dir.path());
}
