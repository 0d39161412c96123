//! Browser sessions in Redis, for instances that share sessions without a shared database (or
//! to take the session traffic off it).
//!
//! Layout, every key under the configured prefix `P`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P session:{id}` | hash | the session's fields (timestamps as decimal seconds) |
//! | `P token:{sha256 hex}` | string | the id of the session with that token hash |
//! | `P user:{user id}` | sorted set | the user's session ids, scored by `created_at` |
//! | `P expiry` | sorted set | every session id, scored by the earlier of its two deadlines |
//! | `P account:{user id}`, `P account-gen:{user id}` | string, integer | a copy of the user read with its sessions, and its generation ([`users`]) |
//! | `P generation`, `P throttle:{key}` | integer, hash | the shared generation and the counters ([`shared`]) |
//!
//! Liveness is decided from the `now` the caller passes, never from the Redis server's clock.
//! The key time-to-live only reclaims memory: a session's keys expire after its absolute
//! lifetime (`absolute_expires_at - created_at`), counted from when it was stored, so they
//! outlive every moment the session could be live. Index entries left behind by keys that
//! expired are skipped on read and removed by [`SessionStore::purge_expired_sessions`].
//!
//! Every operation that reads and then writes runs as one Lua script, which Redis executes
//! atomically: a touch racing a revoke either lands first and is deleted with the session, or
//! finds the session gone and writes nothing.
//!
//! Scripts derive some key names from stored ids, so the store needs a single Redis server
//! (replicas are fine), not Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authx_core::Timestamp;
use authx_core::secret::TokenHash;
use authx_core::session::{Session, SessionId};
use authx_core::store::{SessionStore, SessionTouch, StoreError, StoreResult, UserCopy};
use authx_core::user::{User, UserId};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::breaker::{Breaker, BreakingSessions, Probe};
use crate::error::ConnectError;
use crate::events::CONNECT_TIMEOUT;

pub(crate) mod events;
pub(crate) mod shared;
mod users;

/// How long to wait for Redis to answer one command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection attempts after the first before a call fails.
const RECONNECT_RETRIES: usize = 2;
/// Longest pause between two connection attempts, in milliseconds.
const RECONNECT_MAX_DELAY_MS: u64 = 1_000;
/// Sessions removed per script run when purging, so one purge never blocks Redis for long.
const PURGE_BATCH: usize = 500;

/// The client for the Redis server at `url`, and a connection of it that reconnects by itself.
///
/// It reconnects quickly and gives up soon: a caller waiting on a session lookup or on the
/// publication of a revocation gets an error within seconds, not after the client's default
/// backoff of minutes.
async fn connect(url: &str) -> Result<(redis::Client, ConnectionManager), ConnectError> {
    let client = redis::Client::open(url).map_err(|e| ConnectError::InvalidUrl {
        source: Box::new(e),
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_factor(2)
        .set_max_delay(RECONNECT_MAX_DELAY_MS);
    let conn = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|e| ConnectError::unreachable("Redis", e))?;
    Ok((client, conn))
}

/// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`) and
/// returns a session store keeping its keys under `key_prefix` (for example `authx:`).
///
/// The connection reconnects by itself after a failure; calls made while Redis is down fail
/// with [`StoreError::Unavailable`]: after two in a row, at once, until a background `PING`
/// is answered again (a circuit breaker, `crate::breaker`).
///
/// # Errors
/// [`ConnectError::InvalidUrl`] for a URL the client cannot parse and
/// [`ConnectError::Unreachable`] when Redis does not answer a `PING`.
///
/// # Security
/// Only hashes of session tokens are stored, as in the SQL backends. Error messages never
/// repeat the URL, which may carry a password.
pub async fn redis_sessions(
    url: &str,
    key_prefix: &str,
) -> Result<Arc<dyn SessionStore>, ConnectError> {
    let (conn, breaker) = connect_with_breaker(url).await?;
    Ok(Arc::new(BreakingSessions::new(
        RedisSessionStore::new(conn, key_prefix),
        breaker,
    )))
}

/// A connection to the Redis server at `url` that answered a `PING`, and a circuit breaker
/// whose probe pings it.
async fn connect_with_breaker(url: &str) -> Result<(ConnectionManager, Breaker), ConnectError> {
    let (_, mut conn) = connect(url).await?;
    let () = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| ConnectError::unreachable("Redis", e))?;
    let probe_conn = conn.clone();
    let probe: Probe = Arc::new(move || {
        let mut conn = probe_conn.clone();
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        })
    });
    Ok((conn, Breaker::new("Redis", probe)))
}

/// Sessions in Redis; see the module documentation for the layout.
struct RedisSessionStore {
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
}

/// Key names under one prefix.
struct Keys {
    prefix: String,
}

impl Keys {
    fn session(&self, id: &SessionId) -> String {
        format!("{}session:{}", self.prefix, id.0)
    }

    fn token(&self, hash: &TokenHash) -> String {
        format!("{}token:{}", self.prefix, hash.to_hex())
    }

    fn user(&self, user: &UserId) -> String {
        format!("{}user:{}", self.prefix, user.0)
    }

    fn expiry(&self) -> String {
        format!("{}expiry", self.prefix)
    }
}

/// The Lua scripts, hashed once; `Script` sends `EVALSHA` and loads the script on a miss.
struct Scripts {
    create: Script,
    by_hash: Script,
    touch: Script,
    delete: Script,
    delete_user: Script,
    list_user: Script,
    purge: Script,
    by_hash_with_user: Script,
    keep_user: Script,
    forget_user: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            by_hash: Script::new(BY_HASH),
            touch: Script::new(TOUCH),
            delete: Script::new(DELETE),
            delete_user: Script::new(DELETE_USER),
            list_user: Script::new(LIST_USER),
            purge: Script::new(PURGE),
            by_hash_with_user: Script::new(users::BY_HASH_WITH_USER),
            keep_user: Script::new(users::KEEP),
            forget_user: Script::new(users::FORGET),
        }
    }
}

// KEYS: session, token, user index, expiry index.
// ARGV: ttl, created_at, expires_at, id, then field/value pairs of the hash.
// Refuses (returns 0) when the id or the token hash is taken.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], ARGV[4], 'EX', ttl)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
-- The user index lives as long as the longest-lived session in it.
if redis.call('TTL', KEYS[3]) < ttl then
  redis.call('EXPIRE', KEYS[3], ttl)
end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
return 1
";

// KEYS: token. ARGV: prefix. Returns the session hash as a flat list, empty when none.
const BY_HASH: &str = r"
local id = redis.call('GET', KEYS[1])
if not id then
  return {}
end
return redis.call('HGETALL', ARGV[1] .. 'session:' .. id)
";

// KEYS: session, expiry index. ARGV: id, last_seen_at, idle_expires_at, has_ip, ip.
// Writes nothing and returns 0 when the session is gone, so a revoked session stays revoked.
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[2], 'idle_expires_at', ARGV[3])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'ip', ARGV[5])
end
local deadline = tonumber(ARGV[3])
local absolute = tonumber(redis.call('HGET', KEYS[1], 'absolute_expires_at'))
if absolute and absolute < deadline then
  deadline = absolute
end
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
return 1
";

// KEYS: session, user index, expiry index. ARGV: prefix, id, user id.
// Deletes the session only when it belongs to the user; returns its hash, empty when none.
const DELETE: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
local user, hash
for i = 1, #fields, 2 do
  if fields[i] == 'user_id' then user = fields[i + 1] end
  if fields[i] == 'token_hash' then hash = fields[i + 1] end
end
if user ~= ARGV[3] then
  return {}
end
redis.call('DEL', KEYS[1])
if hash then
  redis.call('DEL', ARGV[1] .. 'token:' .. hash)
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return fields
";

// KEYS: user index, expiry index. ARGV: prefix, id to keep (empty for none).
// Returns the ids of the sessions deleted.
const DELETE_USER: &str = r"
local deleted = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= ARGV[2] then
    local key = ARGV[1] .. 'session:' .. id
    local hash = redis.call('HGET', key, 'token_hash')
    if redis.call('DEL', key) == 1 then
      table.insert(deleted, id)
    end
    if hash then
      redis.call('DEL', ARGV[1] .. 'token:' .. hash)
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return deleted
";

// KEYS: user index. ARGV: prefix. Returns every stored session of the user as flat hashes,
// dropping index entries whose session expired away.
const LIST_USER: &str = r"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. 'session:' .. id)
  if #fields == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    table.insert(out, fields)
  end
end
return out
";

// KEYS: expiry index. ARGV: prefix, now, batch size.
// Deletes up to one batch of sessions whose deadline is at or before now.
// Returns {sessions deleted, index entries examined}.
const PURGE: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local deleted = 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. 'session:' .. id
  local f = redis.call('HMGET', key, 'token_hash', 'user_id')
  if redis.call('DEL', key) == 1 then
    deleted = deleted + 1
  end
  if f[1] then
    redis.call('DEL', ARGV[1] .. 'token:' .. f[1])
  end
  if f[2] then
    redis.call('ZREM', ARGV[1] .. 'user:' .. f[2], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
return {deleted, #ids}
";

impl RedisSessionStore {
    fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            keys: Keys {
                prefix: prefix.to_owned(),
            },
            scripts: Scripts::new(),
        }
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::unavailable(e)
}

/// Seconds the keys of a session are kept: its absolute lifetime, at least one second.
fn ttl_secs(s: &Session) -> i64 {
    s.absolute_expires_at.since(s.created_at).max(1)
}

/// The moment a session stops being live.
fn expires_at(s: &Session) -> i64 {
    s.idle_expires_at.0.min(s.absolute_expires_at.0)
}

/// The hash fields of a session; absent optional values are left out.
fn session_fields(s: &Session) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", s.id.0.clone()),
        ("token_hash", s.token_hash.to_hex()),
        ("user_id", s.user_id.0.clone()),
        ("created_at", s.created_at.0.to_string()),
        ("last_seen_at", s.last_seen_at.0.to_string()),
        ("idle_expires_at", s.idle_expires_at.0.to_string()),
        ("absolute_expires_at", s.absolute_expires_at.0.to_string()),
        ("auth_method", s.auth_method.clone()),
    ];
    if let Some(ip) = &s.ip {
        fields.push(("ip", ip.clone()));
    }
    if let Some(ua) = &s.user_agent {
        fields.push(("user_agent", ua.clone()));
    }
    fields
}

/// Rebuilds a session from a flat `HGETALL` reply; `None` for an empty reply.
fn session_from_fields(flat: Vec<String>) -> StoreResult<Option<Session>> {
    if flat.is_empty() {
        return Ok(None);
    }
    if flat.len() % 2 != 0 {
        return Err(StoreError::Corrupt("odd-length session hash reply".into()));
    }
    let mut id = None;
    let mut token_hash = None;
    let mut user_id = None;
    let mut created_at = None;
    let mut last_seen_at = None;
    let mut idle_expires_at = None;
    let mut absolute_expires_at = None;
    let mut ip = None;
    let mut user_agent = None;
    let mut auth_method = None;
    let mut it = flat.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        match name.as_str() {
            "id" => id = Some(value),
            "token_hash" => {
                token_hash = Some(TokenHash::from_hex(&value).ok_or_else(|| {
                    StoreError::Corrupt("session token hash is not 64 hex digits".into())
                })?);
            }
            "user_id" => user_id = Some(value),
            "created_at" => created_at = Some(timestamp(&name, &value)?),
            "last_seen_at" => last_seen_at = Some(timestamp(&name, &value)?),
            "idle_expires_at" => idle_expires_at = Some(timestamp(&name, &value)?),
            "absolute_expires_at" => absolute_expires_at = Some(timestamp(&name, &value)?),
            "ip" => ip = Some(value),
            "user_agent" => user_agent = Some(value),
            "auth_method" => auth_method = Some(value),
            // Fields written by a newer build are ignored.
            _ => {}
        }
    }
    let missing = |field: &str| StoreError::Corrupt(format!("session hash lacks `{field}`"));
    Ok(Some(Session {
        id: SessionId(id.ok_or_else(|| missing("id"))?),
        token_hash: token_hash.ok_or_else(|| missing("token_hash"))?,
        user_id: UserId(user_id.ok_or_else(|| missing("user_id"))?),
        created_at: created_at.ok_or_else(|| missing("created_at"))?,
        last_seen_at: last_seen_at.ok_or_else(|| missing("last_seen_at"))?,
        idle_expires_at: idle_expires_at.ok_or_else(|| missing("idle_expires_at"))?,
        absolute_expires_at: absolute_expires_at.ok_or_else(|| missing("absolute_expires_at"))?,
        ip,
        user_agent,
        auth_method: auth_method.ok_or_else(|| missing("auth_method"))?,
    }))
}

fn timestamp(field: &str, value: &str) -> StoreResult<Timestamp> {
    value
        .parse()
        .map(Timestamp)
        .map_err(|_| StoreError::Corrupt(format!("session field `{field}` is not a timestamp")))
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(self.keys.session(&session.id))
            .key(self.keys.token(&session.token_hash))
            .key(self.keys.user(&session.user_id))
            .key(self.keys.expiry())
            .arg(ttl_secs(session))
            .arg(session.created_at.0)
            .arg(expires_at(session))
            .arg(&session.id.0);
        for (name, value) in session_fields(session) {
            invocation.arg(name).arg(value);
        }
        let created: i64 = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn session_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let flat: Vec<String> = self
            .scripts
            .by_hash
            .key(self.keys.token(hash))
            .arg(&self.keys.prefix)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        session_from_fields(flat)
    }

    async fn session_and_user(&self, hash: &TokenHash) -> StoreResult<Option<(Session, UserCopy)>> {
        let flat: Vec<String> = self
            .scripts
            .by_hash_with_user
            .key(self.keys.token(hash))
            .arg(&self.keys.prefix)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut it = flat.into_iter();
        let (Some(generation), Some(copy)) = (it.next(), it.next()) else {
            return Ok(None);
        };
        let Some(session) = session_from_fields(it.collect())? else {
            return Ok(None);
        };
        Ok(Some((session, users::decode(&generation, &copy)?)))
    }

    async fn keep_user(&self, user: &User, generation: u64) -> StoreResult<()> {
        let copy = users::encode(user)?;
        let _kept: i64 = self
            .scripts
            .keep_user
            .key(users::copy_key(&self.keys.prefix, &user.id))
            .key(users::generation_key(&self.keys.prefix, &user.id))
            .arg(generation)
            .arg(copy)
            .arg(users::COPY_TTL_SECS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget_user(&self, id: &UserId) -> StoreResult<()> {
        let _: i64 = self
            .scripts
            .forget_user
            .key(users::copy_key(&self.keys.prefix, id))
            .key(users::generation_key(&self.keys.prefix, id))
            .arg(users::GENERATION_TTL_SECS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn touch_session(&self, touch: SessionTouch<'_>) -> StoreResult<bool> {
        let touched: i64 = self
            .scripts
            .touch
            .key(self.keys.session(touch.id))
            .key(self.keys.expiry())
            .arg(&touch.id.0)
            .arg(touch.last_seen_at.0)
            .arg(touch.idle_expires_at.0)
            .arg(if touch.ip.is_some() { "1" } else { "0" })
            .arg(touch.ip.unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(touched == 1)
    }

    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<Option<Session>> {
        let flat: Vec<String> = self
            .scripts
            .delete
            .key(self.keys.session(id))
            .key(self.keys.user(user))
            .key(self.keys.expiry())
            .arg(&self.keys.prefix)
            .arg(&id.0)
            .arg(&user.0)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        session_from_fields(flat)
    }

    async fn delete_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> StoreResult<Vec<SessionId>> {
        let ids: Vec<String> = self
            .scripts
            .delete_user
            .key(self.keys.user(user))
            .key(self.keys.expiry())
            .arg(&self.keys.prefix)
            // Session ids are never empty, so the empty string keeps nothing.
            .arg(keep.map_or("", |k| k.0.as_str()))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(ids.into_iter().map(SessionId).collect())
    }

    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        let hashes: Vec<Vec<String>> = self
            .scripts
            .list_user
            .key(self.keys.user(user))
            .arg(&self.keys.prefix)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut sessions = Vec::with_capacity(hashes.len());
        for flat in hashes {
            if let Some(s) = session_from_fields(flat)? {
                if s.is_live(now) {
                    sessions.push(s);
                }
            }
        }
        // Newest first, as the SQL backends order them.
        sessions.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.0.cmp(&a.id.0))
        });
        Ok(sessions)
    }

    async fn count_live_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        // Live means a deadline strictly after `now`: an exclusive lower bound.
        redis::cmd("ZCOUNT")
            .arg(self.keys.expiry())
            .arg(format!("({}", now.0))
            .arg("+inf")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let mut total = 0u64;
        loop {
            let (deleted, examined): (u64, usize) = self
                .scripts
                .purge
                .key(self.keys.expiry())
                .arg(&self.keys.prefix)
                .arg(now.0)
                .arg(PURGE_BATCH)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            total += deleted;
            if examined < PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Session {
        Session {
            id: SessionId("sid".into()),
            token_hash: TokenHash::of(b"token"),
            user_id: UserId("uid".into()),
            created_at: Timestamp(100),
            last_seen_at: Timestamp(150),
            idle_expires_at: Timestamp(3_700),
            absolute_expires_at: Timestamp(86_500),
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            auth_method: "password".into(),
        }
    }

    fn flatten(fields: Vec<(&'static str, String)>) -> Vec<String> {
        fields
            .into_iter()
            .flat_map(|(k, v)| [k.to_owned(), v])
            .collect()
    }

    #[test]
    fn fields_round_trip() {
        let s = sample();
        let back = session_from_fields(flatten(session_fields(&s))).unwrap();
        assert_eq!(back, Some(s));
        assert_eq!(session_from_fields(Vec::new()).unwrap(), None);
    }

    #[test]
    fn damaged_hashes_are_corrupt_not_panics() {
        let mut flat = flatten(session_fields(&sample()));
        flat.push("dangling".into());
        assert!(matches!(
            session_from_fields(flat),
            Err(StoreError::Corrupt(_))
        ));

        let flat: Vec<String> = flatten(session_fields(&sample()))
            .chunks(2)
            .filter(|kv| kv[0] != "user_id")
            .flatten()
            .cloned()
            .collect();
        assert!(matches!(
            session_from_fields(flat),
            Err(StoreError::Corrupt(m)) if m.contains("user_id")
        ));

        let mut flat = flatten(session_fields(&sample()));
        let at = flat.iter().position(|f| f == "created_at").unwrap();
        flat[at + 1] = "yesterday".into();
        assert!(matches!(
            session_from_fields(flat),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn keys_live_for_the_absolute_lifetime() {
        let mut s = sample();
        assert_eq!(ttl_secs(&s), 86_400);
        assert_eq!(expires_at(&s), 3_700);
        s.absolute_expires_at = Timestamp(50);
        assert_eq!(ttl_secs(&s), 1);
        assert_eq!(expires_at(&s), 50);
    }
}
