//! The faults, drawn one after another from the seeded generator, so a run can be replayed from
//! its printed seed: SIGKILL of a worker or a scheduler (started again after a moment), a stop
//! (clean, or SIGKILL with `--devdb-kill`) and start of devdb on the same data, and a cut, a black
//! hole or a slow link between one process and the database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::{Db, DbStop, Launcher, Role, Sv0Process};

/// Everything the faults act on.
pub struct Cluster {
    pub db: Db,
    /// How a devdb restart stops it.
    pub db_stop: DbStop,
    pub launcher: Launcher,
    pub processes: Vec<Sv0Process>,
}

/// What was done, by name, for the report.
pub type FaultCounts = BTreeMap<&'static str, u64>;

impl Cluster {
    /// Injects faults until `until`, one every 2 to 6 s, each healed before the next.
    pub fn inject_until(&mut self, until: Instant, rng: &mut fastrand::Rng) -> FaultCounts {
        let mut counts = FaultCounts::new();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(rng.u64(2_000..6_000)));
            let victim = rng.usize(..self.processes.len());
            let what = match rng.u8(0..10) {
                0..=2 => self.kill_process(victim, rng),
                3 => self.restart_db(rng),
                4 | 5 => {
                    self.processes[victim].proxy.cut_connections();
                    "connections cut"
                }
                6 | 7 => {
                    let process = &self.processes[victim];
                    process.proxy.black_hole();
                    std::thread::sleep(Duration::from_millis(rng.u64(2_000..8_000)));
                    process.proxy.restore();
                    "partitions (black hole, 2-8 s)"
                }
                _ => {
                    let process = &self.processes[victim];
                    process
                        .proxy
                        .set_latency(Duration::from_millis(rng.u64(100..500)));
                    std::thread::sleep(Duration::from_millis(rng.u64(3_000..8_000)));
                    process.proxy.set_latency(Duration::ZERO);
                    process.proxy.restore();
                    "slow links (100-500 ms, 3-8 s)"
                }
            };
            *counts.entry(what).or_default() += 1;
        }
        counts
    }

    fn kill_process(&mut self, victim: usize, rng: &mut fastrand::Rng) -> &'static str {
        let process = &mut self.processes[victim];
        process.sigkill();
        std::thread::sleep(Duration::from_millis(rng.u64(500..3_000)));
        if let Err(error) = process.restart(&self.launcher.sv0) {
            eprintln!("chaos: restarting {} failed: {error:#}", process.name);
        }
        match process.role {
            Role::Worker => "workers SIGKILLed and restarted",
            Role::Scheduler => "schedulers SIGKILLed and restarted",
            Role::AdminApi => "admin API SIGKILLed and restarted",
        }
    }

    fn restart_db(&mut self, rng: &mut fastrand::Rng) -> &'static str {
        let down = Duration::from_millis(rng.u64(500..3_000));
        if let Err(error) = self.db.restart(self.db_stop, down) {
            eprintln!("chaos: restarting devdb failed: {error:#}");
        }
        match self.db_stop {
            DbStop::Clean => "devdb stopped and started on its data",
            DbStop::Kill => "devdb SIGKILLed and started on its data",
        }
    }

    /// Ends every fault in force and starts any process that is not running.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.proxy.set_latency(Duration::ZERO);
            process.proxy.restore();
            if !process.is_running() {
                process.restart(&self.launcher.sv0)?;
            }
        }
        Ok(())
    }

    /// SIGTERM to every process, then devdb's clean stop.
    pub fn stop(mut self) -> anyhow::Result<()> {
        for process in &mut self.processes {
            process.stop(Duration::from_secs(15));
        }
        self.processes.clear();
        self.db.stop()
    }
}
