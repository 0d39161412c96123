//! Federation links, transactions and pending links over SQL, for SQLite and PostgreSQL alike.
//!
//! A transaction is taken with one `DELETE ... RETURNING`, so of any number of callbacks that
//! present one `state`, exactly one gets it; a pending link is completed by the one caller whose
//! `DELETE` removed it.

use authx_core::Timestamp;
use authx_core::federation::{Link, PendingLink, Transaction};
use authx_core::secret::TokenHash;
use authx_core::store::{StoreError, StoreResult};
use authx_core::user::UserId;

use crate::sql::{SqlRow, col};

pub(crate) const INSERT_TRANSACTION: &str = "INSERT INTO federation_transactions \
     (state_hash, provider, issuer, browser_hash, nonce, pkce_verifier, return_to, created_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const TAKE_TRANSACTION: &str = "DELETE FROM federation_transactions \
     WHERE state_hash = $1 RETURNING state_hash, provider, issuer, browser_hash, nonce, \
     pkce_verifier, return_to, created_at, expires_at";
pub(crate) const LINK_COLUMNS: &str =
    "SELECT id, issuer, subject, provider, user_id, email, created_at FROM federation_links";
pub(crate) const INSERT_LINK: &str = "INSERT INTO federation_links \
     (id, issuer, subject, provider, user_id, email, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const DELETE_LINK: &str = "DELETE FROM federation_links WHERE user_id = $1 AND id = $2";
pub(crate) const INSERT_PENDING: &str = "INSERT INTO federation_pending_links \
     (token_hash, provider, issuer, subject, user_id, email, return_to, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const PENDING_BY_HASH: &str = "SELECT token_hash, provider, issuer, subject, user_id, \
     email, return_to, created_at, expires_at FROM federation_pending_links WHERE token_hash = $1";
pub(crate) const DELETE_PENDING: &str =
    "DELETE FROM federation_pending_links WHERE token_hash = $1";
pub(crate) const PURGE_TRANSACTIONS: &str =
    "DELETE FROM federation_transactions WHERE expires_at <= $1";
pub(crate) const PURGE_PENDING: &str =
    "DELETE FROM federation_pending_links WHERE expires_at <= $1";

fn hash_col<R: SqlRow>(row: &R, name: &str) -> StoreResult<TokenHash> {
    let hex: String = col(row, name)?;
    TokenHash::from_hex(&hex)
        .ok_or_else(|| StoreError::Corrupt(format!("{name} is not 64 hex digits")))
}

/// Decodes a row of `federation_transactions`.
pub(crate) fn transaction_from_row<R: SqlRow>(row: &R) -> StoreResult<Transaction> {
    Ok(Transaction {
        state_hash: hash_col(row, "state_hash")?,
        provider: col(row, "provider")?,
        issuer: col(row, "issuer")?,
        browser_hash: hash_col(row, "browser_hash")?,
        nonce: col(row, "nonce")?,
        pkce_verifier: col(row, "pkce_verifier")?,
        return_to: col(row, "return_to")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
    })
}

/// Decodes a row of `federation_links`.
pub(crate) fn link_from_row<R: SqlRow>(row: &R) -> StoreResult<Link> {
    Ok(Link {
        id: col(row, "id")?,
        provider: col(row, "provider")?,
        issuer: col(row, "issuer")?,
        subject: col(row, "subject")?,
        user_id: UserId(col(row, "user_id")?),
        email: col(row, "email")?,
        created_at: Timestamp(col(row, "created_at")?),
    })
}

/// Decodes a row of `federation_pending_links`.
pub(crate) fn pending_from_row<R: SqlRow>(row: &R) -> StoreResult<PendingLink> {
    Ok(PendingLink {
        token_hash: hash_col(row, "token_hash")?,
        provider: col(row, "provider")?,
        issuer: col(row, "issuer")?,
        subject: col(row, "subject")?,
        user_id: UserId(col(row, "user_id")?),
        email: col(row, "email")?,
        return_to: col(row, "return_to")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
    })
}

/// Implements `FederationStore` for a store type with a `pool` field.
macro_rules! impl_federation_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::authx_core::federation::FederationStore for $store {
            async fn put_transaction(
                &self,
                t: &::authx_core::federation::Transaction,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::federation::INSERT_TRANSACTION)
                    .bind(t.state_hash.to_hex())
                    .bind(&t.provider)
                    .bind(&t.issuer)
                    .bind(t.browser_hash.to_hex())
                    .bind(&t.nonce)
                    .bind(&t.pkce_verifier)
                    .bind(&t.return_to)
                    .bind(t.created_at.0)
                    .bind(t.expires_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn take_transaction(
                &self,
                state_hash: &::authx_core::secret::TokenHash,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::federation::Transaction>>
            {
                ::sqlx::query($crate::sql::federation::TAKE_TRANSACTION)
                    .bind(state_hash.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::federation::transaction_from_row(&row))
                    .transpose()
            }

            async fn link(
                &self,
                issuer: &str,
                subject: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::federation::Link>> {
                let sql = format!(
                    "{} WHERE issuer = $1 AND subject = $2",
                    $crate::sql::federation::LINK_COLUMNS
                );
                ::sqlx::query(&sql)
                    .bind(issuer)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::federation::link_from_row(&row))
                    .transpose()
            }

            async fn create_link(
                &self,
                l: &::authx_core::federation::Link,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::federation::INSERT_LINK)
                    .bind(&l.id)
                    .bind(&l.issuer)
                    .bind(&l.subject)
                    .bind(&l.provider)
                    .bind(&l.user_id.0)
                    .bind(l.email.as_deref())
                    .bind(l.created_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn user_links(
                &self,
                user: &::authx_core::user::UserId,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::federation::Link>> {
                let sql = format!(
                    "{} WHERE user_id = $1 ORDER BY created_at, id",
                    $crate::sql::federation::LINK_COLUMNS
                );
                ::sqlx::query(&sql)
                    .bind(&user.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::federation::link_from_row)
                    .collect()
            }

            async fn delete_link(
                &self,
                user: &::authx_core::user::UserId,
                id: &str,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::federation::DELETE_LINK)
                    .bind(&user.0)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn put_pending_link(
                &self,
                p: &::authx_core::federation::PendingLink,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::federation::INSERT_PENDING)
                    .bind(p.token_hash.to_hex())
                    .bind(&p.provider)
                    .bind(&p.issuer)
                    .bind(&p.subject)
                    .bind(&p.user_id.0)
                    .bind(&p.email)
                    .bind(&p.return_to)
                    .bind(p.created_at.0)
                    .bind(p.expires_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn pending_link(
                &self,
                token_hash: &::authx_core::secret::TokenHash,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::federation::PendingLink>>
            {
                ::sqlx::query($crate::sql::federation::PENDING_BY_HASH)
                    .bind(token_hash.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::federation::pending_from_row(&row))
                    .transpose()
            }

            async fn delete_pending_link(
                &self,
                token_hash: &::authx_core::secret::TokenHash,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::federation::DELETE_PENDING)
                    .bind(token_hash.to_hex())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn purge_federation(
                &self,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                let t = ::sqlx::query($crate::sql::federation::PURGE_TRANSACTIONS)
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                let p = ::sqlx::query($crate::sql::federation::PURGE_PENDING)
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(t.rows_affected() + p.rows_affected())
            }
        }
    };
}

pub(crate) use impl_federation_store;
