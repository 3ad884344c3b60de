//! Connector confinement, proven through real scans: a real `sv0 worker` holding two tenants'
//! credentials in its environment runs `sv0-hostile-connector`, which tries every way out of its
//! sandbox and reports what the kernel answered (one category per case, stored on its run); each
//! answer is held to what confinement must give. Two other tenants' runs of the same connector go
//! on meanwhile: `other`, whose credential is in the worker's environment, and `vaulted`, whose
//! credential only the fake Key Vault holds, so the worker resolves it at run time, through its
//! real production path (an egress proxy, a private CA, App Service's managed-identity
//! variables); the vaulted run is the neighbour attacked, and the vault, its proxy and the
//! identity endpoint are among the ports tried. A further run prints its own credential in plain
//! and encoded forms to stderr and fails, to prove the stored stderr is redacted. Last, the other
//! tenants' credentials are looked for everywhere a leak could land.
//!
//! CI runs as root: the worker is root and its connectors run as `nobody`. The secrets file, /tmp
//! and the other run's directory are open to `nobody` on permissions alone, so a refusal there is
//! Landlock's. A kernel short of a Landlock feature a case relies on gets that case reported as
//! `SKIPPED` on stderr, never passed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::Permissions;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use nix::unistd::{Uid, User};
use support::pipeline::{CREDENTIALS_REF, Fixture, canary, credential_var};
use support::{all, http_get};
use sv0_broker::naming::{Ref, TenantId, key_vault_prefix};
use sv0_broker::{CA_FILE_VAR, Provider, VAULT_URL_VAR};
use sv0_domain::category::DRIVER;
use sv0_domain::{RunStatus, ScanRun};
use sv0_pipeline::ConnectorKind;
use sv0_testkit::StagedConnectors;
use sv0_testkit::fake_identity::{FakeIdentity, IDENTITY_HEADER_SECRET};
use sv0_testkit::fake_vault::{self, FakeVault};

/// Each wait below is for an event that takes well under a few seconds here.
const TIMEOUT: Duration = Duration::from_secs(60);
const KIND: &str = "hostile";
/// The tenant whose credential only the fake Key Vault holds.
const VAULTED: &str = "vaulted";

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
    // The worker reaches these; its connectors must not, whatever they would find there.
    ("tcp_vault",               "EACCES", Needs::Ports,   "Landlock port rule: the Key Vault"),
    ("tcp_vault_proxy",         "EACCES", Needs::Ports,   "Landlock port rule: the vault's proxy"),
    ("tcp_identity",            "EACCES", Needs::Ports,   "Landlock port rule: the token endpoint"),
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
    let path = PathBuf::from(support::sv0()).with_file_name("sv0-hostile-connector");
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

/// Writes `release` in each victim's run directory when dropped: the victims stop waiting
/// whichever way the test ends.
#[derive(Default)]
struct Release(Vec<PathBuf>);

impl Drop for Release {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::write(dir.join("release"), b"");
        }
    }
}

/// The run directory of the victim `run` of `tenant`, once its connector wrote `victim.txt`
/// there: the one directory holding it that is not among `known`.
async fn victim_dir(fixture: &Fixture, tenant: &str, run: &ScanRun, known: &[PathBuf]) -> PathBuf {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = std::fs::read_dir(fixture.runs_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|dir| dir.join("victim.txt").exists() && !known.contains(dir));
        if let Some(dir) = found {
            return dir;
        }
        let now = fixture.domain.run(tenant, run.id).await.unwrap();
        assert!(
            !now.status.is_finished(),
            "{tenant}'s victim ended before it started waiting: {now:#?}"
        );
        assert!(Instant::now() < deadline, "{tenant}'s victim never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn victim_pid(dir: &Path) -> i64 {
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("victim.txt")).unwrap()).unwrap();
    marker["pid"].as_i64().unwrap()
}

/// The Key Vault secret holding `tenant`'s demo credential (bundle name `DEMO_CLOUD_TOKEN`).
fn vault_secret_name(tenant: &str) -> String {
    let prefix = key_vault_prefix(
        &TenantId::parse(tenant).unwrap(),
        &Ref::parse(CREDENTIALS_REF).unwrap(),
    );
    format!("{prefix}demo-cloud-token")
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

// Two threads: the fake vault, its proxy and the identity endpoint answer the worker while the
// test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

    // The vaulted tenant's credential, in the fake Key Vault only. The worker reaches the vault
    // by its real host name through an egress proxy (`HTTPS_PROXY`), trusts its certificate as
    // a private CA's (`SV0_KEYVAULT_CA_FILE`), and gets its token from the managed-identity
    // endpoint App Service's variables name: the production code path, configured as a
    // deployment would be.
    let vault = FakeVault::start().await;
    vault.set_secret(&vault_secret_name(VAULTED), &canary(VAULTED));
    let proxy = vault.proxy().await;
    let identity = FakeIdentity::start().await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("vault-ca.pem");
    std::fs::write(&ca_file, vault.ca_pem()).unwrap();
    let ca_file = ca_file.display().to_string();
    let mut vault_env = vec![
        (VAULT_URL_VAR, vault.url.as_str()),
        (CA_FILE_VAR, ca_file.as_str()),
        ("HTTPS_PROXY", proxy.url.as_str()),
        // The identity endpoint is on loopback, never behind the proxy.
        ("NO_PROXY", "127.0.0.1"),
    ];
    let identity_env = identity.app_service_env();
    vault_env.extend(identity_env.iter().map(|(k, v)| (*k, v.as_str())));

    let fixture = Fixture::new("confinement").await;
    let staged = StagedConnectors::new().unwrap();
    let mut kind = ConnectorKind::new(staged.stage(&hostile_connector()).unwrap(), Vec::new());
    kind.tcp_ports = vec![allowed_port];
    fixture.register(KIND, kind);
    let worker = fixture.worker_with_env(&["acme", "other"], &[], &vault_env);
    // Nothing but the vault can hand the vaulted tenant its credential: the worker's
    // environment is this process's, `vault_env` and the two other tenants' variables.
    let vaulted_var = credential_var(VAULTED).0;
    assert!(
        std::env::var_os(&vaulted_var).is_none(),
        "{vaulted_var} is set"
    );
    assert!(vault_env.iter().all(|(name, _)| *name != vaulted_var));

    // The neighbours' runs, waiting until the attack is over. Each checks its own credential
    // came; the vaulted one's can only have come from the vault.
    let mut release = Release::default();
    let vaulted_scope = fixture
        .provision_from(
            Provider::AzureKeyvault,
            VAULTED,
            KIND,
            doc! { "mode": "victim" },
            120,
        )
        .await;
    let vaulted_run = fixture.scan(&vaulted_scope).await;
    let vaulted_dir = victim_dir(&fixture, VAULTED, &vaulted_run, &[]).await;
    release.0.push(vaulted_dir.clone());
    let other_scope = fixture
        .provision("other", KIND, doc! { "mode": "victim" }, 120)
        .await;
    let other_run = fixture.scan(&other_scope).await;
    let other_dir = victim_dir(&fixture, "other", &other_run, &release.0).await;
    release.0.push(other_dir.clone());

    let attack_scope = fixture
        .provision(
            "acme",
            KIND,
            doc! {
                "mode": "attack",
                "victim_pid": victim_pid(&vaulted_dir),
                "other_run_dir": vaulted_dir.display().to_string(),
                "secrets_file": secrets_file.display().to_string(),
                "forbidden_port": i32::from(forbidden_port),
                "allowed_port": i32::from(allowed_port),
                "vault_port": i32::from(vault.port()),
                "vault_proxy_port": i32::from(proxy.port()),
                "identity_port": i32::from(identity.port()),
                "unix_socket": unix_socket.display().to_string(),
            },
            60,
        )
        .await;
    let leak_scope = fixture
        .provision("acme", KIND, doc! { "mode": "leak" }, 60)
        .await;
    let attack_run = fixture.scan(&attack_scope).await;
    let leak_run = fixture.scan(&leak_scope).await;
    let attack = fixture.finished("acme", attack_run.id, TIMEOUT).await;
    let leak = fixture.finished("acme", leak_run.id, TIMEOUT).await;
    drop(release);
    let vaulted = fixture.finished(VAULTED, vaulted_run.id, TIMEOUT).await;
    let other = fixture.finished("other", other_run.id, TIMEOUT).await;
    for run in [&attack, &leak, &vaulted, &other] {
        fixture.settled_jobs(run.id, TIMEOUT).await;
    }
    assert_eq!(attack.status, RunStatus::Succeeded, "{attack:#?}");
    assert_eq!(vaulted.status, RunStatus::Succeeded, "{vaulted:#?}");
    assert_eq!(other.status, RunStatus::Succeeded, "{other:#?}");
    for dir in [&vaulted_dir, &other_dir] {
        assert!(!dir.exists(), "a victim's run directory outlived its run");
    }
    check_vault_resolve(&vault, &proxy, &identity);

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
    check_nowhere(fixture.db(), &log, &metrics).await;
}

/// The vaulted victim's credential came from the vault, as production would fetch it: a token
/// from the App Service identity endpoint, every vault request tunnelled through the proxy to
/// the vault's own host name, the listing and the secret read with that token.
fn check_vault_resolve(vault: &FakeVault, proxy: &fake_vault::VaultProxy, identity: &FakeIdentity) {
    assert!(
        identity.requests() >= 1,
        "the worker asked the identity endpoint"
    );
    let tunnels = proxy.requests();
    let expected = format!("CONNECT {}:{} HTTP/1.1", fake_vault::HOST, vault.port());
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| *t == expected),
        "{tunnels:#?}"
    );
    // Each vault request as (path without a trailing `/`, whether it carried the token).
    let requests = vault.requests();
    let seen: Vec<(&str, bool)> = requests
        .iter()
        .filter_map(|r| {
            let path = r.strip_prefix("GET ")?.split(['?', ' ']).next()?;
            Some((path.trim_end_matches('/'), r.ends_with(" bearer")))
        })
        .collect();
    let read = format!("/secrets/{}", vault_secret_name(VAULTED));
    for wanted in ["/secrets", read.as_str()] {
        assert!(seen.contains(&(wanted, true)), "{wanted} in {requests:#?}");
    }
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
fn check_identity(report: &Report, worker: &support::Sv0Process) {
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

/// The other tenants' credentials (`other`'s in the worker's environment and its run's;
/// `vaulted`'s in the fake vault and its run's), and what the worker authenticates to the vault
/// with (the identity endpoint's header secret, the token it hands out), are in no collection of
/// the database, the worker's log or its /metrics; nor is this tenant's own, in any of the forms
/// the leak printed.
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
        canary(VAULTED),
        IDENTITY_HEADER_SECRET.to_string(),
        fake_vault::TOKEN.to_string(),
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
