//! Sign-in throttling: the failure counters of an account and of a client address, checked
//! before a password is verified and bumped after a wrong one.

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::user::User;

use super::{AuthError, AuthService};

impl AuthService {
    pub(super) async fn check_throttle(
        &self,
        account_key: &str,
        ip_key: Option<&str>,
        now: Timestamp,
    ) -> Result<(), AuthError> {
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

    pub(super) async fn record_failure(
        &self,
        account_key: &str,
        ip_key: Option<&str>,
        now: Timestamp,
        user: Option<&User>,
    ) -> Result<(), AuthError> {
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
}
