//! The durable revocation-event log over SQL, for SQLite and PostgreSQL alike.

use authx_core::events::{LoggedEvent, RevocationEvent};
use authx_core::store::{StoreError, StoreResult};

use crate::sql::{SqlRow, col};

pub(crate) const APPEND_EVENT: &str =
    "INSERT INTO revocation_events (at, expires_at, body) VALUES ($1, $2, $3) RETURNING seq";
pub(crate) const EVENTS_AFTER: &str = "SELECT seq, at, expires_at, body FROM revocation_events \
     WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3";
pub(crate) const PURGE_EVENTS: &str = "DELETE FROM revocation_events WHERE expires_at <= $1";

/// Serialises an event for the `body` column.
pub(crate) fn event_body(event: &RevocationEvent) -> StoreResult<String> {
    serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a row of `revocation_events`.
pub(crate) fn event_from_row<R: SqlRow>(row: &R) -> StoreResult<LoggedEvent> {
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

/// Implements `RevocationLog` for a store type with a `pool` field.
macro_rules! impl_revocation_log {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::authx_core::events::RevocationLog for $store {
            async fn append_event(
                &self,
                event: &::authx_core::events::RevocationEvent,
                at: ::authx_core::Timestamp,
                expires_at: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<i64> {
                let row = ::sqlx::query($crate::sql::revocation::APPEND_EVENT)
                    .bind(at.0)
                    .bind(expires_at.0)
                    .bind($crate::sql::revocation::event_body(event)?)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                $crate::sql::col(&row, "seq")
            }

            async fn events_after(
                &self,
                after: i64,
                now: ::authx_core::Timestamp,
                limit: u32,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::events::LoggedEvent>> {
                ::sqlx::query($crate::sql::revocation::EVENTS_AFTER)
                    .bind(after)
                    .bind(now.0)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::revocation::event_from_row)
                    .collect()
            }

            async fn purge_events(
                &self,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::revocation::PURGE_EVENTS)
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_revocation_log;
