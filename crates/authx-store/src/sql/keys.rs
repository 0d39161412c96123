//! Signing keys over SQL.

use authx_core::oauth::keys::{KeyState, SigningAlg, StoredKey};
use authx_core::oauth::store::{KeyStateChange, KeyStore};
use authx_core::store::{StoreError, StoreResult};

use super::{Dialect, SqlRow, SqlStore, col, opt_timestamp, stmt, timestamp};

/// Columns of `signing_keys` that make up a [`StoredKey`].
macro_rules! key_columns {
    () => {
        "kid, alg, state, private_key_encrypted, public_jwk, created_at, activated_at, \
         remove_after"
    };
}

const LIST_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM signing_keys ORDER BY created_at, kid"
);
const INSERT_KEY: &str = concat!(
    "INSERT INTO signing_keys (",
    key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);
// A time not given keeps the one recorded before.
const SET_KEY_STATE: &str = "UPDATE signing_keys SET state = $1, \
     activated_at = COALESCE($2, activated_at), remove_after = COALESCE($3, remove_after) \
     WHERE kid = $4";
const DELETE_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";

/// Decodes a row of `signing_keys` selected with `key_columns!()`.
fn key_from_row<R: SqlRow>(row: &R) -> StoreResult<StoredKey> {
    let alg: String = col(row, "alg")?;
    let alg = SigningAlg::parse(&alg)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown signing algorithm {alg:?}")))?;
    let state: String = col(row, "state")?;
    let state = KeyState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown key state {state:?}")))?;
    Ok(StoredKey {
        kid: col(row, "kid")?,
        alg,
        state,
        private_key_encrypted: col(row, "private_key_encrypted")?,
        public_jwk: col(row, "public_jwk")?,
        created_at: timestamp(row, "created_at")?,
        activated_at: opt_timestamp(row, "activated_at")?,
        remove_after: opt_timestamp(row, "remove_after")?,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> KeyStore for SqlStore<DB> {
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = stmt(LIST_KEYS).fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        stmt(INSERT_KEY)
            .bind(&key.kid)
            .bind(key.alg.as_str())
            .bind(key.state.as_str())
            .bind(&key.private_key_encrypted)
            .bind(&key.public_jwk)
            .bind(key.created_at)
            .bind(key.activated_at)
            .bind(key.remove_after)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_key_state(&self, change: KeyStateChange<'_>) -> StoreResult<bool> {
        let changed = stmt(SET_KEY_STATE)
            .bind(change.state.as_str())
            .bind(change.activated_at)
            .bind(change.remove_after)
            .bind(change.kid)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        Ok(stmt(DELETE_KEY).bind(kid).execute(&self.pool).await? > 0)
    }
}
