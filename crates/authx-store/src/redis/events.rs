//! Revocation events over Redis pub/sub.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authx_core::store::{Health, StoreError, StoreResult};
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};

use super::{RESPONSE_TIMEOUT, connect};
use crate::error::ConnectError;
use crate::events::{Bus, CONNECT_TIMEOUT, Publish, Shared, SubscribeError, Subscriber, Transport};

/// How often an idle subscription is checked with a `PING`, so a connection that died without
/// a reset (a silent network partition) is noticed.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long a `PING` on the subscription may take before it counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Revocation events over Redis pub/sub, on the channel `{prefix}events`.
///
/// Publishing uses a multiplexed connection that reconnects by itself; the subscription uses a
/// dedicated connection (a subscribed Redis connection can do nothing else), checked with a
/// `PING` every few seconds. Dropping the bus stops its subscriber task.
pub type RedisEventBus = Bus<Publisher>;

/// Publishing over a multiplexed connection that reconnects by itself.
pub struct Publisher {
    conn: ConnectionManager,
}

#[async_trait]
impl Publish for Publisher {
    const BUS: &'static str = "RedisEventBus";

    async fn publish(&self, channel: &str, payload: String) -> StoreResult<()> {
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
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
    // A revocation waits for its publish: it fails within seconds rather than retry for minutes.
    let (client, conn) = connect(url).await?;
    let channel = format!("{key_prefix}events");
    let dedicated = Dedicated {
        client,
        channel: channel.clone(),
    };
    let subscriber = Subscriber::start(dedicated, channel, ("redis", "Redis")).await?;
    Ok(Arc::new(Bus::new(Publisher { conn }, subscriber)))
}

/// A dedicated connection subscribed to one channel, checked with a `PING` every few seconds.
struct Dedicated {
    client: redis::Client,
    channel: String,
}

#[async_trait]
impl Transport for Dedicated {
    type Subscription = (PubSubSink, PubSubStream);

    async fn subscribe(&self) -> Result<Self::Subscription, SubscribeError> {
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| timeout_error("connecting"))??;
        let (mut sink, stream) = pubsub.split();
        tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(&self.channel))
            .await
            .map_err(|_| timeout_error("subscribing"))??;
        Ok((sink, stream))
    }

    async fn relay(&self, (sink, stream): Self::Subscription, shared: &Shared) -> String {
        redis_relay(sink, stream, shared).await
    }
}

fn timeout_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("timed out {what}"),
    ))
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
impl Health for RedisEventBus {
    async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.publisher().conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}
