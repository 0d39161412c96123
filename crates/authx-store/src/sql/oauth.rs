//! The provider's stores over SQL: clients and resources, signing keys, and grants.
//!
//! As in [`crate::sql`], SQLite and PostgreSQL run the same statements, rows are decoded by
//! functions generic over the row type, and [`impl_oauth_stores!`] implements the traits for a
//! backend's store type. Token hashes are stored as lower-case hex, timestamps as seconds, and
//! lists as JSON arrays of strings (order kept).
//!
//! What must happen once is one conditional write: a code is redeemed by an `UPDATE` that
//! only matches an unredeemed, unexpired code, and a refresh token is rotated by an `UPDATE`
//! that only matches an unconsumed token, in the transaction that inserts its successor. Both
//! transactions begin with their write, so SQLite takes the write lock (waiting on the busy
//! timeout) before it reads anything, and PostgreSQL re-checks the condition on the locked row.
//!
//! On SQLite, refresh-token rotations do not take a transaction each: one writer task runs
//! every rotation queued at the time in one transaction, the same statements in order, and
//! commits them with one `fsync` (`crate::sqlite::rotation`).

use authx_core::Timestamp;
use authx_core::oauth::client::{Client, GrantType, Resource};
use authx_core::oauth::grant::{AuthCode, Consent, RefreshFamily, RefreshToken};
use authx_core::oauth::keys::{KeyState, SigningAlg, StoredKey};
use authx_core::secret::TokenHash;
use authx_core::session::SessionId;
use authx_core::store::{StoreError, StoreResult};
use authx_core::user::UserId;

use sqlx::Pool;

use crate::sql::{Dialect, SqlRow, col, stmt, store_error};

/// A list as stored: a JSON array of strings.
pub(crate) fn json_list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    serde_json::Value::Array(
        items
            .into_iter()
            .map(|s| serde_json::Value::String(s.as_ref().to_owned()))
            .collect(),
    )
    .to_string()
}

/// Reads a list stored by [`json_list`].
fn list<R: SqlRow>(row: &R, name: &str) -> StoreResult<Vec<String>> {
    let text: String = col(row, name)?;
    serde_json::from_str(&text)
        .map_err(|_| StoreError::Corrupt(format!("{name} is not a JSON list of strings")))
}

/// Reads a token hash stored as hex.
fn hash<R: SqlRow>(row: &R, name: &str) -> StoreResult<TokenHash> {
    let hex: String = col(row, name)?;
    parse_hash(name, &hex)
}

fn parse_hash(name: &str, hex: &str) -> StoreResult<TokenHash> {
    TokenHash::from_hex(hex)
        .ok_or_else(|| StoreError::Corrupt(format!("{name} is not 64 hex digits")))
}

fn timestamp<R: SqlRow>(row: &R, name: &str) -> StoreResult<Timestamp> {
    col(row, name).map(Timestamp)
}

fn opt_timestamp<R: SqlRow>(row: &R, name: &str) -> StoreResult<Option<Timestamp>> {
    Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
}

/// Decodes a row of `oauth_clients` selected with `client_columns!()`.
pub(crate) fn client_from_row<R: SqlRow>(row: &R) -> StoreResult<Client> {
    let secret_hash = col::<Option<String>>(row, "secret_hash")?
        .map(|hex| parse_hash("secret_hash", &hex))
        .transpose()?;
    let grant_types = list(row, "grant_types")?
        .iter()
        .map(|g| {
            GrantType::parse(g)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown grant type {g:?}")))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let alg: String = col(row, "id_token_alg")?;
    let id_token_alg = SigningAlg::parse(&alg)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown signing algorithm {alg:?}")))?;
    Ok(Client {
        id: col(row, "id")?,
        name: col(row, "name")?,
        secret_hash,
        redirect_uris: list(row, "redirect_uris")?,
        post_logout_redirect_uris: list(row, "post_logout_redirect_uris")?,
        backchannel_logout_uri: col(row, "backchannel_logout_uri")?,
        grant_types,
        scopes: list(row, "scopes")?,
        resources: list(row, "resources")?,
        first_party: col(row, "first_party")?,
        id_token_alg,
        access_token_ttl_secs: col(row, "access_token_ttl_secs")?,
        refresh_token_ttl_secs: col(row, "refresh_token_ttl_secs")?,
        refresh_idle_secs: col(row, "refresh_idle_secs")?,
        created_at: timestamp(row, "created_at")?,
    })
}

/// Decodes a row of `oauth_resources`.
pub(crate) fn resource_from_row<R: SqlRow>(row: &R) -> StoreResult<Resource> {
    Ok(Resource {
        id: col(row, "id")?,
        scopes: list(row, "scopes")?,
        created_at: timestamp(row, "created_at")?,
    })
}

/// Decodes a row of `signing_keys` selected with `key_columns!()`.
pub(crate) fn key_from_row<R: SqlRow>(row: &R) -> StoreResult<StoredKey> {
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

/// Decodes a row of `auth_codes` selected with `code_columns!()`.
pub(crate) fn code_from_row<R: SqlRow>(row: &R) -> StoreResult<AuthCode> {
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
        family_id: col(row, "family_id")?,
        expires_at: timestamp(row, "expires_at")?,
    })
}

/// Decodes a row of `refresh_families` selected with `family_columns!()`.
pub(crate) fn family_from_row<R: SqlRow>(row: &R) -> StoreResult<RefreshFamily> {
    Ok(RefreshFamily {
        id: col(row, "id")?,
        client_id: col(row, "client_id")?,
        user_id: UserId(col(row, "user_id")?),
        session_id: col::<Option<String>>(row, "session_id")?.map(SessionId),
        scope: col(row, "scope")?,
        resource: col(row, "resource")?,
        auth_time: timestamp(row, "auth_time")?,
        created_at: timestamp(row, "created_at")?,
        expires_at: timestamp(row, "expires_at")?,
        revoked_at: opt_timestamp(row, "revoked_at")?,
    })
}

/// Decodes the token half of a [`TOKEN_WITH_FAMILY`] row.
pub(crate) fn token_from_row<R: SqlRow>(row: &R) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        hash: hash(row, "token_hash")?,
        family_id: col(row, "family_id")?,
        issued_at: timestamp(row, "issued_at")?,
        idle_expires_at: timestamp(row, "idle_expires_at")?,
        consumed_at: opt_timestamp(row, "consumed_at")?,
    })
}

/// Decodes a row of `consents`.
pub(crate) fn consent_from_row<R: SqlRow>(row: &R) -> StoreResult<Consent> {
    Ok(Consent {
        user_id: UserId(col(row, "user_id")?),
        client_id: col(row, "client_id")?,
        // Stored as '' for a consent that covers no API (the column is part of the key).
        resource: Some(col::<String>(row, "resource")?).filter(|r| !r.is_empty()),
        scope: col(row, "scope")?,
        granted_at: timestamp(row, "granted_at")?,
    })
}

/// Columns of `oauth_clients` that make up a [`Client`].
macro_rules! client_columns {
    () => {
        "id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
         backchannel_logout_uri, grant_types, scopes, first_party, id_token_alg, \
         access_token_ttl_secs, refresh_token_ttl_secs, refresh_idle_secs, created_at, \
         resources"
    };
}

/// Columns of `signing_keys` that make up a [`StoredKey`].
macro_rules! key_columns {
    () => {
        "kid, alg, state, private_key_encrypted, public_jwk, created_at, activated_at, \
         remove_after"
    };
}

/// Columns of `auth_codes` that make up an [`AuthCode`].
macro_rules! code_columns {
    () => {
        "code_hash, client_id, user_id, session_id, redirect_uri, code_challenge, nonce, \
         scope, resource, auth_time, family_id, expires_at"
    };
}

/// Columns of `refresh_families` that make up a [`RefreshFamily`].
macro_rules! family_columns {
    () => {
        "id, client_id, user_id, session_id, scope, resource, auth_time, created_at, \
         expires_at, revoked_at"
    };
}

pub(crate) const INSERT_CLIENT: &str = concat!(
    "INSERT INTO oauth_clients (",
    client_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);
pub(crate) const CLIENT_BY_ID: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM oauth_clients WHERE id = $1"
);
pub(crate) const LIST_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM oauth_clients ORDER BY id"
);
// Codes, families (with their tokens) and consents go with the client (ON DELETE CASCADE).
pub(crate) const DELETE_CLIENT: &str = "DELETE FROM oauth_clients WHERE id = $1";

pub(crate) const INSERT_RESOURCE: &str =
    "INSERT INTO oauth_resources (id, scopes, created_at) VALUES ($1, $2, $3)";
pub(crate) const RESOURCE_BY_ID: &str =
    "SELECT id, scopes, created_at FROM oauth_resources WHERE id = $1";
pub(crate) const LIST_RESOURCES: &str =
    "SELECT id, scopes, created_at FROM oauth_resources ORDER BY id";
pub(crate) const DELETE_RESOURCE: &str = "DELETE FROM oauth_resources WHERE id = $1";
// The clients whose list may name a resource (a substring match on the JSON text; the exact
// test is made on the decoded list).
pub(crate) const CLIENTS_NAMING_RESOURCE: &str =
    "SELECT id, resources FROM oauth_clients WHERE resources LIKE $1";
pub(crate) const SET_CLIENT_RESOURCES: &str =
    "UPDATE oauth_clients SET resources = $1 WHERE id = $2";

pub(crate) const LIST_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM signing_keys ORDER BY created_at, kid"
);
pub(crate) const INSERT_KEY: &str = concat!(
    "INSERT INTO signing_keys (",
    key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);
// A time not given keeps the one recorded before.
pub(crate) const SET_KEY_STATE: &str = "UPDATE signing_keys SET state = $1, \
     activated_at = COALESCE($2, activated_at), remove_after = COALESCE($3, remove_after) \
     WHERE kid = $4";
pub(crate) const DELETE_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";

pub(crate) const INSERT_CODE: &str = concat!(
    "INSERT INTO auth_codes (",
    code_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
// The one redemption: only an unredeemed code that is unexpired at `now` ($1) matches. A
// concurrent redemption waits for the row (PostgreSQL) or the write lock (SQLite), then
// finds it redeemed.
pub(crate) const REDEEM_CODE: &str = concat!(
    "UPDATE auth_codes SET redeemed_at = $1, family_id = $2 \
     WHERE code_hash = $3 AND redeemed_at IS NULL AND expires_at > $1 RETURNING ",
    code_columns!()
);
// The codes of an ended session (or user) can no longer be redeemed; redeemed ones stay for
// replay detection (their family is revoked with the session).
pub(crate) const DELETE_SESSION_CODES: &str =
    "DELETE FROM auth_codes WHERE session_id = $1 AND redeemed_at IS NULL";
// Session ids are never empty, so a missing `keep` ($2) spares nothing.
pub(crate) const DELETE_USER_CODES: &str = "DELETE FROM auth_codes \
     WHERE user_id = $1 AND redeemed_at IS NULL AND session_id <> COALESCE($2, '')";
pub(crate) const CODE_REDEMPTION: &str =
    "SELECT redeemed_at, family_id FROM auth_codes WHERE code_hash = $1";

pub(crate) const INSERT_FAMILY: &str = concat!(
    "INSERT INTO refresh_families (",
    family_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);
pub(crate) const FAMILY_BY_ID: &str = concat!(
    "SELECT ",
    family_columns!(),
    " FROM refresh_families WHERE id = $1"
);
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens \
     (token_hash, family_id, issued_at, idle_expires_at, consumed_at) \
     VALUES ($1, $2, $3, $4, $5)";
pub(crate) const TOKEN_WITH_FAMILY: &str = "SELECT t.token_hash AS token_hash, \
     t.family_id AS family_id, t.issued_at AS issued_at, \
     t.idle_expires_at AS idle_expires_at, t.consumed_at AS consumed_at, \
     f.id AS id, f.client_id AS client_id, f.user_id AS user_id, f.session_id AS session_id, \
     f.scope AS scope, f.resource AS resource, f.auth_time AS auth_time, \
     f.created_at AS created_at, f.expires_at AS expires_at, f.revoked_at AS revoked_at \
     FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     WHERE t.token_hash = $1";
// The compare-and-set of a rotation. The family must match too, so a successor can never be
// grafted onto another family.
pub(crate) const CONSUME_TOKEN: &str = "UPDATE refresh_tokens SET consumed_at = $1 \
     WHERE token_hash = $2 AND family_id = $3 AND consumed_at IS NULL";
// Revocation keeps the first revocation time; `expires_at` tells whether it was live.
pub(crate) const REVOKE_FAMILY: &str = "UPDATE refresh_families SET revoked_at = $1 \
     WHERE id = $2 AND revoked_at IS NULL RETURNING id, expires_at";
pub(crate) const REVOKE_USER_FAMILIES: &str = "UPDATE refresh_families SET revoked_at = $1 \
     WHERE user_id = $2 AND revoked_at IS NULL RETURNING id, expires_at";
pub(crate) const REVOKE_SESSION_FAMILIES: &str = "UPDATE refresh_families SET revoked_at = $1 \
     WHERE session_id = $2 AND revoked_at IS NULL RETURNING id, expires_at";
pub(crate) const LIST_USER_FAMILIES: &str = concat!(
    "SELECT ",
    family_columns!(),
    " FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
     ORDER BY created_at DESC, id DESC"
);

// Consents are kept per (user, client, resource); `resource` is '' for none.
pub(crate) const CONSENT: &str = "SELECT user_id, client_id, resource, scope, granted_at \
     FROM consents WHERE user_id = $1 AND client_id = $2 AND resource = $3";
pub(crate) const PUT_CONSENT: &str = "INSERT INTO consents \
     (user_id, client_id, resource, scope, granted_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, client_id, resource) DO UPDATE SET \
       scope = excluded.scope, granted_at = excluded.granted_at";
pub(crate) const DELETE_CONSENT: &str =
    "DELETE FROM consents WHERE user_id = $1 AND client_id = $2";
pub(crate) const LIST_CONSENTS: &str = "SELECT user_id, client_id, resource, scope, granted_at \
     FROM consents WHERE user_id = $1 ORDER BY client_id, resource";

// Revoking again keeps the later expiry, so the id is remembered as long as any token with it
// can be valid.
pub(crate) const REVOKE_JTI: &str = "INSERT INTO revoked_jtis (jti, expires_at) \
     VALUES ($1, $2) \
     ON CONFLICT (jti) DO UPDATE SET expires_at = \
       CASE WHEN excluded.expires_at > revoked_jtis.expires_at \
            THEN excluded.expires_at ELSE revoked_jtis.expires_at END";
pub(crate) const JTI_REVOKED: &str = "SELECT jti FROM revoked_jtis WHERE jti = $1";

// Redeemed codes stay until they expire, so that a replay is recognised until then.
pub(crate) const PURGE_CODES: &str = "DELETE FROM auth_codes WHERE expires_at <= $1";
// The tokens of expired families are deleted explicitly (not by the cascade) to be counted.
pub(crate) const PURGE_FAMILY_TOKENS: &str = "DELETE FROM refresh_tokens WHERE family_id IN \
     (SELECT id FROM refresh_families WHERE expires_at <= $1)";
pub(crate) const PURGE_FAMILIES: &str = "DELETE FROM refresh_families WHERE expires_at <= $1";
pub(crate) const PURGE_CONSUMED_TOKENS: &str = "DELETE FROM refresh_tokens \
     WHERE consumed_at IS NOT NULL AND idle_expires_at <= $1";
pub(crate) const PURGE_JTIS: &str = "DELETE FROM revoked_jtis WHERE expires_at <= $1";

/// The purge statements, in order, each taking `now` as `$1`.
pub(crate) const PURGE_GRANTS: [&str; 5] = [
    PURGE_CODES,
    PURGE_FAMILY_TOKENS,
    PURGE_FAMILIES,
    PURGE_CONSUMED_TOKENS,
    PURGE_JTIS,
];

/// Ids of the revoked families that were live at `now`, sorted, from rows of `(id,
/// expires_at)`.
pub(crate) fn live_revoked<R: SqlRow>(rows: &[R], now: Timestamp) -> StoreResult<Vec<String>> {
    let mut ids = Vec::new();
    for row in rows {
        if timestamp(row, "expires_at")? > now {
            ids.push(col(row, "id")?);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Rotates `old` into `new` in a transaction of its own on `pool`.
///
/// The transaction's first statement writes, so a concurrent rotation of the same token waits
/// for it (the row lock on PostgreSQL, the write lock on SQLite), then finds the token consumed.
pub(crate) async fn rotate_in_transaction<DB: Dialect>(
    pool: &Pool<DB>,
    old: &TokenHash,
    new: &RefreshToken,
    now: Timestamp,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(store_error)?;
    let old = old.to_hex();
    let consumed = stmt(CONSUME_TOKEN)
        .bind(now)
        .bind(&old)
        .bind(&new.family_id)
        .execute_in(&mut tx)
        .await?;
    if consumed == 0 {
        tx.rollback().await.map_err(store_error)?;
        return Ok(false);
    }
    let hash = new.hash.to_hex();
    stmt(INSERT_TOKEN)
        .bind(&hash)
        .bind(&new.family_id)
        .bind(new.issued_at)
        .bind(new.idle_expires_at)
        .bind(new.consumed_at)
        .execute_in(&mut tx)
        .await?;
    tx.commit().await.map_err(store_error)?;
    Ok(true)
}

/// Implements `ClientStore`, `KeyStore` and `GrantStore` for `$store`, a struct with a
/// `pool: sqlx::Pool<$db>` field.
///
/// `impl_oauth_stores!(Store)` rotates each refresh token in a transaction of its own on the
/// pool. `impl_oauth_stores!(Store, rotate_refresh through field)` hands every rotation to
/// `self.field.rotate(old, new, now)` instead, which must keep the same promise (SQLite's
/// group commit, `crate::sqlite::rotation`).
macro_rules! impl_oauth_stores {
    ($store:ty) => {
        $crate::sql::oauth::impl_oauth_stores!(@impl $store);
    };
    (@impl $store:ty) => {
        #[::async_trait::async_trait]
        impl ::authx_core::oauth::store::ClientStore for $store {
            async fn put_client(
                &self,
                client: &::authx_core::oauth::client::Client,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::oauth::INSERT_CLIENT)
                    .bind(&client.id)
                    .bind(&client.name)
                    .bind(client.secret_hash.as_ref().map(|h| h.to_hex()))
                    .bind($crate::sql::oauth::json_list(&client.redirect_uris))
                    .bind($crate::sql::oauth::json_list(
                        &client.post_logout_redirect_uris,
                    ))
                    .bind(client.backchannel_logout_uri.as_deref())
                    .bind($crate::sql::oauth::json_list(
                        client.grant_types.iter().map(|g| g.as_str()),
                    ))
                    .bind($crate::sql::oauth::json_list(&client.scopes))
                    .bind(client.first_party)
                    .bind(client.id_token_alg.as_str())
                    .bind(client.access_token_ttl_secs)
                    .bind(client.refresh_token_ttl_secs)
                    .bind(client.refresh_idle_secs)
                    .bind(client.created_at.0)
                    .bind($crate::sql::oauth::json_list(&client.resources))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn client(
                &self,
                id: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::oauth::client::Client>> {
                ::sqlx::query($crate::sql::oauth::CLIENT_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::oauth::client_from_row(&row))
                    .transpose()
            }

            async fn list_clients(
                &self,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::oauth::client::Client>> {
                ::sqlx::query($crate::sql::oauth::LIST_CLIENTS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::oauth::client_from_row)
                    .collect()
            }

            async fn delete_client(&self, id: &str) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::oauth::DELETE_CLIENT)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn put_resource(
                &self,
                resource: &::authx_core::oauth::client::Resource,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::oauth::INSERT_RESOURCE)
                    .bind(&resource.id)
                    .bind($crate::sql::oauth::json_list(&resource.scopes))
                    .bind(resource.created_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn resource(
                &self,
                id: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::oauth::client::Resource>>
            {
                ::sqlx::query($crate::sql::oauth::RESOURCE_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::oauth::resource_from_row(&row))
                    .transpose()
            }

            async fn list_resources(
                &self,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::oauth::client::Resource>> {
                ::sqlx::query($crate::sql::oauth::LIST_RESOURCES)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::oauth::resource_from_row)
                    .collect()
            }

            async fn delete_resource(&self, id: &str) -> ::authx_core::store::StoreResult<bool> {
                use ::sqlx::Row as _;
                // The resource leaves every client's list in the same transaction, so an API
                // registered again under the same id is granted to nobody until an
                // administrator says so.
                let mut tx = self.pool.begin().await.map_err($crate::sql::store_error)?;
                let done = ::sqlx::query($crate::sql::oauth::DELETE_RESOURCE)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::store_error)?;
                // The id as the JSON text holds it. `%`, `_` and `\` (PostgreSQL's escape
                // character) become `_`, which matches them among others.
                let quoted = ::serde_json::Value::String(id.to_owned()).to_string();
                let pattern = format!("%{}%", quoted.replace(['%', '_', '\\'], "_"));
                let rows = ::sqlx::query($crate::sql::oauth::CLIENTS_NAMING_RESOURCE)
                    .bind(pattern)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::sql::store_error)?;
                for row in rows {
                    let client: String = row.try_get("id").map_err($crate::sql::store_error)?;
                    let text: String =
                        row.try_get("resources").map_err($crate::sql::store_error)?;
                    let list: Vec<String> = ::serde_json::from_str(&text).map_err(|_| {
                        ::authx_core::store::StoreError::Corrupt(
                            "resources is not a JSON list of strings".into(),
                        )
                    })?;
                    if list.iter().any(|r| r == id) {
                        ::sqlx::query($crate::sql::oauth::SET_CLIENT_RESOURCES)
                            .bind($crate::sql::oauth::json_list(
                                list.iter().filter(|r| r.as_str() != id),
                            ))
                            .bind(&client)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::sql::store_error)?;
                    }
                }
                tx.commit().await.map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[::async_trait::async_trait]
        impl ::authx_core::oauth::store::KeyStore for $store {
            async fn list_keys(
                &self,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::oauth::keys::StoredKey>> {
                ::sqlx::query($crate::sql::oauth::LIST_KEYS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::oauth::key_from_row)
                    .collect()
            }

            async fn insert_key(
                &self,
                key: &::authx_core::oauth::keys::StoredKey,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::oauth::INSERT_KEY)
                    .bind(&key.kid)
                    .bind(key.alg.as_str())
                    .bind(key.state.as_str())
                    .bind(&key.private_key_encrypted)
                    .bind(&key.public_jwk)
                    .bind(key.created_at.0)
                    .bind(key.activated_at.map(|t| t.0))
                    .bind(key.remove_after.map(|t| t.0))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn set_key_state(
                &self,
                kid: &str,
                state: ::authx_core::oauth::keys::KeyState,
                activated_at: Option<::authx_core::Timestamp>,
                remove_after: Option<::authx_core::Timestamp>,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::oauth::SET_KEY_STATE)
                    .bind(state.as_str())
                    .bind(activated_at.map(|t| t.0))
                    .bind(remove_after.map(|t| t.0))
                    .bind(kid)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_key(&self, kid: &str) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::oauth::DELETE_KEY)
                    .bind(kid)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[::async_trait::async_trait]
        impl ::authx_core::oauth::store::GrantStore for $store {
            async fn put_code(
                &self,
                code: &::authx_core::oauth::grant::AuthCode,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::oauth::INSERT_CODE)
                    .bind(code.code_hash.to_hex())
                    .bind(&code.client_id)
                    .bind(&code.user_id.0)
                    .bind(&code.session_id.0)
                    .bind(&code.redirect_uri)
                    .bind(&code.code_challenge)
                    .bind(code.nonce.as_deref())
                    .bind(&code.scope)
                    .bind(code.resource.as_deref())
                    .bind(code.auth_time.0)
                    .bind(code.family_id.as_deref())
                    .bind(code.expires_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn redeem_code(
                &self,
                hash: &::authx_core::secret::TokenHash,
                family_id: &str,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<::authx_core::oauth::grant::CodeRedemption> {
                use ::authx_core::oauth::grant::CodeRedemption;
                use ::sqlx::Row as _;
                let hex = hash.to_hex();
                let redeemed = ::sqlx::query($crate::sql::oauth::REDEEM_CODE)
                    .bind(now.0)
                    .bind(family_id)
                    .bind(&hex)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                if let Some(row) = redeemed {
                    return Ok(CodeRedemption::Redeemed(Box::new(
                        $crate::sql::oauth::code_from_row(&row)?,
                    )));
                }
                // Redemption and its family id are written together and never undone, so what
                // this reads is what the winning redemption recorded.
                let Some(row) = ::sqlx::query($crate::sql::oauth::CODE_REDEMPTION)
                    .bind(&hex)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                else {
                    return Ok(CodeRedemption::Unknown);
                };
                let redeemed_at: Option<i64> = row
                    .try_get("redeemed_at")
                    .map_err($crate::sql::store_error)?;
                if redeemed_at.is_none() {
                    // Present but not redeemable: it expired.
                    return Ok(CodeRedemption::Unknown);
                }
                Ok(CodeRedemption::AlreadyRedeemed {
                    family_id: row.try_get("family_id").map_err($crate::sql::store_error)?,
                })
            }

            async fn delete_session_codes(
                &self,
                session: &::authx_core::session::SessionId,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::oauth::DELETE_SESSION_CODES)
                    .bind(&session.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }

            async fn delete_user_codes(
                &self,
                user: &::authx_core::user::UserId,
                keep: Option<&::authx_core::session::SessionId>,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::oauth::DELETE_USER_CODES)
                    .bind(&user.0)
                    .bind(keep.map(|k| k.0.as_str()))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }

            async fn create_family(
                &self,
                family: &::authx_core::oauth::grant::RefreshFamily,
                first: Option<&::authx_core::oauth::grant::RefreshToken>,
            ) -> ::authx_core::store::StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err($crate::sql::store_error)?;
                ::sqlx::query($crate::sql::oauth::INSERT_FAMILY)
                    .bind(&family.id)
                    .bind(&family.client_id)
                    .bind(&family.user_id.0)
                    .bind(family.session_id.as_ref().map(|s| s.0.as_str()))
                    .bind(&family.scope)
                    .bind(family.resource.as_deref())
                    .bind(family.auth_time.0)
                    .bind(family.created_at.0)
                    .bind(family.expires_at.0)
                    .bind(family.revoked_at.map(|t| t.0))
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::store_error)?;
                if let Some(token) = first {
                    // The first token belongs to this family, whatever its own field says.
                    ::sqlx::query($crate::sql::oauth::INSERT_TOKEN)
                        .bind(token.hash.to_hex())
                        .bind(&family.id)
                        .bind(token.issued_at.0)
                        .bind(token.idle_expires_at.0)
                        .bind(token.consumed_at.map(|t| t.0))
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::sql::store_error)?;
                }
                tx.commit().await.map_err($crate::sql::store_error)
            }

            async fn family(
                &self,
                id: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::oauth::grant::RefreshFamily>>
            {
                ::sqlx::query($crate::sql::oauth::FAMILY_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::oauth::family_from_row(&row))
                    .transpose()
            }

            async fn refresh_token(
                &self,
                hash: &::authx_core::secret::TokenHash,
            ) -> ::authx_core::store::StoreResult<
                Option<(
                    ::authx_core::oauth::grant::RefreshToken,
                    ::authx_core::oauth::grant::RefreshFamily,
                )>,
            > {
                ::sqlx::query($crate::sql::oauth::TOKEN_WITH_FAMILY)
                    .bind(hash.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| {
                        Ok((
                            $crate::sql::oauth::token_from_row(&row)?,
                            $crate::sql::oauth::family_from_row(&row)?,
                        ))
                    })
                    .transpose()
            }

            async fn rotate_refresh(
                &self,
                old: &::authx_core::secret::TokenHash,
                new: &::authx_core::oauth::grant::RefreshToken,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<bool> {
                $crate::sql::Dialect::rotate_refresh(self, old, new, now).await
            }

            async fn revoke_family(
                &self,
                id: &str,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<bool> {
                let rows = ::sqlx::query($crate::sql::oauth::REVOKE_FAMILY)
                    .bind(now.0)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(!$crate::sql::oauth::live_revoked(&rows, now)?.is_empty())
            }

            async fn revoke_user_families(
                &self,
                user: &::authx_core::user::UserId,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<Vec<String>> {
                let rows = ::sqlx::query($crate::sql::oauth::REVOKE_USER_FAMILIES)
                    .bind(now.0)
                    .bind(&user.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                $crate::sql::oauth::live_revoked(&rows, now)
            }

            async fn revoke_session_families(
                &self,
                session: &::authx_core::session::SessionId,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<Vec<String>> {
                let rows = ::sqlx::query($crate::sql::oauth::REVOKE_SESSION_FAMILIES)
                    .bind(now.0)
                    .bind(&session.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                $crate::sql::oauth::live_revoked(&rows, now)
            }

            async fn list_user_families(
                &self,
                user: &::authx_core::user::UserId,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::oauth::grant::RefreshFamily>>
            {
                ::sqlx::query($crate::sql::oauth::LIST_USER_FAMILIES)
                    .bind(&user.0)
                    .bind(now.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::oauth::family_from_row)
                    .collect()
            }

            async fn consent(
                &self,
                user: &::authx_core::user::UserId,
                client_id: &str,
                resource: Option<&str>,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::oauth::grant::Consent>> {
                ::sqlx::query($crate::sql::oauth::CONSENT)
                    .bind(&user.0)
                    .bind(client_id)
                    .bind(resource.unwrap_or_default())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::oauth::consent_from_row(&row))
                    .transpose()
            }

            async fn put_consent(
                &self,
                consent: &::authx_core::oauth::grant::Consent,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::oauth::PUT_CONSENT)
                    .bind(&consent.user_id.0)
                    .bind(&consent.client_id)
                    .bind(consent.resource.as_deref().unwrap_or_default())
                    .bind(&consent.scope)
                    .bind(consent.granted_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn delete_consent(
                &self,
                user: &::authx_core::user::UserId,
                client_id: &str,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::oauth::DELETE_CONSENT)
                    .bind(&user.0)
                    .bind(client_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_consents(
                &self,
                user: &::authx_core::user::UserId,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::oauth::grant::Consent>> {
                ::sqlx::query($crate::sql::oauth::LIST_CONSENTS)
                    .bind(&user.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::oauth::consent_from_row)
                    .collect()
            }

            async fn revoke_jti(
                &self,
                jti: &str,
                expires_at: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::oauth::REVOKE_JTI)
                    .bind(jti)
                    .bind(expires_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn is_jti_revoked(&self, jti: &str) -> ::authx_core::store::StoreResult<bool> {
                let row = ::sqlx::query($crate::sql::oauth::JTI_REVOKED)
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(row.is_some())
            }

            async fn purge_grants(
                &self,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                // Each statement commits on its own: only dead rows go, so a partial purge is
                // harmless, and short statements neither hold SQLite's write lock for long nor
                // lock rows across tables against a concurrent client deletion.
                let mut purged = 0;
                for statement in $crate::sql::oauth::PURGE_GRANTS {
                    let done = ::sqlx::query(statement)
                        .bind(now.0)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::sql::store_error)?;
                    purged += done.rows_affected();
                }
                Ok(purged)
            }
        }
    };
}

pub(crate) use impl_oauth_stores;

#[cfg(test)]
mod tests {
    use authx_core::oauth::store::{ClientStore as _, KeyStore as _};

    use super::*;
    use crate::ConnectOptions;
    use crate::sqlite::{MIGRATOR, SqliteStore, open};

    #[test]
    fn lists_are_json_arrays_in_order() {
        let items = ["b", "a", "quote\"", "back\\slash", "ünï"];
        let text = json_list(items);
        assert_eq!(text, r#"["b","a","quote\"","back\\slash","ünï"]"#);
        assert_eq!(
            serde_json::from_str::<Vec<String>>(&text).unwrap(),
            items.map(str::to_owned)
        );
        assert_eq!(json_list(Vec::<String>::new()), "[]");
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        let pool = open("sqlite::memory:", &ConnectOptions::default())
            .await
            .unwrap();
        crate::migrations::apply(&pool, &MIGRATOR).await.unwrap();
        let store = SqliteStore::new(pool.clone());
        let hex = TokenHash::of(b"s").to_hex();
        for (id, secret, grants, uris, alg, why) in [
            (
                "c1",
                "not-hex",
                r#"["refresh_token"]"#,
                "[]",
                "RS256",
                "secret_hash",
            ),
            ("c2", &hex, r#"["implicit"]"#, "[]", "RS256", "implicit"),
            (
                "c3",
                &hex,
                "[]",
                "https://a.example.com/cb",
                "RS256",
                "redirect_uris",
            ),
            ("c4", &hex, "[]", "[1]", "RS256", "redirect_uris"),
            ("c5", &hex, "[]", "[]", "HS256", "HS256"),
        ] {
            sqlx::query(
                "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris, \
                 post_logout_redirect_uris, grant_types, scopes, first_party, id_token_alg, \
                 access_token_ttl_secs, refresh_token_ttl_secs, refresh_idle_secs, created_at) \
                 VALUES ($1, 'x', $2, $3, '[]', $4, '[]', 0, $5, 1, 1, 1, 1)",
            )
            .bind(id)
            .bind(secret)
            .bind(uris)
            .bind(grants)
            .bind(alg)
            .execute(&pool)
            .await
            .unwrap();
            let err = store.client(id).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt(m) if m.contains(why)),
                "{id}: {err:?}"
            );
        }
        assert!(matches!(
            store.list_clients().await,
            Err(StoreError::Corrupt(_))
        ));

        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, state, private_key_encrypted, public_jwk, \
             created_at) VALUES ('k1', 'EdDSA', 'revoked', x'00', '{}', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let err = store.list_keys().await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("revoked")),
            "{err:?}"
        );
    }
}
