//! The audit trail over SQL, for SQLite and PostgreSQL alike: batches are appended in one
//! transaction; listing filters by user, kind, time and position.

use authx_core::Timestamp;
use authx_core::audit::AuditRecord;
use authx_core::store::StoreResult;

use crate::sql::{SqlRow, col};

/// Columns of `audit_events` that make up an [`AuditRecord`].
macro_rules! audit_columns {
    () => {
        "id, at, kind, outcome, request_id, client_id, user_id, ip, user_agent, detail"
    };
}

pub(crate) const INSERT_AUDIT_ROWS: &str = "INSERT INTO audit_events \
     (at, kind, outcome, request_id, client_id, user_id, ip, user_agent, detail) ";
/// Rows per INSERT: 9 parameters each stays far below SQLite's and PostgreSQL's limits.
pub(crate) const ROWS_PER_INSERT: usize = 256;
// Optional filters are NULL when absent. The newest first (reversed by the caller), or after
// an id oldest first for following.
pub(crate) const LIST_AUDIT_NEWEST: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_events WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2) \
     AND ($3 IS NULL OR at >= $3) ORDER BY id DESC LIMIT $4"
);
pub(crate) const LIST_AUDIT_AFTER: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_events WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2) \
     AND ($3 IS NULL OR at >= $3) AND id > $5 ORDER BY id ASC LIMIT $4"
);
pub(crate) const PURGE_AUDIT: &str = "DELETE FROM audit_events WHERE at < $1";

/// Decodes a row selected with the audit columns.
pub(crate) fn audit_from_row<R: SqlRow>(row: &R) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: col(row, "id")?,
        at: Timestamp(col(row, "at")?),
        kind: col(row, "kind")?,
        outcome: col(row, "outcome")?,
        request_id: col(row, "request_id")?,
        client_id: col(row, "client_id")?,
        user_id: col(row, "user_id")?,
        ip: col(row, "ip")?,
        user_agent: col(row, "user_agent")?,
        detail: col(row, "detail")?,
    })
}

/// Implements `AuditStore` for `$store`, a struct with a `pool: sqlx::Pool<_>` field.
macro_rules! impl_audit_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::authx_core::audit::AuditStore for $store {
            async fn append_audit(
                &self,
                events: &[::authx_core::audit::AuditRecord],
            ) -> ::authx_core::store::StoreResult<()> {
                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await.map_err($crate::sql::store_error)?;
                // One multi-row INSERT per chunk: a busy server records thousands of events a
                // second, and a statement per event costs a round trip each.
                for chunk in events.chunks($crate::sql::audit::ROWS_PER_INSERT) {
                    let mut insert =
                        ::sqlx::QueryBuilder::new($crate::sql::audit::INSERT_AUDIT_ROWS);
                    insert.push_values(chunk, |mut row, e| {
                        row.push_bind(e.at.0)
                            .push_bind(&e.kind)
                            .push_bind(&e.outcome)
                            .push_bind(e.request_id.as_deref())
                            .push_bind(e.client_id.as_deref())
                            .push_bind(e.user_id.as_deref())
                            .push_bind(e.ip.as_deref())
                            .push_bind(e.user_agent.as_deref())
                            .push_bind(&e.detail);
                    });
                    insert
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::sql::store_error)?;
                }
                tx.commit().await.map_err($crate::sql::store_error)
            }

            async fn list_audit(
                &self,
                q: &::authx_core::audit::AuditQuery,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::audit::AuditRecord>> {
                let sql = if q.after_id.is_some() {
                    $crate::sql::audit::LIST_AUDIT_AFTER
                } else {
                    $crate::sql::audit::LIST_AUDIT_NEWEST
                };
                let mut query = ::sqlx::query(sql)
                    .bind(q.user_id.as_deref())
                    .bind(q.kind.as_deref())
                    .bind(q.since.map(|t| t.0))
                    .bind(i64::from(q.limit));
                if let Some(after) = q.after_id {
                    query = query.bind(after);
                }
                let mut rows = query
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::audit::audit_from_row)
                    .collect::<::authx_core::store::StoreResult<Vec<_>>>()?;
                if q.after_id.is_none() {
                    rows.reverse();
                }
                Ok(rows)
            }

            async fn purge_audit(
                &self,
                before: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::audit::PURGE_AUDIT)
                    .bind(before.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_audit_store;
