//! The account and browser-session service: sign-up, sign-in, authentication of each request,
//! sign-out, session inventory and revocation, password change, disabling a user.
//!
//! # Security
//! - Sign-in answers the same for an unknown user, a wrong password and a disabled account, and
//!   takes the same time (a throwaway Argon2id verification stands in for a missing user).
//! - Sign-in always creates a fresh session and drops any session presented with it, so a
//!   session planted before sign-in is never promoted (session fixation).
//! - Revocation invalidates this instance's cache before the call returns and is published on the
//!   event bus for every other instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::audit::{Audit, AuditEvent};
use crate::clock::{Clock, Timestamp};
use crate::events::{EventBus, RevocationEvent};
use crate::oauth::store::GrantStore;
use crate::password::{
    HashError, MAX_PASSWORD_BYTES, PasswordHasher, PasswordPolicy, PasswordRejected, Verified,
};
use crate::secret::{SessionToken, TokenHash};
use crate::session::{ClientContext, Session, SessionId, SessionPolicy};
use crate::store::{AccountStore, SessionStore, StoreError, ThrottleStore};
use crate::throttle::ThrottlePolicy;
use crate::user::{User, UserId, UserStatus, canonical_email};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password or disabled account: deliberately indistinguishable.
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    /// Too many failures; try again after the given number of seconds.
    #[error("too many attempts; try again in {}", crate::plural::count(*.retry_after_secs, "second", "seconds"))]
    Throttled {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: i64,
    },
    /// Self-service sign-up is turned off.
    #[error("sign-up is disabled")]
    SignUpDisabled,
    /// The email address is already registered.
    #[error("an account with this email address already exists")]
    EmailTaken,
    /// The email address is not usable.
    #[error("enter a valid email address")]
    InvalidEmail,
    /// The new password breaks the policy.
    #[error("{0}")]
    WeakPassword(#[from] PasswordRejected),
    /// The password is longer than any password authx accepts.
    #[error("the password is too long")]
    PasswordTooLong,
    /// The current password given for a sensitive change is wrong.
    #[error("the current password is incorrect")]
    WrongPassword,
    /// No such session or user.
    #[error("not found")]
    NotFound,
    /// Password hashing is saturated; try again shortly.
    #[error("the server is busy; try again")]
    Busy,
    /// Storage failed.
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// An internal invariant failed.
    #[error("internal error")]
    Internal(String),
}

impl From<HashError> for AuthError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            HashError::Internal(m) => Self::Internal(m),
        }
    }
}

/// Rules the service applies.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// New-password rules.
    pub password: PasswordPolicy,
    /// Session lifetimes and options.
    pub session: SessionPolicy,
    /// Sign-in throttling.
    pub throttle: ThrottlePolicy,
    /// Whether anyone may create an account.
    pub sign_up_enabled: bool,
    /// Entries in the in-process session cache (0 turns it off).
    pub cache_capacity: usize,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::default(),
            session: SessionPolicy::default(),
            throttle: ThrottlePolicy::default(),
            sign_up_enabled: true,
            cache_capacity: 10_000,
        }
    }
}

/// The stores the service needs.
#[derive(Clone)]
pub struct Stores {
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Browser sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Failure counters.
    pub throttle: Arc<dyn ThrottleStore>,
}

/// A successful sign-in: the raw token is here once, to be sent to the client.
#[derive(Debug)]
pub struct SignedIn {
    /// The user.
    pub user: User,
    /// The new session.
    pub session: Session,
    /// The raw session token (send once; never store or log).
    pub token: SessionToken,
}

/// The identity behind a request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user.
    pub user: User,
    /// The session the request presented.
    pub session: Session,
}

/// How a sign-in attempt ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOutcome {
    /// Signed in.
    Success,
    /// Refused: bad credentials.
    Failure,
    /// Refused: throttled.
    Throttled,
    /// Not decided: the server failed or was busy.
    Error,
}

impl SignInOutcome {
    /// Classifies a sign-in result.
    #[must_use]
    pub fn of<T>(r: &Result<T, AuthError>) -> Self {
        match r {
            Ok(_) => Self::Success,
            Err(AuthError::InvalidCredentials | AuthError::PasswordTooLong) => Self::Failure,
            Err(AuthError::Throttled { .. }) => Self::Throttled,
            Err(_) => Self::Error,
        }
    }

    /// The metrics label.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

/// The account and session service.
pub struct AuthService {
    stores: Stores,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    policy: AuthPolicy,
    cache: SessionCache,
    grants: Option<Arc<dyn GrantStore>>,
    devices: Option<Arc<dyn crate::oauth::device::DeviceStore>>,
    observer: Option<Arc<dyn crate::oauth::GrantObserver>>,
    audit: Audit,
}

impl AuthService {
    /// Builds the service.
    #[must_use]
    pub fn new(
        stores: Stores,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        policy: AuthPolicy,
    ) -> Self {
        let cache = SessionCache::new(policy.cache_capacity);
        let audit = Audit::log_only(Arc::clone(&clock));
        Self {
            stores,
            events,
            clock,
            audit,
            hasher,
            policy,
            cache,
            grants: None,
            devices: None,
            observer: None,
        }
    }

    /// Records audit events with `audit` (by default they are only logged).
    #[must_use]
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// The audit recorder in use.
    #[must_use]
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Tells `observer` about every grant that session and credential changes revoke.
    #[must_use]
    pub fn with_grant_observer(mut self, observer: Arc<dyn crate::oauth::GrantObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Lets session and credential changes revoke the refresh-token families that stand on
    /// them (the provider's grants).
    #[must_use]
    pub fn with_grants(mut self, grants: Arc<dyn GrantStore>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// Lets a password change, a disable and "sign out everywhere else" withdraw the device
    /// approvals of the user that no device has redeemed yet.
    #[must_use]
    pub fn with_device_grants(
        mut self,
        devices: Arc<dyn crate::oauth::device::DeviceStore>,
    ) -> Self {
        self.devices = Some(devices);
        self
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    /// The clock in use.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The stores in use.
    #[must_use]
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Applies an event that arrived from the bus to this instance's cache.
    pub fn apply_remote_event(&self, event: &RevocationEvent) {
        self.cache.invalidate(event);
    }

    /// Drops every cached session (after the event bus lost messages).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

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

    /// Self-service sign-up, which also signs the new user in.
    ///
    /// # Errors
    /// As [`AuthService::create_user`], and [`AuthError::SignUpDisabled`].
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
    ) -> Result<SignedIn, AuthError> {
        if !self.policy.sign_up_enabled {
            return Err(AuthError::SignUpDisabled);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong);
        }
        let user = self.create_user(email, password, false).await?;
        self.start_session(user, ctx, "password").await
    }

    /// Signs in with email and password.
    ///
    /// `previous` is any session token the client already presented; it is revoked, never reused.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for an unknown user, wrong password or disabled account
    /// alike; [`AuthError::Throttled`] after too many failures; [`AuthError::PasswordTooLong`].
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
    ) -> Result<SignedIn, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::PasswordTooLong);
        }
        let now = self.clock.now();
        // An address that cannot be canonicalized cannot belong to anyone: answer like an
        // unknown user, after the same work.
        let Ok(canonical) = canonical_email(email) else {
            self.hasher.verify_dummy().await?;
            self.audit.record(
                AuditEvent::failure("sign_in_failed")
                    .with("email", email)
                    .with("reason", "invalid_email"),
            );
            return Err(AuthError::InvalidCredentials);
        };
        let email = canonical;
        let account_key = format!("account:{email}");
        let ip_key = ctx.ip.as_deref().map(|ip| format!("ip:{ip}"));
        if let Err(e) = self
            .check_throttle(&account_key, ip_key.as_deref(), now)
            .await
        {
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
                self.record_failure(&account_key, ip_key.as_deref(), now, user.as_ref())
                    .await?;
                let reason = match (&user, verified) {
                    (None, _) => "unknown_user",
                    (Some(_), Verified::Mismatch) => "wrong_password",
                    (Some(_), _) => "disabled",
                };
                let mut event = AuditEvent::failure("sign_in_failed")
                    .with("email", &email)
                    .with("reason", reason);
                if let Some(u) = &user {
                    event = event.user(&u.id);
                }
                self.audit.record(event);
                return Err(AuthError::InvalidCredentials);
            }
        };
        self.stores.throttle.clear_failures(&account_key).await?;
        // Session-fixation mitigation: whatever session came with the request is ended.
        if let Some(prev) = previous {
            self.end_session_by_hash(&prev.hash(), "session_replaced")
                .await?;
        }
        self.start_session(user, ctx, "password").await
    }

    /// Signs in a user who authenticated elsewhere (an upstream identity provider), with the
    /// same rules as a password sign-in: a disabled account is refused, whatever session came
    /// with the request is ended (session fixation), a fresh session is issued and the
    /// per-user cap applies.
    ///
    /// # Errors
    /// [`AuthError::InvalidCredentials`] for a missing or disabled account; storage failures.
    pub async fn sign_in_verified(
        &self,
        user: &UserId,
        ctx: &ClientContext,
        previous: Option<&SessionToken>,
        method: &str,
    ) -> Result<SignedIn, AuthError> {
        let user = match self.stores.accounts.user_by_id(user).await? {
            Some(u) if u.status == UserStatus::Active => u,
            _ => return Err(AuthError::InvalidCredentials),
        };
        // Session-fixation mitigation: whatever session came with the request is ended.
        if let Some(prev) = previous {
            self.end_session_by_hash(&prev.hash(), "session_replaced")
                .await?;
        }
        self.start_session(user, ctx, method).await
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

    /// Resolves the session behind a cookie value. `Ok(None)` means anonymous: never issued,
    /// expired, revoked, or its user disabled.
    ///
    /// # Errors
    /// Storage failures (the caller fails closed).
    pub async fn authenticate(
        &self,
        token: &SessionToken,
        ctx: &ClientContext,
    ) -> Result<Option<Arc<Authenticated>>, AuthError> {
        let hash = token.hash();
        let now = self.clock.now();
        let use_cache = self.cache.enabled() && self.events.is_connected();
        // One lock: drop the cache if events may have been lost since it was filled, then
        // look the hash up and note the epoch a fresh entry must still match.
        let (mut cached, epoch) = if use_cache {
            self.cache.lookup(&hash, self.events.epoch())
        } else {
            (None, 0)
        };
        // A cached copy may be behind a touch made on another instance: re-read before refusing.
        if cached.as_ref().is_some_and(|a| !a.session.is_live(now)) {
            cached = None;
        }
        let mut changed = cached.is_none();
        let mut auth = match cached {
            Some(a) => a,
            None => {
                let Some(session) = self.stores.sessions.session_by_hash(&hash).await? else {
                    return Ok(None);
                };
                // The hash was found by lookup; confirm it in constant time all the same.
                if !session.token_hash.ct_eq(&hash) {
                    return Ok(None);
                }
                let Some(user) = self.stores.accounts.user_by_id(&session.user_id).await? else {
                    return Ok(None);
                };
                Arc::new(Authenticated { user, session })
            }
        };
        if !auth.session.is_live(now) || auth.user.status != UserStatus::Active {
            self.cache.remove(&hash);
            if !auth.session.is_live(now) {
                // The session is over: its row goes now (so a cookie presented again costs no
                // write) and the codes it minted with it. Its refresh families stay, as they do
                // when the purge removes an expired session.
                let s = &auth.session;
                if self
                    .stores
                    .sessions
                    .delete_session(&s.user_id, &s.id)
                    .await?
                    .is_some()
                {
                    self.end_codes(CodeScope::Session(&s.id)).await?;
                }
            }
            return Ok(None);
        }
        if self.policy.session.bind_user_agent && auth.session.user_agent != ctx.user_agent {
            self.audit.record(
                AuditEvent::failure("session_user_agent_mismatch")
                    .user(&auth.user.id)
                    .with("session_id", &auth.session.id),
            );
            return Ok(None);
        }
        if auth.session.ip.is_some() && ctx.ip.is_some() && auth.session.ip != ctx.ip {
            self.audit.record(
                AuditEvent::success("session_ip_changed")
                    .user(&auth.user.id)
                    .with("session_id", &auth.session.id)
                    .with("previous_ip", auth.session.ip.as_deref().unwrap_or("-")),
            );
        }
        if now.since(auth.session.last_seen_at) >= self.policy.session.touch_interval_secs {
            let idle = self
                .policy
                .session
                .idle_deadline(now, auth.session.absolute_expires_at);
            let alive = self
                .stores
                .sessions
                .touch_session(&auth.session.id, now, idle, ctx.ip.as_deref())
                .await?;
            if !alive {
                self.cache.remove(&hash);
                return Ok(None);
            }
            let a = Arc::make_mut(&mut auth);
            a.session.last_seen_at = now;
            a.session.idle_expires_at = idle;
            if ctx.ip.is_some() {
                a.session.ip.clone_from(&ctx.ip);
            }
            changed = true;
        }
        // A hit that changed nothing is already in the cache as it is.
        if use_cache && changed {
            self.cache.put_if_epoch(hash, Arc::clone(&auth), epoch);
        }
        Ok(Some(auth))
    }

    /// Ends the session behind a cookie value, if there is one.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sign_out(&self, token: &SessionToken) -> Result<(), AuthError> {
        self.end_session_by_hash(&token.hash(), "sign_out").await
    }

    /// The user's live sessions, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn sessions(&self, user: &UserId) -> Result<Vec<Session>, AuthError> {
        Ok(self
            .stores
            .sessions
            .list_user_sessions(user, self.clock.now())
            .await?)
    }

    /// Ends one of the user's sessions.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when the user has no such session.
    pub async fn revoke_session(&self, user: &UserId, id: &SessionId) -> Result<(), AuthError> {
        if self.end_session(user, id, "session_revoked").await? {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    /// Ends every session of the user except `keep`; returns how many ended.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn revoke_other_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> Result<usize, AuthError> {
        let ended = self
            .stores
            .sessions
            .delete_user_sessions(user, keep)
            .await?;
        // Signing out everywhere else ends every application grant of the user too (devices
        // and apps included); they sign in again through this session if the user wants.
        self.revoke_families(FamilyScope::User(user)).await?;
        self.end_codes(CodeScope::UserExcept(user, keep)).await?;
        self.emit(RevocationEvent::UserSessionsEnded {
            user_id: user.clone(),
            kept: keep.cloned(),
            ended: ended.clone(),
        })
        .await?;
        self.audit.record(
            AuditEvent::success("sessions_revoked")
                .user(user)
                .with_count("count", ended.len() as u64),
        );
        Ok(ended.len())
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
        let account_key = format!("account:{}", auth.user.email);
        let ip_key = ctx.ip.as_deref().map(|ip| format!("ip:{ip}"));
        if let Err(e) = self
            .check_throttle(&account_key, ip_key.as_deref(), now)
            .await
        {
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
            self.record_failure(&account_key, ip_key.as_deref(), now, Some(&user))
                .await?;
            self.audit.record(
                AuditEvent::failure("password_change_failed")
                    .user(&user.id)
                    .with("reason", "wrong_current_password"),
            );
            return Err(AuthError::WrongPassword);
        }
        self.policy.password.check(new, &user.email)?;
        let phc = self.hasher.hash(new).await?;
        self.stores
            .accounts
            .set_password_hash(&user.id, &phc, Some(now))
            .await?;
        self.stores.throttle.clear_failures(&account_key).await?;
        // Every credential that stood on the old password ends, the caller's session too: it is
        // re-issued below with a new token.
        let ended = self
            .stores
            .sessions
            .delete_user_sessions(&user.id, None)
            .await?;
        self.revoke_families(FamilyScope::User(&user.id)).await?;
        self.end_codes(CodeScope::UserExcept(&user.id, None))
            .await?;
        self.emit(RevocationEvent::UserSessionsEnded {
            user_id: user.id.clone(),
            kept: None,
            ended,
        })
        .await?;
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

    /// Disables a user and ends everything of theirs.
    ///
    /// # Errors
    /// [`AuthError::NotFound`] when there is no such user.
    pub async fn disable_user(&self, id: &UserId) -> Result<(), AuthError> {
        if !self
            .stores
            .accounts
            .set_status(id, UserStatus::Disabled)
            .await?
        {
            return Err(AuthError::NotFound);
        }
        self.stores.sessions.delete_user_sessions(id, None).await?;
        self.revoke_families(FamilyScope::User(id)).await?;
        self.end_codes(CodeScope::UserExcept(id, None)).await?;
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
        if self
            .stores
            .accounts
            .set_status(id, UserStatus::Active)
            .await?
        {
            self.audit
                .record(AuditEvent::success("user_enabled").user(id));
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    /// Deletes expired sessions and stale failure counters; returns how many rows went.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        let now = self.clock.now();
        let s = self.stores.sessions.purge_expired_sessions(now).await?;
        let t = self
            .stores
            .throttle
            .purge_failures(Timestamp(
                now.secs() - self.policy.throttle.reset_after_secs,
            ))
            .await?;
        Ok(s + t)
    }

    /// The number of live sessions, for metrics.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn live_session_count(&self) -> Result<u64, AuthError> {
        Ok(self
            .stores
            .sessions
            .count_live_sessions(self.clock.now())
            .await?)
    }

    async fn check_throttle(
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

    async fn record_failure(
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

    async fn end_session_by_hash(
        &self,
        hash: &TokenHash,
        kind: &'static str,
    ) -> Result<(), AuthError> {
        if let Some(s) = self.stores.sessions.session_by_hash(hash).await? {
            self.end_session(&s.user_id, &s.id, kind).await?;
        }
        Ok(())
    }

    /// Ends one session; `kind` names why in the audit trail (`sign_out`, `session_revoked`,
    /// `session_replaced`, `session_cap`).
    async fn end_session(
        &self,
        user: &UserId,
        id: &SessionId,
        kind: &'static str,
    ) -> Result<bool, AuthError> {
        let ended = self
            .stores
            .sessions
            .delete_session(user, id)
            .await?
            .is_some();
        if ended {
            self.revoke_families(FamilyScope::Session(user, id)).await?;
            self.end_codes(CodeScope::Session(id)).await?;
            self.emit(RevocationEvent::SessionEnded {
                session_id: id.clone(),
                user_id: user.clone(),
            })
            .await?;
            self.audit
                .record(AuditEvent::success(kind).user(user).with("session_id", id));
        }
        Ok(ended)
    }

    /// Revokes the refresh-token families of a user or of one session, announcing each.
    async fn revoke_families(&self, scope: FamilyScope<'_>) -> Result<(), AuthError> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        let now = self.clock.now();
        let (user, ids) = match scope {
            FamilyScope::User(user) => (user, grants.revoke_user_families(user, now).await?),
            FamilyScope::Session(user, session) => {
                (user, grants.revoke_session_families(session, now).await?)
            }
        };
        for family_id in ids {
            if let Some(o) = &self.observer {
                o.grant_revoked(&family_id);
            }
            self.emit(RevocationEvent::FamilyRevoked {
                family_id,
                user_id: user.clone(),
            })
            .await?;
        }
        Ok(())
    }

    /// Deletes the unredeemed authorization codes of ended sessions, and for a whole user the
    /// device approvals no device has redeemed yet, so nothing minted by a sign-in that is over
    /// can be exchanged for tokens later. (Redemption checks the session as well; this removes
    /// what can no longer be used.)
    async fn end_codes(&self, scope: CodeScope<'_>) -> Result<(), AuthError> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        match scope {
            CodeScope::Session(session) => {
                grants.delete_session_codes(session).await?;
            }
            CodeScope::UserExcept(user, keep) => {
                grants.delete_user_codes(user, keep).await?;
                if let Some(devices) = &self.devices {
                    devices.deny_user_device_grants(user).await?;
                }
            }
        }
        Ok(())
    }

    async fn emit(&self, event: RevocationEvent) -> Result<(), AuthError> {
        // Local cache first, synchronously: the response that follows must already hold here.
        self.cache.invalidate(&event);
        self.events.publish(&event).await?;
        Ok(())
    }
}

enum CodeScope<'a> {
    /// The codes of one ended session.
    Session(&'a SessionId),
    /// Every code of the user except those of a kept session, and the user's device approvals.
    UserExcept(&'a UserId, Option<&'a SessionId>),
}

enum FamilyScope<'a> {
    User(&'a UserId),
    Session(&'a UserId, &'a SessionId),
}

/// A bounded map from token hash to the identity behind it. Invalidation bumps an epoch so that
/// a lookup that began before a revocation cannot put a stale entry back afterwards.
struct SessionCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    epoch: u64,
    bus_epoch: u64,
    map: HashMap<TokenHash, Arc<Authenticated>>,
}

impl SessionCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry for `hash`, if any, and the epoch to pass to [`Self::put_if_epoch`]; first
    /// drops everything when the bus reports a new epoch (events may have been lost).
    fn lookup(&self, hash: &TokenHash, bus_epoch: u64) -> (Option<Arc<Authenticated>>, u64) {
        let mut inner = self.lock();
        if inner.bus_epoch != bus_epoch {
            inner.bus_epoch = bus_epoch;
            inner.epoch += 1;
            inner.map.clear();
        }
        (inner.map.get(hash).cloned(), inner.epoch)
    }

    fn put_if_epoch(&self, hash: TokenHash, auth: Arc<Authenticated>, epoch: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if !inner.map.contains_key(&hash) {
            // Random eviction: no recency to track on the hot path.
            crate::cache::make_room(&mut inner.map, self.capacity);
        }
        inner.map.insert(hash, auth);
    }

    fn remove(&self, hash: &TokenHash) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.remove(hash);
    }

    fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.clear();
    }

    fn invalidate(&self, event: &RevocationEvent) {
        let mut inner = self.lock();
        inner.epoch += 1;
        match event {
            RevocationEvent::SessionEnded { session_id, .. } => {
                inner.map.retain(|_, a| &a.session.id != session_id);
            }
            RevocationEvent::UserSessionsEnded { user_id, kept, .. } => {
                inner
                    .map
                    .retain(|_, a| &a.user.id != user_id || Some(&a.session.id) == kept.as_ref());
            }
            // Sessions hold no grant or client: nothing cached here is tied to these.
            RevocationEvent::FamilyRevoked { .. }
            | RevocationEvent::AccessTokenRevoked { .. }
            | RevocationEvent::ClientRevoked { .. } => {}
            RevocationEvent::UserDisabled { user_id } => {
                inner.map.retain(|_, a| &a.user.id != user_id);
            }
        }
    }
}
