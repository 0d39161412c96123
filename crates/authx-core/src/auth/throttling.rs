//! Sign-in throttling: the failure counters of an account and of a client address, checked
//! before a password is verified and bumped after a wrong one.

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::session::ClientContext;
use crate::user::User;

use super::{AuthError, AuthService};

/// The failure counters a password attempt counts against: the account's and, when known,
/// the client address's.
pub(super) struct Counters {
    account: String,
    ip: Option<String>,
}

impl Counters {
    /// The counters of an attempt on the account with canonical address `email` from `ctx`.
    pub(super) fn new(email: &str, ctx: &ClientContext) -> Self {
        Self {
            account: format!("account:{email}"),
            ip: ctx.ip.as_deref().map(|ip| format!("ip:{ip}")),
        }
    }

    /// The account's counter alone, with no client address: what a password reset clears.
    pub(super) fn account_only(email: &str) -> Self {
        Self {
            account: format!("account:{email}"),
            ip: None,
        }
    }
}

impl AuthService {
    /// Refuses an attempt while either counter asks to wait.
    pub(super) async fn check_throttle(
        &self,
        keys: &Counters,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        let (account_key, ip_key) = (keys.account.as_str(), keys.ip.as_deref());
        let t = &self.policy.throttle;
        let account = self.stores.throttle.failures(account_key).await?;
        let mut wait = t.retry_after(account, t.account_free_failures, now);
        if let Some(ip_key) = ip_key {
            let ip = self.stores.throttle.failures(ip_key).await?;
            wait = wait.max(t.retry_after(ip, t.ip_free_failures, now));
        }
        match wait {
            Some(retry_after_secs) => Err(AuthError::Throttled { retry_after_secs }),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt; the account's counter reaching the lock is audited.
    pub(super) async fn record_failure(
        &self,
        keys: &Counters,
        now: Timestamp,
        user: Option<&User>,
    ) -> Result<(), AuthError> {
        let (account_key, ip_key) = (keys.account.as_str(), keys.ip.as_deref());
        let reset = self.policy.throttle.reset_after_secs;
        let count = self
            .stores
            .throttle
            .record_failure(account_key, now, reset)
            .await?;
        if count.failures == self.policy.throttle.lock_after {
            let mut event = AuditEvent::failure("account_locked")
                .with_count("failures", u64::from(count.failures))
                .with("lock_secs", self.policy.throttle.lock_secs);
            if let Some(u) = user {
                event = event.user(&u.id);
            }
            self.audit.record(event);
        }
        if let Some(ip_key) = ip_key {
            self.stores
                .throttle
                .record_failure(ip_key, now, reset)
                .await?;
        }
        Ok(())
    }

    /// Forgets the account's failures after a correct password (the address's stay).
    pub(super) async fn clear_failures(&self, keys: &Counters) -> Result<(), AuthError> {
        Ok(self.stores.throttle.clear_failures(&keys.account).await?)
    }
}
