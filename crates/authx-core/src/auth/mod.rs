//! The account and browser-session service: sign-up, sign-in, authentication of each request,
//! sign-out, session inventory and revocation, password change, disabling a user.
//!
//! One service, one file per responsibility: `accounts` (creating, changing and disabling
//! accounts), `signin` (the steps from a first factor to a session), `steps` (what a sign-in
//! owes and how fresh an authentication is), `verification` (verified addresses and the
//! sign-up that reveals nothing), `sessions` (authenticating requests, listing and
//! ending sessions, and the revocations that follow), `throttling` (failure counters) and
//! `session_cache` (this instance's cache of live sessions, kept right by revocation events).
//!
//! # Security
//! - Sign-in answers the same for an unknown user, a wrong password and a disabled account, and
//!   takes the same time (a throwaway Argon2id verification stands in for a missing user).
//! - Sign-in always creates a fresh session and drops any session presented with it, so a
//!   session planted before sign-in is never promoted (session fixation).
//! - Revocation invalidates this instance's cache before the call returns and is published on the
//!   event bus for every other instance.

use std::sync::Arc;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::events::{EventBus, RevocationEvent};
use crate::oauth::store::GrantStore;
use crate::password::{HashError, PasswordHasher, PasswordPolicy, PasswordRejected};
use crate::secret::SessionToken;
use crate::session::{Session, SessionPolicy};
use crate::store::{AccountStore, SessionStore, StoreError, ThrottleStore};
use crate::throttle::ThrottlePolicy;
use crate::user::User;

mod accounts;
mod email_change;
#[cfg(test)]
mod link_flow_tests;
mod magic_link;
mod passkey;
#[cfg(test)]
mod passkey_tests;
mod recovery;
mod second_factor;
#[cfg(test)]
mod second_factor_tests;
mod session_cache;
mod sessions;
mod signin;
mod steps;
#[cfg(test)]
mod test_outbox;
#[cfg(test)]
mod tests;
mod throttling;
mod verification;

pub use email_change::REAUTH_WINDOW_SECS;
pub use magic_link::{LinkBinding, MagicSignIn};
pub use passkey::PasskeyCeremony;
pub use recovery::{AddressLimit, Recovery};
pub use second_factor::{
    MAX_TRIES, MfaRequirement, SecondFactorChallenge, SecondFactorDone, SecondFactors,
};
use session_cache::SessionCache;
pub use steps::{AuthMethod, Authentication, PendingSignIn, Step};
pub use verification::{PreparedSignUp, SignUpOutcome, Verification};

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
    /// The deployment requires a verified address and this account's is not: a link was
    /// mailed to it.
    #[error("verify your email address first: we sent you a link")]
    EmailNotVerified,
    /// The link is unknown, used, expired or not for this.
    #[error("this link is invalid or has expired")]
    InvalidLink,
    /// A sensitive change without the current password, long after the sign-in.
    #[error("enter your current password to make this change (or sign in again)")]
    RecentSignInRequired,
    /// The new address is the account's address already.
    #[error("this is already the address of your account")]
    EmailUnchanged,
    /// A sign-in link used without the cookie of the browser that asked for it.
    #[error(
        "this sign-in link was asked for in another browser: open it there, or ask for a new \
         link here"
    )]
    OtherBrowser,
    /// The sign-in owes its second factor: answer the challenge (whose `failed` says whether
    /// the previous answer was wrong).
    #[error("enter the code from your authenticator app, or a recovery code")]
    SecondFactorRequired(Box<SecondFactorChallenge>),
    /// The sign-in waiting for its second factor is unknown, used, expired, or out of tries.
    #[error("this sign-in has expired; sign in again")]
    SignInExpired,
    /// Policy requires a second factor and this is the user's last.
    #[error("you need at least one second factor; add another before removing this one")]
    LastFactorRequired,
    /// A second-factor operation failed.
    #[error("{0}")]
    Factor(#[from] crate::mfa::MfaError),
    /// No such session or user.
    #[error("not found")]
    NotFound,
    /// The change would leave no active administrator.
    #[error("the last active administrator cannot be disabled or lose administration")]
    LastAdministrator,
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

impl Authenticated {
    /// How and when the user signed in to this session.
    #[must_use]
    pub fn authentication(&self) -> Authentication {
        Authentication::of(&self.session)
    }
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
    /// Not decided yet: the first factor passed and the second is asked.
    SecondFactor,
    /// Not decided: the server failed or was busy.
    Error,
}

impl SignInOutcome {
    /// Classifies a sign-in result.
    #[must_use]
    pub fn of<T>(r: &Result<T, AuthError>) -> Self {
        match r {
            Ok(_) => Self::Success,
            Err(AuthError::SecondFactorRequired(c)) if !c.failed => Self::SecondFactor,
            Err(
                AuthError::InvalidCredentials
                | AuthError::PasswordTooLong
                | AuthError::EmailNotVerified
                | AuthError::SecondFactorRequired(_)
                | AuthError::SignInExpired,
            ) => Self::Failure,
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
            Self::SecondFactor => "second_factor",
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
    recovery: Option<Recovery>,
    verification: Option<Verification>,
    second: Option<SecondFactors>,
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
            recovery: None,
            verification: None,
            second: None,
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
}
