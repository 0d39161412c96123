//! Single-use link tokens over SQL, for SQLite and PostgreSQL alike.
//!
//! A token is taken with one `DELETE ... RETURNING` whose `WHERE` holds the purpose and the
//! expiry, so of any number of concurrent uses exactly one gets it, and a token of another
//! purpose or past its time is left for its own use or for the purge.

use authx_core::Timestamp;
use authx_core::links::{LinkPurpose, LinkRecord, LinkTokenStore};
use authx_core::secret::TokenHash;
use authx_core::store::{StoreError, StoreResult};
use authx_core::user::UserId;

use super::{Dialect, SqlRow, SqlStore, col, hash, stmt};

const INSERT: &str = "INSERT INTO link_tokens \
     (token_hash, purpose, user_id, created_at, expires_at, detail) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const TAKE: &str = "DELETE FROM link_tokens \
     WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3 \
     RETURNING token_hash, purpose, user_id, created_at, expires_at, detail";
const DELETE_USER: &str = "DELETE FROM link_tokens WHERE user_id = $1 AND purpose = $2";
const PURGE: &str = "DELETE FROM link_tokens WHERE expires_at <= $1";

/// Decodes a row of `link_tokens`.
fn record_from_row<R: SqlRow>(row: &R) -> StoreResult<LinkRecord> {
    let purpose: String = col(row, "purpose")?;
    Ok(LinkRecord {
        hash: hash(row, "token_hash")?,
        purpose: LinkPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown link purpose: {purpose}")))?,
        user_id: UserId(col(row, "user_id")?),
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
        detail: col(row, "detail")?,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> LinkTokenStore for SqlStore<DB> {
    async fn insert_link_token(&self, r: &LinkRecord) -> StoreResult<()> {
        let hex = r.hash.to_hex();
        stmt(INSERT)
            .bind(&hex)
            .bind(r.purpose.as_str())
            .bind(&r.user_id.0)
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.detail.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_link_token(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<LinkRecord>> {
        let hex = hash.to_hex();
        let row = stmt(TAKE)
            .bind(&hex)
            .bind(purpose.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn delete_user_link_tokens(
        &self,
        user: &UserId,
        purpose: LinkPurpose,
    ) -> StoreResult<u64> {
        stmt(DELETE_USER)
            .bind(&user.0)
            .bind(purpose.as_str())
            .execute(&self.pool)
            .await
    }

    async fn purge_link_tokens(&self, now: Timestamp) -> StoreResult<u64> {
        stmt(PURGE).bind(now).execute(&self.pool).await
    }
}
