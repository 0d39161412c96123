//! The SAML service provider's key pair over SQL, for SQLite and PostgreSQL alike.
//!
//! Created by one `INSERT ... ON CONFLICT (id) DO NOTHING`: of instances racing to create the
//! deployment's key pair, exactly one row lands and every instance reads that one back.

use authx_core::federation::{SpKeyStore, StoredSpKey};
use authx_core::store::StoreResult;

use super::{Dialect, SqlRow, SqlStore, col, stmt, timestamp};

const SP_KEY: &str = "SELECT id, private_key_encrypted, certificate, created_at \
     FROM saml_sp_keys WHERE id = $1";
const INSERT_SP_KEY: &str = "INSERT INTO saml_sp_keys \
     (id, private_key_encrypted, certificate, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO NOTHING";

/// Decodes a row of `saml_sp_keys`.
fn sp_key_from_row<R: SqlRow>(row: &R) -> StoreResult<StoredSpKey> {
    Ok(StoredSpKey {
        id: col(row, "id")?,
        private_key_encrypted: col(row, "private_key_encrypted")?,
        certificate: col(row, "certificate")?,
        created_at: timestamp(row, "created_at")?,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> SpKeyStore for SqlStore<DB> {
    async fn sp_key(&self, id: &str) -> StoreResult<Option<StoredSpKey>> {
        let row = stmt(SP_KEY).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(sp_key_from_row).transpose()
    }

    async fn insert_sp_key_if_absent(&self, key: &StoredSpKey) -> StoreResult<bool> {
        let inserted = stmt(INSERT_SP_KEY)
            .bind(&key.id)
            .bind(&key.private_key_encrypted)
            .bind(&key.certificate)
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
        Ok(inserted == 1)
    }
}
