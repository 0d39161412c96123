//! Sign-in throttling (NIST SP 800-63B §5.2.2, SECURITY.md #20): a progressive delay per account
//! and per client address, ending in a temporary lock that always expires by itself, so an
//! attacker cannot lock a victim out for good.

use crate::Timestamp;
use crate::store::FailureCount;

/// Throttling thresholds.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures allowed per account before delays start (default 5).
    pub account_free_failures: u32,
    /// Failures allowed per client address before delays start (default 50).
    pub ip_free_failures: u32,
    /// The first delay in seconds; each further failure doubles it (default 1).
    pub base_delay_secs: i64,
    /// The longest progressive delay in seconds (default 900).
    pub max_delay_secs: i64,
    /// Consecutive failures at which an account is locked (default 100).
    pub lock_after: u32,
    /// How long that lock lasts in seconds (default 3600).
    pub lock_secs: i64,
    /// A counter idle for this long starts again (default 86,400).
    pub reset_after_secs: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            account_free_failures: 5,
            ip_free_failures: 50,
            base_delay_secs: 1,
            max_delay_secs: 900,
            lock_after: 100,
            lock_secs: 3600,
            reset_after_secs: 86_400,
        }
    }
}

impl ThrottlePolicy {
    /// Seconds the caller must still wait before another attempt, or `None` when it may try now.
    #[must_use]
    pub fn retry_after(
        &self,
        count: Option<FailureCount>,
        free: u32,
        now: Timestamp,
    ) -> Option<i64> {
        let c = count?;
        if now.since(c.last_failure_at) >= self.reset_after_secs || c.failures < free {
            return None;
        }
        let delay = if c.failures >= self.lock_after {
            self.lock_secs
        } else {
            let doublings = (c.failures - free).min(30);
            self.base_delay_secs
                .saturating_mul(1_i64 << doublings)
                .min(self.max_delay_secs)
        };
        let remaining = delay - now.since(c.last_failure_at);
        (remaining > 0).then_some(remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(failures: u32, last: i64) -> Option<FailureCount> {
        Some(FailureCount {
            failures,
            last_failure_at: Timestamp(last),
        })
    }

    #[test]
    fn delays_grow_then_lock_then_expire() {
        let p = ThrottlePolicy::default();
        let now = Timestamp(1_000);
        assert_eq!(p.retry_after(None, 5, now), None);
        assert_eq!(p.retry_after(at(4, 1_000), 5, now), None);
        assert_eq!(p.retry_after(at(5, 1_000), 5, now), Some(1));
        assert_eq!(p.retry_after(at(8, 1_000), 5, now), Some(8));
        assert_eq!(p.retry_after(at(40, 1_000), 5, now), Some(900));
        assert_eq!(p.retry_after(at(100, 1_000), 5, now), Some(3600));
        assert_eq!(p.retry_after(at(100, 1_000), 5, Timestamp(4_600)), None);
        assert_eq!(p.retry_after(at(8, 995), 5, now), Some(3));
    }
}
