//! The device authorization grant's first half (RFC 8628 §3.1-§3.3): starting an
//! authorization for a device, the user's entry of its code under a rate limit, and the
//! signed-in user's decision on it. The device's polls are a token grant (`oauth::token`).
//!
//! # Security
//! User-code lookups are rate-limited per session, per account and per network (an IPv4
//! address, an IPv6 /64 and, at a higher limit, its /48), counted on every miss and checked
//! before every lookup (SECURITY.md #57): the sixth miss in the window is refused. A global
//! backstop counts every miss too, but past it entry is slowed down, not refused: a backstop
//! that refuses would let one attacker with enough networks stop device sign-in for everyone.

use super::OAuthError;
use super::authorize::SignedIn;
use super::client::{Client, GrantType};
use super::clients::Clients;
use super::device::{
    DEVICE_CODE_TTL_SECS, DEVICE_POLL_INTERVAL_SECS, DeviceApproval, DeviceAuthorization,
    DeviceCode, DeviceDenial, DeviceGrant, DeviceStatus, ENTRY_BACKSTOP_DELAY, ENTRY_MISSES_GLOBAL,
    ENTRY_MISSES_PER_48, ENTRY_MISSES_PER_ACCOUNT, ENTRY_MISSES_PER_IP, ENTRY_MISSES_PER_SESSION,
    ENTRY_WINDOW_SECS, PendingDevice, UserCode, UserCodeEntry,
};
use super::scope::Scopes;
use super::service::OAuthService;
use crate::audit::AuditEvent;
use crate::ratelimit::network_key;
use crate::session::SessionId;
use crate::user::{UserId, UserStatus};

/// The global backstop's counter.
const GLOBAL_KEY: &str = "device_entry:global";

/// The refusing throttle keys of a user-code entry, with their limits: per session, per
/// account, per network (address or /64, and /48).
fn entry_keys(user: &UserId, session: &SessionId, ip: Option<&str>) -> Vec<(String, u32)> {
    let mut keys = vec![
        (
            format!("device_entry:session:{}", session.0),
            ENTRY_MISSES_PER_SESSION,
        ),
        (
            format!("device_entry:user:{}", user.0),
            ENTRY_MISSES_PER_ACCOUNT,
        ),
    ];
    if let Some(ip) = ip {
        let net = network_key(Some(ip), 64);
        keys.push((format!("device_entry:ip:{net}"), ENTRY_MISSES_PER_IP));
        if ip.contains(':') {
            let site = network_key(Some(ip), 48);
            keys.push((format!("device_entry:ip:{site}"), ENTRY_MISSES_PER_48));
        }
    }
    keys
}

impl OAuthService {
    /// Looks up the user code a signed-in person typed, under the rate limit: refused while a
    /// limit of the session, the account or the network `ip` is exhausted, slowed down by
    /// [`ENTRY_BACKSTOP_DELAY`] while the global backstop is; a miss counts against each.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn enter_user_code(
        &self,
        user: &UserId,
        session: &SessionId,
        ip: Option<&str>,
        input: &str,
    ) -> Result<UserCodeEntry, OAuthError> {
        let throttle = &self.stores().throttle;
        let now = self.clock().now();
        let within = |count: Option<crate::store::FailureCount>, limit: u32| {
            count
                .filter(|c| c.failures >= limit)
                .map(|c| now.since(c.last_failure_at))
                .filter(|elapsed| *elapsed < ENTRY_WINDOW_SECS)
        };
        if within(throttle.failures(GLOBAL_KEY).await?, ENTRY_MISSES_GLOBAL).is_some() {
            self.audit()
                .record(AuditEvent::failure("device_code_backstop_delay"));
            tokio::time::sleep(ENTRY_BACKSTOP_DELAY).await;
        }
        let keys = entry_keys(user, session, ip);
        let mut wait = None;
        for (key, limit) in &keys {
            if let Some(elapsed) = within(throttle.failures(key).await?, *limit) {
                wait = wait.max(Some(ENTRY_WINDOW_SECS - elapsed));
            }
        }
        if let Some(retry_after_secs) = wait {
            self.audit()
                .record(AuditEvent::failure("device_code_throttled"));
            return Ok(UserCodeEntry::Throttled { retry_after_secs });
        }
        if let Some(p) = self.pending_device(input).await? {
            return Ok(UserCodeEntry::Found(Box::new(p)));
        }
        for key in keys.iter().map(|(k, _)| k.as_str()).chain([GLOBAL_KEY]) {
            throttle.record_failure(key, now, ENTRY_WINDOW_SECS).await?;
        }
        self.audit().record(AuditEvent::failure("device_code_miss"));
        Ok(UserCodeEntry::Miss)
    }

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
        Clients::grant_scope(client, Some(&requested.to_param()), None)?;
        let (_, res) = self
            .ctx
            .clients
            .audience(client, resource, &requested)
            .await?;
        let granted = Clients::grant_scope(client, Some(&requested.to_param()), res.as_ref())?;
        let now = self.clock().now();
        // A user-code collision with a live grant is possible but rare: try a few fresh codes.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let device_code = DeviceCode::generate();
            let user_code = UserCode::generate();
            let grant = DeviceGrant {
                scope: granted.to_param(),
                resource: res.as_ref().map(|r| r.id.clone()),
                ..DeviceGrant::pending(
                    device_code.hash(),
                    user_code.as_str().to_owned(),
                    client.id.clone(),
                    now,
                    now.plus(DEVICE_CODE_TTL_SECS),
                )
            };
            match self.stores().devices.put_device_grant(&grant).await {
                Ok(()) => {
                    let verification_uri = self.device_verification_uri();
                    let verification_uri_complete =
                        format!("{verification_uri}?user_code={}", user_code.display());
                    self.audit()
                        .record(AuditEvent::success("device_authorization").client(&client.id));
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

    /// Records the decision of the signed-in user `who` on a pending request. Returns whether
    /// the request was still pending (false: expired or decided meanwhile).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn decide_device(
        &self,
        pending: &PendingDevice,
        who: SignedIn<'_>,
        approve: bool,
    ) -> Result<bool, OAuthError> {
        let (user, session) = (who.user, who.session);
        let now = self.clock().now();
        let hash = &pending.grant.device_code_hash;
        let done = if approve {
            self.stores()
                .devices
                .approve_device_grant(DeviceApproval {
                    hash,
                    user,
                    session,
                    auth_time: who.auth_time,
                    auth_methods: who.auth_methods,
                    now,
                })
                .await?
        } else {
            self.stores()
                .devices
                .deny_device_grant(DeviceDenial {
                    hash,
                    user: Some(user),
                    now,
                })
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
            if !active || !self.ctx.session_is_live(user, session, now).await? {
                self.stores()
                    .devices
                    .deny_device_grant(DeviceDenial {
                        hash,
                        user: None,
                        now,
                    })
                    .await?;
                return Ok(false);
            }
        }
        if done {
            self.audit().record(
                AuditEvent::success(if approve {
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
