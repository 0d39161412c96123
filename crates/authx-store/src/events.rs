//! What the two buses of revocation events between instances share: over Redis pub/sub
//! (`crate::redis::events`), or over PostgreSQL `LISTEN`/`NOTIFY` when there is no Redis
//! (`crate::postgres::events`).
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

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use authx_core::events::{EventBus, RevocationEvent};
use authx_core::store::{StoreError, StoreResult};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::error::ConnectError;

/// How long to wait for a connection to Redis or PostgreSQL.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
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
pub(crate) struct Shared {
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

    /// Whether the subscription is in place.
    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Moves at every (re)subscription.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
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

    /// Hands an event as published to this instance's subscribers.
    pub(crate) fn deliver(&self, payload: &str) {
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

/// A bus of revocation events between instances: `P` publishes, a `Subscriber` receives.
/// Dropping it stops the subscriber task.
pub struct Bus<P> {
    publisher: P,
    subscriber: Subscriber,
}

impl<P: Publish> Bus<P> {
    /// The bus of `publisher` and `subscriber`, which listens where `publisher` publishes.
    pub(crate) fn new(publisher: P, subscriber: Subscriber) -> Self {
        Self {
            publisher,
            subscriber,
        }
    }

    /// What publishes.
    pub(crate) fn publisher(&self) -> &P {
        &self.publisher
    }
}

impl<P: Publish> fmt::Debug for Bus<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.subscriber.debug_as(P::BUS, f)
    }
}

#[async_trait]
impl<P: Publish> EventBus for Bus<P> {
    async fn publish(&self, event: &RevocationEvent) -> StoreResult<()> {
        self.publisher
            .publish(self.subscriber.channel(), encode(event)?)
            .await
    }

    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.subscriber.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.subscriber.is_connected()
    }

    fn epoch(&self) -> u64 {
        self.subscriber.epoch()
    }
}

/// How one bus sends an event to every instance.
#[async_trait]
pub trait Publish: Send + Sync + 'static {
    /// The bus's name, for its `Debug`.
    const BUS: &'static str;

    /// Publishes `payload` (an event's JSON) on `channel`.
    async fn publish(&self, channel: &str, payload: String) -> StoreResult<()>;
}

/// Why subscribing failed, as the driver said.
pub(crate) type SubscribeError = Box<dyn std::error::Error + Send + Sync>;

/// How one bus receives the events of every instance: subscribing on a dedicated connection,
/// and relaying what arrives there until the subscription fails.
#[async_trait]
pub(crate) trait Transport: Send + Sync + 'static {
    /// A subscription in place.
    type Subscription: Send;

    /// Subscribes to the bus's channel.
    async fn subscribe(&self) -> Result<Self::Subscription, SubscribeError>;

    /// Hands every message of `subscription` to [`Shared::deliver`] until the subscription
    /// fails; returns why it did.
    async fn relay(&self, subscription: Self::Subscription, shared: &Shared) -> String;
}

/// The receiving half of a bus: the background task that keeps the subscription, and the
/// state it shares with the bus. Dropping it stops the task.
pub(crate) struct Subscriber {
    channel: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Starts the task that keeps `transport` subscribed to `channel`, and returns once the
    /// first subscription is in place, so no event published after start-up is missed.
    /// `names` are the transport's for logs (`redis`, `postgres`) and the service's for errors
    /// (`Redis`, `the database`).
    pub(crate) async fn start<T: Transport>(
        transport: T,
        channel: String,
        names: (&'static str, &'static str),
    ) -> Result<Self, ConnectError> {
        let (name, service) = names;
        let shared = Shared::new(name);
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(keep_subscribed(transport, Arc::clone(&shared), first_tx));
        let subscriber = Self {
            channel,
            shared,
            task,
        };
        // On failure the subscriber is dropped here, which stops the task.
        first_subscription(first_rx, service).await?;
        Ok(subscriber)
    }

    /// The channel the bus publishes on and listens to.
    fn channel(&self) -> &str {
        &self.channel
    }

    /// A receiver of every event that arrives from now on.
    fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.shared.local.subscribe()
    }

    /// Whether the subscription is in place.
    fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// Moves at every (re)subscription.
    fn epoch(&self) -> u64 {
        self.shared.epoch()
    }

    /// The `Debug` of the bus called `name`: its channel and the subscription's state.
    fn debug_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("channel", &self.channel)
            .field("connected", &self.is_connected())
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The subscriber task: subscribe, relay until the subscription fails, back off, repeat. A
/// failure of the first attempt goes to the caller of [`Subscriber::start`] and ends the task.
async fn keep_subscribed<T: Transport>(
    transport: T,
    shared: Arc<Shared>,
    first: oneshot::Sender<Result<(), SubscribeError>>,
) {
    let mut first = Some(first);
    let mut failures = 0u32;
    loop {
        match transport.subscribe().await {
            Ok(subscription) => {
                failures = 0;
                shared.up(first.is_none());
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                let why = transport.relay(subscription, &shared).await;
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

/// An event as published: its JSON.
fn encode(event: &RevocationEvent) -> StoreResult<String> {
    serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Waits for the subscriber task's first attempt.
async fn first_subscription(
    first: oneshot::Receiver<Result<(), SubscribeError>>,
    service: &'static str,
) -> Result<(), ConnectError> {
    let source = match first.await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => Box::new(std::io::Error::other("the event subscriber stopped")),
    };
    Err(ConnectError::Unreachable { service, source })
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
