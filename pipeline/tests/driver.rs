//! The connector driver against real processes: the scripts in `tests/connectors/`, each doing
//! one thing a connector may do (obey the contract, print its credential, hang, leave a child
//! behind, write bad outputs), run confined as a worker runs them: staged where the connector
//! user can run them, their run directories in a directory of the test's own. A confined script
//! writes only in its run directory, which is gone when the run returns: it reports on stderr,
//! or the test reads what it wrote there while it runs.
//!
//! Every run goes through [`Connectors::run_with`], which checks on every outcome that the canary
//! credential shows in no returned text and that error messages are one line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use mongodb::bson::DateTime;
use serde_json::{Value, json};
use sv0_broker::{BundleName, OS_ENV_ALLOWLIST, REDACTED, SecretBundle, SecretValue};
use sv0_domain::{CategoryName, CellStatus};
use sv0_pipeline::driver::{
    ConnectorOutput, ConnectorRun, DriverError, MAX_RESULTS_BYTES, STDERR_TAIL_BYTES, run_connector,
};
use sv0_pipeline::{ConnectorKind, ConnectorRegistry, RegistryError, Sandbox, SandboxSettings};
use sv0_testkit::StagedConnectors;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The credential every run gets: a value that appears nowhere by chance.
const CANARY: &str = "canary-s3cr3t-7d1f";
const TOKEN_VAR: &str = "SV0_TEST_TOKEN";
/// A time limit only a hung run reaches.
const GENEROUS: Duration = Duration::from_secs(20);
/// The kind name every run is logged and reported under.
const KIND: &str = "test_connector";

/// The test connectors, staged where the connector user (`nobody` under a root test) can run
/// them, and a sandbox that makes run directories in a directory of this test's own.
struct Connectors {
    staged: StagedConnectors,
    runs: TempDir,
    sandbox: Sandbox,
}

impl Connectors {
    fn new() -> Connectors {
        let staged = StagedConnectors::new().unwrap();
        // All of them, `args.sh` included: the scripts source it from their own directory.
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/connectors");
        for script in std::fs::read_dir(scripts).unwrap() {
            staged.stage(&script.unwrap().path()).unwrap();
        }
        let runs = sv0_testkit::connectors::runs_dir().unwrap();
        let sandbox = Sandbox::new(SandboxSettings {
            allow_unconfined: false,
            connector_user: "nobody".into(),
            runs_dir: Some(runs.path().to_path_buf()),
        })
        .expect("this machine confines connectors");
        Connectors {
            staged,
            runs,
            sandbox,
        }
    }

    /// The kind running the staged `script` with the fixed arguments `args`.
    fn kind(&self, script: &str, args: &[&str]) -> ConnectorKind {
        ConnectorKind::new(
            self.staged.path().join(script),
            args.iter().map(|a| a.to_string()).collect(),
        )
    }

    /// `outputs.sh` copying `results` and `graph` from `files`, which its kind lets it read.
    fn outputs(&self, files: &Fixtures, results: &str, graph: &str) -> ConnectorKind {
        let mut kind = self.kind("outputs.sh", &[results, graph]);
        kind.read_paths.push(files.path().to_path_buf());
        kind
    }

    async fn run(
        &self,
        kind: &ConnectorKind,
        time_limit: Duration,
    ) -> Result<ConnectorOutput, DriverError> {
        self.run_with(
            kind,
            &bundle(&[(TOKEN_VAR, CANARY)]),
            time_limit,
            CancellationToken::new(),
        )
        .await
    }

    async fn run_with(
        &self,
        kind: &ConnectorKind,
        bundle: &SecretBundle,
        time_limit: Duration,
        cancel: CancellationToken,
    ) -> Result<ConnectorOutput, DriverError> {
        let scope = scope();
        let result = run_connector(ConnectorRun {
            kind_name: KIND,
            kind,
            sandbox: &self.sandbox,
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

    /// Waits until the running connector has written `file` into its run directory, and returns
    /// the directory and the file's content. Only one run at a time uses this test's runs
    /// directory.
    async fn wait_for_file(&self, file: &str) -> (PathBuf, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for entry in std::fs::read_dir(self.runs.path()).unwrap() {
                let dir = entry.unwrap().path();
                if let Ok(content) = std::fs::read_to_string(dir.join(file)) {
                    return (dir, content);
                }
            }
            assert!(Instant::now() < deadline, "no connector wrote {file}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// When the runs directory last changed: each run makes its directory there before its
    /// connector starts.
    fn runs_modified(&self) -> SystemTime {
        std::fs::metadata(self.runs.path())
            .unwrap()
            .modified()
            .unwrap()
    }

    /// The uid the connectors run as.
    fn connector_uid(&self) -> u32 {
        match self.sandbox.user() {
            Some(user) => user.uid,
            None => nix::unistd::Uid::effective().as_raw(),
        }
    }
}

/// Files the connectors may read: world-readable, and granted to a kind by `read_paths`.
struct Fixtures {
    dir: TempDir,
}

impl Fixtures {
    fn new() -> Fixtures {
        let dir = tempfile::Builder::new()
            .permissions(Permissions::from_mode(0o755))
            .tempdir()
            .unwrap();
        Fixtures { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` into the directory and returns the file's path, for `outputs.sh` to copy.
    fn file(&self, name: &str, content: &[u8]) -> String {
        let file = self.dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        file.to_str().unwrap().to_string()
    }
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

/// The values of the `KEY VALUE` lines of `report` with this key.
fn reported<'a>(report: &'a str, key: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
        .collect()
}

/// The one `KEY VALUE` line of `report` with this key.
fn reported_once<'a>(report: &'a str, key: &str) -> &'a str {
    match reported(report, key)[..] {
        [value] => value,
        ref other => panic!("{key}: {other:?} in {report}"),
    }
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

/// A killed `sleeper.sh` left nothing behind: the background child whose pid it wrote
/// (`grandchild.pid`) is gone, and so is its run directory `dir`.
fn assert_group_gone(dir: &Path, grandchild: &str) {
    let grandchild: i32 = grandchild.trim().parse().unwrap();
    assert!(
        gone(grandchild),
        "the background child {grandchild} survived"
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
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
async fn run_with_results(
    connectors: &Connectors,
    results: &[u8],
) -> Result<ConnectorOutput, DriverError> {
    let files = Fixtures::new();
    let results = files.file("results.json", results);
    let graph = files.file("graph.json", valid_graph().to_string().as_bytes());
    let kind = connectors.outputs(&files, &results, &graph);
    connectors.run(&kind, GENEROUS).await
}

#[tokio::test]
async fn the_connector_runs_in_a_private_directory_with_the_contract_arguments() {
    let connectors = Connectors::new();
    let kind = connectors.kind("contract.sh", &["--first", "a fixed argument"]);
    let output = connectors.run(&kind, GENEROUS).await.unwrap();
    let report = output.stderr_tail.as_str();

    let argv = reported(report, "arg");
    assert_eq!(argv.len(), 8, "{argv:?}");
    assert_eq!(argv[..2], ["--first", "a fixed argument"]);
    let dir = Path::new(argv[3]).parent().unwrap().to_path_buf();
    assert_eq!(
        dir.parent(),
        Some(connectors.runs.path()),
        "the run directory is made in the sandbox's runs directory"
    );
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
        reported_once(report, "cwd"),
        "same",
        "the working directory"
    );
    assert_eq!(reported_once(report, "mode"), "700", "the directory's mode");
    let uid = connectors.connector_uid().to_string();
    assert_eq!(reported_once(report, "uid"), uid, "the connector's user");
    assert_eq!(
        reported_once(report, "owner"),
        uid,
        "the directory belongs to the connector's user"
    );
    if nix::unistd::Uid::effective().is_root() {
        assert_ne!(uid, "0", "a root worker's connector runs as another user");
    }
    let written: Value = serde_json::from_str(reported_once(report, "scope")).unwrap();
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
    assert_eq!(
        output.graph_bytes.to_string(),
        reported_once(report, "graph_bytes")
    );
    assert!(
        report.ends_with("\ncontract connector done\n"),
        "the stderr tail is kept whole: {report:?}"
    );
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

    let connectors = Connectors::new();
    let bundle = bundle(&[
        (TOKEN_VAR, CANARY),
        ("SV0_SECOND", "second value"),
        ("SV0_EMPTY", ""),
    ]);
    let output = connectors
        .run_with(
            &connectors.kind("environ.pl", &[]),
            &bundle,
            GENEROUS,
            CancellationToken::new(),
        )
        .await
        .unwrap();

    // Only the script's lines: a warning of perl's (an unknown locale, say) is not its report.
    let entries: BTreeMap<&str, String> = output
        .stderr_tail
        .lines()
        .filter_map(|line| {
            let (name, hex) = line.split_once('=')?;
            let name_like = |c: char| c.is_ascii_alphanumeric() || c == '_';
            if name.is_empty() || !name.chars().all(name_like) || hex.len() % 2 != 0 {
                return None;
            }
            let mut bytes = (0..hex.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            bytes.reverse();
            Some((name, String::from_utf8(bytes).ok()?))
        })
        .collect();
    let names: BTreeSet<&str> = entries.keys().copied().collect();
    // The connector's HOME and TMPDIR are its run directory, whatever the worker's are.
    let expected: BTreeSet<&str> = OS_ENV_ALLOWLIST
        .into_iter()
        .filter(|name| ["HOME", "TMPDIR"].contains(name) || std::env::var_os(name).is_some())
        .chain(bundle.names())
        .collect();
    assert_eq!(names, expected);
    let value = |wanted: &str| entries.get(wanted).cloned();
    assert_eq!(value(TOKEN_VAR).as_deref(), Some(CANARY));
    assert_eq!(value("SV0_SECOND").as_deref(), Some("second value"));
    assert_eq!(value("SV0_EMPTY").as_deref(), Some(""));
    assert_eq!(value("PATH"), std::env::var("PATH").ok());
    let home = PathBuf::from(value("HOME").unwrap());
    assert_eq!(home.parent(), Some(connectors.runs.path()), "{home:?}");
    assert_eq!(value("TMPDIR"), value("HOME"));
}

#[tokio::test]
async fn a_failing_connector_reports_its_status_and_a_redacted_stderr_tail() {
    let connectors = Connectors::new();
    let error = connectors
        .run(&connectors.kind("stderr.sh", &["100", "3", "0"]), GENEROUS)
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
    let connectors = Connectors::new();
    let again = " token=".len() + CANARY.len();
    for (after, repeats) in [
        (STDERR_TAIL_BYTES - 9, 0),
        (STDERR_TAIL_BYTES + CANARY.len() - 9 - 4 * again, 4),
    ] {
        let kind = connectors.kind(
            "stderr.sh",
            &[&after.to_string(), "3", &repeats.to_string()],
        );
        let error = connectors.run(&kind, GENEROUS).await.unwrap_err();
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

/// A connector's program is the registry's, named by an absolute path: never looked up in a
/// directory that depends on where the worker or the connector runs.
#[test]
fn a_kinds_executable_must_be_an_absolute_path() {
    for relative in ["tests/connectors/stderr.sh", "stderr.sh"] {
        let kinds = BTreeMap::from([(
            "relative".to_string(),
            ConnectorKind::new(relative, Vec::new()),
        )]);
        let error = ConnectorRegistry::from_kinds(kinds).unwrap_err();
        assert!(
            matches!(&error, RegistryError::InvalidKind { kind, reason }
                if kind == "relative" && reason.contains("absolute")),
            "{relative}: {error}"
        );
    }
}

#[tokio::test]
async fn a_program_that_cannot_be_started_is_a_spawn_error() {
    let connectors = Connectors::new();
    // In a directory the connector may read: only the program itself is missing.
    let error = connectors
        .run(&connectors.kind("sv0-no-such-connector", &[]), GENEROUS)
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Spawn { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("connector {KIND:?} could not be started: ")),
        "{error}"
    );
}

#[tokio::test]
async fn a_connector_past_its_time_limit_is_killed_with_its_whole_group() {
    let connectors = Connectors::new();
    let started = Instant::now();
    let kind = connectors.kind("sleeper.sh", &[]);
    let (result, (dir, grandchild)) = tokio::join!(
        connectors.run(&kind, Duration::from_secs(1)),
        connectors.wait_for_file("grandchild.pid"),
    );
    let error = result.unwrap_err();
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
    assert_group_gone(&dir, &grandchild);
}

#[tokio::test]
async fn a_cancelled_run_kills_the_whole_group() {
    let connectors = Connectors::new();
    let cancel = CancellationToken::new();
    // Cancel once the connector has started its child, however slow the machine.
    let canceller = async {
        let found = connectors.wait_for_file("grandchild.pid").await;
        cancel.cancel();
        found
    };
    let started = Instant::now();
    let kind = connectors.kind("sleeper.sh", &[]);
    let credentials = bundle(&[(TOKEN_VAR, CANARY)]);
    let (result, (dir, grandchild)) = tokio::join!(
        connectors.run_with(&kind, &credentials, GENEROUS, cancel.clone()),
        canceller,
    );
    let error = result.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(error, DriverError::Cancelled), "{error:?}");
    assert_eq!(error.to_string(), "connector was cancelled and killed");
    assert_group_gone(&dir, &grandchild);
}

#[tokio::test]
async fn a_run_cancelled_before_it_starts_starts_nothing() {
    let connectors = Connectors::new();
    let before = connectors.runs_modified();
    // Past the file system's timestamp granularity, where it is coarse: a directory made by the
    // run would show.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let error = connectors
        .run_with(
            &connectors.kind("contract.sh", &[]),
            &bundle(&[]),
            GENEROUS,
            cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DriverError::Cancelled), "{error:?}");
    assert_eq!(
        connectors.runs_modified(),
        before,
        "a run directory was made: the connector was about to start"
    );
}

/// A child left running by a connector that exited 0 is killed, and the run does not wait on the
/// stderr it holds open.
#[tokio::test]
async fn processes_left_behind_by_a_successful_connector_are_killed() {
    let connectors = Connectors::new();
    let started = Instant::now();
    let output = connectors
        .run(&connectors.kind("leftover.sh", &[]), GENEROUS)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(output.categories.is_empty());
    let grandchild: i32 = reported_once(&output.stderr_tail, "grandchild")
        .parse()
        .unwrap();
    assert!(
        gone(grandchild),
        "the background child {grandchild} survived"
    );
}

#[tokio::test]
async fn a_missing_output_file_is_named() {
    let connectors = Connectors::new();
    let files = Fixtures::new();
    let error = connectors
        .run(&connectors.outputs(&files, "-", "-"), GENEROUS)
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

    let results = files.file("results.json", b"{}");
    let error = connectors
        .run(&connectors.outputs(&files, &results, "-"), GENEROUS)
        .await
        .unwrap_err();
    assert!(
        matches!(error, DriverError::MissingOutput { file: "graph.json" }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_bad_category_results_file_is_refused_with_the_parsers_reason() {
    let connectors = Connectors::new();
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
        let error = run_with_results(&connectors, content.as_bytes())
            .await
            .unwrap_err();
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
    let connectors = Connectors::new();
    for reserved in ["__sync", "__driver__", "__anything"] {
        let content = json!({ "identities": cell(), reserved: cell() }).to_string();
        let error = run_with_results(&connectors, content.as_bytes())
            .await
            .unwrap_err();
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
        let error = run_with_results(&connectors, content.as_bytes())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DriverError::MalformedCategory { .. }),
            "{malformed:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_graph_is_refused_with_the_domains_reason() {
    let connectors = Connectors::new();
    let files = Fixtures::new();
    let results = files.file("results.json", b"{}");
    let dangling = json!({
        "entities": [{"id": "m", "type": "machine", "cloud": "aws", "name": "m"}],
        "edges": [{"from": "m", "to": "nowhere", "type": "runs_as"}]
    });
    for (content, wanted) in [
        (dangling.to_string(), "graph.edges[0].to"),
        ("{\"entities\": 3}".to_string(), "graph.json: invalid type"),
    ] {
        let graph = files.file("graph.json", content.as_bytes());
        let error = connectors
            .run(&connectors.outputs(&files, &results, &graph), GENEROUS)
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
    let connectors = Connectors::new();
    let files = Fixtures::new();
    let graph = files.file("graph.json", valid_graph().to_string().as_bytes());
    let large = files.file("large.json", &vec![b' '; MAX_RESULTS_BYTES as usize + 1]);
    let target = files.file("target.json", b"{}");
    let link = format!("link:{target}");
    for (results, wanted) in [
        (large.as_str(), "at most 1048576"),
        ("fifo", "not a regular file"),
        (link.as_str(), "symbolic link"),
    ] {
        let started = Instant::now();
        let error = connectors
            .run(&connectors.outputs(&files, results, &graph), GENEROUS)
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
