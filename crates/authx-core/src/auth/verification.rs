//! Email verification, and the sign-up that reveals nothing, both of which need a way to mail.
//!
//! With a [`Verification`] configured (the deployment has an `[email]` section):
//! - sign-up answers [`SignUpOutcome::CheckMail`] whether or not the address has an account: a
//!   new account is created unverified and mailed a verification link; the owner of an
//!   existing account is mailed a notice instead ([`Message::SignUpAttempt`]). Nobody is signed
//!   in by a sign-up, so the answer cannot differ between the two cases.
//! - a verification link carries a single-use [`LinkPurpose::VerifyEmail`] token valid 24
//!   hours; [`AuthService::verify_email`] consumes it and marks the address verified.
//! - with `require_verified_email`, a sign-in of an unverified account owes
//!   [`super::Step::VerifyEmail`]: it ends with [`AuthError::EmailNotVerified`] and a fresh
//!   link is mailed (accounts from before verification existed get theirs this way).
//!
//! # Security
//! - Sign-up hashes the password (Argon2id) and makes a token on both paths, so a taken address
//!   costs the same as a new one; the answer is the same value.
//! - [`AuthService::request_verification`] returns `Ok(())` for every address, known or not.
//! - Mails per address are limited (the same allowance as reset mails, counted apart), whoever
//!   asks, so nobody can flood an inbox through these forms; the answer does not change.
//! - Only the token's hash is stored; [`AuthService::verify_email`] takes the token in one
//!   atomic step (a second use fails), refuses a token of any other purpose (a reset link is
//!   not a verification link, and the other way round), and signs nobody in.

use std::sync::Arc;

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::links::{LinkPurpose, LinkRecord, LinkToken, LinkTokenStore};
use crate::mail::{Mailer, Message};
use crate::session::ClientContext;
use crate::store::StoreError;
use crate::user::{User, UserId, UserStatus, canonical_email};

use super::{AddressLimit, AuthError, AuthService, SignedIn};

/// What verification and the quiet sign-up need: link tokens, a way to mail them, and the
/// deployment's rules.
#[derive(Clone)]
pub struct Verification {
    /// Link tokens.
    pub links: Arc<dyn LinkTokenStore>,
    /// Where mails go.
    pub mailer: Arc<dyn Mailer>,
    /// How many verification mails and sign-up notices one address may get, whoever asks
    /// (`None`: no limit).
    pub per_address: Option<AddressLimit>,
    /// Whether an unverified account may not finish signing in (`require_verified_email`).
    pub require_verified_email: bool,
}

/// How a sign-up ended.
#[derive(Debug)]
pub enum SignUpOutcome {
    /// Without an email channel: the account was created and signed in.
    SignedIn(Box<SignedIn>),
    /// With an email channel: whatever the address, a mail went out (or was due) and nobody
    /// was signed in. The caller answers "check your mail", the same for every address.
    CheckMail,
}

/// The rate-limit class of the mails of this module, per address.
const ADDRESS_CLASS: &str = "verify_email_address";

/// A sign-up checked and hashed by [`AuthService::prepare_sign_up`], not yet stored. `Debug`
/// prints nothing of it.
pub struct PreparedSignUp(User);

impl std::fmt::Debug for PreparedSignUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedSignUp")
    }
}

impl AuthService {
    /// Turns on email verification and the sign-up that reveals nothing.
    #[must_use]
    pub fn with_verification(mut self, verification: Verification) -> Self {
        self.verification = Some(verification);
        self
    }

    /// Whether accounts verify their address by mail (an email channel is configured).
    #[must_use]
    pub fn verifies_email(&self) -> bool {
        self.verification.is_some()
    }

    /// Whether an unverified account may not finish signing in.
    #[must_use]
    pub fn requires_verified_email(&self) -> bool {
        self.verification
            .as_ref()
            .is_some_and(|v| v.require_verified_email)
    }

    fn verification(&self) -> Result<&Verification, AuthError> {
        self.verification
            .as_ref()
            .ok_or_else(|| AuthError::Internal("email verification is not configured".into()))
    }

    /// Sign-up with an email channel: the same outcome whether or not the address is taken
    /// (see the module documentation).
    pub(super) async fn sign_up_by_mail(
        &self,
        email: &str,
        password: &str,
    ) -> Result<SignUpOutcome, AuthError> {
        let prepared = self.prepare_sign_up(email, password).await?;
        self.finish_sign_up(prepared).await?;
        Ok(SignUpOutcome::CheckMail)
    }

    /// The part of a sign-up by mail that can fail for the caller to see: the address and
    /// password checked, the password hashed. The same work whether or not the address is
    /// taken; nothing is stored yet ([`AuthService::finish_sign_up`] does the rest, and may run
    /// after the answer, so that the storage and mail work, which differs between a new and a
    /// taken address, is not in its timing).
    ///
    /// # Errors
    /// [`AuthError::SignUpDisabled`], [`AuthError::PasswordTooLong`],
    /// [`AuthError::InvalidEmail`], [`AuthError::WeakPassword`], [`AuthError::Busy`].
    pub async fn prepare_sign_up(
        &self,
        email: &str,
        password: &str,
    ) -> Result<PreparedSignUp, AuthError> {
        if !self.policy.sign_up_enabled {
            return Err(AuthError::SignUpDisabled);
        }
        if password.len() > crate::password::MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong);
        }
        let email = canonical_email(email).map_err(|_| AuthError::InvalidEmail)?;
        self.policy.password.check(password, &email)?;
        // Hashed whether or not the address is taken: both answers take the same time.
        let phc = self.hasher.hash(password).await?;
        let now = self.clock.now();
        Ok(PreparedSignUp(User {
            id: UserId::generate(),
            email,
            password_hash: phc,
            status: UserStatus::Active,
            is_admin: false,
            created_at: now,
            password_changed_at: now,
            email_verified: false,
        }))
    }

    /// Stores a prepared sign-up and mails its address: a verification link for a new
    /// account, a notice to the owner of a taken address. Past the allowance of mails per
    /// address nothing is mailed.
    ///
    /// # Errors
    /// Storage and mail failures.
    pub async fn finish_sign_up(&self, prepared: PreparedSignUp) -> Result<(), AuthError> {
        let v = self.verification()?;
        let PreparedSignUp(user) = prepared;
        let created = match self.stores.accounts.create_user(&user).await {
            Ok(()) => true,
            Err(StoreError::Conflict) => false,
            Err(e) => return Err(e.into()),
        };
        // Counted on both paths, so each does the same work; past the allowance nothing is
        // mailed and the answer stays the same.
        if !self.mail_allowed(v, &user.email).await? {
            return Ok(());
        }
        if created {
            self.audit.record(
                AuditEvent::success("user_created")
                    .user(&user.id)
                    .with("admin", false),
            );
            self.mail_link(v, &user, user.created_at, "sign_up").await?;
        } else {
            self.notify_sign_up_attempt(v, &user.email).await?;
        }
        Ok(())
    }

    /// Someone signed up with the address of an existing account: its owner gets a notice,
    /// nobody else learns anything.
    async fn notify_sign_up_attempt(&self, v: &Verification, email: &str) -> Result<(), AuthError> {
        let owner = self
            .stores
            .accounts
            .user_by_email(email)
            .await?
            .filter(|u| u.status == UserStatus::Active);
        let Some(owner) = owner else {
            self.audit
                .record(AuditEvent::failure("sign_up_existing_address").with("reason", "disabled"));
            return Ok(());
        };
        self.send(v, &owner, Message::SignUpAttempt).await?;
        self.audit
            .record(AuditEvent::success("sign_up_existing_address").user(&owner.id));
        Ok(())
    }

    /// Asks for a (new) verification link for `email`. The same `Ok(())` whatever the
    /// address: an active, unverified account gets a link valid 24 hours; anything else (an
    /// unknown address, a verified or disabled account, an address past its allowance of
    /// mails) gets nothing.
    ///
    /// # Errors
    /// Storage and mail failures only.
    pub async fn request_verification(&self, email: &str) -> Result<(), AuthError> {
        let v = self.verification()?;
        let now = self.clock.now();
        let user = match canonical_email(email) {
            Ok(e) if !self.mail_allowed(v, &e).await? => return Ok(()),
            Ok(e) => self.stores.accounts.user_by_email(&e).await?,
            Err(_) => None,
        };
        let Some(user) = user.filter(|u| u.status == UserStatus::Active && !u.email_verified)
        else {
            self.audit.record(
                AuditEvent::failure("email_verification_requested")
                    .with("reason", "no_unverified_account"),
            );
            return Ok(());
        };
        self.mail_link(v, &user, now, "requested").await
    }

    /// The step a sign-in owes when the deployment requires a verified address: a fresh link
    /// goes to the account (within the allowance per address); the sign-in is refused.
    pub(super) async fn owe_verified_email(&self, user: &User) -> Result<AuthError, AuthError> {
        let v = self.verification()?;
        let allowed = self.mail_allowed(v, &user.email).await?;
        if allowed {
            self.mail_link(v, user, self.clock.now(), "sign_in").await?;
        }
        self.audit.record(
            AuditEvent::failure("sign_in_failed")
                .user(&user.id)
                .with("reason", "email_not_verified")
                .with("link_sent", allowed),
        );
        Ok(AuthError::EmailNotVerified)
    }

    /// Marks the address of the link's account verified, consuming the token of a
    /// verification link; every other verification link of the account stops working. Does
    /// not sign in.
    ///
    /// # Errors
    /// [`AuthError::InvalidLink`] for an unknown, used, expired or foreign token, or one of
    /// another purpose (nothing changes).
    pub async fn verify_email(&self, token: &str) -> Result<User, AuthError> {
        let v = self.verification()?;
        let now = self.clock.now();
        let refused = |reason: &str| {
            self.audit
                .record(AuditEvent::failure("email_verified").with("reason", reason));
            AuthError::InvalidLink
        };
        let Some(token) = LinkToken::parse(token) else {
            return Err(refused("malformed"));
        };
        let Some(record) = v
            .links
            .take_link_token(&token.hash(), LinkPurpose::VerifyEmail, now)
            .await?
        else {
            return Err(refused("unknown_used_or_expired"));
        };
        let Some(user) = self
            .stores
            .accounts
            .user_by_id(&record.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
        else {
            return Err(refused("account_disabled"));
        };
        self.stores
            .accounts
            .set_email_verified(&user.id, true)
            .await?;
        // Sessions cached with the account as it was would show it unverified.
        self.cache.forget_user(&user.id);
        v.links
            .delete_user_link_tokens(&user.id, LinkPurpose::VerifyEmail)
            .await?;
        self.audit
            .record(AuditEvent::success("email_verified").user(&user.id));
        Ok(User {
            email_verified: true,
            ..user
        })
    }

    /// A federated sign-in's upstream vouched for an address: when it verified `email` and
    /// that is the account's own address, the account's address becomes verified (the
    /// upstream proved control of it). Anything else leaves the account as it is.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn upstream_verified_email(
        &self,
        user: User,
        email: Option<&str>,
        upstream_verified: bool,
    ) -> Result<User, AuthError> {
        if user.email_verified || !upstream_verified || email != Some(user.email.as_str()) {
            return Ok(user);
        }
        self.stores
            .accounts
            .set_email_verified(&user.id, true)
            .await?;
        self.cache.forget_user(&user.id);
        self.audit.record(
            AuditEvent::success("email_verified")
                .user(&user.id)
                .with("via", "federation"),
        );
        Ok(User {
            email_verified: true,
            ..user
        })
    }

    /// Stores a fresh verification token of `user` and mails its link; `why` goes in the
    /// audit event.
    async fn mail_link(
        &self,
        v: &Verification,
        user: &User,
        now: Timestamp,
        why: &'static str,
    ) -> Result<(), AuthError> {
        let (token, record) = LinkRecord::issue(LinkPurpose::VerifyEmail, &user.id, now);
        v.links.insert_link_token(&record).await?;
        let message = Message::VerifyEmail {
            token: token.expose().to_owned(),
            valid_hours: LinkPurpose::VerifyEmail.lifetime_secs() / 3600,
        };
        self.send(v, user, message).await?;
        self.audit.record(
            AuditEvent::success("email_verification_sent")
                .user(&user.id)
                .with("trigger", why),
        );
        Ok(())
    }

    async fn send(&self, v: &Verification, user: &User, message: Message) -> Result<(), AuthError> {
        v.mailer
            .send(&user.email, message)
            .await
            .map(|_| ())
            .map_err(|e| AuthError::Internal(format!("cannot queue the mail: {e}")))
    }

    /// Whether `email` may get another mail of this module now; counted whether or not it has
    /// an account, under its keyed hash ([`AddressLimit::key`]).
    async fn mail_allowed(&self, v: &Verification, email: &str) -> Result<bool, AuthError> {
        let Some(l) = &v.per_address else {
            return Ok(true);
        };
        let refused = l.refused(ADDRESS_CLASS, email).await?;
        if refused.is_some() {
            self.audit.record(
                AuditEvent::failure("email_verification_requested").with("reason", "rate_limited"),
            );
        }
        Ok(refused.is_none())
    }

    /// The sign-up of a deployment without an email channel: the account is created (a taken
    /// address is [`AuthError::EmailTaken`]) and signed in at once.
    pub(super) async fn sign_up_at_once(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
    ) -> Result<SignUpOutcome, AuthError> {
        let user = self.create_user(email, password, false).await?;
        let signed = self.start_session(user, ctx, "password").await?;
        Ok(SignUpOutcome::SignedIn(Box::new(signed)))
    }
}

#[cfg(test)]
mod tests;
