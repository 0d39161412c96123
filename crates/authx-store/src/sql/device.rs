//! Device authorization grants (RFC 8628) over SQL, for SQLite and PostgreSQL alike.
//!
//! Every state change is one conditional `UPDATE`: approval and denial match only a pending
//! (or, for a denial, approved) grant, redemption only an approved and unexpired one, and a
//! poll only the poll count it read. Concurrent callers therefore see exactly one winner.

use authx_core::Timestamp;
use authx_core::oauth::device::{
    DeviceApproval, DeviceDenial, DeviceGrant, DevicePoll, DeviceStatus, DeviceStore,
};
use authx_core::oauth::grant::Redemption;
use authx_core::secret::TokenHash;
use authx_core::session::SessionId;
use authx_core::store::{StoreError, StoreResult};
use authx_core::user::UserId;

use super::{Dialect, SqlRow, SqlStore, col, hash, opt_timestamp, stmt};

/// Columns of `device_grants` that make up a [`DeviceGrant`].
macro_rules! device_columns {
    () => {
        "device_code_hash, user_code, client_id, scope, resource, status, user_id, session_id, \
         auth_time, decided_at, family_id, interval_secs, polls, last_poll_at, created_at, \
         expires_at, last_poll_ms, slow_down_gap_ms, auth_methods"
    };
}

const INSERT_DEVICE: &str = concat!(
    "INSERT INTO device_grants (",
    device_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
);
const DEVICE_BY_HASH: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM device_grants WHERE device_code_hash = $1"
);
const DEVICE_BY_USER_CODE: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM device_grants WHERE user_code = $1"
);
const APPROVE_DEVICE: &str = "UPDATE device_grants SET status = 'approved', \
     user_id = $1, session_id = $2, auth_time = $3, decided_at = $4, auth_methods = $6 \
     WHERE device_code_hash = $5 AND status = 'pending' AND expires_at > $4";
const DENY_DEVICE: &str = "UPDATE device_grants SET status = 'denied', \
     user_id = COALESCE(user_id, $1), decided_at = COALESCE(decided_at, $2) \
     WHERE device_code_hash = $3 AND status IN ('pending', 'approved')";
// The approvals a user gave that no device has redeemed yet (a password change or a disable
// withdraws them).
const DENY_USER_DEVICES: &str = "UPDATE device_grants SET status = 'denied' \
     WHERE user_id = $1 AND status = 'approved'";
const REDEEM_DEVICE: &str = "UPDATE device_grants SET status = 'redeemed', \
     family_id = $1 \
     WHERE device_code_hash = $2 AND status = 'approved' AND expires_at > $3";
const RECORD_POLL: &str = "UPDATE device_grants SET polls = polls + 1, \
     interval_secs = $1, last_poll_at = $2, last_poll_ms = $3, slow_down_gap_ms = $4 \
     WHERE device_code_hash = $5 AND polls = $6";
const PURGE_DEVICES: &str = "DELETE FROM device_grants WHERE expires_at <= $1";

/// Decodes a row selected with `device_columns!()`.
fn device_from_row<R: SqlRow>(row: &R) -> StoreResult<DeviceGrant> {
    let device_code_hash = hash(row, "device_code_hash")?;
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
        auth_methods: col(row, "auth_methods")?,
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

#[async_trait::async_trait]
impl<DB: Dialect> DeviceStore for SqlStore<DB> {
    async fn put_device_grant(&self, g: &DeviceGrant) -> StoreResult<()> {
        let hash = g.device_code_hash.to_hex();
        stmt(INSERT_DEVICE)
            .bind(&hash)
            .bind(&g.user_code)
            .bind(&g.client_id)
            .bind(&g.scope)
            .bind(g.resource.as_deref())
            .bind(g.status.as_str())
            .bind(g.user_id.as_ref().map(|u| u.0.as_str()))
            .bind(g.session_id.as_ref().map(|s| s.0.as_str()))
            .bind(g.auth_time)
            .bind(g.decided_at)
            .bind(g.family_id.as_deref())
            .bind(g.interval_secs)
            .bind(g.polls)
            .bind(g.last_poll_at)
            .bind(g.created_at)
            .bind(g.expires_at)
            .bind(g.last_poll_ms)
            .bind(g.slow_down_gap_ms)
            .bind(&g.auth_methods)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn device_grant(&self, hash: &TokenHash) -> StoreResult<Option<DeviceGrant>> {
        let hex = hash.to_hex();
        let row = stmt(DEVICE_BY_HASH)
            .bind(&hex)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn device_grant_by_user_code(&self, user_code: &str) -> StoreResult<Option<DeviceGrant>> {
        let row = stmt(DEVICE_BY_USER_CODE)
            .bind(user_code)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn approve_device_grant(&self, approval: DeviceApproval<'_>) -> StoreResult<bool> {
        let hex = approval.hash.to_hex();
        let changed = stmt(APPROVE_DEVICE)
            .bind(&approval.user.0)
            .bind(&approval.session.0)
            .bind(approval.auth_time)
            .bind(approval.now)
            .bind(&hex)
            .bind(approval.auth_methods)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn deny_device_grant(&self, denial: DeviceDenial<'_>) -> StoreResult<bool> {
        let hex = denial.hash.to_hex();
        let changed = stmt(DENY_DEVICE)
            .bind(denial.user.map(|u| u.0.as_str()))
            .bind(denial.now)
            .bind(&hex)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn deny_user_device_grants(&self, user: &UserId) -> StoreResult<u64> {
        stmt(DENY_USER_DEVICES)
            .bind(&user.0)
            .execute(&self.pool)
            .await
    }

    async fn redeem_device_grant(&self, redemption: Redemption<'_>) -> StoreResult<bool> {
        let hex = redemption.hash.to_hex();
        let changed = stmt(REDEEM_DEVICE)
            .bind(redemption.family_id)
            .bind(&hex)
            .bind(redemption.now)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn record_device_poll(&self, hash: &TokenHash, poll: &DevicePoll) -> StoreResult<bool> {
        let hex = hash.to_hex();
        let changed = stmt(RECORD_POLL)
            .bind(poll.interval_secs)
            .bind(poll.at())
            .bind(poll.at_ms)
            .bind(poll.slow_down_gap_ms)
            .bind(&hex)
            .bind(poll.seen_polls)
            .execute(&self.pool)
            .await?;
        Ok(changed > 0)
    }

    async fn purge_device_grants(&self, now: Timestamp) -> StoreResult<u64> {
        stmt(PURGE_DEVICES).bind(now).execute(&self.pool).await
    }
}
