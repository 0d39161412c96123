//! Request rate limits (SECURITY.md #73): a fixed-window counter per endpoint class and client
//! address, answered with `429` and `Retry-After` once a window's allowance is spent.
//!
//! The counter lives where every instance sees it: in the shared store
//! ([`ThrottleStore::count_hit`], one atomic upsert per request) when several instances serve
//! one deployment, or in this process ([`LocalCounter`]) when there is only one (SQLite), where
//! it costs a map lookup instead of a database write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::clock::{Clock, Timestamp};
use crate::store::{StoreResult, ThrottleStore};

/// An allowance: at most `max` requests per `window_secs`. `max == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window (0: unlimited).
    pub max: u32,
    /// Window length in seconds.
    pub window_secs: i64,
}

impl RateLimit {
    /// The start of the window that `now` falls in.
    #[must_use]
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        let w = self.window_secs.max(1);
        Timestamp(now.secs().div_euclid(w) * w)
    }
}

/// The network a client address stands for in a limit: an IPv4 address itself, or the
/// `/prefix` of an IPv6 address (one subscriber usually holds a /64 and rotates through it
/// freely; a site often holds a /48). `-` when the address is unknown or unreadable.
#[must_use]
pub fn network_key(ip: Option<&str>, v6_prefix: u8) -> String {
    match ip.and_then(|s| s.parse::<std::net::IpAddr>().ok()) {
        Some(std::net::IpAddr::V6(v6)) => {
            let prefix = v6_prefix.min(128);
            let bits = u128::from(v6);
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix)))
            };
            format!("{}/{prefix}", std::net::Ipv6Addr::from(masked))
        }
        Some(v4) => v4.to_string(),
        None => "-".to_owned(),
    }
}

/// Counts requests per key and window.
#[async_trait]
pub trait RateCounter: Send + Sync + 'static {
    /// Counts one request for `key` in the window that starts at `window_start` and returns the
    /// count so far in that window (this one included). Parallel calls each count.
    async fn hit(&self, key: &str, window_start: Timestamp, now: Timestamp) -> StoreResult<u32>;
}

/// Counters in the store, shared by every instance.
pub struct StoreCounter(pub Arc<dyn ThrottleStore>);

#[async_trait]
impl RateCounter for StoreCounter {
    async fn hit(&self, key: &str, window_start: Timestamp, now: Timestamp) -> StoreResult<u32> {
        self.0.count_hit(key, window_start, now).await
    }
}

/// Most keys a [`LocalCounter`] keeps before it drops those of past windows.
const LOCAL_MAX_KEYS: usize = 100_000;

/// Counters in this process, for a single instance.
#[derive(Default)]
pub struct LocalCounter {
    map: Mutex<HashMap<String, (Timestamp, u32)>>,
}

#[async_trait]
impl RateCounter for LocalCounter {
    async fn hit(&self, key: &str, window_start: Timestamp, _now: Timestamp) -> StoreResult<u32> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= LOCAL_MAX_KEYS && !map.contains_key(key) {
            // Bounded memory: forget windows that have ended; if every key is current, start
            // over (a flood of distinct addresses must not grow the map without limit).
            map.retain(|_, (start, _)| *start >= window_start);
            if map.len() >= LOCAL_MAX_KEYS {
                map.clear();
            }
        }
        let entry = map.entry(key.to_owned()).or_insert((window_start, 0));
        if entry.0 != window_start {
            *entry = (window_start, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Ok(entry.1)
    }
}

/// Checks requests against their allowance.
pub struct RateLimiter {
    counter: Arc<dyn RateCounter>,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    /// A limiter over `counter`.
    #[must_use]
    pub fn new(counter: Arc<dyn RateCounter>, clock: Arc<dyn Clock>) -> Self {
        Self { counter, clock }
    }

    /// Counts a request of `class` from `who`. `Ok(None)` lets it through; `Ok(Some(secs))`
    /// refuses it until the window ends in `secs` seconds.
    ///
    /// # Errors
    /// Store failures (the caller fails closed).
    pub async fn check(
        &self,
        class: &str,
        who: &str,
        limit: RateLimit,
    ) -> StoreResult<Option<i64>> {
        if limit.max == 0 {
            return Ok(None);
        }
        let now = self.clock.now();
        let start = limit.window_start(now);
        let key = format!("rate:{class}:{who}");
        let n = self.counter.hit(&key, start, now).await?;
        if n > limit.max {
            let retry = start.plus(limit.window_secs).since(now).max(1);
            Ok(Some(retry))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_group_ipv6_by_prefix() {
        assert_eq!(network_key(Some("192.0.2.7"), 64), "192.0.2.7");
        assert_eq!(
            network_key(Some("2001:db8:1:2:aaaa::1"), 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network_key(Some("2001:db8:1:2:aaaa::1"), 48),
            "2001:db8:1::/48"
        );
        assert_eq!(
            network_key(Some("2001:db8:1:2:ffff::9"), 64),
            network_key(Some("2001:db8:1:2::1"), 64)
        );
        assert_eq!(network_key(Some("::1"), 128), "::1/128");
        assert_eq!(network_key(None, 64), "-");
        assert_eq!(network_key(Some("not an address"), 64), "-");
    }
    use crate::ManualClock;

    #[tokio::test]
    async fn the_allowance_resets_with_each_window() {
        let clock = ManualClock::new(Timestamp(1_000_040));
        let limiter = RateLimiter::new(Arc::new(LocalCounter::default()), Arc::new(clock.clone()));
        let limit = RateLimit {
            max: 3,
            window_secs: 60,
        };
        for _ in 0..3 {
            assert_eq!(
                limiter.check("token", "1.2.3.4", limit).await.unwrap(),
                None
            );
        }
        assert_eq!(
            limiter.check("token", "1.2.3.4", limit).await.unwrap(),
            Some(40)
        );
        // Another address and another class have their own allowance.
        assert_eq!(
            limiter.check("token", "5.6.7.8", limit).await.unwrap(),
            None
        );
        assert_eq!(
            limiter.check("revoke", "1.2.3.4", limit).await.unwrap(),
            None
        );
        clock.advance(40);
        assert_eq!(
            limiter.check("token", "1.2.3.4", limit).await.unwrap(),
            None
        );
        let off = RateLimit {
            max: 0,
            window_secs: 60,
        };
        for _ in 0..10 {
            assert_eq!(limiter.check("x", "y", off).await.unwrap(), None);
        }
    }
}
