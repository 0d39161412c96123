//! Revocation events over PostgreSQL `LISTEN`/`NOTIFY`.

use std::sync::Arc;

use async_trait::async_trait;
use authx_core::events::{EventBus, RevocationEvent};
use authx_core::store::StoreResult;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::ConnectError;
use crate::events::{CONNECT_TIMEOUT, Shared, backoff, encode, first_subscription};

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
        self.shared.is_connected()
    }

    fn epoch(&self) -> u64 {
        self.shared.epoch()
    }
}
