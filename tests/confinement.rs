//! Connector confinement, proven through real scans: a real `sv0 worker` holding two tenants'
//! credentials runs `sv0-hostile-connector`, which tries every way out of its sandbox and reports
//! what the kernel answered (one category per case, stored on its run); each answer is held to
//! what confinement must give. Another tenant's run of the same connector is going on meanwhile,
//! as the neighbour to attack. A third run prints its own credential in plain and encoded forms
//! to stderr and fails, to prove the stored stderr is redacted. Last, the other tenant's
//! credential is looked for everywhere a leak could land.
//!
//! CI runs as root: the worker is root and its connectors run as `nobody`. The secrets file, /tmp
//! and the other run's directory are open to `nobody` on permissions alone, so a refusal there is
//! Landlock's. A kernel short of a Landlock feature a case relies on gets that case reported as
//! `SKIPPED` on stderr, never passed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::Permissions;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::pipeline::{Bench, canary};
use common::{all, http_get};
use mongodb::bson::doc;
use nix::unistd::{Uid, User};
use sv0_domain::category::DRIVER;
use sv0_domain::{RunStatus, ScanRun};
use sv0_pipeline::ConnectorKind;
use sv0_testkit::StagedConnectors;

/// Each wait below is for an event that takes well under a few seconds here.
const TIMEOUT: Duration = Duration::from_secs(60);
const KIND: &str = "hostile";

/// What a case relies on beyond what the worker refuses to start without (Landlock's filesystem
/// rules and the seccomp filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    /// Landlock ABI 4: TCP connect rules by port.
    Ports,
    /// Landlock ABI 6: signal scoping.
    Scoping,
}

/// Every case the attack runs: the outcome confinement must give, what it relies on, and the
/// layer that answers first (pinned on a 6.18 kernel, Landlock ABI 7, as root). Where a layer is
/// in brackets, it alone still refuses when the first one is missing: without the seccomp filter
/// Landlock's ptrace rule and the uid give the same EPERM, and a Fast Open send gets EACCES
/// from Landlock.
#[rustfmt::skip]
const CASES: &[(&str, &str, Needs, &str)] = &[
    // /proc is not among the paths a connector may read: Landlock refuses the open before
    // procfs's own ptrace-mode check is reached.
    ("worker_environ",          "EACCES", Needs::Nothing, "Landlock: no /proc"),
    ("worker_mem",              "EACCES", Needs::Nothing, "Landlock: no /proc"),
    ("victim_environ",          "EACCES", Needs::Nothing, "Landlock: no /proc"),
    ("worker_process_vm_readv", "EPERM",  Needs::Nothing, "seccomp (Landlock ptrace rule, uid)"),
    ("worker_ptrace",           "EPERM",  Needs::Nothing, "seccomp (Landlock ptrace rule, uid)"),
    // pidfd_open is allowed; taking a descriptor through it is not.
    ("worker_pidfd_getfd",      "EPERM",  Needs::Nothing, "seccomp (Landlock ptrace rule, uid)"),
    // The neighbour runs as the same uid: only the scoping refuses it (and, under a root
    // worker, the worker too).
    ("worker_kill_0",           "EPERM",  Needs::Scoping, "Landlock signal scoping (uid)"),
    ("victim_kill_0",           "EPERM",  Needs::Scoping, "Landlock signal scoping"),
    ("secrets_read",            "EACCES", Needs::Nothing, "Landlock: the file is world-readable"),
    ("secrets_dir_write",       "EACCES", Needs::Nothing, "Landlock (the directory's mode)"),
    ("other_run_list",          "EACCES", Needs::Nothing, "Landlock: its uid owns the directory"),
    ("other_run_read",          "EACCES", Needs::Nothing, "Landlock: its uid owns the file"),
    ("other_run_write",         "EACCES", Needs::Nothing, "Landlock: its uid owns the directory"),
    ("tmp_write",               "EACCES", Needs::Nothing, "Landlock: /tmp is world-writable"),
    ("system_read",             "ok",     Needs::Nothing, "the system's files stay readable"),
    ("run_dir_write",           "ok",     Needs::Nothing, "its run directory is its own"),
    ("chown_to_root",           "EPERM",  Needs::Nothing, "no capabilities"),
    ("tcp_forbidden",           "EACCES", Needs::Ports,   "Landlock port rule, not ECONNREFUSED"),
    ("tcp_allowed",             "ok",     Needs::Nothing, "the kind's port"),
    ("tcp_fastopen_forbidden",  "EPERM",  Needs::Nothing, "seccomp: MSG_FASTOPEN (Landlock)"),
    ("mptcp_forbidden",         "EPROTONOSUPPORT", Needs::Nothing, "seccomp: MPTCP sockets"),
    // Landlock does not check connecting to a named Unix socket; the socket is refused.
    ("unix_socket_connect",     "EPERM",  Needs::Nothing, "seccomp: no Unix sockets"),
    ("socket_mptcp",            "EPROTONOSUPPORT", Needs::Nothing, "seccomp: MPTCP sockets"),
    // This kernel has no SCTP, so this case proves nothing here; it does where SCTP is built.
    ("socket_sctp",             "EPROTONOSUPPORT", Needs::Nothing, "seccomp: SCTP sockets"),
    ("unshare_user_ns",         "EPERM",  Needs::Nothing, "seccomp"),
    ("io_uring_setup",          "EPERM",  Needs::Nothing, "seccomp"),
    ("keyctl_user_keyring",     "EPERM",  Needs::Nothing, "seccomp"),
];

/// The hostile connector, built beside `sv0` by `cargo test --workspace`.
fn hostile_connector() -> PathBuf {
    let path = PathBuf::from(common::SV0).with_file_name("sv0-hostile-connector");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p sv0-hostile-connector` (the workspace's tests do)",
        path.display()
    );
    path
}

fn skipped(case: &str, reason: &str) {
    eprintln!("SKIPPED: {case}: {reason}");
}

fn lacking(needs: Needs, abi: u32) -> Option<String> {
    match needs {
        Needs::Ports if abi < 4 => {
            Some(format!("Landlock ABI {abi} has no TCP port rules (ABI 4)"))
        }
        Needs::Scoping if abi < 6 => {
            Some(format!("Landlock ABI {abi} has no signal scoping (ABI 6)"))
        }
        _ => None,
    }
}

/// Writes `release` in the victim's run directory when dropped: the victim stops waiting
/// whichever way the test ends.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("release"), b"");
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The collections of the test database holding `needle` anywhere in a document.
async fn collections_holding(db: &mongodb::Database, needle: &str) -> Vec<String> {
    let mut holding = Vec::new();
    for name in db.list_collection_names().await.unwrap() {
        let documents = all(db, &name, doc! {}).await;
        if documents.iter().any(|d| {
            mongodb::bson::Bson::Document(d.clone())
                .into_relaxed_extjson()
                .to_string()
                .contains(needle)
        }) {
            holding.push(name);
        }
    }
    holding
}

#[tokio::test]
async fn a_hostile_connector_reaches_nothing_beyond_its_run_and_its_own_credential() {
    let support = sv0_confine::Support::probe();
    let (abi, seccomp) = (support.landlock_abi, support.seccomp);
    if abi == 0 || !seccomp {
        // The worker refuses to run connectors on such a kernel: nothing here can be proven.
        skipped(
            "every confinement case",
            &format!("this kernel has Landlock ABI {abi}, seccomp filters {seccomp}"),
        );
        return;
    }

    // A listener on the kind's port, and one on a port the kind does not have: without
    // confinement, connecting to either works.
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let forbidden = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let forbidden_port = forbidden.local_addr().unwrap().port();

    // Stands for the deployment's secrets file: readable to every user, so that only Landlock
    // can keep a connector out.
    let secrets_dir = tempfile::Builder::new()
        .prefix("sv0-secrets-")
        .permissions(Permissions::from_mode(0o755))
        .tempdir()
        .unwrap();
    let secrets_file = secrets_dir.path().join("secrets.env");
    std::fs::write(
        &secrets_file,
        "SV0_MONGODB_URI=mongodb://u:compose-secret@db\n",
    )
    .unwrap();
    std::fs::set_permissions(&secrets_file, Permissions::from_mode(0o644)).unwrap();
    // A service's named socket, open to every user by its mode, as a container runtime's or a
    // database's often is.
    let unix_socket = secrets_dir.path().join("service.sock");
    let _service = std::os::unix::net::UnixListener::bind(&unix_socket).unwrap();
    std::fs::set_permissions(&unix_socket, Permissions::from_mode(0o777)).unwrap();

    let bench = Bench::new("confinement").await;
    let staged = StagedConnectors::new().unwrap();
    let mut kind = ConnectorKind::new(staged.stage(&hostile_connector()).unwrap(), Vec::new());
    kind.tcp_ports = vec![allowed_port];
    bench.register(KIND, kind);
    let worker = bench.worker(&["acme", "other"], &[]);

    // The other tenant's run, waiting until the attack is over.
    let victim_scope = bench
        .provision("other", KIND, doc! { "mode": "victim" }, 120)
        .await;
    let victim_run = bench.scan(&victim_scope).await;
    let deadline = Instant::now() + TIMEOUT;
    let victim_file = loop {
        if let Some(file) = bench.connector_file("victim.txt") {
            break file;
        }
        assert!(Instant::now() < deadline, "the victim never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let other_run_dir = victim_file.parent().unwrap().to_path_buf();
    let release = Release(other_run_dir.clone());
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&victim_file).unwrap()).unwrap();

    let attack_scope = bench
        .provision(
            "acme",
            KIND,
            doc! {
                "mode": "attack",
                "victim_pid": marker["pid"].as_i64().unwrap(),
                "other_run_dir": other_run_dir.display().to_string(),
                "secrets_file": secrets_file.display().to_string(),
                "forbidden_port": i32::from(forbidden_port),
                "allowed_port": i32::from(allowed_port),
                "unix_socket": unix_socket.display().to_string(),
            },
            60,
        )
        .await;
    let leak_scope = bench
        .provision("acme", KIND, doc! { "mode": "leak" }, 60)
        .await;
    let attack_run = bench.scan(&attack_scope).await;
    let leak_run = bench.scan(&leak_scope).await;
    let attack = bench.finished("acme", attack_run.id, TIMEOUT).await;
    let leak = bench.finished("acme", leak_run.id, TIMEOUT).await;
    drop(release);
    let victim = bench.finished("other", victim_run.id, TIMEOUT).await;
    for run in [&attack, &leak, &victim] {
        bench.settled_jobs(run.id, TIMEOUT).await;
    }
    assert_eq!(attack.status, RunStatus::Succeeded, "{attack:#?}");
    assert_eq!(victim.status, RunStatus::Succeeded, "{victim:#?}");
    assert!(
        !other_run_dir.exists(),
        "the victim's run directory outlived its run"
    );

    let report = Report::of(&attack);
    eprintln!("the hostile connector's report (Landlock ABI {abi}):");
    for (name, errors) in &report.0 {
        eprintln!("  {name}: {errors:?}");
    }
    let (_, metrics) = http_get(&worker.status_addr(), "/metrics");
    check_cases(&report, abi);
    check_identity(&report, &worker);
    check_metrics(&metrics, &report, abi);
    check_leak(&leak);
    let log: String = worker
        .all_events()
        .iter()
        .map(|event| event.to_string() + "\n")
        .collect();
    assert!(log.contains("connector finished"), "{log}");
    check_nowhere(bench.db(), &log, &metrics).await;
}

/// The run's categories: name → errors (the hostile connector's outcomes and facts).
struct Report(BTreeMap<String, Vec<String>>);

impl Report {
    fn of(run: &ScanRun) -> Report {
        Report(
            run.category_results
                .iter()
                .map(|(name, cell)| (name.as_str().to_string(), cell.errors.clone()))
                .collect(),
        )
    }

    /// A case's outcome; a read that worked also carried out what it read, after it.
    fn case(&self, name: &str) -> &str {
        &self.0[&format!("case_{name}")][0]
    }

    fn info(&self, name: &str) -> Vec<String> {
        self.0[&format!("info_{name}")].clone()
    }
}

/// The worker says what its connectors get, and says it truly: seccomp as the connector found
/// itself, not as the kernel could have it.
fn check_metrics(metrics: &str, report: &Report, abi: u32) {
    let seccomp = report.info("seccomp_mode") == ["2"];
    let said: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("sv0_connector_confinement{"))
        .collect();
    for (feature, on) in [
        ("landlock_filesystem", true),
        ("landlock_network", abi >= 4),
        ("landlock_scoping", abi >= 6),
        ("seccomp", seccomp),
        ("unprivileged_user", true),
        ("non_dumpable_worker", true),
    ] {
        let series = format!(
            "sv0_connector_confinement{{feature=\"{feature}\"}} {}",
            i32::from(on)
        );
        assert!(
            said.contains(&series.as_str()),
            "the worker's /metrics should say {series}; it says:\n{}",
            said.join("\n")
        );
    }
}

/// Every case, held to what confinement must answer; a case the kernel cannot enforce is
/// reported SKIPPED.
fn check_cases(report: &Report, abi: u32) {
    let reported: BTreeSet<&str> = report
        .0
        .keys()
        .filter_map(|name| name.strip_prefix("case_"))
        .collect();
    let planned: BTreeSet<&str> = CASES.iter().map(|(case, ..)| *case).collect();
    assert_eq!(
        reported, planned,
        "the attack ran exactly the planned cases"
    );
    let mut wrong = Vec::new();
    for &(case, expected, needs, layer) in CASES {
        let outcome = report.case(case);
        if let Some(reason) = lacking(needs, abi) {
            skipped(case, &format!("{reason} (the outcome was {outcome})"));
        } else if outcome != expected {
            wrong.push(format!("{case}: {outcome}, expected {expected} ({layer})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "escapes not refused as they must be:\n{}",
        wrong.join("\n")
    );
}

/// The connector's own process: the worker as its parent, the allowlist and its bundle as its
/// environment, another user without groups or capabilities under a root worker, no way to
/// regain privileges, and a seccomp filter.
fn check_identity(report: &Report, worker: &common::WorkerProcess) {
    assert_eq!(
        report.info("target_pid"),
        [worker.pid().to_string()],
        "getppid() is the worker"
    );
    // The worker inherits this process's environment.
    let mut names: Vec<String> = sv0_broker::OS_ENV_ALLOWLIST
        .into_iter()
        .filter(|name| ["HOME", "TMPDIR"].contains(name) || std::env::var_os(name).is_some())
        .chain(["DEMO_CLOUD_TOKEN"])
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(
        report.info("env_names"),
        names,
        "the allowlist and the bundle"
    );
    assert_eq!(
        report.info("home_and_tmpdir"),
        ["HOME=run_dir", "TMPDIR=run_dir"]
    );
    if Uid::effective().is_root() {
        let nobody = User::from_name("nobody").unwrap().expect("a nobody user");
        let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
        assert_eq!(
            report.info("uid"),
            [uid.as_str(); 3],
            "real, effective, saved"
        );
        assert_eq!(
            report.info("gid"),
            [gid.as_str(); 3],
            "real, effective, saved"
        );
        assert_eq!(report.info("groups"), Vec::<String>::new());
    } else {
        let uid = Uid::current().to_string();
        assert_eq!(report.info("uid"), [uid.as_str(); 3], "the worker's user");
    }
    assert_eq!(
        report.info("capabilities"),
        ["effective=0x0", "permitted=0x0", "inheritable=0x0"]
    );
    assert_eq!(report.info("no_new_privs"), ["1"]);
    assert_eq!(report.info("seccomp_mode"), ["2"], "a seccomp filter");
}

/// The connector printed its own credential raw, in base64, in hex and in three pieces on three
/// lines: the stored stderr has every form redacted, and no piece survives.
fn check_leak(leak: &ScanRun) {
    assert_eq!(leak.status, RunStatus::Failed, "{leak:#?}");
    let stored = leak
        .cell(DRIVER)
        .expect("a __driver__ cell")
        .errors
        .join("\n");
    assert!(stored.contains("exited with status 5"), "{stored}");
    for line in [
        "leak raw: [REDACTED]",
        "leak base64: [REDACTED]",
        "leak hex: [REDACTED]",
    ] {
        assert!(stored.lines().any(|l| l == line), "{line:?} in:\n{stored}");
    }
    let own = canary("acme");
    let unbroken: String = stored.split_whitespace().collect();
    for form in [
        own.clone(),
        base64(own.as_bytes()),
        hex::encode(own.as_bytes()),
    ] {
        assert!(!unbroken.contains(&form), "{form} survived in:\n{stored}");
    }
    let third = own.len().div_ceil(3);
    for piece in own.as_bytes().chunks(third) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(
            !stored.lines().any(|line| line == piece),
            "{piece:?} survived in:\n{stored}"
        );
    }
}

/// The other tenant's credential (in the worker's environment and its neighbour run's) is in no
/// collection of the database, the worker's log or its /metrics; nor is this tenant's own, in
/// any of the forms the leak printed.
async fn check_nowhere(db: &mongodb::Database, log: &str, metrics: &str) {
    let collections = db.list_collection_names().await.unwrap();
    for searched in ["scan_runs", "jobs", "connector_syncs"] {
        assert!(
            collections.iter().any(|c| c == searched),
            "{searched} is not among {collections:?}"
        );
    }
    let own = canary("acme");
    for secret in [
        canary("other"),
        own.clone(),
        base64(own.as_bytes()),
        hex::encode(own.as_bytes()),
    ] {
        assert_eq!(
            collections_holding(db, &secret).await,
            Vec::<String>::new(),
            "collections holding {secret}"
        );
        assert!(!log.contains(&secret), "{secret} is in the worker's log");
        assert!(!metrics.contains(&secret), "{secret} is on /metrics");
    }
}
