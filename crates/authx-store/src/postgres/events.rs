//! Revocation events over PostgreSQL `LISTEN`/`NOTIFY`.

use std::sync::Arc;

use async_trait::async_trait;
use authx_core::events::{EventBus, RevocationEvent};
use authx_core::store::StoreResult;
use tokio::sync::broadcast;

use crate::error::ConnectError;
use crate::events::{CONNECT_TIMEOUT, Shared, SubscribeError, Subscriber, Transport, encode};

/// Revocation events over PostgreSQL `LISTEN`/`NOTIFY`, for several instances sharing one
/// database without Redis. Uses its own pool of two connections: one listens, one notifies.
///
/// A notification is delivered only to sessions listening when it is sent, like Redis
/// pub/sub; the same reconnect, epoch and fail-closed rules apply.
pub struct PgEventBus {
    pool: sqlx::PgPool,
    subscriber: Subscriber,
}

impl std::fmt::Debug for PgEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.subscriber.debug_as("PgEventBus", f)
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
    let opts = crate::options::ConnectOptions {
        max_connections: 2,
        acquire_timeout: CONNECT_TIMEOUT,
        ..crate::options::ConnectOptions::default()
    };
    let pool = crate::postgres::open(url, &opts).await?;
    let listen = Listen {
        pool: pool.clone(),
        channel: channel.to_owned(),
    };
    let names = ("postgres", "the database");
    let subscriber = Subscriber::start(listen, channel.to_owned(), names).await?;
    Ok(Arc::new(PgEventBus { pool, subscriber }))
}

/// Listening on one channel of the database.
struct Listen {
    pool: sqlx::PgPool,
    channel: String,
}

#[async_trait]
impl Transport for Listen {
    type Subscription = sqlx::postgres::PgListener;

    async fn subscribe(&self) -> Result<Self::Subscription, SubscribeError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        // A lost connection must surface here, not be reconnected silently: events sent during
        // the gap are gone, and the epoch has to say so.
        listener.eager_reconnect(false);
        listener.listen(&self.channel).await?;
        Ok(listener)
    }

    async fn relay(&self, mut listener: Self::Subscription, shared: &Shared) -> String {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => shared.deliver(n.payload()),
                Ok(None) => return "connection closed".to_owned(),
                Err(e) => return e.to_string(),
            }
        }
    }
}

#[async_trait]
impl EventBus for PgEventBus {
    async fn publish(&self, event: &RevocationEvent) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(self.subscriber.channel())
            .bind(encode(event)?)
            .execute(&self.pool)
            .await
            .map_err(crate::sql::store_error)?;
        Ok(())
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
