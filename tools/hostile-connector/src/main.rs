//! `sv0-hostile-connector`: a connector that tries to get out of its confinement and reports what
//! the kernel answered. It is registered and run like any connector; its plan is the scope
//! (`--scope-json`):
//!
//! ```json
//! {"mode": "attack", "worker_pid": 123, "victim_pid": 456, "other_run_dir": "/runs/sv0-connector-x",
//!  "secrets_file": "/tmp/s/secrets.env", "forbidden_port": 5000, "allowed_port": 5001,
//!  "vault_port": 5002, "vault_proxy_port": 5003, "identity_port": 5004}
//! ```
//!
//! - `attack` tries each escape and writes one category per case, `case_<name>`, whose `errors`
//!   hold the outcome: `ok` (the escape worked) or the errno's name (`EACCES`, `EPERM`, …); and
//!   `info_<name>` categories for what it learnt about itself (its variables' names, its ids,
//!   its capabilities). The categories are the report because a successful run stores them and
//!   not its stderr. A case whose target the plan does not name is left out. It exits 0.
//! - `victim` stands for another tenant's run at the same time: it checks that its own secret (the
//!   variable `secret_var`) was handed to it, failing at once if not; writes `victim.txt` (its pid)
//!   in its run directory, waits for a `release` file there (at most 60 s), then writes its
//!   outputs.
//! - `leak` prints its own secret (the variable `secret_var`, `DEMO_CLOUD_TOKEN` by default) to
//!   stderr raw, in base64, in hex and split across three lines, and exits 5: a failed run's
//!   stderr tail is what the driver stores, redacted.
//!
//! No failure ends the process early: every one is an outcome. Should confinement be missing, the
//! worker still comes to no harm: signals are signal 0, ptrace is a seize that never stops it,
//! memory is only read, a stolen descriptor is closed, and files written outside are removed.

use std::collections::BTreeMap;
use std::ffi::c_long;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use nix::errno::Errno;
use nix::libc;
use nix::sched::CloneFlags;
use nix::sys::ptrace;
use nix::sys::signal::kill;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, Uid, fork, getppid};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const EXIT_USAGE: u8 = 2;
const EXIT_OUTPUT: u8 = 3;
const EXIT_NOT_RELEASED: u8 = 4;
/// The leak run's status: any failure gets the stderr tail stored; this one says it was meant.
const EXIT_LEAKED: u8 = 5;
const EXIT_NO_SECRET: u8 = 6;

/// How long a victim waits for its `release` file. The test releases it within seconds; a
/// victim left waiting must not hold its worker for the run's whole budget.
const VICTIM_WAIT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What a read that worked carries out, at most: an environment or a secrets file fits.
const MAX_LOOT_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Attack,
    Victim,
    Leak,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    mode: Mode,
    /// The worker to attack; none: the parent, which is the worker that started this process.
    worker_pid: Option<i32>,
    /// A connector of another run, running beside this one.
    victim_pid: Option<i32>,
    other_run_dir: Option<PathBuf>,
    secrets_file: Option<PathBuf>,
    forbidden_port: Option<u16>,
    allowed_port: Option<u16>,
    /// The credential store's ports (none of them the kind's): the Key Vault, the egress proxy
    /// the worker reaches it through, and the managed-identity endpoint that hands out its tokens.
    vault_port: Option<u16>,
    vault_proxy_port: Option<u16>,
    identity_port: Option<u16>,
    /// A named Unix socket a service listens on (a container runtime's, a database's).
    unix_socket: Option<PathBuf>,
    #[serde(default = "default_secret_var")]
    secret_var: String,
    /// Whether the leak also prints the encoded and split forms.
    #[serde(default = "yes")]
    encodings: bool,
}

fn default_secret_var() -> String {
    "DEMO_CLOUD_TOKEN".to_string()
}

fn yes() -> bool {
    true
}

struct Args {
    scope_json: PathBuf,
    category_results_out: PathBuf,
    graph_json: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let (mut scope, mut results, mut graph) = (None, None, None);
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        let slot = match flag.to_str() {
            Some("--scope-json") => &mut scope,
            Some("--category-results-out") => &mut results,
            Some("--graph-json") => &mut graph,
            _ => return Err(format!("unexpected argument {flag:?}")),
        };
        *slot = Some(PathBuf::from(
            args.next()
                .ok_or_else(|| format!("{flag:?} needs a value"))?,
        ));
    }
    match (scope, results, graph) {
        (Some(scope_json), Some(category_results_out), Some(graph_json)) => Ok(Args {
            scope_json,
            category_results_out,
            graph_json,
        }),
        _ => Err(
            "usage: sv0-hostile-connector --scope-json PATH --category-results-out PATH \
             --graph-json PATH"
                .to_string(),
        ),
    }
}

fn main() -> ExitCode {
    let started_at = now();
    let (args, plan) = match parse_args().and_then(|args| {
        let text = std::fs::read(&args.scope_json)
            .map_err(|e| format!("{}: {e}", args.scope_json.display()))?;
        let plan: Plan =
            serde_json::from_slice(&text).map_err(|e| format!("the plan (scope.json): {e}"))?;
        Ok((args, plan))
    }) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("sv0-hostile-connector: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let report = match plan.mode {
        Mode::Leak => return leak(&plan),
        // A neighbour without its credential would prove nothing about keeping that credential in.
        Mode::Victim if std::env::var_os(&plan.secret_var).is_none_or(|v| v.is_empty()) => {
            eprintln!(
                "sv0-hostile-connector: victim: no value for {} in my environment",
                plan.secret_var
            );
            return ExitCode::from(EXIT_NO_SECRET);
        }
        Mode::Victim => match victim() {
            Ok(report) => report,
            Err(message) => {
                eprintln!("sv0-hostile-connector: {message}");
                return ExitCode::from(EXIT_NOT_RELEASED);
            }
        },
        Mode::Attack => attack(&plan),
    };
    match write_outputs(&args, &report, &started_at) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sv0-hostile-connector: writing the outputs: {e}");
            ExitCode::from(EXIT_OUTPUT)
        }
    }
}

// The report

/// Category name → its `errors`: the outcome token (then, for a read that worked, what it
/// read), or the facts found.
#[derive(Default)]
struct Report(BTreeMap<String, Vec<String>>);

impl Report {
    fn case(&mut self, name: &str, outcome: Outcome) {
        self.0.insert(format!("case_{name}"), vec![outcome]);
    }

    /// A read's outcome, and what it read: carried out in the report, the only channel to the
    /// outside a connector is given, so that a read that should have been refused also leaves
    /// its loot where the tests look for leaked secrets.
    fn loot(&mut self, name: &str, read: io::Result<Vec<u8>>) {
        let errors = match read {
            Ok(bytes) => {
                let mut text = String::from_utf8_lossy(&bytes).replace('\0', "\n");
                let mut end = text.len().min(MAX_LOOT_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                vec![ok(), text]
            }
            Err(e) => vec![io_error_name(&e)],
        };
        self.0.insert(format!("case_{name}"), errors);
    }

    fn info(&mut self, name: &str, facts: Vec<String>) {
        self.0.insert(format!("info_{name}"), facts);
    }
}

/// `ok`, or the errno's name.
type Outcome = String;

fn ok() -> Outcome {
    "ok".to_string()
}

fn errno_outcome<T>(result: nix::Result<T>) -> Outcome {
    match result {
        Ok(_) => ok(),
        Err(errno) => format!("{errno:?}"),
    }
}

fn io_outcome<T>(result: io::Result<T>) -> Outcome {
    match result {
        Ok(_) => ok(),
        Err(e) => io_error_name(&e),
    }
}

fn io_error_name(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => format!("{:?}", Errno::from_raw(code)),
        None => format!("{:?}", error.kind()),
    }
}

/// A raw syscall's return value as a result.
fn syscall_result(ret: c_long) -> nix::Result<c_long> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

#[derive(Serialize)]
struct Cell<'a> {
    status: &'static str,
    items_scanned: u64,
    started_at: &'a str,
    ended_at: &'a str,
    errors: &'a [String],
}

fn write_outputs(args: &Args, report: &Report, started_at: &str) -> io::Result<()> {
    let ended_at = now();
    let cells: BTreeMap<&str, Cell> = report
        .0
        .iter()
        .map(|(name, errors)| {
            let cell = Cell {
                status: "succeeded",
                items_scanned: 0,
                started_at,
                ended_at: &ended_at,
                errors,
            };
            (name.as_str(), cell)
        })
        .collect();
    // The graph first: the category results are the last thing a run writes.
    std::fs::write(&args.graph_json, b"{\"entities\":[],\"edges\":[]}\n")?;
    std::fs::write(&args.category_results_out, serde_json::to_vec(&cells)?)
}

fn now() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .expect("a UTC time of this era formats as RFC 3339")
}

// Modes

fn attack(plan: &Plan) -> Report {
    let worker = plan.worker_pid.map_or_else(getppid, Pid::from_raw);
    let mut report = Report::default();
    report.info("target_pid", vec![worker.to_string()]);

    report.loot("worker_environ", read_proc_file(worker, "environ"));
    report.case("worker_mem", read_mem(worker));
    report.case("worker_process_vm_readv", read_process_vm(worker));
    report.case("worker_kill_0", errno_outcome(kill(worker, None)));
    report.case("worker_ptrace", ptrace_seize(worker));
    report.case("worker_pidfd_getfd", steal_descriptor(worker));
    if let Some(victim) = plan.victim_pid.map(Pid::from_raw) {
        report.loot("victim_environ", read_proc_file(victim, "environ"));
        report.case("victim_kill_0", errno_outcome(kill(victim, None)));
    }

    if let Some(secrets) = &plan.secrets_file {
        report.loot("secrets_read", std::fs::read(secrets));
        if let Some(dir) = secrets.parent() {
            report.case("secrets_dir_write", write_and_remove(dir));
        }
    }
    if let Some(other) = &plan.other_run_dir {
        report.case("other_run_list", list(other));
        report.loot("other_run_read", std::fs::read(other.join("victim.txt")));
        report.case("other_run_write", write_and_remove(other));
    }
    report.case("tmp_write", write_and_remove(Path::new("/tmp")));
    report.case("system_read", io_outcome(std::fs::read("/etc/passwd")));
    let inside = Path::new("written-inside.txt");
    report.case("run_dir_write", io_outcome(std::fs::write(inside, b"mine")));
    report.case(
        "chown_to_root",
        io_outcome(std::os::unix::fs::chown(inside, Some(0), Some(0))),
    );

    if let Some(port) = plan.forbidden_port {
        report.case("tcp_forbidden", tcp_connect(port));
        report.case("tcp_fastopen_forbidden", tcp_fastopen(port));
        report.case("mptcp_forbidden", mptcp_connect(port));
    }
    if let Some(port) = plan.allowed_port {
        report.case("tcp_allowed", tcp_connect(port));
    }
    for (case, port) in [
        ("tcp_vault", plan.vault_port),
        ("tcp_vault_proxy", plan.vault_proxy_port),
        ("tcp_identity", plan.identity_port),
    ] {
        if let Some(port) = port {
            report.case(case, tcp_connect(port));
        }
    }
    if let Some(path) = &plan.unix_socket {
        report.case(
            "unix_socket_connect",
            io_outcome(std::os::unix::net::UnixStream::connect(path)),
        );
    }
    report.case("socket_mptcp", raw_socket(libc::IPPROTO_MPTCP));
    report.case("socket_sctp", raw_socket(libc::IPPROTO_SCTP));

    report.case("unshare_user_ns", unshare_in_child());
    report.case("io_uring_setup", io_uring_setup());
    report.case("keyctl_user_keyring", user_keyring());

    report.info("env_names", env_names());
    report.info("home_and_tmpdir", home_and_tmpdir());
    report.info(
        "uid",
        ids(nix::unistd::getresuid().map(|r| [r.real, r.effective, r.saved].map(Uid::as_raw))),
    );
    report.info(
        "gid",
        ids(nix::unistd::getresgid().map(|r| [r.real, r.effective, r.saved].map(|g| g.as_raw()))),
    );
    report.info("groups", groups());
    report.info("capabilities", capabilities());
    report.info("no_new_privs", vec![prctl_get(libc::PR_GET_NO_NEW_PRIVS)]);
    report.info("seccomp_mode", vec![prctl_get(libc::PR_GET_SECCOMP)]);
    report
}

/// Writes `victim.txt`, then waits to be released: the attack runs meanwhile.
fn victim() -> Result<Report, String> {
    let marker = serde_json::json!({ "pid": std::process::id(), "marker": "sv0-victim" });
    // Renamed into place: whoever finds `victim.txt` finds it whole.
    std::fs::write("victim.txt.tmp", marker.to_string())
        .and_then(|()| std::fs::rename("victim.txt.tmp", "victim.txt"))
        .map_err(|e| format!("writing victim.txt: {e}"))?;
    let deadline = Instant::now() + VICTIM_WAIT;
    while !Path::new("release").exists() {
        if Instant::now() > deadline {
            return Err(format!("not released within {} s", VICTIM_WAIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut report = Report::default();
    report.info("released", Vec::new());
    Ok(report)
}

/// Prints the secret in the forms a careless connector would, then fails.
fn leak(plan: &Plan) -> ExitCode {
    let Some(secret) = std::env::var_os(&plan.secret_var) else {
        eprintln!("leak: no variable {} in my environment", plan.secret_var);
        return ExitCode::from(EXIT_USAGE);
    };
    let secret = secret.to_string_lossy().into_owned();
    eprintln!("leak raw: {secret}");
    if plan.encodings {
        let bytes = secret.as_bytes();
        eprintln!(
            "leak base64: {}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("leak hex: {hex}");
        eprintln!("leak split across the next three lines:");
        let third = bytes.len().div_ceil(3).max(1);
        for part in bytes.chunks(third) {
            eprintln!("{}", String::from_utf8_lossy(part));
        }
    }
    eprintln!("leak: done, failing on purpose so that this is stored");
    ExitCode::from(EXIT_LEAKED)
}

// Another process: the worker, or a connector of another run

fn read_proc_file(pid: Pid, file: &str) -> io::Result<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/{file}"))
}

/// The first readable mapping of `pid`, from its `maps` (readable only when nothing confines this
/// process): an address whose read can only fail for want of permission.
fn readable_address(pid: Pid) -> Option<(u64, usize)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, _) = fields.next()?.split_once('-')?;
        fields
            .next()?
            .starts_with('r')
            .then(|| u64::from_str_radix(start, 16).ok())
            .flatten()
            .map(|address| (address, 16))
    })
}

/// An address for when the maps are out of reach: the permission check comes before the address
/// is looked at, so a refusal is still told apart from EFAULT/EIO.
const ANY_ADDRESS: (u64, usize) = (0x10000, 16);

fn read_mem(pid: Pid) -> Outcome {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::File::open(format!("/proc/{pid}/mem")) {
        Ok(file) => file,
        Err(e) => return io_error_name(&e),
    };
    let (address, len) = readable_address(pid).unwrap_or(ANY_ADDRESS);
    let mut buffer = vec![0u8; len];
    io_outcome(file.read_exact_at(&mut buffer, address))
}

fn read_process_vm(pid: Pid) -> Outcome {
    let (address, len) = readable_address(pid).unwrap_or(ANY_ADDRESS);
    let mut buffer = vec![0u8; len];
    let remote = [RemoteIoVec {
        base: address as usize,
        len,
    }];
    errno_outcome(process_vm_readv(
        pid,
        &mut [IoSliceMut::new(&mut buffer)],
        &remote,
    ))
}

/// `PTRACE_SEIZE` asks the kernel exactly what `PTRACE_ATTACH` does, without stopping the
/// tracee; on success the tracee is interrupted, waited for and let go at once.
fn ptrace_seize(pid: Pid) -> Outcome {
    if let Err(errno) = ptrace::seize(pid, ptrace::Options::empty()) {
        return format!("{errno:?}");
    }
    if ptrace::interrupt(pid).is_ok() {
        let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
    }
    let _ = ptrace::detach(pid, None);
    ok()
}

/// `pidfd_getfd`: a copy of the worker's descriptor 0 (any of its descriptors would do: its
/// database connections are among them).
fn steal_descriptor(pid: Pid) -> Outcome {
    // SAFETY: plain syscalls on integers; a returned descriptor is owned here and closed.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let pidfd = match syscall_result(pidfd) {
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
        Err(errno) => return format!("{errno:?}"),
    };
    let stolen = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), 0, 0) };
    errno_outcome(syscall_result(stolen).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

// Files

fn list(dir: &Path) -> Outcome {
    io_outcome(std::fs::read_dir(dir).and_then(|entries| entries.collect::<io::Result<Vec<_>>>()))
}

fn write_and_remove(dir: &Path) -> Outcome {
    let path = dir.join(format!("sv0-hostile-{}.txt", std::process::id()));
    match std::fs::write(&path, b"written by sv0-hostile-connector") {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
            ok()
        }
        Err(e) => io_error_name(&e),
    }
}

// Network

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn tcp_connect(port: u16) -> Outcome {
    io_outcome(TcpStream::connect_timeout(&loopback(port), CONNECT_TIMEOUT))
}

fn raw_socket(protocol: i32) -> Outcome {
    // SAFETY: socket(2) on integers; a returned descriptor is owned and closed.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, protocol) };
    errno_outcome(syscall_result(fd.into()).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

fn sockaddr(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// An MPTCP socket connecting where plain TCP may not: Landlock's port rule does not see it.
fn mptcp_connect(port: u16) -> Outcome {
    // SAFETY: socket(2) and connect(2) with a sockaddr_in that outlives the call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_MPTCP) };
    let socket = match syscall_result(fd.into()) {
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
        Err(errno) => return format!("{errno:?}"),
    };
    let address = sockaddr(port);
    let ret = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    errno_outcome(syscall_result(ret.into()))
}

/// A TCP Fast Open `sendto`: it connects from within the send rather than through `connect(2)`,
/// a path Landlock's port rule has not covered on every kernel.
fn tcp_fastopen(port: u16) -> Outcome {
    // SAFETY: socket(2) and sendto(2) with buffers that outlive the call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    let socket = match syscall_result(fd.into()) {
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
        Err(errno) => return format!("{errno:?}"),
    };
    let address = sockaddr(port);
    let data = b"hello";
    let ret = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_FASTOPEN,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    errno_outcome(syscall_result(ret as c_long))
}

// Syscalls that reach beyond the process

/// In a child: a new user namespace would change this process's view of everything after it.
fn unshare_in_child() -> Outcome {
    // SAFETY: this process is single-threaded; the child calls only async-signal-safe functions.
    match unsafe { fork() } {
        Err(errno) => format!("fork: {errno:?}"),
        Ok(ForkResult::Child) => {
            let code = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0,
                Err(errno) => errno as i32,
            };
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => ok(),
            Ok(WaitStatus::Exited(_, code)) => format!("{:?}", Errno::from_raw(code)),
            Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed by {signal:?}"),
            Ok(other) => format!("{other:?}"),
            Err(errno) => format!("waitpid: {errno:?}"),
        },
    }
}

fn io_uring_setup() -> Outcome {
    // The kernel's `struct io_uring_params`: 120 bytes, zeroed for the defaults.
    let mut params = [0u32; 30];
    // SAFETY: the kernel writes within `params`; a returned ring descriptor is owned and closed.
    let ret = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    errno_outcome(syscall_result(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// The user keyring is shared by every process of the uid: every other connector's, too.
fn user_keyring() -> Outcome {
    const KEYCTL_GET_KEYRING_ID: c_long = 0;
    const KEY_SPEC_USER_KEYRING: c_long = -4;
    // SAFETY: keyctl(2) on integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_USER_KEYRING,
            0,
        )
    };
    errno_outcome(syscall_result(ret))
}

// What it is

fn env_names() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether HOME and TMPDIR are this run's directory (the working directory), or elsewhere.
fn home_and_tmpdir() -> Vec<String> {
    let cwd = std::env::current_dir().ok();
    ["HOME", "TMPDIR"]
        .into_iter()
        .map(|name| {
            let here = std::env::var_os(name).map(PathBuf::from);
            let verdict = match here {
                None => "unset",
                Some(path) if Some(&path) == cwd.as_ref() => "run_dir",
                Some(_) => "elsewhere",
            };
            format!("{name}={verdict}")
        })
        .collect()
}

/// Real, effective and saved ids.
fn ids(result: nix::Result<[u32; 3]>) -> Vec<String> {
    match result {
        Ok(ids) => ids.iter().map(u32::to_string).collect(),
        Err(errno) => vec![format!("{errno:?}")],
    }
}

fn groups() -> Vec<String> {
    match nix::unistd::getgroups() {
        Ok(groups) => groups.iter().map(|g| g.as_raw().to_string()).collect(),
        Err(errno) => vec![format!("{errno:?}")],
    }
}

/// The capability sets, from `capget` (`/proc/self/status` is out of a confined process's
/// reach): `effective=0x…`, `permitted=0x…`, `inheritable=0x…`.
fn capabilities() -> Vec<String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: version 3 takes two `Data`, which `data` holds.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if let Err(errno) = syscall_result(ret) {
        return vec![format!("capget: {errno:?}")];
    }
    let join = |part: fn(&Data) -> u32| u64::from(part(&data[1])) << 32 | u64::from(part(&data[0]));
    vec![
        format!("effective={:#x}", join(|d| d.effective)),
        format!("permitted={:#x}", join(|d| d.permitted)),
        format!("inheritable={:#x}", join(|d| d.inheritable)),
    ]
}

fn prctl_get(option: i32) -> String {
    // SAFETY: PR_GET_* options take no pointers.
    let ret = unsafe { libc::prctl(option, 0, 0, 0, 0) };
    match syscall_result(ret.into()) {
        Ok(value) => value.to_string(),
        Err(errno) => format!("{errno:?}"),
    }
}
