//! Authorization codes, refresh-token families, consents and revoked access-token ids over
//! SQL.
//!
//! What must happen once is one conditional write: a code is redeemed by an `UPDATE` that
//! only matches an unredeemed, unexpired code, and a refresh token is rotated by an `UPDATE`
//! that only matches an unconsumed token, in the transaction that inserts its successor. Both
//! transactions begin with their write, so SQLite takes the write lock (waiting on the busy
//! timeout) before it reads anything, and PostgreSQL re-checks the condition on the locked row.
//!
//! On SQLite, refresh-token rotations do not take a transaction each: one writer task runs
//! every rotation queued at the time in one transaction, the same statements in order, and
//! commits them with one `fsync` (`crate::sqlite::rotation`); see [`Dialect::rotate_refresh`].

use authx_core::Timestamp;
use authx_core::oauth::grant::{
    AuthCode, CodeRedemption, Consent, Redemption, RefreshFamily, RefreshToken,
};
use authx_core::oauth::store::GrantStore;
use authx_core::secret::TokenHash;
use authx_core::session::SessionId;
use authx_core::store::StoreResult;
use authx_core::user::UserId;

use super::{
    Dialect, Pool, Rotation, SqlRow, SqlStore, col, count, hash, opt_timestamp, stmt, timestamp,
};

/// Columns of `auth_codes` that make up an [`AuthCode`].
macro_rules! code_columns {
    () => {
        "code_hash, client_id, user_id, session_id, redirect_uri, code_challenge, nonce, \
         scope, resource, auth_time, family_id, expires_at, auth_methods, dpop_jkt"
    };
}

/// Columns of `refresh_families` that make up a [`RefreshFamily`].
macro_rules! family_columns {
    () => {
        "id, client_id, user_id, session_id, scope, resource, auth_time, created_at, \
         expires_at, revoked_at, auth_methods, dpop_jkt"
    };
}

const INSERT_CODE: &str = concat!(
    "INSERT INTO auth_codes (",
    code_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);
// The one redemption: only an unredeemed code that is unexpired at `now` ($1) matches. A
// concurrent redemption waits for the row (PostgreSQL) or the write lock (SQLite), then
// finds it redeemed.
const REDEEM_CODE: &str = concat!(
    "UPDATE auth_codes SET redeemed_at = $1, family_id = $2 \
     WHERE code_hash = $3 AND redeemed_at IS NULL AND expires_at > $1 RETURNING ",
    code_columns!()
);
// The codes of an ended session (or user) can no longer be redeemed; redeemed ones stay for
// replay detection (their family is revoked with the session).
const DELETE_SESSION_CODES: &str =
    "DELETE FROM auth_codes WHERE session_id = $1 AND redeemed_at IS NULL";
// Session ids are never empty, so a missing `keep` ($2) spares nothing.
const DELETE_USER_CODES: &str = "DELETE FROM auth_codes \
     WHERE user_id = $1 AND redeemed_at IS NULL AND session_id <> COALESCE($2, '')";
const CODE_REDEMPTION: &str = "SELECT redeemed_at, family_id FROM auth_codes WHERE code_hash = $1";

const INSERT_FAMILY: &str = concat!(
    "INSERT INTO refresh_families (",
    family_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
const FAMILY_BY_ID: &str = concat!(
    "SELECT ",
    family_columns!(),
    " FROM refresh_families WHERE id = $1"
);
const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens \
     (token_hash, family_id, issued_at, idle_expires_at, consumed_at) \
     VALUES ($1, $2, $3, $4, $5)";
const TOKEN_WITH_FAMILY: &str = "SELECT t.token_hash AS token_hash, \
     t.family_id AS family_id, t.issued_at AS issued_at, \
     t.idle_expires_at AS idle_expires_at, t.consumed_at AS consumed_at, \
     f.id AS id, f.client_id AS client_id, f.user_id AS user_id, f.session_id AS session_id, \
     f.scope AS scope, f.resource AS resource, f.auth_time AS auth_time, \
     f.created_at AS created_at, f.expires_at AS expires_at, f.revoked_at AS revoked_at, \
     f.auth_methods AS auth_methods, f.dpop_jkt AS dpop_jkt \
     FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     WHERE t.token_hash = $1";
// The compare-and-set of a rotation. The family must match too, so a successor can never be
// grafted onto another family.
pub(crate) const CONSUME_TOKEN: &str = "UPDATE refresh_tokens SET consumed_at = $1 \
     WHERE token_hash = $2 AND family_id = $3 AND consumed_at IS NULL";
// Revocation keeps the first revocation time; `expires_at` tells whether it was live.
const REVOKE_FAMILY: &str = "UPDATE refresh_families SET revoked_at = $1 \
     WHERE id = $2 AND revoked_at IS NULL RETURNING id, expires_at";
const REVOKE_USER_FAMILIES: &str = "UPDATE refresh_families SET revoked_at = $1 \
     WHERE user_id = $2 AND revoked_at IS NULL RETURNING id, expires_at";
const REVOKE_SESSION_FAMILIES: &str = "UPDATE refresh_families SET revoked_at = $1 \
     WHERE session_id = $2 AND revoked_at IS NULL RETURNING id, expires_at";
const LIST_USER_FAMILIES: &str = concat!(
    "SELECT ",
    family_columns!(),
    " FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
     ORDER BY created_at DESC, id DESC"
);

const COUNT_LIVE_FAMILIES: &str = "SELECT COUNT(*) AS n FROM refresh_families \
     WHERE revoked_at IS NULL AND expires_at > $1";

// Consents are kept per (user, client, resource); `resource` is '' for none.
const CONSENT: &str = "SELECT user_id, client_id, resource, scope, granted_at \
     FROM consents WHERE user_id = $1 AND client_id = $2 AND resource = $3";
const PUT_CONSENT: &str = "INSERT INTO consents \
     (user_id, client_id, resource, scope, granted_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, client_id, resource) DO UPDATE SET \
       scope = excluded.scope, granted_at = excluded.granted_at";
const DELETE_CONSENT: &str = "DELETE FROM consents WHERE user_id = $1 AND client_id = $2";
const LIST_CONSENTS: &str = "SELECT user_id, client_id, resource, scope, granted_at \
     FROM consents WHERE user_id = $1 ORDER BY client_id, resource";

// Revoking again keeps the later expiry, so the id is remembered as long as any token with it
// can be valid.
const REVOKE_JTI: &str = "INSERT INTO revoked_jtis (jti, expires_at) \
     VALUES ($1, $2) \
     ON CONFLICT (jti) DO UPDATE SET expires_at = \
       CASE WHEN excluded.expires_at > revoked_jtis.expires_at \
            THEN excluded.expires_at ELSE revoked_jtis.expires_at END";
const JTI_REVOKED: &str = "SELECT jti FROM revoked_jtis WHERE jti = $1";

// Redeemed codes stay until they expire, so that a replay is recognised until then.
const PURGE_CODES: &str = "DELETE FROM auth_codes WHERE expires_at <= $1";
// The tokens of expired families are deleted explicitly (not by the cascade) to be counted.
const PURGE_FAMILY_TOKENS: &str = "DELETE FROM refresh_tokens WHERE family_id IN \
     (SELECT id FROM refresh_families WHERE expires_at <= $1)";
const PURGE_FAMILIES: &str = "DELETE FROM refresh_families WHERE expires_at <= $1";
const PURGE_CONSUMED_TOKENS: &str = "DELETE FROM refresh_tokens \
     WHERE consumed_at IS NOT NULL AND idle_expires_at <= $1";
const PURGE_JTIS: &str = "DELETE FROM revoked_jtis WHERE expires_at <= $1";

/// The purge statements, in order, each taking `now` as `$1`.
const PURGE_GRANTS: [&str; 5] = [
    PURGE_CODES,
    PURGE_FAMILY_TOKENS,
    PURGE_FAMILIES,
    PURGE_CONSUMED_TOKENS,
    PURGE_JTIS,
];

/// Decodes a row of `auth_codes` selected with `code_columns!()`.
fn code_from_row<R: SqlRow>(row: &R) -> StoreResult<AuthCode> {
    Ok(AuthCode {
        code_hash: hash(row, "code_hash")?,
        client_id: col(row, "client_id")?,
        user_id: UserId(col(row, "user_id")?),
        session_id: SessionId(col(row, "session_id")?),
        redirect_uri: col(row, "redirect_uri")?,
        code_challenge: col(row, "code_challenge")?,
        nonce: col(row, "nonce")?,
        scope: col(row, "scope")?,
        resource: col(row, "resource")?,
        auth_time: timestamp(row, "auth_time")?,
        auth_methods: col(row, "auth_methods")?,
        family_id: col(row, "family_id")?,
        dpop_jkt: col(row, "dpop_jkt")?,
        expires_at: timestamp(row, "expires_at")?,
    })
}

/// Decodes a row of `refresh_families` selected with `family_columns!()`.
fn family_from_row<R: SqlRow>(row: &R) -> StoreResult<RefreshFamily> {
    Ok(RefreshFamily {
        id: col(row, "id")?,
        client_id: col(row, "client_id")?,
        user_id: UserId(col(row, "user_id")?),
        session_id: col::<Option<String>>(row, "session_id")?.map(SessionId),
        scope: col(row, "scope")?,
        resource: col(row, "resource")?,
        auth_time: timestamp(row, "auth_time")?,
        auth_methods: col(row, "auth_methods")?,
        created_at: timestamp(row, "created_at")?,
        expires_at: timestamp(row, "expires_at")?,
        revoked_at: opt_timestamp(row, "revoked_at")?,
        dpop_jkt: col(row, "dpop_jkt")?,
    })
}

/// Decodes the token half of a [`TOKEN_WITH_FAMILY`] row.
fn token_from_row<R: SqlRow>(row: &R) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        hash: hash(row, "token_hash")?,
        family_id: col(row, "family_id")?,
        issued_at: timestamp(row, "issued_at")?,
        idle_expires_at: timestamp(row, "idle_expires_at")?,
        consumed_at: opt_timestamp(row, "consumed_at")?,
    })
}

/// Decodes a row of `consents`.
fn consent_from_row<R: SqlRow>(row: &R) -> StoreResult<Consent> {
    Ok(Consent {
        user_id: UserId(col(row, "user_id")?),
        client_id: col(row, "client_id")?,
        // Stored as '' for a consent that covers no API (the column is part of the key).
        resource: Some(col::<String>(row, "resource")?).filter(|r| !r.is_empty()),
        scope: col(row, "scope")?,
        granted_at: timestamp(row, "granted_at")?,
    })
}

/// Ids of the revoked families that were live at `now`, sorted, from rows of `(id,
/// expires_at)`.
fn live_revoked<R: SqlRow>(rows: &[R], now: Timestamp) -> StoreResult<Vec<String>> {
    let mut ids = Vec::new();
    for row in rows {
        if timestamp(row, "expires_at")? > now {
            ids.push(col(row, "id")?);
        }
    }
    ids.sort();
    Ok(ids)
}

#[async_trait::async_trait]
impl<DB: Dialect> GrantStore for SqlStore<DB> {
    async fn put_code(&self, code: &AuthCode) -> StoreResult<()> {
        let hash = code.code_hash.to_hex();
        stmt(INSERT_CODE)
            .bind(&hash)
            .bind(&code.client_id)
            .bind(&code.user_id.0)
            .bind(&code.session_id.0)
            .bind(&code.redirect_uri)
            .bind(&code.code_challenge)
            .bind(code.nonce.as_deref())
            .bind(&code.scope)
            .bind(code.resource.as_deref())
            .bind(code.auth_time)
            .bind(code.family_id.as_deref())
            .bind(code.expires_at)
            .bind(&code.auth_methods)
            .bind(code.dpop_jkt.as_deref())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn redeem_code(&self, redemption: Redemption<'_>) -> StoreResult<CodeRedemption> {
        let hex = redemption.hash.to_hex();
        let redeemed = stmt(REDEEM_CODE)
            .bind(redemption.now)
            .bind(redemption.family_id)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = redeemed {
            return Ok(CodeRedemption::Redeemed(Box::new(code_from_row(&row)?)));
        }
        // Redemption and its family id are written together and never undone, so what this
        // reads is what the winning redemption recorded.
        let Some(row) = stmt(CODE_REDEMPTION)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(CodeRedemption::Unknown);
        };
        if col::<Option<i64>>(&row, "redeemed_at")?.is_none() {
            // Present but not redeemable: it expired.
            return Ok(CodeRedemption::Unknown);
        }
        Ok(CodeRedemption::AlreadyRedeemed {
            family_id: col(&row, "family_id")?,
        })
    }

    async fn delete_session_codes(&self, session: &SessionId) -> StoreResult<u64> {
        stmt(DELETE_SESSION_CODES)
            .bind(&session.0)
            .execute(&self.pool)
            .await
    }

    async fn delete_user_codes(&self, user: &UserId, keep: Option<&SessionId>) -> StoreResult<u64> {
        stmt(DELETE_USER_CODES)
            .bind(&user.0)
            .bind(keep.map(|k| k.0.as_str()))
            .execute(&self.pool)
            .await
    }

    async fn create_family(
        &self,
        family: &RefreshFamily,
        first: Option<&RefreshToken>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        stmt(INSERT_FAMILY)
            .bind(&family.id)
            .bind(&family.client_id)
            .bind(&family.user_id.0)
            .bind(family.session_id.as_ref().map(|s| s.0.as_str()))
            .bind(&family.scope)
            .bind(family.resource.as_deref())
            .bind(family.auth_time)
            .bind(family.created_at)
            .bind(family.expires_at)
            .bind(family.revoked_at)
            .bind(&family.auth_methods)
            .bind(family.dpop_jkt.as_deref())
            .execute_in(&mut tx)
            .await?;
        if let Some(token) = first {
            // The first token belongs to this family, whatever its own field says.
            let hash = token.hash.to_hex();
            stmt(INSERT_TOKEN)
                .bind(&hash)
                .bind(&family.id)
                .bind(token.issued_at)
                .bind(token.idle_expires_at)
                .bind(token.consumed_at)
                .execute_in(&mut tx)
                .await?;
        }
        tx.commit().await
    }

    async fn family(&self, id: &str) -> StoreResult<Option<RefreshFamily>> {
        let row = stmt(FAMILY_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(family_from_row).transpose()
    }

    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshToken, RefreshFamily)>> {
        let hex = hash.to_hex();
        let row = stmt(TOKEN_WITH_FAMILY)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((token_from_row(&row)?, family_from_row(&row)?)))
            .transpose()
    }

    async fn rotate_refresh(&self, rotation: Rotation<'_>) -> StoreResult<bool> {
        DB::rotate_refresh(self, rotation).await
    }

    async fn revoke_family(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let revoked = revoke_families(&self.pool, REVOKE_FAMILY, id, now).await?;
        Ok(!revoked.is_empty())
    }

    async fn revoke_user_families(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        revoke_families(&self.pool, REVOKE_USER_FAMILIES, &user.0, now).await
    }

    async fn revoke_session_families(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Vec<String>> {
        revoke_families(&self.pool, REVOKE_SESSION_FAMILIES, &session.0, now).await
    }

    async fn count_live_families(&self, now: Timestamp) -> StoreResult<u64> {
        let row = stmt(COUNT_LIVE_FAMILIES)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        count(col(&row, "n")?)
    }

    async fn list_user_families(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<RefreshFamily>> {
        let rows = stmt(LIST_USER_FAMILIES)
            .bind(&user.0)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(family_from_row).collect()
    }

    async fn consent(
        &self,
        user: &UserId,
        client_id: &str,
        resource: Option<&str>,
    ) -> StoreResult<Option<Consent>> {
        let row = stmt(CONSENT)
            .bind(&user.0)
            .bind(client_id)
            .bind(resource.unwrap_or_default())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(consent_from_row).transpose()
    }

    async fn put_consent(&self, consent: &Consent) -> StoreResult<()> {
        stmt(PUT_CONSENT)
            .bind(&consent.user_id.0)
            .bind(&consent.client_id)
            .bind(consent.resource.as_deref().unwrap_or_default())
            .bind(&consent.scope)
            .bind(consent.granted_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_consent(&self, user: &UserId, client_id: &str) -> StoreResult<bool> {
        let deleted = stmt(DELETE_CONSENT)
            .bind(&user.0)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted > 0)
    }

    async fn list_consents(&self, user: &UserId) -> StoreResult<Vec<Consent>> {
        let rows = stmt(LIST_CONSENTS)
            .bind(&user.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(consent_from_row).collect()
    }

    async fn revoke_jti(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        stmt(REVOKE_JTI)
            .bind(jti)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool> {
        let row = stmt(JTI_REVOKED)
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn purge_grants(&self, now: Timestamp) -> StoreResult<u64> {
        // Each statement commits on its own: only dead rows go, so a partial purge is harmless,
        // and short statements neither hold SQLite's write lock for long nor lock rows across
        // tables against a concurrent client deletion.
        let mut purged = 0;
        for statement in PURGE_GRANTS {
            purged += stmt(statement).bind(now).execute(&self.pool).await?;
        }
        Ok(purged)
    }
}

/// Revokes the families that `revoke` (one of the `REVOKE_*FAMILIES` statements) selects by
/// `key`, returning the ids of those that were live at `now`.
async fn revoke_families<DB: Dialect>(
    pool: &Pool<DB>,
    revoke: &str,
    key: &str,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let rows = stmt(revoke).bind(now).bind(key).fetch_all(pool).await?;
    live_revoked(&rows, now)
}
