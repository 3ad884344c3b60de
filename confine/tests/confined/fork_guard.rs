//! Catches a confined child that allocates between fork and exec. Every test spawn first runs a
//! `pre_exec` step that raises a flag in the child's copy of this process; the allocator of this
//! test binary, finding the flag raised, writes a complaint to the child's stderr and exits it
//! with [`ALLOCATED_AFTER_FORK`] instead of letting the exec happen.
//!
//! The deadlock itself is rare to observe: glibc's `fork` resets its own allocator locks in the
//! child. The rule stands for every other lock and allocator, so the tests check the rule.

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc;

pub const ALLOCATED_AFTER_FORK: i32 = 99;

static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);

struct ForkGuard;

#[global_allocator]
static ALLOCATOR: ForkGuard = ForkGuard;

fn refuse_in_forked_child() {
    if IN_FORKED_CHILD.load(Ordering::Relaxed) {
        const COMPLAINT: &[u8] = b"allocated between fork and exec\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe and take no Rust-side state.
        unsafe {
            libc::write(2, COMPLAINT.as_ptr().cast(), COMPLAINT.len());
            libc::_exit(ALLOCATED_AFTER_FORK);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for ForkGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        refuse_in_forked_child();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        refuse_in_forked_child();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        refuse_in_forked_child();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        refuse_in_forked_child();
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Arms the guard in the children of `command`; call before applying the confinement so that
/// everything the confinement's step does after it is covered.
pub fn arm(command: &mut Command) {
    // SAFETY: the step only stores to an atomic.
    unsafe {
        command.pre_exec(|| {
            IN_FORKED_CHILD.store(true, Ordering::Relaxed);
            Ok(())
        });
    }
}
