//! Time, injected. Nothing in authx reads the system clock except [`SystemClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The timestamp `secs` seconds later (saturating).
    #[must_use]
    pub fn plus(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    #[must_use]
    pub fn since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Seconds since the epoch.
    #[must_use]
    pub fn secs(self) -> i64 {
        self.0
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// The current time in milliseconds since the Unix epoch, for pacing that whole seconds
    /// would measure wrongly (a wait of 5.0 s can straddle 4 or 6 second boundaries). Agrees
    /// with [`Clock::now`]: `now_millis() / 1000 == now().secs()`. The default has whole-second
    /// resolution; clocks that can tell better override it.
    fn now_millis(&self) -> i64 {
        self.now().0.saturating_mul(1000)
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_millis().div_euclid(1000))
    }

    #[allow(clippy::disallowed_methods)] // The one place that reads system time.
    fn now_millis(&self) -> i64 {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        i64::try_from(millis).unwrap_or(i64::MAX)
    }
}

/// A clock that tests move by hand, to the millisecond. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.0.saturating_mul(1000))))
    }

    /// A clock stopped at the current system time.
    #[must_use]
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.advance_millis(secs.saturating_mul(1000));
    }

    /// Moves the clock forward by `millis` milliseconds.
    pub fn advance_millis(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock (to a whole second).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_millis().div_euclid(1000))
    }

    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let a = ManualClock::new(Timestamp(100));
        let b = a.clone();
        a.advance(5);
        assert_eq!(b.now(), Timestamp(105));
        assert_eq!(Timestamp(105).since(Timestamp(100)), 5);
    }

    #[test]
    fn milliseconds_agree_with_seconds() {
        let c = ManualClock::new(Timestamp(100));
        assert_eq!(c.now_millis(), 100_000);
        c.advance_millis(999);
        assert_eq!((c.now(), c.now_millis()), (Timestamp(100), 100_999));
        c.advance_millis(1);
        assert_eq!(c.now(), Timestamp(101));
        c.advance(2);
        assert_eq!(c.now_millis(), 103_000);
        let s = SystemClock;
        let (ms, secs) = (s.now_millis(), s.now());
        assert!(ms / 1000 <= secs.secs() && secs.secs() - ms / 1000 <= 1);
    }
}
