//! How long a failed job waits before its next attempt: deterministic and bounded.

use std::time::Duration;

/// `base × 2^(attempt − 1)`, capped at `cap`. No jitter: the schedule of a job is predictable,
/// and claims are spread by the claim order, not by randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt`-th attempt (1-based) failed.
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        self.base
            .checked_mul(1u32 << exponent)
            .map_or(self.cap, |delay| delay.min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_and_stops_at_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=8).map(|a| policy.delay_after(a).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.delay_after(0), Duration::from_secs(2));
        assert_eq!(policy.delay_after(i32::MAX), Duration::from_secs(60));
    }
}
