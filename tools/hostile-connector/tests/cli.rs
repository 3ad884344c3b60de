//! The hostile connector as a plain process, unconfined: what every attack does when nothing
//! stops it (the control for `tests/confinement.rs`, where the same attacks are refused), and its
//! refusals of a bad plan. Being an integration test, it also makes `cargo test --workspace` build
//! the binary that the root tests register.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sv0-hostile-connector");
const SECRET: &str = "hostile-cli-s3cret-91f0";

fn run(dir: &Path, plan: &Value, secret: Option<&str>) -> Output {
    std::fs::write(dir.join("scope.json"), plan.to_string()).unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .args(["--scope-json", "scope.json"])
        .args(["--category-results-out", "category_results.json"])
        .args(["--graph-json", "graph.json"]);
    if let Some(secret) = secret {
        command.env("DEMO_CLOUD_TOKEN", secret);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_plan_with_an_unknown_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &json!({"mode": "attack", "bogus": 1}), None);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("unknown field `bogus`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_victim_without_its_secret_refuses_to_stand_in() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &json!({"mode": "victim"}), None);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
}

#[test]
fn the_leak_prints_its_secret_in_every_form_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &json!({"mode": "leak"}), Some(SECRET));
    assert_eq!(output.status.code(), Some(5));
    let text = stderr(&output);
    for form in [
        SECRET.to_string(),
        "aG9zdGlsZS1jbGktczNjcmV0LTkxZjA=".to_string(),
        SECRET
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ] {
        assert!(text.contains(&form), "{form} not in {text}");
    }
}

/// Unconfined, the attacks that `tests/confinement.rs` sees refused succeed: its expectations
/// are not what the connector does by itself.
#[test]
fn unconfined_the_attacks_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secrets = outside.path().join("secrets.env");
    std::fs::write(&secrets, "TOKEN=x").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let output = run(
        dir.path(),
        &json!({
            "mode": "attack",
            "secrets_file": secrets.display().to_string(),
            "forbidden_port": port,
            "allowed_port": port,
        }),
        Some(SECRET),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cells: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("category_results.json")).unwrap())
            .unwrap();
    let outcome = |case: &str| cells[format!("case_{case}")]["errors"][0].clone();
    for case in [
        "secrets_read",
        "secrets_dir_write",
        "tmp_write",
        "run_dir_write",
        "tcp_forbidden",
        "tcp_allowed",
    ] {
        assert_eq!(outcome(case), "ok", "{case}: {cells:#}");
    }
}
