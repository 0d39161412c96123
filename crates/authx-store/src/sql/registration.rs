//! Dynamic client registration (RFC 7591, RFC 7592) over SQL, for SQLite and PostgreSQL alike.
//!
//! A use of an initial access token is spent by one `UPDATE` whose `WHERE` holds the expiry
//! and the remaining count, and a registration access token rotates by one `UPDATE` whose
//! `WHERE` holds the current hash: of concurrent requests, exactly one changes the row.

use authx_core::Timestamp;
use authx_core::registration::{ClientRegistration, InitialToken, RegistrationStore};
use authx_core::secret::TokenHash;
use authx_core::store::StoreResult;

use super::clients::{json_list, list};
use super::{Dialect, SqlRow, SqlStore, col, hash, stmt, timestamp};

const TOKEN_COLUMNS: &str = "id, token_hash, created_at, expires_at, uses_left, scopes, resources";

const INSERT_TOKEN: &str = "INSERT INTO registration_initial_tokens \
     (id, token_hash, created_at, expires_at, uses_left, scopes, resources) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const SPEND_TOKEN: &str = "UPDATE registration_initial_tokens SET uses_left = uses_left - 1 \
     WHERE token_hash = $1 AND expires_at > $2 AND uses_left > 0";
const DELETE_TOKEN: &str = "DELETE FROM registration_initial_tokens WHERE id = $1";
const PURGE_TOKENS: &str =
    "DELETE FROM registration_initial_tokens WHERE expires_at <= $1 OR uses_left <= 0";

const INSERT_REGISTRATION: &str = "INSERT INTO client_registrations \
     (client_id, token_hash, allowed_scopes, updated_at) VALUES ($1, $2, $3, $4)";
const REGISTRATION_BY_CLIENT: &str = "SELECT client_id, token_hash, allowed_scopes, updated_at \
     FROM client_registrations WHERE client_id = $1";
const REPLACE_REGISTRATION: &str = "UPDATE client_registrations \
     SET token_hash = $2, allowed_scopes = $3, updated_at = $4 \
     WHERE client_id = $1 AND token_hash = $5";

/// Decodes a row of `registration_initial_tokens`.
fn token_from_row<R: SqlRow>(row: &R) -> StoreResult<InitialToken> {
    Ok(InitialToken {
        id: col(row, "id")?,
        hash: hash(row, "token_hash")?,
        created_at: timestamp(row, "created_at")?,
        expires_at: timestamp(row, "expires_at")?,
        uses_left: col(row, "uses_left")?,
        scopes: list(row, "scopes")?,
        resources: list(row, "resources")?,
    })
}

/// Decodes a row of `client_registrations`.
fn registration_from_row<R: SqlRow>(row: &R) -> StoreResult<ClientRegistration> {
    Ok(ClientRegistration {
        client_id: col(row, "client_id")?,
        token_hash: hash(row, "token_hash")?,
        allowed_scopes: list(row, "allowed_scopes")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> RegistrationStore for SqlStore<DB> {
    async fn insert_initial_token(&self, t: &InitialToken) -> StoreResult<()> {
        let hex = t.hash.to_hex();
        let scopes = json_list(&t.scopes);
        let resources = json_list(&t.resources);
        stmt(INSERT_TOKEN)
            .bind(&t.id)
            .bind(&hex)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.uses_left)
            .bind(&scopes)
            .bind(&resources)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn initial_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<InitialToken>> {
        let hex = hash.to_hex();
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM registration_initial_tokens \
             WHERE token_hash = $1 AND expires_at > $2 AND uses_left > 0"
        );
        let row = stmt(&sql)
            .bind(&hex)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn spend_initial_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        let hex = hash.to_hex();
        Ok(stmt(SPEND_TOKEN)
            .bind(&hex)
            .bind(now)
            .execute(&self.pool)
            .await?
            == 1)
    }

    async fn list_initial_tokens(&self) -> StoreResult<Vec<InitialToken>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM registration_initial_tokens ORDER BY created_at, id"
        );
        let rows = stmt(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_initial_token(&self, id: &str) -> StoreResult<bool> {
        Ok(stmt(DELETE_TOKEN).bind(id).execute(&self.pool).await? > 0)
    }

    async fn purge_initial_tokens(&self, now: Timestamp) -> StoreResult<u64> {
        stmt(PURGE_TOKENS).bind(now).execute(&self.pool).await
    }

    async fn insert_client_registration(&self, r: &ClientRegistration) -> StoreResult<()> {
        let hex = r.token_hash.to_hex();
        let scopes = json_list(&r.allowed_scopes);
        stmt(INSERT_REGISTRATION)
            .bind(&r.client_id)
            .bind(&hex)
            .bind(&scopes)
            .bind(r.updated_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn client_registration(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<ClientRegistration>> {
        let row = stmt(REGISTRATION_BY_CLIENT)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    async fn replace_client_registration(
        &self,
        r: &ClientRegistration,
        current: &TokenHash,
    ) -> StoreResult<bool> {
        let hex = r.token_hash.to_hex();
        let old = current.to_hex();
        let scopes = json_list(&r.allowed_scopes);
        Ok(stmt(REPLACE_REGISTRATION)
            .bind(&r.client_id)
            .bind(&hex)
            .bind(&scopes)
            .bind(r.updated_at)
            .bind(&old)
            .execute(&self.pool)
            .await?
            == 1)
    }
}
