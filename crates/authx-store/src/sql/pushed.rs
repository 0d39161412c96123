//! Pushed authorization requests (RFC 9126) over SQL, for SQLite and PostgreSQL alike.
//!
//! Opening a request moves its expiry to the end of the sign-in window in the same `UPDATE`
//! that finds it; taking one is a `DELETE ... RETURNING` whose `WHERE` holds the expiry, so of
//! concurrent takes exactly one gets it.

use authx_core::Timestamp;
use authx_core::oauth::store::{PushedRequest, PushedRequestStore};
use authx_core::secret::TokenHash;
use authx_core::store::StoreResult;

use super::{Dialect, SqlRow, SqlStore, col, hash, stmt};

const INSERT: &str = "INSERT INTO pushed_requests \
     (request_hash, client_id, params, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
const OPEN: &str = "UPDATE pushed_requests \
     SET expires_at = CASE WHEN created_at + $3 > expires_at THEN created_at + $3 ELSE expires_at END \
     WHERE request_hash = $1 AND expires_at > $2 \
     RETURNING request_hash, client_id, params, created_at, expires_at";
const TAKE: &str = "DELETE FROM pushed_requests WHERE request_hash = $1 AND expires_at > $2 \
     RETURNING request_hash, client_id, params, created_at, expires_at";
const PURGE: &str = "DELETE FROM pushed_requests WHERE expires_at <= $1";

/// Decodes a row of `pushed_requests`.
fn request_from_row<R: SqlRow>(row: &R) -> StoreResult<PushedRequest> {
    Ok(PushedRequest {
        hash: hash(row, "request_hash")?,
        client_id: col(row, "client_id")?,
        params: col(row, "params")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> PushedRequestStore for SqlStore<DB> {
    async fn insert_pushed_request(&self, r: &PushedRequest) -> StoreResult<()> {
        let hex = r.hash.to_hex();
        stmt(INSERT)
            .bind(&hex)
            .bind(&r.client_id)
            .bind(&r.params)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn open_pushed_request(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        interaction_secs: i64,
    ) -> StoreResult<Option<PushedRequest>> {
        let hex = hash.to_hex();
        let row = stmt(OPEN)
            .bind(&hex)
            .bind(now)
            .bind(interaction_secs)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn take_pushed_request(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<PushedRequest>> {
        let hex = hash.to_hex();
        let row = stmt(TAKE)
            .bind(&hex)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn purge_pushed_requests(&self, now: Timestamp) -> StoreResult<u64> {
        stmt(PURGE).bind(now).execute(&self.pool).await
    }
}
