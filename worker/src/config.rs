//! The worker's settings: their production defaults and the checks of them against each other.
//!
//! Plain data, so that a binary can build and check a configuration before it has a database or
//! a worker. It must not depend on any other module of this crate: everything else reads it.

use std::collections::HashMap;
use std::time::Duration;

/// The most jobs one worker runs at once; beyond it, a typo rather than a plan.
pub const MAX_CONCURRENCY: usize = 10_000;

/// How a worker runs. `WorkerConfig::new` gives production defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once, over all kinds.
    pub concurrency: usize,
    /// Tighter limits for some kinds.
    pub kind_limits: HashMap<String, usize>,
    /// A lease's time to live; heartbeats renew it every `heartbeat_every`.
    pub lease_ttl: Duration,
    pub heartbeat_every: Duration,
    /// The idle poll starts at `poll_min`, stays there for `busy_window` after the last claimed
    /// job, then doubles up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub busy_window: Duration,
    /// Watch the jobs collection for wake-ups where the server offers change streams.
    pub change_streams: bool,
    /// Candidates fetched per sorted query, claimed over several claims while younger than
    /// `prefetch_max_age` (which bounds how long a newer, higher-priority job can be passed over).
    pub prefetch: usize,
    pub prefetch_max_age: Duration,
    /// At most this many jobs leased beyond the running ones, and only as many as the worker
    /// expects to start within `claim_ahead_horizon` (see `claim_ahead`); 0 turns it off.
    pub claim_ahead_max: usize,
    pub claim_ahead_horizon: Duration,
    /// How long a draining worker lets running jobs finish before it cancels them.
    pub grace: Duration,
    /// The longest one attempt of a kind may run before it is cancelled and fails as timed out;
    /// a job's own `timeout` takes precedence.
    pub kind_timeouts: HashMap<String, Duration>,
    /// A lease this worker has not renewed for `lease_ttl − self_fence_margin` is treated as
    /// lost and its handler stopped, before any reaper can hand the job to another worker.
    pub self_fence_margin: Duration,
    /// A first run records its start (spending its attempt) once it has run this long, or with
    /// its outcome if it ends sooner: short jobs pay no write of their own for it. A job that
    /// ran before records its start before its handler runs.
    pub start_linger: Duration,
    /// How long the completion batcher, when idle, waits for more completions before writing.
    pub completion_linger: Duration,
    /// A `workers` record not seen for this long is marked `gone`; stopped and gone records are
    /// deleted `registry_retention` after they were last seen.
    pub registry_stale_after: Duration,
    pub registry_retention: Duration,
}

impl WorkerConfig {
    pub fn new(concurrency: usize) -> WorkerConfig {
        let lease_ttl = Duration::from_secs(30);
        let claim_ahead_max = 256;
        WorkerConfig {
            concurrency,
            kind_limits: HashMap::new(),
            lease_ttl,
            heartbeat_every: lease_ttl / 3,
            poll_min: Duration::from_millis(5),
            poll_max: Duration::from_millis(100),
            busy_window: Duration::from_secs(1),
            change_streams: true,
            prefetch: ((concurrency + claim_ahead_max) * 2).clamp(32, 1024),
            prefetch_max_age: Duration::from_millis(250),
            claim_ahead_max,
            claim_ahead_horizon: Duration::from_millis(250),
            grace: Duration::from_secs(30),
            kind_timeouts: HashMap::new(),
            self_fence_margin: lease_ttl / 5,
            start_linger: Duration::from_millis(100),
            completion_linger: Duration::from_millis(1),
            registry_stale_after: Duration::from_secs(300),
            registry_retention: Duration::from_secs(24 * 3600),
        }
    }

    /// Checks the settings against each other; the message names the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.concurrency),
            "concurrency must be 1 to {MAX_CONCURRENCY}, got {}",
            self.concurrency
        );
        anyhow::ensure!(
            self.heartbeat_every < self.lease_ttl.saturating_sub(self.self_fence_margin),
            "the heartbeat ({:?}) must come well inside the lease TTL ({:?}) less the self-fence margin ({:?})",
            self.heartbeat_every,
            self.lease_ttl,
            self.self_fence_margin
        );
        anyhow::ensure!(
            !self.poll_min.is_zero(),
            "the idle poll floor must be above 0"
        );
        anyhow::ensure!(
            self.poll_max >= self.poll_min,
            "the idle poll cap must be at least its floor"
        );
        for (kind, &limit) in &self.kind_limits {
            anyhow::ensure!(limit > 0, "the limit for kind {kind:?} must be above 0");
        }
        for (kind, timeout) in &self.kind_timeouts {
            anyhow::ensure!(
                !timeout.is_zero(),
                "the timeout for kind {kind:?} must be above 0"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule of `validate`, at its boundary: the last accepted value passes, the first
    /// refused one fails naming its setting.
    #[test]
    fn a_config_is_refused_past_each_bound_naming_the_setting() {
        let refused = |change: &dyn Fn(&mut WorkerConfig), names: &str| {
            let mut config = WorkerConfig::new(8);
            change(&mut config);
            let error = config.validate().expect_err(names).to_string();
            assert!(error.contains(names), "{error:?} names {names:?}");
        };
        let accepted = |change: &dyn Fn(&mut WorkerConfig)| {
            let mut config = WorkerConfig::new(8);
            change(&mut config);
            config.validate().unwrap();
        };
        accepted(&|_| {});
        accepted(&|c| c.concurrency = 1);
        accepted(&|c| c.concurrency = MAX_CONCURRENCY);
        refused(&|c| c.concurrency = 0, "concurrency");
        refused(&|c| c.concurrency = MAX_CONCURRENCY + 1, "concurrency");
        // The heartbeat must come strictly before the lease TTL less the margin.
        accepted(&|c| {
            c.lease_ttl = Duration::from_secs(10);
            c.self_fence_margin = Duration::from_secs(2);
            c.heartbeat_every = Duration::from_millis(7_999);
        });
        refused(
            &|c| {
                c.lease_ttl = Duration::from_secs(10);
                c.self_fence_margin = Duration::from_secs(2);
                c.heartbeat_every = Duration::from_secs(8);
            },
            "heartbeat",
        );
        refused(&|c| c.poll_min = Duration::ZERO, "poll floor");
        accepted(&|c| {
            c.poll_min = Duration::from_millis(50);
            c.poll_max = Duration::from_millis(50);
        });
        refused(
            &|c| {
                c.poll_min = Duration::from_millis(50);
                c.poll_max = Duration::from_millis(49);
            },
            "poll cap",
        );
        accepted(&|c| {
            c.kind_limits.insert("k".into(), 1);
        });
        refused(
            &|c| {
                c.kind_limits.insert("k".into(), 0);
            },
            "limit for kind",
        );
        accepted(&|c| {
            c.kind_timeouts.insert("k".into(), Duration::from_millis(1));
        });
        refused(
            &|c| {
                c.kind_timeouts.insert("k".into(), Duration::ZERO);
            },
            "timeout for kind",
        );
    }
}
