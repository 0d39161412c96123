//! Browser sessions over SQL. [`SESSION_BY_HASH`] is the lookup behind every signed-in
//! request.

use authx_core::Timestamp;
use authx_core::secret::TokenHash;
use authx_core::session::{Session, SessionId};
use authx_core::store::{SessionStore, SessionTouch, StoreError, StoreResult};
use authx_core::user::UserId;

use super::{Dialect, SqlRow, SqlStore, col, count, stmt};

/// Columns of `sessions` that make up a [`Session`].
macro_rules! session_columns {
    () => {
        "id, token_hash, user_id, created_at, last_seen_at, idle_expires_at, \
         absolute_expires_at, ip, user_agent, auth_method"
    };
}

const INSERT_SESSION: &str = "INSERT INTO sessions \
     (id, token_hash, user_id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, \
      ip, user_agent, auth_method) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const SESSION_BY_HASH: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE token_hash = $1"
);
// One conditional statement: a row deleted by a concurrent revoke is not written back, and the
// caller learns from the affected-row count that the session is gone. A touch without an IP
// keeps the one recorded before.
const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_at = $1, \
     idle_expires_at = $2, ip = COALESCE($3, ip) WHERE id = $4";
const DELETE_SESSION: &str = concat!(
    "DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING ",
    session_columns!()
);
const DELETE_USER_SESSIONS: &str =
    "DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2) RETURNING id";
const LIST_USER_SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id DESC"
);
const COUNT_LIVE_SESSIONS: &str = "SELECT COUNT(*) AS n FROM sessions WHERE expires_at > $1";
const PURGE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";

/// Decodes a row of `sessions` selected with `session_columns!()`.
fn session_from_row<R: SqlRow>(row: &R) -> StoreResult<Session> {
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

#[async_trait::async_trait]
impl<DB: Dialect> SessionStore for SqlStore<DB> {
    async fn create_session(&self, s: &Session) -> StoreResult<()> {
        let hash = s.token_hash.to_hex();
        stmt(INSERT_SESSION)
            .bind(&s.id.0)
            .bind(&hash)
            .bind(&s.user_id.0)
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .bind(s.ip.as_deref())
            .bind(s.user_agent.as_deref())
            .bind(&s.auth_method)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let hex = hash.to_hex();
        let row = stmt(SESSION_BY_HASH)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, touch: SessionTouch<'_>) -> StoreResult<bool> {
        let changed = stmt(TOUCH_SESSION)
            .bind(touch.last_seen_at)
            .bind(touch.idle_expires_at)
            .bind(touch.ip)
            .bind(&touch.id.0)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<Option<Session>> {
        let row = stmt(DELETE_SESSION)
            .bind(&id.0)
            .bind(&user.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn delete_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> StoreResult<Vec<SessionId>> {
        let rows = stmt(DELETE_USER_SESSIONS)
            .bind(&user.0)
            .bind(keep.map(|k| k.0.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| col(row, "id").map(SessionId))
            .collect()
    }

    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        let rows = stmt(LIST_USER_SESSIONS)
            .bind(&user.0)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn count_live_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let row = stmt(COUNT_LIVE_SESSIONS)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        count(col(&row, "n")?)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        stmt(PURGE_EXPIRED_SESSIONS)
            .bind(now)
            .execute(&self.pool)
            .await
    }
}
