//! Federation links, transactions and pending links over SQL, for SQLite and PostgreSQL alike.
//!
//! A transaction is taken with one `DELETE ... RETURNING`, so of any number of callbacks that
//! present one `state`, exactly one gets it; a pending link is completed by the one caller whose
//! `DELETE` removed it.

use authx_core::Timestamp;
use authx_core::federation::{FederationStore, Link, PendingLink, Transaction};
use authx_core::secret::TokenHash;
use authx_core::store::StoreResult;
use authx_core::user::UserId;

use super::{Dialect, SqlRow, SqlStore, col, hash, stmt};

const INSERT_TRANSACTION: &str = "INSERT INTO federation_transactions \
     (state_hash, provider, issuer, browser_hash, nonce, pkce_verifier, return_to, created_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const TAKE_TRANSACTION: &str = "DELETE FROM federation_transactions \
     WHERE state_hash = $1 RETURNING state_hash, provider, issuer, browser_hash, nonce, \
     pkce_verifier, return_to, created_at, expires_at";
/// The start of every query of `federation_links`.
macro_rules! select_links {
    () => {
        "SELECT id, issuer, subject, provider, user_id, email, created_at FROM federation_links"
    };
}

const LINK_BY_SUBJECT: &str = concat!(select_links!(), " WHERE issuer = $1 AND subject = $2");
const USER_LINKS: &str = concat!(
    select_links!(),
    " WHERE user_id = $1 ORDER BY created_at, id"
);
const INSERT_LINK: &str = "INSERT INTO federation_links \
     (id, issuer, subject, provider, user_id, email, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const DELETE_LINK: &str = "DELETE FROM federation_links WHERE user_id = $1 AND id = $2";
const INSERT_PENDING: &str = "INSERT INTO federation_pending_links \
     (token_hash, provider, issuer, subject, user_id, email, return_to, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const PENDING_BY_HASH: &str = "SELECT token_hash, provider, issuer, subject, user_id, \
     email, return_to, created_at, expires_at FROM federation_pending_links WHERE token_hash = $1";
const DELETE_PENDING: &str = "DELETE FROM federation_pending_links WHERE token_hash = $1";
const PURGE_TRANSACTIONS: &str = "DELETE FROM federation_transactions WHERE expires_at <= $1";
const PURGE_PENDING: &str = "DELETE FROM federation_pending_links WHERE expires_at <= $1";

/// Decodes a row of `federation_transactions`.
fn transaction_from_row<R: SqlRow>(row: &R) -> StoreResult<Transaction> {
    Ok(Transaction {
        state_hash: hash(row, "state_hash")?,
        provider: col(row, "provider")?,
        issuer: col(row, "issuer")?,
        browser_hash: hash(row, "browser_hash")?,
        nonce: col(row, "nonce")?,
        pkce_verifier: col(row, "pkce_verifier")?,
        return_to: col(row, "return_to")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
    })
}

/// Decodes a row of `federation_links`.
fn link_from_row<R: SqlRow>(row: &R) -> StoreResult<Link> {
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
fn pending_from_row<R: SqlRow>(row: &R) -> StoreResult<PendingLink> {
    Ok(PendingLink {
        token_hash: hash(row, "token_hash")?,
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

#[async_trait::async_trait]
impl<DB: Dialect> FederationStore for SqlStore<DB> {
    async fn put_transaction(&self, t: &Transaction) -> StoreResult<()> {
        let state_hash = t.state_hash.to_hex();
        let browser_hash = t.browser_hash.to_hex();
        stmt(INSERT_TRANSACTION)
            .bind(&state_hash)
            .bind(&t.provider)
            .bind(&t.issuer)
            .bind(&browser_hash)
            .bind(&t.nonce)
            .bind(&t.pkce_verifier)
            .bind(&t.return_to)
            .bind(t.created_at)
            .bind(t.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_transaction(&self, state_hash: &TokenHash) -> StoreResult<Option<Transaction>> {
        let hex = state_hash.to_hex();
        let row = stmt(TAKE_TRANSACTION)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(transaction_from_row).transpose()
    }

    async fn link(&self, issuer: &str, subject: &str) -> StoreResult<Option<Link>> {
        let row = stmt(LINK_BY_SUBJECT)
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn create_link(&self, l: &Link) -> StoreResult<()> {
        stmt(INSERT_LINK)
            .bind(&l.id)
            .bind(&l.issuer)
            .bind(&l.subject)
            .bind(&l.provider)
            .bind(&l.user_id.0)
            .bind(l.email.as_deref())
            .bind(l.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn user_links(&self, user: &UserId) -> StoreResult<Vec<Link>> {
        let rows = stmt(USER_LINKS).bind(&user.0).fetch_all(&self.pool).await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn delete_link(&self, user: &UserId, id: &str) -> StoreResult<bool> {
        let deleted = stmt(DELETE_LINK)
            .bind(&user.0)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(deleted > 0)
    }

    async fn put_pending_link(&self, p: &PendingLink) -> StoreResult<()> {
        let token_hash = p.token_hash.to_hex();
        stmt(INSERT_PENDING)
            .bind(&token_hash)
            .bind(&p.provider)
            .bind(&p.issuer)
            .bind(&p.subject)
            .bind(&p.user_id.0)
            .bind(&p.email)
            .bind(&p.return_to)
            .bind(p.created_at)
            .bind(p.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn pending_link(&self, token_hash: &TokenHash) -> StoreResult<Option<PendingLink>> {
        let hex = token_hash.to_hex();
        let row = stmt(PENDING_BY_HASH)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(pending_from_row).transpose()
    }

    async fn delete_pending_link(&self, token_hash: &TokenHash) -> StoreResult<bool> {
        let hex = token_hash.to_hex();
        let deleted = stmt(DELETE_PENDING).bind(&hex).execute(&self.pool).await?;
        Ok(deleted > 0)
    }

    async fn purge_federation(&self, now: Timestamp) -> StoreResult<u64> {
        let transactions = stmt(PURGE_TRANSACTIONS)
            .bind(now)
            .execute(&self.pool)
            .await?;
        let pending = stmt(PURGE_PENDING).bind(now).execute(&self.pool).await?;
        Ok(transactions + pending)
    }
}
