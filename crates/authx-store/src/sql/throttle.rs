//! Sign-in failure counters and fixed-window rate counters over SQL, both in `throttle`.

use authx_core::Timestamp;
use authx_core::store::{FailureCount, StoreError, StoreResult, ThrottleStore};

use super::{Dialect, SqlRow, SqlStore, col, stmt};

// One statement, so parallel failures on one key each count: the row lock (PostgreSQL) or the
// database write lock (SQLite) serialises the read-modify-write.
const RECORD_FAILURE: &str = "INSERT INTO throttle (key, failures, last_failure_at) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = CASE WHEN excluded.last_failure_at - throttle.last_failure_at >= $3 \
                       THEN 1 ELSE throttle.failures + 1 END, \
       last_failure_at = excluded.last_failure_at \
     RETURNING failures, last_failure_at";
const FAILURES: &str = "SELECT failures, last_failure_at FROM throttle WHERE key = $1";
const CLEAR_FAILURES: &str = "DELETE FROM throttle WHERE key = $1";
const PURGE_FAILURES: &str = "DELETE FROM throttle WHERE last_failure_at < $1";
// A fixed-window rate counter in the throttle table (`failures` counts requests): one atomic
// upsert that starts over when the last hit came before the current window.
const COUNT_HIT: &str = "INSERT INTO throttle (key, failures, last_failure_at) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = CASE WHEN throttle.last_failure_at < $3 \
                       THEN 1 ELSE throttle.failures + 1 END, \
       last_failure_at = excluded.last_failure_at \
     RETURNING failures, last_failure_at";

/// Decodes a row of `throttle` (`failures`, `last_failure_at`).
fn failure_count_from_row<R: SqlRow>(row: &R) -> StoreResult<FailureCount> {
    let failures: i64 = col(row, "failures")?;
    let failures = u32::try_from(failures)
        .map_err(|_| StoreError::Corrupt(format!("failure counter out of range: {failures}")))?;
    Ok(FailureCount {
        failures,
        last_failure_at: Timestamp(col(row, "last_failure_at")?),
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> ThrottleStore for SqlStore<DB> {
    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        reset_after_secs: i64,
    ) -> StoreResult<FailureCount> {
        let row = stmt(RECORD_FAILURE)
            .bind(key)
            .bind(now)
            .bind(reset_after_secs)
            .fetch_one(&self.pool)
            .await?;
        failure_count_from_row(&row)
    }

    async fn failures(&self, key: &str) -> StoreResult<Option<FailureCount>> {
        let row = stmt(FAILURES).bind(key).fetch_optional(&self.pool).await?;
        row.as_ref().map(failure_count_from_row).transpose()
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        stmt(CLEAR_FAILURES).bind(key).execute(&self.pool).await?;
        Ok(())
    }

    async fn purge_failures(&self, before: Timestamp) -> StoreResult<u64> {
        stmt(PURGE_FAILURES).bind(before).execute(&self.pool).await
    }

    async fn count_hit(
        &self,
        key: &str,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        let row = stmt(COUNT_HIT)
            .bind(key)
            .bind(now)
            .bind(window_start)
            .fetch_one(&self.pool)
            .await?;
        Ok(failure_count_from_row(&row)?.failures)
    }
}
