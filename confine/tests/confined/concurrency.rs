//! Spawning confined children from many threads at once, while other threads allocate: a child
//! that took a lock between fork and exec which another thread held at the fork would hang.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sv0_confine::{Mode, prepare};

use crate::fork_guard;
use crate::harness::{owned_dir, policy};

const CHILDREN: usize = 50;
const SPAWNERS: usize = 8;

#[test]
fn fifty_confined_children_from_eight_threads_all_start_and_exit() {
    let write = owned_dir();
    let policy = Arc::new(policy(write.path(), &[]));
    let stop = Arc::new(AtomicBool::new(false));
    // Threads that do nothing but allocate, so the allocator's locks are often held at a fork.
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let junk: Vec<Vec<u8>> = (0..64).map(|n| vec![0; 64 + n * 32]).collect();
                    std::hint::black_box(junk);
                }
            })
        })
        .collect();

    let (done, finished) = mpsc::channel();
    for spawner in 0..SPAWNERS {
        let policy = Arc::clone(&policy);
        let done = done.clone();
        thread::spawn(move || {
            for _ in (spawner..CHILDREN).step_by(SPAWNERS) {
                let mut command = Command::new("/bin/sh");
                command.args(["-c", "exit 7"]);
                fork_guard::arm(&mut command);
                let outcome = prepare(&policy, Mode::BestEffort)
                    .map_err(|error| error.to_string())
                    .and_then(|prepared| {
                        prepared.apply(&mut command);
                        command.status().map_err(|error| error.to_string())
                    });
                let _ = done.send(outcome.map(|status| status.code()));
            }
        });
    }
    drop(done);

    for n in 0..CHILDREN {
        let outcome = finished
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("only {n} of {CHILDREN} confined children finished"));
        assert_eq!(outcome, Ok(Some(7)));
    }
    stop.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.join().unwrap();
    }
}
