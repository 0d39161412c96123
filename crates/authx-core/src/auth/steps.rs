//! What a sign-in owes and what it proved.
//!
//! A sign-in starts with a first factor (a password, an upstream identity provider) and becomes
//! a [`PendingSignIn`]; each [`Step`] it still owes (a verified email address where the
//! deployment requires one; later a second factor) is taken before the session starts. Every
//! place that handles steps matches [`Step`] exhaustively, so the compiler shows where a new
//! step must be handled.
//!
//! A session remembers how and when its user authenticated: [`Authentication`] reads that back
//! (`amr` methods and `auth_time`), so a sensitive action can ask whether the sign-in is fresh
//! enough. It is derived from the session record (`auth_method`, `created_at`), so no schema
//! holds it twice.

use crate::Timestamp;
pub use crate::amr::AuthMethod;
use crate::amr::{SEPARATOR, acr_of, amr_of};
use crate::session::Session;
use crate::user::User;

/// A step a sign-in may owe before its session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The deployment requires a verified address (`require_verified_email`) and the user has
    /// not verified theirs: the sign-in ends here, and a verification link is mailed.
    VerifyEmail,
    /// The user has a second factor and has not used it in this sign-in: a code is asked.
    SecondFactor,
    /// Policy requires a second factor and the user has none: they enrol one now, and its
    /// first code completes the sign-in.
    EnrolFactor,
}

/// A sign-in whose user is identified but whose session has not started.
#[derive(Debug)]
pub struct PendingSignIn {
    user: User,
    methods: Vec<AuthMethod>,
    started_at: Timestamp,
    verified_email_required: bool,
    has_second_factor: bool,
    second_factor_required: bool,
    return_to: Option<String>,
}

impl PendingSignIn {
    /// A sign-in of `user`, who has just proved who they are with `method` at `now`.
    #[must_use]
    pub fn new(user: User, method: AuthMethod, now: Timestamp) -> Self {
        Self {
            user,
            methods: vec![method],
            started_at: now,
            verified_email_required: false,
            has_second_factor: false,
            second_factor_required: false,
            return_to: None,
        }
    }

    /// A sign-in that continues with every method in `stored` already proved at `started_at`
    /// (a step-up of a session, or a sign-in resumed from its second-factor step).
    #[must_use]
    pub fn resumed(user: User, stored: &str, started_at: Timestamp) -> Self {
        Self {
            methods: stored.split(SEPARATOR).map(AuthMethod::parse).collect(),
            ..Self::new(user, AuthMethod::Password, started_at)
        }
    }

    /// Whether the user has a confirmed second factor (so [`Step::SecondFactor`] is owed until
    /// one is proved), and whether policy requires one (so [`Step::EnrolFactor`] is owed by
    /// a user without).
    #[must_use]
    pub fn with_second_factor(self, has: bool, required: bool) -> Self {
        Self {
            has_second_factor: has,
            second_factor_required: required,
            ..self
        }
    }

    /// Where the browser goes once the session starts (a local path).
    #[must_use]
    pub fn returning_to(self, path: impl Into<String>) -> Self {
        Self {
            return_to: Some(path.into()),
            ..self
        }
    }

    /// Where the browser goes once the session starts, if set.
    #[must_use]
    pub fn return_to(&self) -> Option<&str> {
        self.return_to.as_deref()
    }

    /// This sign-in owes [`Step::VerifyEmail`] while the user's address is unverified, when
    /// `required` (the deployment's `require_verified_email`).
    #[must_use]
    pub fn requiring_verified_email(self, required: bool) -> Self {
        Self {
            verified_email_required: required,
            ..self
        }
    }

    /// The user signing in.
    #[must_use]
    pub fn user(&self) -> &User {
        &self.user
    }

    /// When the first factor was proved.
    #[must_use]
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// The methods proved so far, first factor first.
    #[must_use]
    pub fn methods(&self) -> &[AuthMethod] {
        &self.methods
    }

    /// The next step this sign-in owes, `None` when the session may start.
    #[must_use]
    pub fn next_step(&self) -> Option<Step> {
        if self.verified_email_required && !self.user.email_verified {
            return Some(Step::VerifyEmail);
        }
        if self.methods.iter().any(AuthMethod::is_second_factor) {
            return None;
        }
        if self.has_second_factor {
            return Some(Step::SecondFactor);
        }
        if self.second_factor_required {
            return Some(Step::EnrolFactor);
        }
        None
    }

    /// Records a further method the user proved (a step taken).
    pub fn proved(&mut self, method: AuthMethod) {
        self.methods.push(method);
    }

    /// The session's `auth_method`: the methods proved, joined with `+`.
    #[must_use]
    pub fn stored_methods(&self) -> String {
        let all: Vec<String> = self.methods.iter().map(AuthMethod::stored).collect();
        all.join(&SEPARATOR.to_string())
    }

    /// The user, once no step is owed.
    pub(super) fn into_user(self) -> User {
        self.user
    }
}

/// How and when the user behind a session authenticated ("signed in with these methods at
/// this time").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// The methods proved, first factor first.
    pub methods: Vec<AuthMethod>,
    /// When the user last proved who they are (`auth_time`): the start of the session, which a
    /// password change re-issues.
    pub at: Timestamp,
}

impl Authentication {
    /// What `session` records of its sign-in.
    #[must_use]
    pub fn of(session: &Session) -> Self {
        Self {
            methods: session
                .auth_method
                .split(SEPARATOR)
                .map(AuthMethod::parse)
                .collect(),
            at: session.created_at,
        }
    }

    /// Whether the user authenticated at most `within_secs` seconds before `now`.
    #[must_use]
    pub fn is_fresh(&self, now: Timestamp, within_secs: i64) -> bool {
        now.since(self.at) <= within_secs
    }

    /// Whether `method` is among those proved.
    #[must_use]
    pub fn used(&self, method: &AuthMethod) -> bool {
        self.methods.contains(method)
    }

    /// The RFC 8176 `amr` values, in the order proved, with `mfa` after a second factor.
    #[must_use]
    pub fn amr(&self) -> Vec<String> {
        amr_of(&self.stored())
    }

    /// The `acr` this authentication earned.
    #[must_use]
    pub fn acr(&self) -> &'static str {
        acr_of(&self.stored())
    }

    /// Whether a second factor was among the methods.
    #[must_use]
    pub fn has_second_factor(&self) -> bool {
        self.methods.iter().any(AuthMethod::is_second_factor)
    }

    /// The methods in their stored form, joined with `+`.
    #[must_use]
    pub fn stored(&self) -> String {
        let all: Vec<String> = self.methods.iter().map(AuthMethod::stored).collect();
        all.join(&SEPARATOR.to_string())
    }
}
