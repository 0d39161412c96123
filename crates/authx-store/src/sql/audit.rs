//! The audit trail over SQL, for SQLite and PostgreSQL alike: batches are appended in one
//! transaction; listing filters by user, kind, time and position.

use authx_core::Timestamp;
use authx_core::audit::{AuditQuery, AuditRecord, AuditStore};
use authx_core::store::StoreResult;

use super::{Dialect, SqlRow, SqlStore, Stmt, col, count, stmt};

/// Columns of `audit_events` that make up an [`AuditRecord`].
macro_rules! audit_columns {
    () => {
        "id, at, kind, outcome, request_id, client_id, user_id, ip, user_agent, detail"
    };
}

const INSERT_AUDIT_ROWS: &str = "INSERT INTO audit_events \
     (at, kind, outcome, request_id, client_id, user_id, ip, user_agent, detail) VALUES ";
/// Parameters per row of [`INSERT_AUDIT_ROWS`].
const COLUMNS_PER_ROW: usize = 9;
/// Rows per INSERT: [`COLUMNS_PER_ROW`] parameters each stays far below SQLite's and PostgreSQL's limits.
const ROWS_PER_INSERT: usize = 256;
// Optional filters are NULL when absent: $1 user, $2 kind, $3 since, $4 client, $5 outcome,
// $6 until, $7 before id, $8 after id. Every statement names all eight, so each binds the same.
macro_rules! audit_filter {
    () => {
        " FROM audit_events WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2) \
         AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR client_id = $4) \
         AND ($5 IS NULL OR outcome = $5) AND ($6 IS NULL OR at < $6) \
         AND ($7 IS NULL OR id < $7) AND ($8 IS NULL OR id > $8)"
    };
}
// The newest first (reversed by the caller), or after an id oldest first for following.
const LIST_AUDIT_NEWEST: &str = concat!(
    "SELECT ",
    audit_columns!(),
    audit_filter!(),
    " ORDER BY id DESC LIMIT $9"
);
const LIST_AUDIT_AFTER: &str = concat!(
    "SELECT ",
    audit_columns!(),
    audit_filter!(),
    " ORDER BY id ASC LIMIT $9"
);
const COUNT_AUDIT: &str = concat!("SELECT COUNT(*) AS n", audit_filter!());
const PURGE_AUDIT: &str = "DELETE FROM audit_events WHERE at < $1";

/// Decodes a row selected with the audit columns.
fn audit_from_row<R: SqlRow>(row: &R) -> StoreResult<AuditRecord> {
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

/// [`INSERT_AUDIT_ROWS`] with the placeholders of `rows` rows, in order, as the dialect writes
/// them: `($1, ..., $9), ($10, ...` on PostgreSQL, `(?, ..., ?), (?, ...` on SQLite.
fn insert_audit_rows<DB: Dialect>(rows: usize) -> String {
    let mut sql = String::from(INSERT_AUDIT_ROWS);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=COLUMNS_PER_ROW {
            if column > 1 {
                sql.push_str(", ");
            }
            DB::push_placeholder(&mut sql, row * COLUMNS_PER_ROW + column);
        }
        sql.push(')');
    }
    sql
}

/// `statement` with the eight filter parameters of `audit_filter!` bound from `q`.
fn filtered<'a>(statement: Stmt<'a>, q: &'a AuditQuery) -> Stmt<'a> {
    statement
        .bind(q.user_id.as_deref())
        .bind(q.kind.as_deref())
        .bind(q.since)
        .bind(q.client_id.as_deref())
        .bind(q.outcome.as_deref())
        .bind(q.until)
        .bind(q.before_id)
        .bind(q.after_id)
}

#[async_trait::async_trait]
impl<DB: Dialect> AuditStore for SqlStore<DB> {
    async fn append_audit(&self, events: &[AuditRecord]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // One multi-row INSERT per chunk: a busy server records thousands of events a second,
        // and a statement per event costs a round trip each.
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let sql = insert_audit_rows::<DB>(chunk.len());
            let mut insert = stmt(&sql);
            for e in chunk {
                insert = insert
                    .bind(e.at)
                    .bind(&e.kind)
                    .bind(&e.outcome)
                    .bind(e.request_id.as_deref())
                    .bind(e.client_id.as_deref())
                    .bind(e.user_id.as_deref())
                    .bind(e.ip.as_deref())
                    .bind(e.user_agent.as_deref())
                    .bind(&e.detail);
            }
            insert.execute_in(&mut tx).await?;
        }
        tx.commit().await
    }

    async fn list_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let sql = if q.after_id.is_some() {
            LIST_AUDIT_AFTER
        } else {
            LIST_AUDIT_NEWEST
        };
        let rows = filtered(stmt(sql), q)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
        let mut records = rows
            .iter()
            .map(audit_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if q.after_id.is_none() {
            records.reverse();
        }
        Ok(records)
    }

    async fn count_audit(&self, q: &AuditQuery) -> StoreResult<u64> {
        let row = filtered(stmt(COUNT_AUDIT), q).fetch_one(&self.pool).await?;
        count(col(&row, "n")?)
    }

    async fn purge_audit(&self, before: Timestamp) -> StoreResult<u64> {
        stmt(PURGE_AUDIT).bind(before).execute(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_numbered_in_order() {
        assert_eq!(
            insert_audit_rows::<sqlx::Postgres>(2),
            format!(
                "{INSERT_AUDIT_ROWS}($1, $2, $3, $4, $5, $6, $7, $8, $9), \
                 ($10, $11, $12, $13, $14, $15, $16, $17, $18)"
            )
        );
        assert_eq!(
            insert_audit_rows::<sqlx::Sqlite>(2),
            format!("{INSERT_AUDIT_ROWS}(?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
    }
}
