//! The durable revocation-event log over SQL, for SQLite and PostgreSQL alike.

use authx_core::Timestamp;
use authx_core::events::{LoggedEvent, RevocationEvent, RevocationLog};
use authx_core::store::{StoreError, StoreResult};

use super::{Dialect, SqlRow, SqlStore, col, stmt};

const APPEND_EVENT: &str =
    "INSERT INTO revocation_events (at, expires_at, body) VALUES ($1, $2, $3) RETURNING seq";
const EVENTS_AFTER: &str = "SELECT seq, at, expires_at, body FROM revocation_events \
     WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3";
const PURGE_EVENTS: &str = "DELETE FROM revocation_events WHERE expires_at <= $1";

/// Serialises an event for the `body` column.
fn event_body(event: &RevocationEvent) -> StoreResult<String> {
    serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a row of `revocation_events`.
fn event_from_row<R: SqlRow>(row: &R) -> StoreResult<LoggedEvent> {
    let body: String = col(row, "body")?;
    let event = serde_json::from_str(&body)
        .map_err(|e| StoreError::Corrupt(format!("revocation event: {e}")))?;
    Ok(LoggedEvent {
        seq: col(row, "seq")?,
        at: col(row, "at")?,
        expires_at: col(row, "expires_at")?,
        event,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> RevocationLog for SqlStore<DB> {
    async fn append_event(
        &self,
        event: &RevocationEvent,
        at: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<i64> {
        let body = event_body(event)?;
        let row = stmt(APPEND_EVENT)
            .bind(at)
            .bind(expires_at)
            .bind(&body)
            .fetch_one(&self.pool)
            .await?;
        col(&row, "seq")
    }

    async fn events_after(
        &self,
        after: i64,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let rows = stmt(EVENTS_AFTER)
            .bind(after)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn purge_events(&self, now: Timestamp) -> StoreResult<u64> {
        stmt(PURGE_EVENTS).bind(now).execute(&self.pool).await
    }
}
