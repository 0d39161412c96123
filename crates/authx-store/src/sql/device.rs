//! Device authorization grants (RFC 8628) over SQL, for SQLite and PostgreSQL alike.
//!
//! Every state change is one conditional `UPDATE`: approval and denial match only a pending
//! (or, for a denial, approved) grant, redemption only an approved and unexpired one, and a
//! poll only the poll count it read. Concurrent callers therefore see exactly one winner.

use authx_core::Timestamp;
use authx_core::oauth::device::{DeviceGrant, DeviceStatus};
use authx_core::secret::TokenHash;
use authx_core::session::SessionId;
use authx_core::store::{StoreError, StoreResult};
use authx_core::user::UserId;

use crate::sql::{SqlRow, col};

/// Columns of `device_grants` that make up a [`DeviceGrant`].
macro_rules! device_columns {
    () => {
        "device_code_hash, user_code, client_id, scope, resource, status, user_id, session_id, \
         auth_time, decided_at, family_id, interval_secs, polls, last_poll_at, created_at, \
         expires_at, last_poll_ms, slow_down_gap_ms"
    };
}

pub(crate) const INSERT_DEVICE: &str = concat!(
    "INSERT INTO device_grants (",
    device_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
);
pub(crate) const DEVICE_BY_HASH: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM device_grants WHERE device_code_hash = $1"
);
pub(crate) const DEVICE_BY_USER_CODE: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM device_grants WHERE user_code = $1"
);
pub(crate) const APPROVE_DEVICE: &str = "UPDATE device_grants SET status = 'approved', \
     user_id = $1, session_id = $2, auth_time = $3, decided_at = $4 \
     WHERE device_code_hash = $5 AND status = 'pending' AND expires_at > $4";
pub(crate) const DENY_DEVICE: &str = "UPDATE device_grants SET status = 'denied', \
     user_id = COALESCE(user_id, $1), decided_at = COALESCE(decided_at, $2) \
     WHERE device_code_hash = $3 AND status IN ('pending', 'approved')";
// The approvals a user gave that no device has redeemed yet (a password change or a disable
// withdraws them).
pub(crate) const DENY_USER_DEVICES: &str = "UPDATE device_grants SET status = 'denied' \
     WHERE user_id = $1 AND status = 'approved'";
pub(crate) const REDEEM_DEVICE: &str = "UPDATE device_grants SET status = 'redeemed', \
     family_id = $1 \
     WHERE device_code_hash = $2 AND status = 'approved' AND expires_at > $3";
pub(crate) const RECORD_POLL: &str = "UPDATE device_grants SET polls = polls + 1, \
     interval_secs = $1, last_poll_at = $2, last_poll_ms = $3, slow_down_gap_ms = $4 \
     WHERE device_code_hash = $5 AND polls = $6";
pub(crate) const PURGE_DEVICES: &str = "DELETE FROM device_grants WHERE expires_at <= $1";

fn opt_timestamp<R: SqlRow>(row: &R, name: &str) -> StoreResult<Option<Timestamp>> {
    Ok(col::<Option<i64>>(row, name)?.map(Timestamp))
}

/// Decodes a row selected with `device_columns!()`.
pub(crate) fn device_from_row<R: SqlRow>(row: &R) -> StoreResult<DeviceGrant> {
    let hex: String = col(row, "device_code_hash")?;
    let device_code_hash = TokenHash::from_hex(&hex)
        .ok_or_else(|| StoreError::Corrupt("device_code_hash is not 64 hex digits".into()))?;
    let status: String = col(row, "status")?;
    let status = DeviceStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown device grant status {status:?}")))?;
    Ok(DeviceGrant {
        device_code_hash,
        user_code: col(row, "user_code")?,
        client_id: col(row, "client_id")?,
        scope: col(row, "scope")?,
        resource: col(row, "resource")?,
        status,
        user_id: col::<Option<String>>(row, "user_id")?.map(UserId),
        session_id: col::<Option<String>>(row, "session_id")?.map(SessionId),
        auth_time: opt_timestamp(row, "auth_time")?,
        decided_at: opt_timestamp(row, "decided_at")?,
        family_id: col(row, "family_id")?,
        interval_secs: col(row, "interval_secs")?,
        polls: col(row, "polls")?,
        last_poll_at: opt_timestamp(row, "last_poll_at")?,
        last_poll_ms: col(row, "last_poll_ms")?,
        slow_down_gap_ms: col(row, "slow_down_gap_ms")?,
        created_at: Timestamp(col(row, "created_at")?),
        expires_at: Timestamp(col(row, "expires_at")?),
    })
}

/// Implements `DeviceStore` for a store type with a `pool` field.
macro_rules! impl_device_store {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl ::authx_core::oauth::device::DeviceStore for $store {
            async fn put_device_grant(
                &self,
                g: &::authx_core::oauth::device::DeviceGrant,
            ) -> ::authx_core::store::StoreResult<()> {
                ::sqlx::query($crate::sql::device::INSERT_DEVICE)
                    .bind(g.device_code_hash.to_hex())
                    .bind(&g.user_code)
                    .bind(&g.client_id)
                    .bind(&g.scope)
                    .bind(g.resource.as_deref())
                    .bind(g.status.as_str())
                    .bind(g.user_id.as_ref().map(|u| u.0.as_str()))
                    .bind(g.session_id.as_ref().map(|s| s.0.as_str()))
                    .bind(g.auth_time.map(|t| t.0))
                    .bind(g.decided_at.map(|t| t.0))
                    .bind(g.family_id.as_deref())
                    .bind(g.interval_secs)
                    .bind(g.polls)
                    .bind(g.last_poll_at.map(|t| t.0))
                    .bind(g.created_at.0)
                    .bind(g.expires_at.0)
                    .bind(g.last_poll_ms)
                    .bind(g.slow_down_gap_ms)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(())
            }

            async fn device_grant(
                &self,
                hash: &::authx_core::secret::TokenHash,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::oauth::device::DeviceGrant>>
            {
                ::sqlx::query($crate::sql::device::DEVICE_BY_HASH)
                    .bind(hash.to_hex())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::device::device_from_row(&row))
                    .transpose()
            }

            async fn device_grant_by_user_code(
                &self,
                user_code: &str,
            ) -> ::authx_core::store::StoreResult<Option<::authx_core::oauth::device::DeviceGrant>>
            {
                ::sqlx::query($crate::sql::device::DEVICE_BY_USER_CODE)
                    .bind(user_code)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?
                    .map(|row| $crate::sql::device::device_from_row(&row))
                    .transpose()
            }

            async fn approve_device_grant(
                &self,
                hash: &::authx_core::secret::TokenHash,
                user: &::authx_core::user::UserId,
                session: &::authx_core::session::SessionId,
                auth_time: ::authx_core::Timestamp,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::device::APPROVE_DEVICE)
                    .bind(&user.0)
                    .bind(&session.0)
                    .bind(auth_time.0)
                    .bind(now.0)
                    .bind(hash.to_hex())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn deny_device_grant(
                &self,
                hash: &::authx_core::secret::TokenHash,
                user: Option<&::authx_core::user::UserId>,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::device::DENY_DEVICE)
                    .bind(user.map(|u| u.0.as_str()))
                    .bind(now.0)
                    .bind(hash.to_hex())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn deny_user_device_grants(
                &self,
                user: &::authx_core::user::UserId,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::device::DENY_USER_DEVICES)
                    .bind(&user.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }

            async fn redeem_device_grant(
                &self,
                hash: &::authx_core::secret::TokenHash,
                family_id: &str,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::device::REDEEM_DEVICE)
                    .bind(family_id)
                    .bind(hash.to_hex())
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_device_poll(
                &self,
                hash: &::authx_core::secret::TokenHash,
                poll: &::authx_core::oauth::device::DevicePoll,
            ) -> ::authx_core::store::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::device::RECORD_POLL)
                    .bind(poll.interval_secs)
                    .bind(poll.at().0)
                    .bind(poll.at_ms)
                    .bind(poll.slow_down_gap_ms)
                    .bind(hash.to_hex())
                    .bind(poll.seen_polls)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn purge_device_grants(
                &self,
                now: ::authx_core::Timestamp,
            ) -> ::authx_core::store::StoreResult<u64> {
                let done = ::sqlx::query($crate::sql::device::PURGE_DEVICES)
                    .bind(now.0)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::store_error)?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_device_store;
