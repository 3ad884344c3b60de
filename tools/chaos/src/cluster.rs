//! The processes under fire: devdb on a data file (stopped, or SIGKILLed, and started again on the
//! same port and file), and every `sv0` process behind a fault proxy of its own, so that one
//! process can be cut off while the others carry on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sv0_devdb::DevDb;
use sv0_testkit::FaultProxy;

use crate::children;

/// How devdb goes down when a fault restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbStop {
    /// SIGTERM: the H2 file is flushed, nothing acknowledged is lost.
    Clean,
    /// SIGKILL: the H2 file keeps what it last wrote, about a second behind what was acknowledged.
    Kill,
}

/// devdb with `--data`, restartable on the address it first bound.
pub struct Db {
    server: Option<DevDb>,
    data: PathBuf,
    addr: std::net::SocketAddr,
}

impl Db {
    pub fn start(data: &Path) -> anyhow::Result<Db> {
        let server = DevDb::builder()
            .data(data)
            .start()
            .context("starting devdb")?;
        children::started(server.pid());
        Ok(Db {
            addr: server.addr(),
            server: Some(server),
            data: data.to_path_buf(),
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// A stop, clean or SIGKILL, then a start on the same port and file.
    pub fn restart(&mut self, how: DbStop, down_for: Duration) -> anyhow::Result<()> {
        if let Some(server) = self.server.take() {
            children::stopping(server.pid());
            if how == DbStop::Kill {
                kill(Pid::from_raw(server.pid() as i32), Signal::SIGKILL)
                    .context("SIGKILL to devdb")?;
            }
            // After a SIGKILL this only waits until the process is gone and reaped.
            server.stop().context("stopping devdb")?;
        }
        std::thread::sleep(down_for);
        let server = DevDb::builder()
            .data(&self.data)
            .listen(self.addr)
            .start()
            .context("starting devdb again on its port and data")?;
        children::started(server.pid());
        self.server = Some(server);
        Ok(())
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(server) = self.server.take() {
            children::stopping(server.pid());
            server.stop()?;
        }
        Ok(())
    }
}

/// What an `sv0` process is, for the report and for restarting it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Worker,
    Scheduler,
    AdminApi,
}

/// How every `sv0` process of the run is started: the binary, the database, where logs go.
pub struct Launcher {
    pub sv0: PathBuf,
    pub database: String,
    pub logs: PathBuf,
    pub db_addr: std::net::SocketAddr,
}

impl Launcher {
    /// Starts `sv0 ARGS…` behind a fault proxy of its own.
    pub fn start(
        &self,
        name: &str,
        role: Role,
        args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<Sv0Process> {
        let proxy = FaultProxy::start(self.db_addr).context("starting a fault proxy")?;
        let uri = format!("mongodb://{}/?directConnection=true", proxy.addr());
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--mongodb-uri".into(),
            uri,
            "--database".into(),
            self.database.clone(),
        ]);
        let mut process = Sv0Process {
            name: name.to_string(),
            role,
            args: all,
            env: env.to_vec(),
            log: self.logs.join(format!("{name}.log")),
            proxy,
            child: None,
        };
        process.spawn(&self.sv0)?;
        Ok(process)
    }
}

/// One `sv0` process, reaching devdb through its own fault proxy; its log goes to a file.
pub struct Sv0Process {
    pub name: String,
    pub role: Role,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub proxy: FaultProxy,
    child: Option<Child>,
}

impl Sv0Process {
    fn spawn(&mut self, sv0: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(sv0)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        children::started(child.id());
        self.child = Some(child);
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            children::stopping(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self, sv0: &Path) -> anyhow::Result<()> {
        self.sigkill();
        self.spawn(sv0)
    }

    /// SIGTERM and a wait for a clean exit (a worker drains), SIGKILL past `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        children::stopping(child.id());
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Sv0Process {
    fn drop(&mut self) {
        self.sigkill();
    }
}
