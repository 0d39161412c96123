//! Revocation events over PostgreSQL `LISTEN`/`NOTIFY`.

use std::sync::Arc;

use async_trait::async_trait;
use authx_core::store::StoreResult;

use crate::error::ConnectError;
use crate::events::{Bus, CONNECT_TIMEOUT, Publish, Shared, SubscribeError, Subscriber, Transport};

/// Revocation events over PostgreSQL `LISTEN`/`NOTIFY`, for several instances sharing one
/// database without Redis. Uses its own pool of two connections: one listens, one notifies.
///
/// A notification is delivered only to sessions listening when it is sent, like Redis
/// pub/sub; the same reconnect, epoch and fail-closed rules apply.
pub type PgEventBus = Bus<Notify>;

/// Publishing with `pg_notify`.
pub struct Notify {
    pool: sqlx::PgPool,
}

#[async_trait]
impl Publish for Notify {
    const BUS: &'static str = "PgEventBus";

    async fn publish(&self, channel: &str, payload: String) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(crate::sql::store_error)?;
        Ok(())
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
    Ok(Arc::new(Bus::new(Notify { pool }, subscriber)))
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
