//! Revocation events between instances: over Redis pub/sub, or over PostgreSQL
//! `LISTEN`/`NOTIFY` when there is no Redis.
//!
//! Both buses publish each [`RevocationEvent`] as JSON on one channel that every instance
//! subscribes to, and re-broadcast what arrives into a local [`broadcast`] channel (the
//! instance's own events come back that way too; applying an event twice is harmless).
//!
//! The subscription runs on a dedicated connection in a background task. While it is down,
//! [`EventBus::is_connected`] is `false`, so nothing may be served from a cache that events
//! keep fresh; the task reconnects with a bounded exponential backoff and logs a warning for
//! each failure. Every successful (re)subscription changes [`EventBus::epoch`], because
//! events published during the gap are lost: a cache filled before it must start over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use authx_core::events::{EventBus, RevocationEvent};
use authx_core::store::{Health, StoreError, StoreResult};
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::ConnectError;

/// How long to wait for a connection to Redis or PostgreSQL.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for Redis to answer a `PUBLISH` or `PING`.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle subscription is checked with a `PING`, so a connection that died without
/// a reset (a silent network partition) is noticed.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a `PING` on the subscription may take before it counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// First pause before resubscribing after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between two resubscription attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Events buffered per local subscriber before it lags (and drops its cache).
const LOCAL_CAPACITY: usize = 1024;

/// The pause before reconnection attempt `failures` (0 for the first): doubling from
/// [`BACKOFF_MIN`], never above [`BACKOFF_MAX`].
fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(BACKOFF_MAX)
}

/// What the subscriber task and the bus handle share.
struct Shared {
    local: broadcast::Sender<RevocationEvent>,
    connected: AtomicBool,
    epoch: AtomicU64,
    /// `redis` or `postgres`, for logs.
    transport: &'static str,
}

impl Shared {
    fn new(transport: &'static str) -> Arc<Self> {
        Arc::new(Self {
            local: broadcast::channel(LOCAL_CAPACITY).0,
            connected: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            transport,
        })
    }

    /// A subscription is (again) in place. The epoch moves first, so whoever sees
    /// `connected` also sees the new epoch.
    fn up(&self, reconnected: bool) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.connected.store(true, Ordering::SeqCst);
        if reconnected {
            tracing::warn!(
                transport = self.transport,
                "revocation events: subscription restored; session caches start over"
            );
        }
    }

    fn down(&self, why: &str) {
        self.connected.store(false, Ordering::SeqCst);
        tracing::warn!(
            transport = self.transport,
            error = why,
            "revocation events: subscription lost; failing closed (no cached sessions) until it is restored"
        );
    }

    fn deliver(&self, payload: &str) {
        match serde_json::from_str::<RevocationEvent>(payload) {
            // No local subscriber is not an error: nothing is cached then.
            Ok(event) => drop(self.local.send(event)),
            // Possibly an event kind from a newer build; it cannot concern this one's cache
            // entries in a way it understands, so it is reported and skipped.
            Err(e) => tracing::warn!(
                transport = self.transport,
                error = %e,
                "revocation events: ignoring a message that is not a known event"
            ),
        }
    }

    fn retry_log(&self, e: &dyn std::fmt::Display, delay: Duration) {
        tracing::warn!(
            transport = self.transport,
            error = %e,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "revocation events: cannot subscribe; retrying"
        );
    }
}

fn encode(event: &RevocationEvent) -> StoreResult<String> {
    serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Waits for the subscriber task's first attempt; the bus is returned only once it is
/// subscribed, so no event published after start-up is missed.
async fn first_subscription<E>(
    first: oneshot::Receiver<Result<(), E>>,
    service: &'static str,
) -> Result<(), ConnectError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match first.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ConnectError::unreachable(service, e)),
        Err(_) => Err(ConnectError::unreachable(
            service,
            std::io::Error::other("the event subscriber stopped"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// Revocation events over Redis pub/sub, on the channel `{prefix}events`.
///
/// Publishing uses a multiplexed connection that reconnects by itself; the subscription uses a
/// dedicated connection (a subscribed Redis connection can do nothing else), checked with a
/// `PING` every few seconds. Dropping the bus stops its subscriber task.
pub struct RedisEventBus {
    conn: ConnectionManager,
    channel: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RedisEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventBus")
            .field("channel", &self.channel)
            .field("connected", &self.is_connected())
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisEventBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the Redis server at `url` and subscribes to `{key_prefix}events`. Instances that
/// share a prefix hear each other's events.
///
/// # Errors
/// [`ConnectError::InvalidUrl`] for a URL the client cannot parse and
/// [`ConnectError::Unreachable`] when Redis does not answer or refuses the subscription.
///
/// # Security
/// Events carry ids only (session and user ids), never a token or a hash. Error messages never
/// repeat the URL, which may carry a password.
pub async fn redis_event_bus(
    url: &str,
    key_prefix: &str,
) -> Result<Arc<RedisEventBus>, ConnectError> {
    let client = redis::Client::open(url).map_err(|e| ConnectError::InvalidUrl {
        source: Box::new(e),
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        // A revocation waits for its publish: fail within seconds rather than retry for minutes.
        .set_number_of_retries(2)
        .set_factor(2)
        .set_max_delay(1_000);
    let conn = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|e| ConnectError::unreachable("Redis", e))?;
    let channel = format!("{key_prefix}events");
    let shared = Shared::new("redis");
    let (first_tx, first_rx) = oneshot::channel();
    let task = tokio::spawn(redis_subscriber(
        client,
        channel.clone(),
        Arc::clone(&shared),
        first_tx,
    ));
    let bus = RedisEventBus {
        conn,
        channel,
        shared,
        task,
    };
    // On failure the bus is dropped here, which stops the task.
    first_subscription(first_rx, "Redis").await?;
    Ok(Arc::new(bus))
}

async fn redis_subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timeout_error("connecting"))??;
    let (mut sink, stream) = pubsub.split();
    tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(channel))
        .await
        .map_err(|_| timeout_error("subscribing"))??;
    Ok((sink, stream))
}

fn timeout_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out {what}"),
    ))
}

/// The subscriber task: subscribe, relay until the connection fails, back off, repeat.
async fn redis_subscriber(
    client: redis::Client,
    channel: String,
    shared: Arc<Shared>,
    first: oneshot::Sender<redis::RedisResult<()>>,
) {
    let mut first = Some(first);
    let mut failures = 0u32;
    loop {
        match redis_subscribe(&client, &channel).await {
            Ok((sink, stream)) => {
                failures = 0;
                shared.up(first.is_none());
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                let why = redis_relay(sink, stream, &shared).await;
                shared.down(&why);
            }
            Err(e) => {
                if let Some(tx) = first.take() {
                    // Start-up: the caller reports it and refuses to start.
                    let _ = tx.send(Err(e));
                    return;
                }
                shared.retry_log(&e, backoff(failures));
            }
        }
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

/// Relays messages until the subscription fails; returns why.
async fn redis_relay(mut sink: PubSubSink, mut stream: PubSubStream, shared: &Shared) -> String {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => match msg.get_payload::<String>() {
                    Ok(payload) => shared.deliver(&payload),
                    Err(e) => tracing::warn!(error = %e, "revocation events: unreadable message"),
                },
                None => return "connection closed".to_owned(),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return format!("no answer to PING within {PING_TIMEOUT:?}"),
                }
            }
        }
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    async fn publish(&self, event: &RevocationEvent) -> StoreResult<()> {
        let payload = encode(event)?;
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.shared.local.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Health for RedisEventBus {
    async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Revocation events over PostgreSQL `LISTEN`/`NOTIFY`, for several instances sharing one
/// database without Redis. Uses its own pool of two connections: one listens, one notifies.
///
/// A notification is delivered only to sessions listening when it is sent, like Redis
/// pub/sub; the same reconnect, epoch and fail-closed rules apply.
pub struct PgEventBus {
    pool: sqlx::PgPool,
    channel: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for PgEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEventBus")
            .field("channel", &self.channel)
            .field("connected", &self.is_connected())
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl Drop for PgEventBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the PostgreSQL database at `url` and listens on `channel` (a plain identifier
/// such as `authx_events`). Instances that share a database and a channel hear each other.
///
/// # Errors
/// [`ConnectError::InvalidUrl`] for a bad URL or channel name, [`ConnectError::Unreachable`]
/// when the database does not answer.
pub async fn postgres_event_bus(url: &str, channel: &str) -> Result<Arc<PgEventBus>, ConnectError> {
    if channel.is_empty()
        || channel.len() > 63
        || !channel
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(ConnectError::InvalidUrl {
            source: "the event channel must be 1 to 63 characters of a-z, 0-9 and _".into(),
        });
    }
    let opts = crate::ConnectOptions {
        max_connections: 2,
        acquire_timeout: CONNECT_TIMEOUT,
        ..crate::ConnectOptions::default()
    };
    let pool = crate::postgres::open(url, &opts).await?;
    let shared = Shared::new("postgres");
    let (first_tx, first_rx) = oneshot::channel();
    let task = tokio::spawn(pg_subscriber(
        pool.clone(),
        channel.to_owned(),
        Arc::clone(&shared),
        first_tx,
    ));
    let bus = PgEventBus {
        pool,
        channel: channel.to_owned(),
        shared,
        task,
    };
    first_subscription(first_rx, "the database").await?;
    Ok(Arc::new(bus))
}

async fn pg_listen(
    pool: &sqlx::PgPool,
    channel: &str,
) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    // A lost connection must surface here, not be reconnected silently: events sent during
    // the gap are gone, and the epoch has to say so.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

/// The subscriber task: listen, relay until the connection fails, back off, repeat.
async fn pg_subscriber(
    pool: sqlx::PgPool,
    channel: String,
    shared: Arc<Shared>,
    first: oneshot::Sender<Result<(), sqlx::Error>>,
) {
    let mut first = Some(first);
    let mut failures = 0u32;
    loop {
        match pg_listen(&pool, &channel).await {
            Ok(mut listener) => {
                failures = 0;
                shared.up(first.is_none());
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                let why = loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => shared.deliver(n.payload()),
                        Ok(None) => break "connection closed".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                shared.down(&why);
            }
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                shared.retry_log(&e, backoff(failures));
            }
        }
        tokio::time::sleep(backoff(failures)).await;
        failures = failures.saturating_add(1);
    }
}

#[async_trait]
impl EventBus for PgEventBus {
    async fn publish(&self, event: &RevocationEvent) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(encode(event)?)
            .execute(&self.pool)
            .await
            .map_err(crate::sql::store_error)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.shared.local.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(6), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn events_round_trip_as_tagged_json() {
        let event = RevocationEvent::UserDisabled {
            user_id: authx_core::user::UserId("u1".into()),
        };
        let json = encode(&event).unwrap();
        assert_eq!(json, r#"{"kind":"user_disabled","user_id":"u1"}"#);
        let shared = Shared::new("test");
        let mut rx = shared.local.subscribe();
        shared.deliver(&json);
        shared.deliver("{\"kind\":\"from_the_future\"}");
        assert_eq!(rx.try_recv().unwrap(), event);
        assert!(rx.try_recv().is_err(), "unknown kinds are skipped");
    }

    #[test]
    fn the_epoch_moves_before_connected_is_seen() {
        let shared = Shared::new("test");
        assert!(!shared.connected.load(Ordering::SeqCst));
        shared.up(false);
        assert_eq!(shared.epoch.load(Ordering::SeqCst), 1);
        shared.down("cut");
        assert!(!shared.connected.load(Ordering::SeqCst));
        shared.up(true);
        assert_eq!(shared.epoch.load(Ordering::SeqCst), 2);
        assert!(shared.connected.load(Ordering::SeqCst));
    }
}
