//! Confined programs run for real under a policy, each case checked by what the kernel did.
//! One binary for every case: the parent is made non-dumpable once, for all of them.

mod concurrency;
mod enforcement;
mod fake_kernel;
mod filesystem;
mod fork_guard;
mod harness;
mod network;
mod other_kernels;
mod process;
