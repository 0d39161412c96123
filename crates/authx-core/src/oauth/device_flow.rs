//! The device authorization grant's first half (RFC 8628 §3.1-§3.3): starting an
//! authorization for a device, and the signed-in user's decision on it. The device's polls are
//! a token grant (`oauth::token`).

use super::OAuthError;
use super::client::{Client, GrantType};
use super::device::{
    DEVICE_CODE_TTL_SECS, DEVICE_POLL_INTERVAL_SECS, DeviceAuthorization, DeviceCode, DeviceGrant,
    DeviceStatus, PendingDevice, UserCode,
};
use super::scope::Scopes;
use super::service::OAuthService;
use crate::Timestamp;
use crate::session::SessionId;
use crate::user::{UserId, UserStatus};

impl OAuthService {
    /// The verification URI of the device flow.
    #[must_use]
    pub fn device_verification_uri(&self) -> String {
        format!("{}/device", self.config().issuer)
    }

    /// Starts a device authorization (RFC 8628 §3.1, §3.2) for an authenticated client.
    ///
    /// # Errors
    /// `unauthorized_client` when the client may not use the grant; `invalid_scope`,
    /// `invalid_target`; storage failures.
    pub async fn device_authorization(
        &self,
        client: &Client,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        if !client.allows(GrantType::DeviceCode) {
            return Err(OAuthError::UnauthorizedClient);
        }
        let requested = match scope {
            Some(s) => Scopes::parse(s)
                .ok_or_else(|| OAuthError::InvalidScope("malformed scope".into()))?,
            None => Scopes::from_list(client.scopes.iter().map(String::as_str)),
        };
        Self::grant_scope(client, Some(&requested.to_param()), None)?;
        let (_, res) = self.audience(client, resource, &requested).await?;
        let granted = Self::grant_scope(client, Some(&requested.to_param()), res.as_ref())?;
        let now = self.clock().now();
        // A user-code collision with a live grant is possible but rare: try a few fresh codes.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let device_code = DeviceCode::generate();
            let user_code = UserCode::generate();
            let grant = DeviceGrant {
                device_code_hash: device_code.hash(),
                user_code: user_code.as_str().to_owned(),
                client_id: client.id.clone(),
                scope: granted.to_param(),
                resource: res.as_ref().map(|r| r.id.clone()),
                status: DeviceStatus::Pending,
                user_id: None,
                session_id: None,
                auth_time: None,
                decided_at: None,
                family_id: None,
                interval_secs: DEVICE_POLL_INTERVAL_SECS,
                polls: 0,
                last_poll_at: None,
                last_poll_ms: None,
                slow_down_gap_ms: None,
                created_at: now,
                expires_at: now.plus(DEVICE_CODE_TTL_SECS),
            };
            match self.stores().devices.put_device_grant(&grant).await {
                Ok(()) => {
                    let verification_uri = self.device_verification_uri();
                    let verification_uri_complete =
                        format!("{verification_uri}?user_code={}", user_code.display());
                    self.audit().record(
                        crate::audit::AuditEvent::success("device_authorization")
                            .client(&client.id),
                    );
                    return Ok(DeviceAuthorization {
                        device_code,
                        user_code,
                        verification_uri,
                        verification_uri_complete,
                        expires_in: DEVICE_CODE_TTL_SECS,
                        interval: DEVICE_POLL_INTERVAL_SECS,
                    });
                }
                Err(crate::StoreError::Conflict) if attempt < 4 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The pending, unexpired request behind what a person typed, with its client; `None`
    /// for malformed, unknown, expired or already decided codes.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn pending_device(&self, input: &str) -> Result<Option<PendingDevice>, OAuthError> {
        let Some(user_code) = UserCode::normalize(input) else {
            return Ok(None);
        };
        let Some(grant) = self
            .stores()
            .devices
            .device_grant_by_user_code(user_code.as_str())
            .await?
        else {
            return Ok(None);
        };
        if grant.status != DeviceStatus::Pending || self.clock().now() >= grant.expires_at {
            return Ok(None);
        }
        let Some(client) = self.stores().clients.client(&grant.client_id).await? else {
            return Ok(None);
        };
        Ok(Some(PendingDevice {
            grant,
            client,
            user_code,
        }))
    }

    /// Records the signed-in user's decision on a pending request. Returns whether the
    /// request was still pending (false: expired or decided meanwhile).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn decide_device(
        &self,
        pending: &PendingDevice,
        user: &UserId,
        session: &SessionId,
        auth_time: Timestamp,
        approve: bool,
    ) -> Result<bool, OAuthError> {
        let now = self.clock().now();
        let hash = &pending.grant.device_code_hash;
        let done = if approve {
            self.stores()
                .devices
                .approve_device_grant(hash, user, session, auth_time, now)
                .await?
        } else {
            self.stores()
                .devices
                .deny_device_grant(hash, Some(user), now)
                .await?
        };
        if done && approve {
            // A password change, a disable or a sign-out everywhere else that ran while this
            // approval was being written withdrew the user's approvals before this one existed:
            // an approval counts only if its session and user are still good afterwards.
            let active = matches!(
                self.stores().accounts.user_by_id(user).await?,
                Some(u) if u.status == UserStatus::Active
            );
            if !active || !self.session_is_live(user, session, now).await? {
                self.stores()
                    .devices
                    .deny_device_grant(hash, None, now)
                    .await?;
                return Ok(false);
            }
        }
        if done {
            self.audit().record(
                crate::audit::AuditEvent::success(if approve {
                    "device_approved"
                } else {
                    "device_denied"
                })
                .client(&pending.client.id)
                .user(user),
            );
        }
        Ok(done)
    }

    /// Deletes expired device grants.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_device_grants(&self) -> Result<u64, OAuthError> {
        Ok(self
            .stores()
            .devices
            .purge_device_grants(self.clock().now())
            .await?)
    }
}
