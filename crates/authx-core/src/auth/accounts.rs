//! Accounts: creation and self-service sign-up, password change, consents withdrawn, and
//! disabling or enabling a user.

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::events::RevocationEvent;
use crate::password::{MAX_PASSWORD_BYTES, Verified};
use crate::session::ClientContext;
use crate::store::{AccountChange, StoreError};
use crate::user::{User, UserId, UserStatus, canonical_email};

use super::throttling::Counters;
use super::{AuthError, AuthService, Authenticated, SignUpOutcome, SignedIn};

impl AuthService {
    /// Creates an account (administration and sign-up).
    ///
    /// # Errors
    /// [`AuthError::InvalidEmail`], [`AuthError::WeakPassword`], [`AuthError::EmailTaken`].
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        is_admin: bool,
    ) -> Result<User, AuthError> {
        let email = canonical_email(email).map_err(|_| AuthError::InvalidEmail)?;
        self.policy.password.check(password, &email)?;
        let phc = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let user = User {
            id: UserId::generate(),
            email,
            password_hash: phc,
            status: UserStatus::Active,
            is_admin,
            created_at: now,
            password_changed_at: now,
            email_verified: false,
        };
        match self.stores.accounts.create_user(&user).await {
            Ok(()) => {
                self.audit.record(
                    AuditEvent::success("user_created")
                        .user(&user.id)
                        .with("admin", is_admin),
                );
                Ok(user)
            }
            Err(StoreError::Conflict) => Err(AuthError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Self-service sign-up. Without an email channel the new user is signed in at once and a
    /// taken address is [`AuthError::EmailTaken`]; with one, every address gets
    /// [`SignUpOutcome::CheckMail`] (see [`Verification`](super::Verification)).
    ///
    /// # Errors
    /// [`AuthError::SignUpDisabled`], [`AuthError::InvalidEmail`], [`AuthError::WeakPassword`],
    /// [`AuthError::PasswordTooLong`], and [`AuthError::EmailTaken`] without an email channel.
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
    ) -> Result<SignUpOutcome, AuthError> {
        if !self.policy.sign_up_enabled {
            return Err(AuthError::SignUpDisabled);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong);
        }
        match &self.verification {
            Some(_) => self.sign_up_by_mail(email, password).await,
            None => self.sign_up_at_once(email, password, ctx).await,
        }
    }

    /// Changes the password of the signed-in user: needs the current password, ends every
    /// session of the user and issues a fresh one for the caller.
    ///
    /// # Errors
    /// [`AuthError::WrongPassword`], [`AuthError::WeakPassword`], [`AuthError::Throttled`].
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
        ctx: &ClientContext,
    ) -> Result<SignedIn, AuthError> {
        let now = self.clock.now();
        let keys = Counters::new(&auth.user.email, ctx);
        let user = self
            .check_current_password(auth, current, &keys, now)
            .await?;
        self.policy.password.check(new, &user.email)?;
        let phc = self.hasher.hash(new).await?;
        // Every credential that stood on the old password ends, the caller's session too: it is
        // re-issued below with a new token.
        self.replace_password(&user, &phc, now).await?;
        self.clear_failures(&keys).await?;
        self.audit
            .record(AuditEvent::success("password_changed").user(&user.id));
        let user = User {
            password_hash: phc,
            password_changed_at: now,
            ..user
        };
        self.start_session(user, ctx, &auth.session.auth_method)
            .await
    }

    /// Stores the new password hash and ends every session, refresh-token family, code and
    /// device approval of the user (what a password change and a reset share).
    pub(super) async fn replace_password(
        &self,
        user: &User,
        phc: &str,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        self.stores
            .accounts
            .set_password_hash(&user.id, phc, Some(now))
            .await?;
        let ended = self.end_user_sessions(&user.id, None).await?;
        self.emit(RevocationEvent::UserSessionsEnded {
            user_id: user.id.clone(),
            kept: None,
            ended,
        })
        .await
    }

    /// The stored account of the signed-in user, once `current` proved to be its password;
    /// throttled like a sign-in, and a wrong one counts as a failure.
    async fn check_current_password(
        &self,
        auth: &Authenticated,
        current: &str,
        keys: &Counters,
        now: Timestamp,
    ) -> Result<User, AuthError> {
        if let Err(e) = self.check_throttle(keys, now).await {
            self.audit
                .record(AuditEvent::failure("password_change_throttled").user(&auth.user.id));
            return Err(e);
        }
        let user = self
            .stores
            .accounts
            .user_by_id(&auth.user.id)
            .await?
            .ok_or(AuthError::NotFound)?;
        if current.len() > MAX_PASSWORD_BYTES
            || self.hasher.verify(&user.password_hash, current).await? == Verified::Mismatch
        {
            self.record_failure(keys, now, Some(&user)).await?;
            self.audit.record(
                AuditEvent::failure("password_change_failed")
                    .user(&user.id)
                    .with("reason", "wrong_current_password"),
            );
            return Err(AuthError::WrongPassword);
        }
        Ok(user)
    }

    /// Withdraws the user's remembered consent for a client (the application asks again);
    /// returns whether there was one.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn withdraw_consent(
        &self,
        user: &UserId,
        client_id: &str,
    ) -> Result<bool, AuthError> {
        let Some(grants) = &self.grants else {
            return Ok(false);
        };
        let removed = grants.delete_consent(user, client_id).await?;
        if removed {
            self.audit.record(
                AuditEvent::success("consent_revoked")
                    .user(user)
                    .client(client_id),
            );
        }
        Ok(removed)
    }

    /// Disables a user and ends everything of theirs.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such user, [`AuthError::LastAdministrator`]
    /// for the last active administrator.
    pub async fn disable_user(&self, id: &UserId) -> Result<(), AuthError> {
        changed(
            self.stores
                .accounts
                .set_status(id, UserStatus::Disabled)
                .await?,
        )?;
        self.end_user_sessions(id, None).await?;
        self.emit(RevocationEvent::UserDisabled {
            user_id: id.clone(),
        })
        .await?;
        self.audit
            .record(AuditEvent::success("user_disabled").user(id));
        Ok(())
    }

    /// Re-enables a disabled user.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such user.
    pub async fn enable_user(&self, id: &UserId) -> Result<(), AuthError> {
        changed(
            self.stores
                .accounts
                .set_status(id, UserStatus::Active)
                .await?,
        )?;
        self.audit
            .record(AuditEvent::success("user_enabled").user(id));
        Ok(())
    }

    /// Makes a user an administrator, or no longer one; the change holds from their next
    /// request (every request reads the account).
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such user, [`AuthError::LastAdministrator`]
    /// when `admin` is false for the last active administrator.
    pub async fn set_admin(&self, id: &UserId, admin: bool) -> Result<(), AuthError> {
        changed(self.stores.accounts.set_admin(id, admin).await?)?;
        // Every instance reads the account afresh at the user's next request.
        self.emit(RevocationEvent::UserChanged {
            user_id: id.clone(),
        })
        .await?;
        self.audit.record(
            AuditEvent::success(if admin {
                "admin_granted"
            } else {
                "admin_withdrawn"
            })
            .user(id),
        );
        Ok(())
    }
}

/// A guarded account change as a result.
fn changed(outcome: AccountChange) -> Result<(), AuthError> {
    match outcome {
        AccountChange::Done => Ok(()),
        AccountChange::NotFound => Err(AuthError::NotFound),
        AccountChange::LastAdministrator => Err(AuthError::LastAdministrator),
    }
}
