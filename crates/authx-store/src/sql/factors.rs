//! Second factors and recovery codes over SQL, for SQLite and PostgreSQL alike.
//!
//! What must happen once is one statement: a confirmation and an accepted TOTP step are
//! conditional `UPDATE`s (pending and not lapsed; a step later than the last accepted one),
//! and a recovery code is used by one `DELETE`, so of concurrent uses exactly one succeeds.
//! Replacing a user's recovery codes is one transaction that begins with its `DELETE` (on
//! SQLite the write lock is taken at once).

use authx_core::Timestamp;
use authx_core::mfa::{Ceremony, Factor, FactorId, FactorKind, FactorStore, StepUse};
use authx_core::secret::TokenHash;
use authx_core::store::{StoreError, StoreResult};
use authx_core::user::UserId;

use super::{Dialect, SqlRow, SqlStore, col, count, hash, opt_timestamp, stmt, timestamp};

/// Columns of `mfa_factors` that make up a [`Factor`].
macro_rules! factor_columns {
    () => {
        "id, user_id, kind, name, sealed_secret, created_at, pending_until, last_step, \
         last_used_at, credential_id"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO mfa_factors (",
    factor_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);
const GET: &str = concat!(
    "SELECT ",
    factor_columns!(),
    " FROM mfa_factors WHERE user_id = $1 AND id = $2"
);
const LIST: &str = concat!(
    "SELECT ",
    factor_columns!(),
    " FROM mfa_factors WHERE user_id = $1 ORDER BY created_at, id"
);
const CONFIRM: &str = "UPDATE mfa_factors \
     SET pending_until = NULL, last_step = $1, last_used_at = $2 \
     WHERE id = $3 AND user_id = $4 AND pending_until IS NOT NULL AND pending_until > $2";
// RFC 6238 §5.2: a step at or before the last accepted one is refused here, atomically.
const ACCEPT_STEP: &str = "UPDATE mfa_factors SET last_step = $1, last_used_at = $2 \
     WHERE id = $3 AND user_id = $4 AND pending_until IS NULL \
     AND (last_step IS NULL OR last_step < $1)";
const RENAME: &str = "UPDATE mfa_factors SET name = $1 WHERE id = $2 AND user_id = $3";
const DELETE: &str = "DELETE FROM mfa_factors WHERE id = $1 AND user_id = $2";
const DELETE_PENDING: &str =
    "DELETE FROM mfa_factors WHERE user_id = $1 AND pending_until IS NOT NULL";
const DELETE_USER_FACTORS: &str = "DELETE FROM mfa_factors WHERE user_id = $1";
const DELETE_USER_CODES: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";
const INSERT_CODE: &str =
    "INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)";
const CONSUME_CODE: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND code_hash = $2";
const COUNT_CODES: &str = "SELECT COUNT(*) AS n FROM mfa_recovery_codes WHERE user_id = $1";
const BY_CREDENTIAL: &str = concat!(
    "SELECT ",
    factor_columns!(),
    " FROM mfa_factors WHERE credential_id = $1"
);
const UPDATE_SECRET: &str = "UPDATE mfa_factors SET sealed_secret = $1, last_used_at = $2 \
     WHERE id = $3 AND user_id = $4 AND pending_until IS NULL";
const INSERT_CEREMONY: &str = "INSERT INTO webauthn_ceremonies \
     (token_hash, user_id, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
// One statement: of concurrent finishes of one ceremony, one gets its state.
const TAKE_CEREMONY: &str = "DELETE FROM webauthn_ceremonies \
     WHERE token_hash = $1 AND expires_at > $2 \
     RETURNING token_hash, user_id, state, created_at, expires_at";
const PURGE_CEREMONIES: &str = "DELETE FROM webauthn_ceremonies WHERE expires_at <= $1";
const PURGE_PENDING: &str =
    "DELETE FROM mfa_factors WHERE pending_until IS NOT NULL AND pending_until <= $1";

/// Decodes a row of `mfa_factors` selected with `factor_columns!()`.
fn factor_from_row<R: SqlRow>(row: &R) -> StoreResult<Factor> {
    let kind: String = col(row, "kind")?;
    Ok(Factor {
        id: FactorId(col(row, "id")?),
        user_id: UserId(col(row, "user_id")?),
        kind: FactorKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown factor kind {kind:?}")))?,
        name: col(row, "name")?,
        sealed_secret: col(row, "sealed_secret")?,
        created_at: timestamp(row, "created_at")?,
        pending_until: opt_timestamp(row, "pending_until")?,
        last_step: col(row, "last_step")?,
        last_used_at: opt_timestamp(row, "last_used_at")?,
        credential_id: col(row, "credential_id")?,
    })
}

/// Decodes a row of `webauthn_ceremonies`.
fn ceremony_from_row<R: SqlRow>(row: &R) -> StoreResult<Ceremony> {
    let user: Option<String> = col(row, "user_id")?;
    Ok(Ceremony {
        hash: hash(row, "token_hash")?,
        user_id: user.map(UserId),
        state: col(row, "state")?,
        created_at: timestamp(row, "created_at")?,
        expires_at: timestamp(row, "expires_at")?,
    })
}

#[async_trait::async_trait]
impl<DB: Dialect> FactorStore for SqlStore<DB> {
    async fn insert_factor(&self, f: &Factor) -> StoreResult<()> {
        stmt(INSERT)
            .bind(&f.id.0)
            .bind(&f.user_id.0)
            .bind(f.kind.as_str())
            .bind(&f.name)
            .bind(&f.sealed_secret)
            .bind(f.created_at)
            .bind(f.pending_until)
            .bind(f.last_step)
            .bind(f.last_used_at)
            .bind(f.credential_id.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn factor(&self, user: &UserId, id: &FactorId) -> StoreResult<Option<Factor>> {
        let row = stmt(GET)
            .bind(&user.0)
            .bind(&id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(factor_from_row).transpose()
    }

    async fn list_factors(&self, user: &UserId) -> StoreResult<Vec<Factor>> {
        let rows = stmt(LIST).bind(&user.0).fetch_all(&self.pool).await?;
        rows.iter().map(factor_from_row).collect()
    }

    async fn confirm_factor(&self, used: StepUse<'_>) -> StoreResult<bool> {
        let n = stmt(CONFIRM)
            .bind(used.step)
            .bind(used.at)
            .bind(&used.id.0)
            .bind(&used.user_id.0)
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn accept_step(&self, used: StepUse<'_>) -> StoreResult<bool> {
        let n = stmt(ACCEPT_STEP)
            .bind(used.step)
            .bind(used.at)
            .bind(&used.id.0)
            .bind(&used.user_id.0)
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn rename_factor(&self, user: &UserId, id: &FactorId, name: &str) -> StoreResult<bool> {
        let n = stmt(RENAME)
            .bind(name)
            .bind(&id.0)
            .bind(&user.0)
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn delete_factor(&self, user: &UserId, id: &FactorId) -> StoreResult<bool> {
        let n = stmt(DELETE)
            .bind(&id.0)
            .bind(&user.0)
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn delete_pending_factors(&self, user: &UserId) -> StoreResult<u64> {
        stmt(DELETE_PENDING).bind(&user.0).execute(&self.pool).await
    }

    async fn delete_user_factors(&self, user: &UserId) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let n = stmt(DELETE_USER_FACTORS)
            .bind(&user.0)
            .execute_in(&mut tx)
            .await?;
        stmt(DELETE_USER_CODES)
            .bind(&user.0)
            .execute_in(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn replace_recovery_codes(
        &self,
        user: &UserId,
        hashes: &[TokenHash],
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        stmt(DELETE_USER_CODES)
            .bind(&user.0)
            .execute_in(&mut tx)
            .await?;
        for h in hashes {
            let hex = h.to_hex();
            stmt(INSERT_CODE)
                .bind(&user.0)
                .bind(&hex)
                .bind(now)
                .execute_in(&mut tx)
                .await?;
        }
        tx.commit().await
    }

    async fn consume_recovery_code(&self, user: &UserId, hash: &TokenHash) -> StoreResult<bool> {
        let hex = hash.to_hex();
        let n = stmt(CONSUME_CODE)
            .bind(&user.0)
            .bind(&hex)
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn count_recovery_codes(&self, user: &UserId) -> StoreResult<u64> {
        let row = stmt(COUNT_CODES)
            .bind(&user.0)
            .fetch_one(&self.pool)
            .await?;
        count(col(&row, "n")?)
    }

    async fn purge_pending_factors(&self, now: Timestamp) -> StoreResult<u64> {
        let factors = stmt(PURGE_PENDING).bind(now).execute(&self.pool).await?;
        let ceremonies = stmt(PURGE_CEREMONIES).bind(now).execute(&self.pool).await?;
        Ok(factors + ceremonies)
    }

    async fn factor_by_credential(&self, credential_id: &str) -> StoreResult<Option<Factor>> {
        let row = stmt(BY_CREDENTIAL)
            .bind(credential_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(factor_from_row).transpose()
    }

    async fn update_factor_secret(
        &self,
        user: &UserId,
        id: &FactorId,
        sealed_secret: &[u8],
        at: Timestamp,
    ) -> StoreResult<bool> {
        let n = stmt(UPDATE_SECRET)
            .bind(&sealed_secret.to_vec())
            .bind(at)
            .bind(&id.0)
            .bind(&user.0)
            .execute(&self.pool)
            .await?;
        Ok(n == 1)
    }

    async fn insert_ceremony(&self, c: &Ceremony) -> StoreResult<()> {
        let hex = c.hash.to_hex();
        stmt(INSERT_CEREMONY)
            .bind(&hex)
            .bind(c.user_id.as_ref().map(|u| u.0.as_str()))
            .bind(&c.state)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<Ceremony>> {
        let hex = hash.to_hex();
        let row = stmt(TAKE_CEREMONY)
            .bind(&hex)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(ceremony_from_row).transpose()
    }
}
