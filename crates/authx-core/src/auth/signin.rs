//! Sign-in as steps: a first factor (a password, or an upstream identity provider) gives a
//! [`PendingSignIn`]; the steps it still owes are taken; then the session starts.

use crate::audit::AuditEvent;
use crate::password::{MAX_PASSWORD_BYTES, Verified};
use crate::secret::SessionToken;
use crate::session::{ClientContext, Session, SessionId};
use crate::user::{User, UserId, UserStatus, canonical_email};

use super::throttling::Counters;
use super::{AuthError, AuthMethod, AuthService, PendingSignIn, SignedIn, Step};

impl AuthService {
    /// Signs in with email and password: the password as first factor, then the steps the
    /// sign-in owes (a verified address, where required), then a fresh session.
    ///
    /// `previous` is any session token the client already presented; it is revoked, never reused.
    ///
    /// # Errors
    /// As [`AuthService::check_password`], and storage failures.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
    ) -> Result<SignedIn, AuthError> {
        let pending = self.check_password(email, password, ctx).await?;
        self.complete_sign_in(pending, ctx, previous).await
    }

    /// The first factor of a password sign-in: throttling, then the password.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for an unknown user, wrong password or disabled account
    /// alike; [`AuthError::Throttled`] after too many failures; [`AuthError::PasswordTooLong`].
    pub async fn check_password(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
    ) -> Result<PendingSignIn, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong);
        }
        let now = self.clock.now();
        // An address that cannot be canonicalized cannot belong to anyone: answer like an
        // unknown user, after the same work.
        let Ok(email) = canonical_email(email) else {
            self.hasher.verify_dummy().await?;
            self.audit.record(
                AuditEvent::failure("sign_in_failed")
                    .with("email", email)
                    .with("reason", "invalid_email"),
            );
            return Err(AuthError::InvalidCredentials);
        };
        let keys = Counters::new(&email, ctx);
        if let Err(e) = self.check_throttle(&keys, now).await {
            self.audit
                .record(AuditEvent::failure("sign_in_throttled").with("email", &email));
            return Err(e);
        }
        let user = self.stores.accounts.user_by_email(&email).await?;
        let verified = match &user {
            Some(u) => self.hasher.verify(&u.password_hash, password).await?,
            None => {
                self.hasher.verify_dummy().await?;
                Verified::Mismatch
            }
        };
        let user = match (user, verified) {
            (Some(u), Verified::Match { needs_rehash }) if u.status == UserStatus::Active => {
                if needs_rehash {
                    let phc = self.hasher.hash(password).await?;
                    self.stores
                        .accounts
                        .set_password_hash(&u.id, &phc, None)
                        .await?;
                }
                u
            }
            (user, verified) => {
                self.record_failure(&keys, now, user.as_ref()).await?;
                self.audit.record(refusal(&email, user.as_ref(), verified));
                return Err(AuthError::InvalidCredentials);
            }
        };
        // The failures are cleared when the session starts, not here: a correct password
        // whose sign-in then fails its second factor must not wipe the count of wrong codes.
        Ok(PendingSignIn::new(user, AuthMethod::Password, now))
    }

    /// Signs in a user who authenticated elsewhere (an upstream identity provider), with the
    /// same rules as a password sign-in: a disabled account is refused, whatever session came
    /// with the request is ended (session fixation), a fresh session is issued and the
    /// per-user cap applies. `return_to` is where the browser goes once a second factor,
    /// when one is asked, is proved.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for a missing or disabled account; storage failures.
    pub async fn sign_in_verified(
        &self,
        user: &UserId,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
        method: &str,
        return_to: Option<&str>,
    ) -> Result<SignedIn, AuthError> {
        let user = match self.stores.accounts.user_by_id(user).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => return Err(AuthError::InvalidCredentials),
        };
        // `method` may name several (`federated:corp+upstream_mfa`).
        let mut pending = PendingSignIn::resumed(user, method, self.clock.now());
        if let Some(to) = return_to {
            pending = pending.returning_to(to);
        }
        self.complete_sign_in(pending, ctx, previous).await
    }

    /// Ends a sign-in that owes no further step: whatever session came with the request is
    /// ended (session fixation) and a fresh one starts, recording the methods proved.
    ///
    /// # Errors
    /// [`AuthError::EmailNotVerified`] when the deployment requires a verified address and the
    /// user's is not (a link is mailed); [`AuthError::SecondFactorRequired`] when the user has
    /// a second factor not yet proved, or must enrol one; storage failures.
    pub async fn complete_sign_in(
        &self,
        pending: PendingSignIn,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
    ) -> Result<SignedIn, AuthError> {
        let pending = pending.requiring_verified_email(self.requires_verified_email());
        let pending = self.second_factor_state(pending).await?;
        if let Some(step) = pending.next_step() {
            return Err(match step {
                Step::VerifyEmail => self.owe_verified_email(pending.user()).await?,
                Step::SecondFactor => self.owe_second_factor(&pending, false).await?,
                Step::EnrolFactor => self.owe_second_factor(&pending, true).await?,
            });
        }
        self.clear_failures(&Counters::new(&pending.user().email, ctx))
            .await?;
        // Session-fixation mitigation: whatever session came with the request is ended.
        if let Some(prev) = previous {
            self.end_session_by_hash(&prev.hash(), "session_replaced")
                .await?;
        }
        let method = pending.stored_methods();
        self.start_session(pending.into_user(), ctx, &method).await
    }

    /// Starts a session for a user who has just authenticated.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn start_session(
        &self,
        user: User,
        ctx: &ClientContext,
        method: &str,
    ) -> Result<SignedIn, AuthError> {
        let now = self.clock.now();
        let policy = &self.policy.session;
        let absolute = now.plus(policy.absolute_lifetime_secs);
        let token = SessionToken::generate();
        let session = Session {
            id: SessionId::generate(),
            token_hash: token.hash(),
            user_id: user.id.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: policy.idle_deadline(now, absolute),
            absolute_expires_at: absolute,
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
            auth_method: method.to_owned(),
        };
        self.stores.sessions.create_session(&session).await?;
        self.audit.record(
            AuditEvent::success("sign_in")
                .user(&user.id)
                .with("session_id", &session.id)
                .with("method", method),
        );
        if let Some(cap) = policy.max_per_user {
            let live = self
                .stores
                .sessions
                .list_user_sessions(&user.id, now)
                .await?;
            for old in live
                .into_iter()
                .skip(usize::try_from(cap).unwrap_or(usize::MAX))
            {
                if old.id != session.id {
                    self.end_session(&user.id, &old.id, "session_cap").await?;
                }
            }
        }
        Ok(SignedIn {
            user,
            session,
            token,
        })
    }
}

/// The audit event of a refused password sign-in, with why (never told to the client).
fn refusal(email: &str, user: Option<&User>, verified: Verified) -> AuditEvent {
    let reason = match (user, verified) {
        (None, _) => "unknown_user",
        (Some(_), Verified::Mismatch) => "wrong_password",
        (Some(_), _) => "disabled",
    };
    let event = AuditEvent::failure("sign_in_failed")
        .with("email", email)
        .with("reason", reason);
    match user {
        Some(u) => event.user(&u.id),
        None => event,
    }
}
