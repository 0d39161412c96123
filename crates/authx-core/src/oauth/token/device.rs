//! The device-code grant at the token endpoint (RFC 8628 §3.4, §3.5): pacing, the user's
//! decision, and a single redemption for a user who can still receive tokens.

use super::super::OAuthError;
use super::super::client::{Client, GrantType};
use super::super::device::{
    DeviceCode, DeviceDenial, DevicePoll, DevicePollError, DeviceStatus, account_locked, pace_poll,
};
use super::super::dpop::Jkt;
use super::super::grant::Redemption;
use super::super::types::TokenResponse;
use super::Granted;
use super::Tokens;
use crate::Timestamp;
use crate::throttle::ThrottlePolicy;
use crate::user::UserStatus;

impl Tokens<'_> {
    /// The device-code grant at the token endpoint (RFC 8628 §3.4, §3.5). `lock` is the
    /// sign-in throttle policy: a locked account gets nothing.
    ///
    /// # Errors
    /// [`DevicePollError`] codes while waiting or after denial and expiry; `invalid_grant` for
    /// an unknown, spent or foreign device code or a user who can no longer receive tokens.
    pub async fn device_token(
        &self,
        client: &Client,
        device_code: &str,
        lock: &ThrottlePolicy,
    ) -> Result<TokenResponse, OAuthError> {
        self.device_token_with(client, device_code, lock, None)
            .await
    }

    /// [`Tokens::device_token`], with the tokens bound to the DPoP key `dpop` if given.
    pub(super) async fn device_token_with(
        &self,
        client: &Client,
        device_code: &str,
        lock: &ThrottlePolicy,
        dpop: Option<&Jkt>,
    ) -> Result<TokenResponse, OAuthError> {
        Self::require_binding(client, dpop)?;
        if !client.allows(GrantType::DeviceCode) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let Some(code) = DeviceCode::parse(device_code) else {
            return Err(OAuthError::InvalidGrant("invalid device code"));
        };
        let hash = code.hash();
        let devices = &self.ctx.stores.devices;
        let Some(grant) = devices.device_grant(&hash).await? else {
            return Err(OAuthError::InvalidGrant("invalid device code"));
        };
        if grant.client_id != client.id {
            self.ctx.audit.record(
                crate::audit::AuditEvent::failure("device_code_wrong_client").client(&client.id),
            );
            return Err(OAuthError::InvalidGrant(
                "the device code was issued to another client",
            ));
        }
        let now_ms = self.ctx.clock.now_millis();
        let now = Timestamp(now_ms.div_euclid(1000));
        match grant.status {
            DeviceStatus::Redeemed => {
                self.ctx.audit.record(
                    crate::audit::AuditEvent::failure("device_code_reuse").client(&client.id),
                );
                return Err(OAuthError::InvalidGrant("the device code was already used"));
            }
            DeviceStatus::Denied => return Err(DevicePollError::AccessDenied.into()),
            DeviceStatus::Pending | DeviceStatus::Approved => {}
        }
        if now >= grant.expires_at {
            return Err(DevicePollError::ExpiredToken.into());
        }
        // Pacing, in milliseconds (see `pace_poll`). A poll that loses the race with another
        // one counts as too fast.
        let (too_fast, interval, slow_down_gap_ms) = pace_poll(&grant, now_ms);
        let poll = DevicePoll {
            seen_polls: grant.polls,
            interval_secs: interval,
            at_ms: now_ms,
            slow_down_gap_ms,
        };
        let recorded = devices.record_device_poll(&hash, &poll).await?;
        if too_fast || !recorded {
            return Err(DevicePollError::SlowDown.into());
        }
        if grant.status == DeviceStatus::Pending {
            return Err(DevicePollError::AuthorizationPending.into());
        }
        let (Some(user_id), Some(decided_at)) = (&grant.user_id, grant.decided_at) else {
            return Err(OAuthError::Internal("approved grant without a user".into()));
        };
        // The user must still be able to receive tokens: active, not locked, and no password
        // change since the approval. Otherwise the grant is spent without tokens.
        let user = match self.ctx.stores.accounts.user_by_id(user_id).await? {
            Some(u) if u.status == UserStatus::Active => Some(u),
            _ => None,
        };
        let user = match user {
            Some(u) => {
                let count = self
                    .ctx
                    .stores
                    .throttle
                    .failures(&format!("account:{}", u.email))
                    .await?;
                let locked = account_locked(lock, count, now);
                (!locked && u.password_changed_at <= decided_at).then_some(u)
            }
            None => None,
        };
        let Some(user) = user else {
            devices
                .deny_device_grant(DeviceDenial {
                    hash: &hash,
                    user: None,
                    now,
                })
                .await?;
            self.ctx.audit.record(
                crate::audit::AuditEvent::failure("device_grant_refused")
                    .client(&client.id)
                    .user(user_id),
            );
            return Err(OAuthError::InvalidGrant("the user cannot receive tokens"));
        };
        if grant
            .resource
            .as_deref()
            .is_some_and(|r| !client.may_target(r))
        {
            return Err(OAuthError::InvalidTarget(
                "the client may no longer request tokens for this resource".into(),
            ));
        }
        let family_id = crate::secret::random_id();
        if !devices
            .redeem_device_grant(Redemption {
                hash: &hash,
                family_id: &family_id,
                now,
            })
            .await?
        {
            // Another poll won the race.
            return Err(OAuthError::InvalidGrant("the device code was already used"));
        }
        let granted = Granted {
            id: family_id,
            // Not tied to the approving browser session: signing out of the phone must not
            // sign the TV out. Password change, disabling and revocation end it.
            session_id: None,
            scope: grant.scope.clone(),
            resource: grant.resource.clone(),
            auth_time: grant.auth_time.unwrap_or(decided_at),
            auth_methods: grant.auth_methods.clone(),
        };
        self.open_family(client, &user, granted, None, "device_code", now, dpop)
            .await
    }
}
