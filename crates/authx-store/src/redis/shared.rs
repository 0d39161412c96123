//! What several instances count together in Redis, off the database's request path: the
//! shared generation that per-instance caches check on every use
//! ([`authx_core::generation`]), sign-in and client failure counters, and request rate
//! counters.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P generation` | integer | the shared generation |
//! | `P throttle:{key}` | hash | `n` (failures, or hits in the window) and `at` (the last one, seconds) |
//!
//! The generation never expires. Where it is missing (a Redis restarted without persistence)
//! it starts again at a random value, so an entry stamped before the restart cannot match a
//! count reached again after it.
//!
//! Counters expire once idle for as long as the database keeps idle counters (the failure
//! reset time, at least [`authx_core::replay::MARK_KEEP_SECS`]); a Redis restarted without
//! persistence forgets them, as it forgets the sessions. Single-use marks (assertion and DPoP
//! proof `jti`s) are not kept here: they stay in the database, which does not forget them.

use std::sync::Arc;

use async_trait::async_trait;
use authx_core::Timestamp;
use authx_core::generation::SharedGeneration;
use authx_core::store::{FailureCount, StoreError, StoreResult, ThrottleStore};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::breaker::Breaker;

// KEYS: generation. ARGV: a random start, for a missing count. Returns the count (an
// integer reply: below 2^53, which Lua's numbers hold exactly).
const CURRENT: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
  v = redis.call('GET', KEYS[1])
end
return tonumber(v)
";

// KEYS: generation. ARGV: a random start, for a missing count. Returns the raised count.
const BUMP: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('INCR', KEYS[1])
";

// KEYS: counter. ARGV: now, reset after (seconds), ttl. As the database's `RECORD_FAILURE`: a
// counter idle for `reset after` starts again at one. Returns {failures, last failure}.
const RECORD_FAILURE: &str = r"
local f = redis.call('HMGET', KEYS[1], 'n', 'at')
local n, at, now = tonumber(f[1]), tonumber(f[2]), tonumber(ARGV[1])
if n == nil or at == nil or now - at >= tonumber(ARGV[2]) then
  n = 1
else
  n = n + 1
end
redis.call('HSET', KEYS[1], 'n', n, 'at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {n, now}
";

// KEYS: counter. ARGV: now, window start, ttl. As the database's `COUNT_HIT`: the count starts
// again at one when the last hit came before the window. Returns the count.
const COUNT_HIT: &str = r"
local f = redis.call('HMGET', KEYS[1], 'n', 'at')
local n, at = tonumber(f[1]), tonumber(f[2])
if n == nil or at == nil or at < tonumber(ARGV[2]) then
  n = 1
else
  n = n + 1
end
redis.call('HSET', KEYS[1], 'n', n, 'at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
";

/// The shared generation and the counters, in Redis (see the module documentation).
pub struct RedisCounters {
    conn: ConnectionManager,
    breaker: Breaker,
    prefix: String,
    idle_secs: i64,
    /// Where a missing generation starts.
    start: u64,
    current: Script,
    bump: Script,
    record_failure: Script,
    count_hit: Script,
}

impl RedisCounters {
    pub(super) fn new(
        conn: ConnectionManager,
        breaker: Breaker,
        prefix: &str,
        idle_secs: i64,
    ) -> Self {
        // Below 2^53, so that Lua's numbers hold every count exactly.
        let start = u64::from_le_bytes(authx_core::secret::random_bytes::<8>()) >> 12;
        Self {
            conn,
            breaker,
            prefix: prefix.to_owned(),
            idle_secs: idle_secs.max(1),
            start,
            current: Script::new(CURRENT),
            bump: Script::new(BUMP),
            record_failure: Script::new(RECORD_FAILURE),
            count_hit: Script::new(COUNT_HIT),
        }
    }

    fn generation_key(&self) -> String {
        format!("{}generation", self.prefix)
    }

    fn counter_key(&self, key: &str) -> String {
        format!("{}throttle:{key}", self.prefix)
    }

    /// Runs a script of the generation ([`CURRENT`], [`BUMP`]): its one key, and the random
    /// start for a missing count.
    async fn on_generation<T: redis::FromRedisValue>(&self, script: &Script) -> StoreResult<T> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.generation_key()).arg(self.start);
        self.run(invocation).await
    }

    /// Runs a script of the counter `key` ([`RECORD_FAILURE`], [`COUNT_HIT`]): `now`, the
    /// script's own argument, and the idle time after which the counter expires.
    async fn on_counter<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        now: Timestamp,
        arg: i64,
    ) -> StoreResult<T> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.counter_key(key))
            .arg(now.0)
            .arg(arg)
            .arg(self.idle_secs);
        self.run(invocation).await
    }

    /// Sends `cmd` on a handle of the connection, behind the breaker.
    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        self.breaker
            .call(async move {
                cmd.query_async(&mut conn)
                    .await
                    .map_err(StoreError::unavailable)
            })
            .await
    }

    /// Runs `script` on a connection of its own handle, behind the breaker.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        self.breaker
            .call(async move {
                invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(StoreError::unavailable)
            })
            .await
    }
}

#[async_trait]
impl SharedGeneration for RedisCounters {
    async fn current(&self) -> StoreResult<u64> {
        self.on_generation(&self.current).await
    }

    async fn bump(&self) -> StoreResult<()> {
        let _raised: u64 = self.on_generation(&self.bump).await?;
        Ok(())
    }
}

#[async_trait]
impl ThrottleStore for RedisCounters {
    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        reset_after_secs: i64,
    ) -> StoreResult<FailureCount> {
        let (failures, at): (u32, i64) = self
            .on_counter(&self.record_failure, key, now, reset_after_secs)
            .await?;
        Ok(FailureCount {
            failures,
            last_failure_at: Timestamp(at),
        })
    }

    async fn failures(&self, key: &str) -> StoreResult<Option<FailureCount>> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.counter_key(key)).arg("n").arg("at");
        let (n, at): (Option<u32>, Option<i64>) = self.query(cmd).await?;
        Ok(n.zip(at).map(|(failures, at)| FailureCount {
            failures,
            last_failure_at: Timestamp(at),
        }))
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.counter_key(key));
        let _deleted: i64 = self.query(cmd).await?;
        Ok(())
    }

    /// Idle counters expire by themselves (after the idle time given at construction), so
    /// there is nothing to purge: always 0.
    async fn purge_failures(&self, _before: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }

    async fn count_hit(
        &self,
        key: &str,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        self.on_counter(&self.count_hit, key, now, window_start.0)
            .await
    }
}

/// Connects to Redis at `url` for the shared generation and counters under `key_prefix`, idle
/// counters kept `idle_secs`. On its own connection and behind its own circuit breaker.
///
/// # Errors
/// As [`super::redis_sessions`].
pub async fn redis_counters(
    url: &str,
    key_prefix: &str,
    idle_secs: i64,
) -> Result<Arc<RedisCounters>, crate::error::ConnectError> {
    let (conn, breaker) = super::connect_with_breaker(url).await?;
    Ok(Arc::new(RedisCounters::new(
        conn, breaker, key_prefix, idle_secs,
    )))
}
