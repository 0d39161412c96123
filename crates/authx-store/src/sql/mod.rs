//! What the SQL backends share: error mapping, row decoding and the store implementations.
//!
//! SQLite and PostgreSQL run the same statements: both accept `$N` placeholders, `RETURNING`
//! and `INSERT ... ON CONFLICT ... DO UPDATE`, and both schemas derive `sessions.expires_at`
//! as the earlier of the two deadlines. Each backend keeps its own migrations and connection
//! setup; [`impl_sql_stores!`] implements the store traits for a backend's pool type.

use authx_core::Timestamp;
use authx_core::secret::TokenHash;
use authx_core::session::{Session, SessionId};
use authx_core::store::{FailureCount, StoreError, StoreResult};
use authx_core::user::{User, UserId, UserStatus};
use sqlx::{ColumnIndex, Decode, Row, Type};

pub(crate) mod audit;
pub(crate) mod device;
pub(crate) mod federation;
pub(crate) mod oauth;
pub(crate) mod revocation;

/// Maps a driver error to the domain: unique violations are conflicts, undecodable values are
/// corruption, everything else means the database did not answer as it should.
pub(crate) fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::unavailable(other),
    }
}

/// Reads one column, reporting a missing or mistyped column as corruption.
pub(crate) fn col<'r, R, T>(row: &'r R, name: &str) -> StoreResult<T>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name).map_err(store_error)
}

/// Decodes a row of `users` selected with [`USER_COLUMNS`].
pub(crate) fn user_from_row<R>(row: &R) -> StoreResult<User>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: String = col(row, "status")?;
    let status = UserStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown user status {status:?}")))?;
    Ok(User {
        id: UserId(col(row, "id")?),
        email: col(row, "email")?,
        password_hash: col(row, "password_hash")?,
        status,
        is_admin: col(row, "is_admin")?,
        created_at: Timestamp(col(row, "created_at")?),
        password_changed_at: Timestamp(col(row, "password_changed_at")?),
    })
}

/// Decodes a row of `sessions` selected with [`SESSION_COLUMNS`].
pub(crate) fn session_from_row<R>(row: &R) -> StoreResult<Session>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let hex: String = col(row, "token_hash")?;
    let token_hash = TokenHash::from_hex(&hex)
        .ok_or_else(|| StoreError::Corrupt("session token hash is not 64 hex digits".into()))?;
    Ok(Session {
        id: SessionId(col(row, "id")?),
        token_hash,
        user_id: UserId(col(row, "user_id")?),
        created_at: Timestamp(col(row, "created_at")?),
        last_seen_at: Timestamp(col(row, "last_seen_at")?),
        idle_expires_at: Timestamp(col(row, "idle_expires_at")?),
        absolute_expires_at: Timestamp(col(row, "absolute_expires_at")?),
        ip: col(row, "ip")?,
        user_agent: col(row, "user_agent")?,
        auth_method: col(row, "auth_method")?,
    })
}

/// Decodes a row of `throttle` (`failures`, `last_failure_at`).
pub(crate) fn failure_count_from_row<R>(row: &R) -> StoreResult<FailureCount>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let failures: i64 = col(row, "failures")?;
    let failures = u32::try_from(failures)
        .map_err(|_| StoreError::Corrupt(format!("failure counter out of range: {failures}")))?;
    Ok(FailureCount {
        failures,
        last_failure_at: Timestamp(col(row, "last_failure_at")?),
    })
}

/// A row count as the traits report it (drivers never return negative counts).
pub(crate) fn count(n: i64) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative row count {n}")))
}

/// Columns of `users` that make up a [`User`].
macro_rules! user_columns {
    () => {
        "id, email, password_hash, status, is_admin, created_at, password_changed_at"
    };
}

/// Columns of `sessions` that make up a [`Session`].
macro_rules! session_columns {
    () => {
        "id, token_hash, user_id, created_at, last_seen_at, idle_expires_at, \
         absolute_expires_at, ip, user_agent, auth_method"
    };
}

pub(crate) const INSERT_USER: &str = "INSERT INTO users \
     (id, email, password_hash, status, is_admin, created_at, password_changed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const USER_BY_EMAIL: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
pub(crate) const USER_BY_ID: &str =
    concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
pub(crate) const LIST_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users ORDER BY created_at, id"
);
// `changed_at` is NULL for a rehash, which keeps the previous password_changed_at.
pub(crate) const SET_PASSWORD_HASH: &str = "UPDATE users SET password_hash = $1, \
     password_changed_at = COALESCE($2, password_changed_at) WHERE id = $3";
pub(crate) const SET_STATUS: &str = "UPDATE users SET status = $1 WHERE id = $2";

pub(crate) const INSERT_SESSION: &str = "INSERT INTO sessions \
     (id, token_hash, user_id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, \
      ip, user_agent, auth_method) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const SESSION_BY_HASH: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE token_hash = $1"
);
// One conditional statement: a row deleted by a concurrent revoke is not written back, and the
// caller learns from the affected-row count that the session is gone. A touch without an IP
// keeps the one recorded before.
pub(crate) const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_at = $1, \
     idle_expires_at = $2, ip = COALESCE($3, ip) WHERE id = $4";
pub(crate) const DELETE_SESSION: &str = concat!(
    "DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING ",
    session_columns!()
);
pub(crate) const DELETE_USER_SESSIONS: &str =
    "DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2) RETURNING id";
pub(crate) const LIST_USER_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id DESC"
);
pub(crate) const COUNT_LIVE_SESSIONS: &str =
    "SELECT COUNT(*) AS n FROM sessions WHERE expires_at > $1";
pub(crate) const PURGE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";

// One statement, so parallel failures on one key each count: the row lock (PostgreSQL) or the
// database write lock (SQLite) serialises the read-modify-write.
pub(crate) const RECORD_FAILURE: &str = "INSERT INTO throttle (key, failures, last_failure_at) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = CASE WHEN excluded.last_failure_at - throttle.last_failure_at >= $3 \
                       THEN 1 ELSE throttle.failures + 1 END, \
       last_failure_at = excluded.last_failure_at \
     RETURNING failures, last_failure_at";
pub(crate) const FAILURES: &str = "SELECT failures, last_failure_at FROM throttle WHERE key = $1";
pub(crate) const CLEAR_FAILURES: &str = "DELETE FROM throttle WHERE key = $1";
pub(crate) const PURGE_FAILURES: &str = "DELETE FROM throttle WHERE last_failure_at < $1";
// A fixed-window rate counter in the throttle table (`failures` counts requests): one atomic
// upsert that starts over when the last hit came before the current window.
pub(crate) const COUNT_HIT: &str = "INSERT INTO throttle (key, failures, last_failure_at) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET \
       failures = CASE WHEN throttle.last_failure_at < $3 \
                       THEN 1 ELSE throttle.failures + 1 END, \
       last_failure_at = excluded.last_failure_at \
     RETURNING failures, last_failure_at";

/// Implements every store trait for `$store`, a struct with a `pool: sqlx::Pool<$db>` field.
macro_rules! impl_sql_stores {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::authx_core::store::AccountStore for $store {
            async fn create_user(
                &self,
                user: &::authx_core::user::User,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::INSERT_USER)
                    .bind(&user.id.0)
                    .bind(&user.email)
                    .bind(&user.password_hash)
                    .bind(user.status.as_str())
                    .bind(user.is_admin)
                    .bind(user.created_at.0)
                    .bind(user.password_changed_at.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn user_by_email(
                &self,
                email: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::user::User>> {
                ::sqlx::query($crate::sql::USER_BY_EMAIL)
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::user_from_row(&row))
                    .transpose()
            }

            async fn user_by_id(
                &self,
                id: &::authx_core::user::UserId,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::user::User>> {
                ::sqlx::query($crate::sql::USER_BY_ID)
                    .bind(&id.0)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::user_from_row(&row))
                    .transpose()
            }

            async fn list_users(
                &self,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::user::User>> {
                ::sqlx::query($crate::sql::LIST_USERS)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::user_from_row)
                    .collect()
            }

            async fn set_password_hash(
                &self,
                id: &::authx_core::user::UserId,
                phc: &str,
                changed_at: Option<::authx_core::Timestamp>,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::SET_PASSWORD_HASH)
                    .bind(phc)
                    .bind(changed_at.map(|t| t.0))
                    .bind(&id.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_status(
                &self,
                id: &::authx_core::user::UserId,
                status: ::authx_core::user::UserStatus,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::SET_STATUS)
                    .bind(status.as_str())
                    .bind(&id.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[::async_trait::async_trait]
        impl ::authx_core::store::SessionStore for $store {
            async fn create_session(
                &self,
                s: &::authx_core::session::Session,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::INSERT_SESSION)
                    .bind(&s.id.0)
                    .bind(s.token_hash.to_hex())
                    .bind(&s.user_id.0)
                    .bind(s.created_at.0)
                    .bind(s.last_seen_at.0)
                    .bind(s.idle_expires_at.0)
                    .bind(s.absolute_expires_at.0)
                    .bind(s.ip.as_deref())
                    .bind(s.user_agent.as_deref())
                    .bind(&s.auth_method)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn session_by_hash(
                &self,
                hash: &::authx_core::secret::TokenHash,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::session::Session>> {
                ::sqlx::query($crate::sql::SESSION_BY_HASH)
                    .bind(hash.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::session_from_row(&row))
                    .transpose()
            }

            async fn touch_session(
                &self,
                id: &::authx_core::session::SessionId,
                last_seen_at: ::authx_core::Timestamp,
                idle_expires_at: ::authx_core::Timestamp,
                ip: Option<&str>,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::TOUCH_SESSION)
                    .bind(last_seen_at.0)
                    .bind(idle_expires_at.0)
                    .bind(ip)
                    .bind(&id.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_session(
                &self,
                user: &::authx_core::user::UserId,
                id: &::authx_core::session::SessionId,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::session::Session>> {
                ::sqlx::query($crate::sql::DELETE_SESSION)
                    .bind(&id.0)
                    .bind(&user.0)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::session_from_row(&row))
                    .transpose()
            }

            async fn delete_user_sessions(
                &self,
                user: &::authx_core::user::UserId,
                keep: Option<&::authx_core::session::SessionId>,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::session::SessionId>> {
                use ::sqlx::Row as _;
                ::sqlx::query($crate::sql::DELETE_USER_SESSIONS)
                    .bind(&user.0)
                    .bind(keep.map(|k| k.0.as_str()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map(|row| {
                        row.try_get::<String, _>("id")
                            .map(::authx_core::session::SessionId)
                            .map_err($crate::sql::store_error)
                    })
                    .collect()
            }

            async fn list_user_sessions(
                &self,
                user: &::authx_core::user::UserId,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<Vec<::authx_core::session::Session>> {
                ::sqlx::query($crate::sql::LIST_USER_SESSIONS)
                    .bind(&user.0)
                    .bind(now.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .iter()
                    .map($crate::sql::session_from_row)
                    .collect()
            }

            async fn count_live_sessions(
                &self,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                use ::sqlx::Row as _;
                let row = ::sqlx::query($crate::sql::COUNT_LIVE_SESSIONS)
                    .bind(now.0)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                $crate::sql::count(row.try_get("n").map_err($crate::sql::store_error)?)
            }

            async fn purge_expired_sessions(
                &self,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::PURGE_EXPIRED_SESSIONS)
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }
        }

        #[::async_trait::async_trait]
        impl ::authx_core::store::ThrottleStore for $store {
            async fn record_failure(
                &self,
                key: &str,
                now: ::authx_core::Timestamp,
                reset_after_secs: i64,
            ) -> ::authx_core::store::StoreResult<::authx_core::store::FailureCount> {
                let row = ::sqlx::query($crate::sql::RECORD_FAILURE)
                    .bind(key)
                    .bind(now.0)
                    .bind(reset_after_secs)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                $crate::sql::failure_count_from_row(&row)
            }

            async fn failures(
                &self,
                key: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::store::FailureCount>> {
                ::sqlx::query($crate::sql::FAILURES)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::failure_count_from_row(&row))
                    .transpose()
            }

            async fn clear_failures(&self, key: &str) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::CLEAR_FAILURES)
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn purge_failures(
                &self,
                before: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::PURGE_FAILURES)
                    .bind(before.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }

            async fn count_hit(
                &self,
                key: &str,
                window_start: ::authx_core::Timestamp,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u32> {
                let row = ::sqlx::query($crate::sql::COUNT_HIT)
                    .bind(key)
                    .bind(now.0)
                    .bind(window_start.0)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok($crate::sql::failure_count_from_row(&row)?.failures)
            }
        }

        #[::async_trait::async_trait]
        impl ::authx_core::store::Health for $store {
            async fn ping(&self) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_sql_stores;
