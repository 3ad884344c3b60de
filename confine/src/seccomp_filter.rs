//! The seccomp filters of a confined process, compiled in the parent. They refuse what an
//! unprivileged program has no business doing (other processes' memory, mounts, namespaces,
//! kernel keyrings and modules, BPF, io_uring) and the sockets that get past Landlock's rules
//! (MPTCP, SCTP, TCP Fast Open, Unix sockets).

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("sv0-confine compiles its seccomp filter for x86_64 and aarch64 only");

/// Refused with EPERM whatever their arguments.
const DENIED: &[libc::c_long] = &[
    // Other processes: their memory, their descriptors, comparing their kernel objects.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    // Mounts, old and new API.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    // Namespaces: a new user namespace hands out capabilities inside it.
    libc::SYS_unshare,
    libc::SYS_setns,
    // Kernel keyrings are shared by uid, not by sandbox.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // Large kernel attack surface an unprivileged program does not need; io_uring also performs
    // connects outside the syscalls this filter inspects.
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_fanotify_init,
    // File handles bypass path-based checks.
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    // Whole-system operations.
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_acct,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_syslog,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_modify_ldt,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// `clone` flags creating a namespace; `CLONE_NEWTIME` is absent because on `clone` its bit
/// belongs to the exit signal.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// Socket protocols Landlock's TCP rules do not cover: an MPTCP socket connects anywhere, and
/// SCTP is never filtered. Refusing them as unsupported makes runtimes fall back to TCP.
const UNFILTERED_PROTOCOLS: &[libc::c_int] = &[libc::IPPROTO_MPTCP, libc::IPPROTO_SCTP];

/// The send calls, each with the index of its flags argument: `MSG_FASTOPEN` connects from
/// within the send, past the connect hook Landlock checks.
const SENDS: &[(libc::c_long, u8)] = &[
    (libc::SYS_sendto, 3),
    (libc::SYS_sendmsg, 2),
    (libc::SYS_sendmmsg, 3),
];

/// The programs to install, in order. Seccomp gives one filter one action on a match, hence one
/// filter per errno; the kernel runs every installed filter and they match disjoint syscalls.
pub(crate) fn compile() -> Result<Vec<BpfProgram>, BackendError> {
    let mut programs = vec![
        compile_filter(denied_rules()?, libc::EPERM)?,
        compile_filter(protocol_rules()?, libc::EPROTONOSUPPORT)?,
        // `clone3` passes its flags in memory a filter cannot read. ENOSYS, the answer Docker's
        // default profile gives too, makes libc fall back to `clone`, whose flags it can.
        compile_filter(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            libc::ENOSYS,
        )?,
    ];
    #[cfg(target_arch = "x86_64")]
    programs.push(x32_guard());
    Ok(programs)
}

fn compile_filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: libc::c_int,
) -> Result<BpfProgram, BackendError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        ARCH,
    )?;
    filter.try_into()
}

fn denied_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&call| (call, Vec::new())).collect();
    rules.insert(
        libc::SYS_clone,
        NAMESPACE_FLAGS
            .iter()
            .map(|&flag| bits_set_rule(0, flag as u32))
            .collect::<Result<_, _>>()?,
    );
    // Landlock (up to ABI 7) does not check connecting to a named Unix socket: a container
    // runtime's, a database's (`mongod` listens on `/tmp/mongodb-27017.sock` by default). Creating
    // one is refused; `socketpair` stays, its sockets have no name to reach anything by.
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )?])?],
    );
    for &(call, flags_index) in SENDS {
        rules.insert(
            call,
            vec![bits_set_rule(flags_index, libc::MSG_FASTOPEN as u32)?],
        );
    }
    Ok(rules)
}

fn protocol_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let rules = UNFILTERED_PROTOCOLS
        .iter()
        .map(|&protocol| {
            let condition = SeccompCondition::new(
                2,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                protocol as u64,
            )?;
            SeccompRule::new(vec![condition])
        })
        .collect::<Result<_, _>>()?;
    Ok(BTreeMap::from([(libc::SYS_socket, rules)]))
}

/// Matches when every bit of `bits` is set in argument `index`. The arguments matched this way
/// are C ints or hold their flags in the low 32 bits, hence a 32-bit comparison.
fn bits_set_rule(index: u8, bits: u32) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(u64::from(bits)),
        u64::from(bits),
    )?])
}

/// On x86_64 the x32 ABI shares the architecture value with the native one and numbers its
/// calls with bit 30 set, so none of the rules above would match them; on a kernel built with
/// x32 that is a way around every rule. Refuse every such number with ENOSYS.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> BpfProgram {
    use seccompiler::sock_filter;
    const SYSCALL_NUMBER_OFFSET: u32 = 0;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let instruction = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    vec![
        instruction(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            0,
            0,
            SYSCALL_NUMBER_OFFSET,
        ),
        instruction(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            0,
            1,
            X32_SYSCALL_BIT,
        ),
        instruction(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        instruction(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}
