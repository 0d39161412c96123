//! Account recovery: a password reset through a single-use link sent by mail.
//!
//! # Security
//! - [`AuthService::request_reset`] has one outcome whatever the address: it returns `Ok` for an
//!   unknown address, a disabled account, an account without a password and a real one alike,
//!   and does the same work before its storage calls (a token is made every time). What the
//!   owner of a real address gets is a mail; nobody else learns anything.
//! - [`AuthService::reset_password`] consumes the token before anything else, so a link works
//!   once; a refused new password puts the same token back, unchanged, so a typo does not burn
//!   the link. The reset ends every session, refresh-token family, code and device approval of
//!   the user exactly as a password change does, removes the user's other reset links, and does
//!   not sign anyone in. It clears the account's sign-in failures (a lock-out that guesses at
//!   the old password caused ends with it); the failures counted per client address stay.

use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::federation::has_password;
use crate::links::{LinkPurpose, LinkRecord, LinkToken, LinkTokenStore};
use crate::mail::{Mailer, Message};
use crate::password::MAX_PASSWORD_BYTES;
use crate::ratelimit::{RateLimit, RateLimiter};
use crate::secret::{b64url, hmac_bytes};
use crate::user::{User, UserId, UserStatus, canonical_email};

use super::throttling::Counters;
use super::{AuthError, AuthService};

/// What recovery needs besides the account stores: its tokens and a way to mail them.
#[derive(Clone)]
pub struct Recovery {
    /// Link tokens.
    pub links: Arc<dyn LinkTokenStore>,
    /// Where mails go.
    pub mailer: Arc<dyn Mailer>,
    /// How many reset mails one address may get, whoever asks (`None`: no limit).
    pub per_address: Option<AddressLimit>,
}

/// The allowance of reset mails per email address.
#[derive(Clone)]
pub struct AddressLimit {
    /// The counter.
    pub limiter: Arc<RateLimiter>,
    /// The allowance.
    pub limit: RateLimit,
    /// A deployment secret that keys the counters: each is named by the HMAC-SHA-256 of the
    /// address under it, so the counters (in the store or Redis with several instances) hold no
    /// address, and cannot be matched against a list of addresses without the secret.
    pub key: [u8; 32],
}

impl AddressLimit {
    /// Counts a mail of `class` to `email`; `Some(seconds)` to wait when past the allowance.
    ///
    /// # Errors
    /// Storage failures of the counter.
    pub(super) async fn refused(&self, class: &str, email: &str) -> Result<Option<i64>, AuthError> {
        let name = b64url(&hmac_bytes(&self.key, email.as_bytes()));
        Ok(self.limiter.check(class, &name, self.limit).await?)
    }
}

impl AuthService {
    /// Turns on password reset by mail.
    #[must_use]
    pub fn with_recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// Whether password reset by mail is on.
    #[must_use]
    pub fn resets_passwords(&self) -> bool {
        self.recovery.is_some()
    }

    fn recovery(&self) -> Result<&Recovery, AuthError> {
        self.recovery
            .as_ref()
            .ok_or_else(|| AuthError::Internal("password reset is not configured".into()))
    }

    /// Asks for a password reset for `email`. The same `Ok(())` whatever the address: the
    /// owner of an account with a password gets a link valid 30 minutes; an account that signs
    /// in only through another provider gets a mail saying it has no password; an unknown
    /// address or a disabled account gets nothing. Past the allowance of mails per address,
    /// the address gets nothing more until the window ends (the answer is the same).
    ///
    /// # Errors
    /// Storage and mail failures only.
    pub async fn request_reset(&self, email: &str) -> Result<(), AuthError> {
        let recovery = self.recovery()?;
        let now = self.clock.now();
        // Made for every request, so an unknown address costs the same before the lookups.
        let (token, record) =
            LinkRecord::issue(LinkPurpose::PasswordReset, &UserId(String::new()), now);
        let user = match canonical_email(email) {
            Ok(e) if !self.address_allowed(recovery, &e).await? => return Ok(()),
            Ok(e) => self.stores.accounts.user_by_email(&e).await?,
            Err(_) => None,
        };
        let Some(user) = user.filter(|u| u.status == UserStatus::Active) else {
            self.audit.record(
                AuditEvent::failure("password_reset_requested").with("reason", "no_account"),
            );
            return Ok(());
        };
        let message = if has_password(&user) {
            let record = LinkRecord {
                user_id: user.id.clone(),
                ..record
            };
            recovery.links.insert_link_token(&record).await?;
            Message::PasswordReset {
                token: token.expose().to_owned(),
                valid_minutes: LinkPurpose::PasswordReset.lifetime_secs() / 60,
            }
        } else {
            Message::PasswordResetUnavailable
        };
        let kind = message.kind();
        self.mail(recovery, &user, message).await?;
        self.audit.record(
            AuditEvent::success("password_reset_requested")
                .user(&user.id)
                .with("mail", kind),
        );
        Ok(())
    }

    /// Whether `email` may get another reset mail now; counted whether or not it has an
    /// account, under its keyed hash ([`AddressLimit::key`]).
    async fn address_allowed(&self, recovery: &Recovery, email: &str) -> Result<bool, AuthError> {
        let Some(l) = &recovery.per_address else {
            return Ok(true);
        };
        let refused = l.refused("password_reset_address", email).await?;
        if refused.is_some() {
            self.audit.record(
                AuditEvent::failure("password_reset_requested").with("reason", "rate_limited"),
            );
        }
        Ok(refused.is_none())
    }

    async fn mail(
        &self,
        recovery: &Recovery,
        user: &User,
        message: Message,
    ) -> Result<(), AuthError> {
        recovery
            .mailer
            .send(&user.email, message)
            .await
            .map(|_| ())
            .map_err(|e| AuthError::Internal(format!("cannot queue the mail: {e}")))
    }

    /// Sets a new password with the token of a reset link: consumes the token, applies the
    /// sign-up password policy, ends everything that stood on the old password, and mails a
    /// notice. Does not sign in.
    ///
    /// # Errors
    /// [`AuthError::InvalidLink`] for an unknown, used, expired or foreign token (nothing
    /// changes); [`AuthError::WeakPassword`] and [`AuthError::PasswordTooLong`] (the link stays
    /// usable).
    pub async fn reset_password(&self, token: &str, new: &str) -> Result<User, AuthError> {
        let recovery = self.recovery()?;
        let now = self.clock.now();
        let token = LinkToken::parse(token).ok_or(AuthError::InvalidLink)?;
        let record = recovery
            .links
            .take_link_token(&token.hash(), LinkPurpose::PasswordReset, now)
            .await?
            .ok_or(AuthError::InvalidLink)?;
        let user = self
            .stores
            .accounts
            .user_by_id(&record.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(AuthError::InvalidLink)?;
        let phc = match self.new_password_hash(&user, new).await {
            Ok(phc) => phc,
            Err(e) => {
                // The link stays usable for a second try.
                recovery.links.insert_link_token(&record).await?;
                return Err(e);
            }
        };
        self.replace_password(&user, &phc, now).await?;
        // Whoever guessed at the old password locked the account out; the owner, who has just
        // proved control of the address, signs in with the new one at once.
        self.clear_failures(&Counters::account_only(&user.email))
            .await?;
        recovery
            .links
            .delete_user_link_tokens(&user.id, LinkPurpose::PasswordReset)
            .await?;
        self.audit
            .record(AuditEvent::success("password_reset").user(&user.id));
        self.mail(recovery, &user, Message::PasswordChanged).await?;
        Ok(User {
            password_hash: phc,
            password_changed_at: now,
            ..user
        })
    }

    /// `new` checked against the sign-up policy for `user`, and hashed.
    async fn new_password_hash(&self, user: &User, new: &str) -> Result<String, AuthError> {
        if new.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong);
        }
        self.policy.password.check(new, &user.email)?;
        Ok(self.hasher.hash(new).await?)
    }

    /// Deletes expired link tokens; returns how many.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_link_tokens(&self) -> Result<u64, AuthError> {
        match &self.recovery {
            Some(r) => Ok(r.links.purge_link_tokens(self.clock.now()).await?),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::Timestamp;
    use crate::clock::ManualClock;
    use crate::ratelimit::RateCounter;
    use crate::secret::TokenHash;
    use crate::store::StoreResult;

    /// Keeps the name of every counter hit.
    #[derive(Default)]
    struct Names(Mutex<Vec<String>>);

    #[async_trait]
    impl RateCounter for Names {
        async fn hit(&self, key: &str, _start: Timestamp, _now: Timestamp) -> StoreResult<u32> {
            let mut names = self.0.lock().unwrap();
            names.push(key.to_owned());
            Ok(u32::try_from(names.len()).unwrap_or(u32::MAX))
        }
    }

    fn limit(counter: &Arc<Names>, key: [u8; 32]) -> AddressLimit {
        let counter: Arc<dyn RateCounter> = counter.clone();
        AddressLimit {
            limiter: Arc::new(RateLimiter::new(
                counter,
                Arc::new(ManualClock::new(Timestamp(1_700_000_000))),
            )),
            limit: RateLimit {
                max: 100,
                window_secs: 3600,
            },
            key,
        }
    }

    #[tokio::test]
    async fn address_counters_are_named_by_a_keyed_hash_only() {
        let email = "ada@example.com";
        let names = Arc::new(Names::default());
        limit(&names, [1; 32]).refused("c", email).await.unwrap();
        limit(&names, [1; 32]).refused("c", email).await.unwrap();
        limit(&names, [2; 32]).refused("c", email).await.unwrap();
        let names = names.0.lock().unwrap().clone();
        assert_eq!(
            names[0], names[1],
            "one deployment counts an address under one name"
        );
        assert_ne!(names[0], names[2], "another key gives another name");
        let plain = TokenHash::of(email.as_bytes()).to_hex();
        for n in &names {
            assert!(!n.contains(email) && !n.contains(&plain), "{n}");
        }
    }
}
