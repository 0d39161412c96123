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
use crate::session::Session;
use crate::user::User;

/// A way a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Email address and password.
    Password,
    /// An upstream identity provider, by its configured name.
    Federated(String),
    /// A single-use link mailed to the account's address, used in the browser that asked.
    MagicLink,
    /// A method recorded by another version of authx, kept as stored.
    Other(String),
}

/// How several methods are joined in a session's `auth_method`.
const SEPARATOR: char = '+';

impl AuthMethod {
    /// The method as a session records it (`password`, `federated:<provider>`, `magic_link`).
    #[must_use]
    pub fn parse(stored: &str) -> Self {
        match stored {
            "password" => return Self::Password,
            "magic_link" => return Self::MagicLink,
            _ => {}
        }
        match stored.strip_prefix("federated:") {
            Some(provider) => Self::Federated(provider.to_owned()),
            None => Self::Other(stored.to_owned()),
        }
    }

    /// The stored form, the inverse of [`AuthMethod::parse`].
    #[must_use]
    pub fn stored(&self) -> String {
        match self {
            Self::Password => "password".to_owned(),
            Self::Federated(p) => format!("federated:{p}"),
            Self::MagicLink => "magic_link".to_owned(),
            Self::Other(s) => s.clone(),
        }
    }

    /// The RFC 8176 `amr` value: `pwd` for a password, `fed` for a federated sign-in, `email`
    /// for a magic link. RFC 8176 registers no value for a confirmation by mail (`sms` and
    /// `tel` are its kin for other channels) and allows unregistered ones (§2); `otp` is not
    /// used, since it names the HOTP/TOTP codes of a second factor.
    #[must_use]
    pub fn amr(&self) -> &str {
        match self {
            Self::Password => "pwd",
            Self::Federated(_) => "fed",
            Self::MagicLink => "email",
            Self::Other(s) => s,
        }
    }
}

/// A step a sign-in may owe before its session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The deployment requires a verified address (`require_verified_email`) and the user has
    /// not verified theirs: the sign-in ends here, and a verification link is mailed.
    VerifyEmail,
}

/// A sign-in whose user is identified but whose session has not started.
#[derive(Debug)]
pub struct PendingSignIn {
    user: User,
    methods: Vec<AuthMethod>,
    started_at: Timestamp,
    verified_email_required: bool,
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
        }
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

    /// The RFC 8176 `amr` values, in the order proved.
    #[must_use]
    pub fn amr(&self) -> Vec<&str> {
        self.methods.iter().map(AuthMethod::amr).collect()
    }
}
