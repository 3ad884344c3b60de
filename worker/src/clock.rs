//! This host's clock against the database server's.
//!
//! Lease expiry is written from the holder's clock and compared with each reaper's, so a clock
//! that is off by more than the lease's slack makes other workers reap live jobs (fencing keeps
//! that harmless, but the job runs twice). The worker measures its skew each time it touches its
//! registry record (at start and on every heartbeat): the server stamps the record with its own
//! time (`$currentDate`), and the skew is this host's time at the middle of the round trip less
//! the server's. Past a tenth of the lease TTL it warns; past half it stops claiming until the
//! clocks agree again.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Clock {
    lease_ttl: Duration,
    /// The last measured skew, in seconds (this host minus the server).
    skew_secs: Mutex<Option<f64>>,
}

/// What a measured skew means for this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkewVerdict {
    Fine,
    Warn,
    RefuseClaims,
}

impl Clock {
    pub(crate) fn new(lease_ttl: Duration) -> Clock {
        Clock {
            lease_ttl,
            skew_secs: Mutex::new(None),
        }
    }

    fn skew(&self) -> std::sync::MutexGuard<'_, Option<f64>> {
        self.skew_secs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a measurement: `local_ms` is this host's time at the middle of the round trip,
    /// `server_ms` the time the server stamped.
    pub(crate) fn measured(&self, local_ms: i64, server_ms: i64) -> (f64, SkewVerdict) {
        let skew = (local_ms - server_ms) as f64 / 1000.0;
        *self.skew() = Some(skew);
        (skew, self.verdict(skew))
    }

    fn verdict(&self, skew: f64) -> SkewVerdict {
        let ttl = self.lease_ttl.as_secs_f64();
        if skew.abs() > ttl / 2.0 {
            SkewVerdict::RefuseClaims
        } else if skew.abs() > ttl / 10.0 {
            SkewVerdict::Warn
        } else {
            SkewVerdict::Fine
        }
    }

    /// True while the last measured skew is past half the lease TTL.
    pub(crate) fn refuses_claims(&self) -> bool {
        let skew = *self.skew();
        skew.is_some_and(|skew| self.verdict(skew) == SkewVerdict::RefuseClaims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_judged_against_the_lease_ttl() {
        let clock = Clock::new(Duration::from_secs(30));
        assert!(!clock.refuses_claims(), "nothing measured yet");
        assert_eq!(clock.measured(10_000, 9_000), (1.0, SkewVerdict::Fine));
        assert_eq!(clock.measured(10_000, 6_000).1, SkewVerdict::Warn);
        assert_eq!(clock.measured(0, 16_000).1, SkewVerdict::RefuseClaims);
        assert!(clock.refuses_claims());
        clock.measured(0, 0);
        assert!(!clock.refuses_claims(), "clocks agree again");
    }
}
