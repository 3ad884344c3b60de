//! The long-lived processes this run started (devdb and every `sv0` process), so that a run
//! interrupted by SIGINT or SIGTERM kills them before it exits: they would otherwise carry on,
//! orphaned, holding devdb's port and writing its data file. An `sv0-chaos` killed with SIGKILL
//! still leaves them; nothing can catch that.

use std::collections::BTreeSet;
use std::sync::Mutex;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Process `pid` was started and is to be killed if the run is interrupted.
pub fn started(pid: u32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
}

/// Process `pid` is about to be stopped and reaped by its owner. Called before the stop: once
/// reaped, its pid may be another process's.
pub fn stopping(pid: u32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
}

/// Waits for SIGINT or SIGTERM, then SIGKILLs every live process of the run and exits with
/// 128 + the signal's number, as a shell reports a run ended by it.
pub async fn kill_all_when_interrupted() -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let code = tokio::select! {
        _ = interrupt.recv() => 128 + Signal::SIGINT as i32,
        _ = terminate.recv() => 128 + Signal::SIGTERM as i32,
    };
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    eprintln!(
        "sv0-chaos: interrupted; killing the {} processes it started",
        live.len()
    );
    for pid in live {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    std::process::exit(code);
}
