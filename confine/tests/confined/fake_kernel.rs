//! Another kernel, played for one thread: a seccomp filter on a thread of its own hands the
//! system calls a case names, that thread's and those of every process it starts, to a
//! supervisor in this process, which answers each as the other kernel would. Other threads, and
//! so the rest of the suite running beside it, keep the real kernel.

use std::io;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use nix::libc;

use crate::harness::skip;

/// A system call made on the played kernel.
pub struct Call {
    pid: u32,
    data: libc::seccomp_data,
}

impl Call {
    pub fn arg(&self, index: usize) -> u64 {
        self.data.args[index]
    }

    /// The `u32` at `address` in the caller's memory: what an argument points to. Not through
    /// `/proc/<pid>/mem`, which a non-dumpable process's other users cannot open.
    pub fn read_u32(&self, address: u64) -> io::Result<u32> {
        let mut value = 0u32;
        let local = libc::iovec {
            iov_base: (&mut value as *mut u32).cast(),
            iov_len: size_of::<u32>(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: size_of::<u32>(),
        };
        // SAFETY: the kernel writes at most `iov_len` bytes to `value`, which outlives the call,
        // and only reads the other process's memory.
        let read =
            unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        match read {
            4 => Ok(value),
            -1 => Err(io::Error::last_os_error()),
            _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }
}

/// How the played kernel answers a call.
pub enum Reply {
    Returns(i64),
    Fails(i32),
    /// As the real kernel does: the call goes through.
    Proceeds,
}

/// Runs `body` on a thread of its own where each system call numbered in `calls` is answered by
/// `answer`; none (after saying why) when the kernel cannot hand calls to a supervisor.
pub fn on_kernel<T: Send>(
    calls: &[libc::c_long],
    answer: impl Fn(&Call) -> Reply,
    body: impl FnOnce() -> T + Send,
) -> Option<T> {
    let filter = &filter(calls);
    let done = &AtomicBool::new(false);
    thread::scope(|scope| {
        let (installed, listener) = mpsc::channel();
        // Named after the test, for its panics and skips.
        let name = thread::current()
            .name()
            .map(|test| format!("{test} (played kernel)"));
        let mut played = thread::Builder::new();
        if let Some(name) = name {
            played = played.name(name);
        }
        let played = played.spawn_scoped(scope, move || {
            // Set however the thread ends, a panicking body included, or the supervisor would
            // wait for it forever.
            let _done = SetOnDrop(done);
            match install(filter) {
                Ok(listener) => {
                    installed.send(Ok(listener)).unwrap();
                    Some(body())
                }
                Err(error) => {
                    installed.send(Err(error)).unwrap();
                    None
                }
            }
        });
        let played = played.expect("start the played kernel's thread");
        match listener.recv().unwrap() {
            Ok(listener) => supervise(&listener, &answer, done),
            Err(error) => skip(&format!("cannot play another kernel: {error}")),
        }
        played
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Every call numbered in `calls` goes to the supervisor, every other one through. Architectures
/// are not told apart: nothing these tests run makes another architecture's calls, and the
/// filter guards nothing.
fn filter(calls: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let instruction = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let number = offset_of!(libc::seccomp_data, nr) as u32;
    let mut filter = vec![instruction(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        number,
        0,
        0,
    )];
    for &call in calls {
        filter.push(instruction(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            call as u32,
            0,
            1,
        ));
        filter.push(instruction(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_USER_NOTIF,
            0,
            0,
        ));
    }
    filter.push(instruction(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ALLOW,
        0,
        0,
    ));
    filter
}

/// Puts `filter` on the calling thread, which needs no_new_privs for it when not privileged;
/// both stay with the thread and its children, not the rest of the process.
fn install(filter: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: the kernel copies the program, which outlives the call, and writes nothing to it.
    let listener = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &program as *const libc::sock_fprog,
        )
    };
    if listener < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(listener as i32) })
}

/// Answers the filtered calls until the played thread is done. The wait for a call times out
/// so that the loop sees `done` soon after.
fn supervise(listener: &OwnedFd, answer: &impl Fn(&Call) -> Reply, done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        let mut ready = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call.
        if unsafe { libc::poll(&mut ready, 1, 20) } <= 0 || ready.revents & libc::POLLIN == 0 {
            continue;
        }
        // SAFETY: the kernel requires a zeroed notification, and a zeroed one is a valid value.
        let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl writes one seccomp_notif, the type it is given.
        let received = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notification,
            )
        };
        if received != 0 {
            // The caller was killed before the call was received: nothing to answer.
            continue;
        }
        let call = Call {
            pid: notification.pid,
            data: notification.data,
        };
        let mut response = libc::seccomp_notif_resp {
            id: notification.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        match answer(&call) {
            Reply::Returns(value) => response.val = value,
            Reply::Fails(errno) => response.error = -errno,
            Reply::Proceeds => response.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        }
        // SAFETY: the ioctl reads one seccomp_notif_resp, the type it is given. It fails only
        // when the caller was killed meanwhile, and then nobody waits for the answer.
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut response,
            );
        }
    }
}
