//! The connector driver against real processes: the shell scripts in `tests/connectors/`, each
//! doing one thing a connector may do (obey the contract, print its credential, hang, leave a
//! child behind, write bad outputs). Scripts report what they saw into a directory of the test's
//! (`out`), outside the driver's private one, since that one is gone when the run returns.
//!
//! Every run goes through [`run`], which checks on every outcome that the canary credential shows
//! in no returned text and that error messages are one line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::bson::DateTime;
use serde_json::{Value, json};
use sv0_broker::{BundleName, OS_ENV_ALLOWLIST, REDACTED, SecretBundle, SecretValue};
use sv0_domain::{CategoryName, CellStatus};
use sv0_pipeline::driver::{
    ConnectorOutput, ConnectorRun, DriverError, MAX_RESULTS_BYTES, STDERR_TAIL_BYTES, run_connector,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The credential every run gets: a value that appears nowhere by chance.
const CANARY: &str = "canary-s3cr3t-7d1f";
const TOKEN_VAR: &str = "SV0_TEST_TOKEN";
/// A time limit only a hung run reaches.
const GENEROUS: Duration = Duration::from_secs(20);

fn connector(name: &str) -> String {
    format!("{}/tests/connectors/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn command(name: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(connector(name))
        .chain(args.iter().map(|a| a.to_string()))
        .collect()
}

fn bundle(entries: &[(&str, &str)]) -> SecretBundle {
    let mut bundle = SecretBundle::default();
    for (name, value) in entries {
        bundle.insert(
            BundleName::parse(name).unwrap(),
            SecretValue::new(value.to_string()),
        );
    }
    bundle
}

fn scope() -> Value {
    json!({"clouds": ["aws", "azure"], "size": 3, "seed": 7})
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

async fn run(command: &[String], time_limit: Duration) -> Result<ConnectorOutput, DriverError> {
    run_with(
        command,
        &bundle(&[(TOKEN_VAR, CANARY)]),
        time_limit,
        CancellationToken::new(),
    )
    .await
}

async fn run_with(
    command: &[String],
    bundle: &SecretBundle,
    time_limit: Duration,
    cancel: CancellationToken,
) -> Result<ConnectorOutput, DriverError> {
    let scope = scope();
    let result = run_connector(ConnectorRun {
        command,
        scope: &scope,
        bundle,
        time_limit,
        cancel,
    })
    .await;
    match &result {
        Ok(output) => assert!(!output.stderr_tail.contains(CANARY), "the canary leaked"),
        Err(error) => assert_clean(error),
    }
    result
}

/// No form of the error shows the canary, and its message is one line.
fn assert_clean(error: &DriverError) {
    let display = error.to_string();
    let debug = format!("{error:?}");
    assert!(!display.contains(CANARY), "the canary is in {display}");
    assert!(!debug.contains(CANARY), "the canary is in {debug}");
    assert!(
        !error.stderr_tail().unwrap_or_default().contains(CANARY),
        "the canary is in the stderr tail"
    );
    assert!(!display.contains('\n'), "not one line: {display:?}");
}

fn read(out: &Path, file: &str) -> String {
    std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn pid(out: &Path, file: &str) -> i32 {
    read(out, file).trim().parse().unwrap()
}

/// Whether the process is gone within a few seconds: no longer in /proc, or a zombie (killed,
/// waiting for an init that may never reap it in this container).
fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return true;
        };
        let state = stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .chars()
            .next();
        if state == Some('Z') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Writes `content` into `dir` and returns the file's path, for `outputs.sh` to copy.
fn fixture(dir: &Path, name: &str, content: &[u8]) -> String {
    let file = dir.join(name);
    std::fs::write(&file, content).unwrap();
    file.to_str().unwrap().to_string()
}

fn valid_graph() -> Value {
    json!({
        "entities": [
            {"id": "m", "type": "machine", "cloud": "aws", "name": "m"},
            {"id": "i", "type": "identity", "cloud": "aws", "name": "i"}
        ],
        "edges": [{"from": "m", "to": "i", "type": "runs_as"}]
    })
}

fn cell() -> Value {
    json!({"status": "succeeded", "items_scanned": 1, "started_at": "2026-11-29T08:00:00Z",
           "ended_at": "2026-11-29T08:00:01Z", "errors": []})
}

/// Runs `outputs.sh` with `results` as category_results.json and a valid graph.
async fn run_with_results(results: &[u8]) -> Result<ConnectorOutput, DriverError> {
    let files = TempDir::new().unwrap();
    let results = fixture(files.path(), "results.json", results);
    let graph = fixture(
        files.path(),
        "graph.json",
        valid_graph().to_string().as_bytes(),
    );
    run(&command("outputs.sh", &[&results, &graph]), GENEROUS).await
}

#[tokio::test]
async fn the_connector_runs_in_a_private_directory_with_the_contract_arguments() {
    let out = TempDir::new().unwrap();
    let output = run(
        &command("contract.sh", &[path(out.path()), "a fixed argument"]),
        GENEROUS,
    )
    .await
    .unwrap();

    let argv: Vec<String> = read(out.path(), "argv").lines().map(String::from).collect();
    assert_eq!(argv.len(), 8, "{argv:?}");
    assert_eq!(argv[..2], [path(out.path()), "a fixed argument"]);
    let dir = Path::new(&argv[3]).parent().unwrap().to_path_buf();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    assert_eq!(
        argv[2..],
        [
            "--scope-json".to_string(),
            file("scope.json"),
            "--category-results-out".to_string(),
            file("category_results.json"),
            "--graph-json".to_string(),
            file("graph.json"),
        ]
    );
    assert_eq!(
        read(out.path(), "cwd").trim(),
        "same",
        "the working directory"
    );
    assert_eq!(
        read(out.path(), "mode").trim(),
        "700",
        "the directory's mode"
    );
    let written: Value = serde_json::from_str(&read(out.path(), "scope.json")).unwrap();
    assert_eq!(written, scope());
    assert!(!dir.exists(), "{} was not removed", dir.display());

    // And the outputs, read back.
    let identities = &output.categories[&CategoryName::parse("identities").unwrap()];
    assert_eq!(identities.status, CellStatus::Succeeded);
    assert_eq!(identities.items_scanned, 2);
    let started = DateTime::parse_rfc3339_str("2026-11-29T08:00:00Z").unwrap();
    assert_eq!(identities.started_at, started);
    assert_eq!(
        identities.ended_at.unwrap().timestamp_millis() - started.timestamp_millis(),
        1250
    );
    let storage = &output.categories[&CategoryName::parse("storage").unwrap()];
    assert_eq!(storage.status, CellStatus::Failed);
    assert_eq!(storage.errors, ["access denied listing buckets"]);
    assert_eq!(output.categories.len(), 2);
    assert_eq!(output.graph.entities.len(), 2);
    assert_eq!(output.graph.edges.len(), 1);
    assert_eq!(output.graph_bytes, read(out.path(), "graph.json").len());
    assert_eq!(output.stderr_tail, "contract connector done\n");
}

#[tokio::test]
async fn the_environment_is_exactly_the_allowlist_and_the_bundle() {
    // Something beyond the allowlist must be there to be cleared (cargo sets CARGO_* for tests).
    let extra: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .filter(|name| !OS_ENV_ALLOWLIST.contains(&name.as_str()))
        .collect();
    assert!(
        !extra.is_empty(),
        "the test's own environment has nothing to clear"
    );

    let bundle = bundle(&[
        (TOKEN_VAR, CANARY),
        ("SV0_SECOND", "second value"),
        ("SV0_EMPTY", ""),
    ]);
    let out = TempDir::new().unwrap();
    run_with(
        &command("environ.sh", &[path(out.path())]),
        &bundle,
        GENEROUS,
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let dumped = std::fs::read(out.path().join("environ")).unwrap();
    let entries: Vec<(String, String)> = dumped
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, value) = std::str::from_utf8(entry).unwrap().split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect();
    let names: BTreeSet<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    let expected: BTreeSet<&str> = OS_ENV_ALLOWLIST
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some())
        .chain(bundle.names())
        .collect();
    assert_eq!(names, expected);
    let value = |wanted: &str| {
        entries
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(value(TOKEN_VAR).as_deref(), Some(CANARY));
    assert_eq!(value("SV0_SECOND").as_deref(), Some("second value"));
    assert_eq!(value("SV0_EMPTY").as_deref(), Some(""));
    assert_eq!(value("PATH"), std::env::var("PATH").ok());
}

#[tokio::test]
async fn a_failing_connector_reports_its_status_and_a_redacted_stderr_tail() {
    let error = run(&command("stderr.sh", &["100", "3", "0"]), GENEROUS)
        .await
        .unwrap_err();
    let DriverError::Exit {
        status,
        stderr_tail,
    } = &error
    else {
        panic!("expected an exit error, got {error:?}");
    };
    assert_eq!(status.code(), Some(3));
    assert_eq!(error.to_string(), "connector exited with status 3");
    assert_eq!(
        *stderr_tail,
        format!("connecting with token={REDACTED}{}", "x".repeat(100))
    );
}

/// The secret printed where the stream's last 16 KiB begin (cutting before redacting would keep
/// its end), and where the window of raw bytes the driver keeps begins, with more copies after it
/// whose redaction shortens the text (so that the final cut would not drop its remnant by
/// itself): no part of it survives either way.
#[tokio::test]
async fn a_secret_straddling_the_tail_cut_is_still_redacted() {
    let again = " token=".len() + CANARY.len();
    for (after, repeats) in [
        (STDERR_TAIL_BYTES - 9, 0),
        (STDERR_TAIL_BYTES + CANARY.len() - 9 - 4 * again, 4),
    ] {
        let error = run(
            &command(
                "stderr.sh",
                &[&after.to_string(), "3", &repeats.to_string()],
            ),
            GENEROUS,
        )
        .await
        .unwrap_err();
        let tail = error.stderr_tail().expect("an exit error has a tail");
        assert!(
            tail.len() <= STDERR_TAIL_BYTES,
            "{after}: {} bytes",
            tail.len()
        );
        // The canary's last nine characters: what is left of it past either cut.
        assert!(
            !tail.contains("cr3t-7d1f"),
            "{after}: part of the secret survived"
        );
        let end = format!(
            "{}{}",
            "x".repeat(1000),
            " token=[REDACTED]".repeat(repeats)
        );
        assert!(tail.ends_with(&end), "{after}: the end was lost");
    }
}

#[tokio::test]
async fn a_relative_program_is_found_from_the_workers_directory() {
    // Cargo runs integration tests from the package's directory.
    assert_eq!(
        std::env::current_dir().unwrap(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
    );
    let relative = ["tests/connectors/stderr.sh", "0", "4", "0"].map(String::from);
    let error = run(&relative, GENEROUS).await.unwrap_err();
    assert!(
        matches!(&error, DriverError::Exit { status, .. } if status.code() == Some(4)),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_program_that_cannot_be_started_is_a_spawn_error() {
    let error = run(&["/nonexistent/sv0-connector".to_string()], GENEROUS)
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Spawn { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("connector \"/nonexistent/sv0-connector\" could not be started: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_connector_past_its_time_limit_is_killed_with_its_whole_group() {
    let out = TempDir::new().unwrap();
    let started = Instant::now();
    let error = run(
        &command("sleeper.sh", &[path(out.path())]),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(&error, DriverError::Timeout { after, .. } if *after == Duration::from_secs(1)),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "connector timed out after 1 s and was killed"
    );
    assert_eq!(error.stderr_tail(), Some("sleeping\n"));
    let grandchild = pid(out.path(), "grandchild.pid");
    assert!(
        gone(grandchild),
        "the background child {grandchild} survived"
    );
    let dir = PathBuf::from(read(out.path(), "dir").trim());
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test]
async fn a_cancelled_run_kills_the_whole_group() {
    let out = TempDir::new().unwrap();
    let cancel = CancellationToken::new();
    // Cancel once the connector has started its child, however slow the machine.
    let pid_file = out.path().join("grandchild.pid");
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !pid_file.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let error = run_with(
        &command("sleeper.sh", &[path(out.path())]),
        &bundle(&[(TOKEN_VAR, CANARY)]),
        GENEROUS,
        cancel,
    )
    .await
    .unwrap_err();
    canceller.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(error, DriverError::Cancelled), "{error:?}");
    assert_eq!(error.to_string(), "connector was cancelled and killed");
    let grandchild = pid(out.path(), "grandchild.pid");
    assert!(
        gone(grandchild),
        "the background child {grandchild} survived"
    );
    let dir = PathBuf::from(read(out.path(), "dir").trim());
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test]
async fn a_run_cancelled_before_it_starts_starts_nothing() {
    let out = TempDir::new().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let error = run_with(
        &command("contract.sh", &[path(out.path())]),
        &bundle(&[]),
        GENEROUS,
        cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DriverError::Cancelled), "{error:?}");
    assert!(
        !out.path().join("argv").exists(),
        "the connector was started"
    );
}

/// A child left running by a connector that exited 0 is killed, and the run does not wait on the
/// stderr it holds open.
#[tokio::test]
async fn processes_left_behind_by_a_successful_connector_are_killed() {
    let out = TempDir::new().unwrap();
    let started = Instant::now();
    let output = run(&command("leftover.sh", &[path(out.path())]), GENEROUS)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(output.categories.is_empty());
    let grandchild = pid(out.path(), "grandchild.pid");
    assert!(
        gone(grandchild),
        "the background child {grandchild} survived"
    );
}

#[tokio::test]
async fn a_missing_output_file_is_named() {
    let error = run(&command("outputs.sh", &["-", "-"]), GENEROUS)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DriverError::MissingOutput {
                file: "category_results.json"
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "connector exited 0 but did not write category_results.json"
    );

    let files = TempDir::new().unwrap();
    let results = fixture(files.path(), "results.json", b"{}");
    let error = run(&command("outputs.sh", &[&results, "-"]), GENEROUS)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DriverError::MissingOutput { file: "graph.json" }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_bad_category_results_file_is_refused_with_the_parsers_reason() {
    let with = |field: &str, value: Value| {
        let mut cell = cell();
        cell[field] = value;
        json!({ "identities": cell }).to_string()
    };
    let mut extra_field = cell();
    extra_field["sync_id"] = json!("x");
    let mut no_end = cell();
    no_end.as_object_mut().unwrap().remove("ended_at");
    let cases = [
        ("<html>".to_string(), "expected value"),
        ("[]".to_string(), "invalid type: sequence"),
        (
            json!({ "identities": extra_field }).to_string(),
            "unknown field `sync_id`",
        ),
        (
            with("status", json!("running")),
            "unknown variant `running`",
        ),
        (
            with("items_scanned", json!(-1)),
            "invalid value: integer `-1`",
        ),
        (
            json!({ "identities": no_end }).to_string(),
            "missing field `ended_at`",
        ),
        (
            with("started_at", json!("yesterday")),
            "identities.started_at",
        ),
        (
            with("ended_at", json!("2026-11-29T07:00:00Z")),
            "identities.ended_at is before started_at",
        ),
        (
            with("items_scanned", json!(u64::MAX)),
            "identities.items_scanned",
        ),
        (with("errors", json!("one error")), "invalid type: string"),
    ];
    for (content, wanted) in cases {
        let error = run_with_results(content.as_bytes()).await.unwrap_err();
        let DriverError::InvalidResults { reason } = &error else {
            panic!("{content}: expected invalid results, got {error:?}");
        };
        assert!(reason.contains(wanted), "{content}: {reason}");
        assert!(
            error
                .to_string()
                .starts_with("category_results.json is invalid: ")
        );
    }
}

#[tokio::test]
async fn category_names_are_the_connectors_own() {
    for reserved in ["__sync", "__driver__", "__anything"] {
        let content = json!({ "identities": cell(), reserved: cell() }).to_string();
        let error = run_with_results(content.as_bytes()).await.unwrap_err();
        assert!(
            matches!(&error, DriverError::ReservedCategory { name } if name == reserved),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("category name \"{reserved}\" is reserved for the platform")
        );
    }
    for malformed in ["Storage", "storage-buckets", "a\nb", ""] {
        let content = json!({ malformed: cell() }).to_string();
        let error = run_with_results(content.as_bytes()).await.unwrap_err();
        assert!(
            matches!(&error, DriverError::MalformedCategory { .. }),
            "{malformed:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_graph_is_refused_with_the_domains_reason() {
    let files = TempDir::new().unwrap();
    let results = fixture(files.path(), "results.json", b"{}");
    let dangling = json!({
        "entities": [{"id": "m", "type": "machine", "cloud": "aws", "name": "m"}],
        "edges": [{"from": "m", "to": "nowhere", "type": "runs_as"}]
    });
    for (content, wanted) in [
        (dangling.to_string(), "graph.edges[0].to"),
        ("{\"entities\": 3}".to_string(), "graph.json: invalid type"),
    ] {
        let graph = fixture(files.path(), "graph.json", content.as_bytes());
        let error = run(&command("outputs.sh", &[&results, &graph]), GENEROUS)
            .await
            .unwrap_err();
        let DriverError::InvalidGraph { reason } = &error else {
            panic!("{content}: expected an invalid graph, got {error:?}");
        };
        assert!(reason.contains(wanted), "{content}: {reason}");
        assert!(error.to_string().starts_with("graph.json is invalid: "));
    }
}

/// Too large, a named pipe (which would block a plain open), a symbolic link: each refused
/// promptly, naming the file.
#[tokio::test]
async fn output_files_must_be_regular_files_of_bounded_size() {
    let files = TempDir::new().unwrap();
    let graph = fixture(
        files.path(),
        "graph.json",
        valid_graph().to_string().as_bytes(),
    );
    let large = fixture(
        files.path(),
        "large.json",
        &vec![b' '; MAX_RESULTS_BYTES as usize + 1],
    );
    let target = fixture(files.path(), "target.json", b"{}");
    let link = format!("link:{target}");
    for (results, wanted) in [
        (large.as_str(), "at most 1048576"),
        ("fifo", "not a regular file"),
        (link.as_str(), "symbolic link"),
    ] {
        let started = Instant::now();
        let error = run(&command("outputs.sh", &[results, &graph]), GENEROUS)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "{results}");
        let DriverError::UnreadableOutput { file, reason } = &error else {
            panic!("{results}: expected an unreadable output, got {error:?}");
        };
        assert_eq!(*file, "category_results.json");
        assert!(reason.contains(wanted), "{results}: {reason}");
    }
}
