//! The storage ports. Each backend in `authx-store` implements every trait here and passes the
//! one conformance suite. Time is always an argument; what must happen once is one call that the
//! backend makes atomic.

use async_trait::async_trait;

use crate::Timestamp;
use crate::secret::TokenHash;
use crate::session::{Session, SessionId};
use crate::user::{User, UserId, UserStatus};

/// A storage failure, in domain terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (for example an email already registered).
    #[error("conflicting record")]
    Conflict,
    /// The backend cannot be reached or failed to answer.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Accounts.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Inserts a user. [`StoreError::Conflict`] when the email is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// Finds a user by canonical email.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Finds a user by id.
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// Every user, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces the password hash. `changed_at` is set when the password itself changed (not
    /// for a rehash with new parameters). Returns whether the user exists.
    async fn set_password_hash(
        &self,
        id: &UserId,
        phc: &str,
        changed_at: Option<Timestamp>,
    ) -> StoreResult<bool>;
    /// A page of the users whose address contains `q.email_contains` (every user when it is
    /// empty), oldest first, and how many match in all.
    async fn search_users(&self, q: &UserSearch) -> StoreResult<UserPage>;
    /// Sets the status. Disabling the last active administrator is refused
    /// ([`AccountChange::LastAdministrator`]) in the same statement that would do it, so two
    /// administrators disabling each other at once cannot leave none.
    async fn set_status(&self, id: &UserId, status: UserStatus) -> StoreResult<AccountChange>;
    /// Grants or withdraws administration, under the same rule as [`Self::set_status`]: the last
    /// active administrator keeps it.
    async fn set_admin(&self, id: &UserId, admin: bool) -> StoreResult<AccountChange>;
    /// Records whether the user's address is verified. Returns whether the user exists.
    async fn set_email_verified(&self, id: &UserId, verified: bool) -> StoreResult<bool>;

    /// Replaces the account's address with `email` (canonical), an address its owner has just
    /// proved to control: where the schema records whether an address is verified, this marks
    /// the new one verified. [`StoreError::Conflict`] when another account holds `email`
    /// (nothing changes); returns whether the user exists.
    async fn set_email(&self, id: &UserId, email: &str) -> StoreResult<bool>;
}

/// A search of the accounts ([`AccountStore::search_users`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSearch {
    /// Only addresses containing this text (canonical addresses are lower case; so is this).
    pub email_contains: String,
    /// How many matches to skip.
    pub offset: u64,
    /// At most this many.
    pub limit: u32,
}

/// One page of a [`UserSearch`].
#[derive(Debug, Clone, Default)]
pub struct UserPage {
    /// The users on this page, oldest first.
    pub users: Vec<User>,
    /// How many users match in all.
    pub total: u64,
}

/// The outcome of a change that must leave at least one active administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum AccountChange {
    /// Done (or there was nothing to change).
    Done,
    /// There is no such user.
    NotFound,
    /// Refused: the user is the last active administrator.
    LastAdministrator,
}

/// Activity to record on a session ([`SessionStore::touch_session`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTouch<'a> {
    /// The session.
    pub id: &'a SessionId,
    /// When it was last used.
    pub last_seen_at: Timestamp,
    /// Its new idle deadline.
    pub idle_expires_at: Timestamp,
    /// The client address it was used from; `None` keeps the stored one.
    pub ip: Option<&'a str>,
}

/// Browser sessions, looked up by the SHA-256 of the cookie.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a session of an existing user. [`StoreError::Conflict`] on a duplicate id or
    /// token hash.
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// Finds a session by token hash, whether or not it has expired.
    async fn session_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Session>>;
    /// Records activity (`ip: None` keeps the stored address). Returns `false` when the session
    /// no longer exists, so a touch racing a revoke never brings the session back.
    async fn touch_session(&self, touch: SessionTouch<'_>) -> StoreResult<bool>;
    /// Deletes one session of `user` and returns it, or `None` when there was none.
    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<Option<Session>>;
    /// Deletes every session of `user` except `keep`, returning the ids deleted.
    async fn delete_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> StoreResult<Vec<SessionId>>;
    /// The sessions of `user` that are live at `now`, newest first.
    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>>;
    /// The number of sessions live at `now`.
    async fn count_live_sessions(&self, now: Timestamp) -> StoreResult<u64>;
    /// Deletes sessions that are not live at `now` (see [`Session::is_live`]); returns how many.
    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    /// The session under `hash` (as [`SessionStore::session_by_hash`]) and, from the same
    /// read, this store's copy of its user, for stores that keep one beside the sessions (so
    /// that an authenticated request costs one round trip). The default keeps none.
    async fn session_and_user(&self, hash: &TokenHash) -> StoreResult<Option<(Session, UserCopy)>> {
        Ok(self
            .session_by_hash(hash)
            .await?
            .map(|s| (s, UserCopy::NotKept)))
    }

    /// Keeps a copy of `user`, read from the account store after [`UserCopy::Missing`] said
    /// `generation`, unless the user changed since ([`SessionStore::forget_user`]).
    async fn keep_user(&self, user: &User, generation: u64) -> StoreResult<()> {
        let _ = (user, generation);
        Ok(())
    }

    /// Drops the copy of user `id` and refuses every copy read before this call: called after
    /// each change to the account, before the change is reported done.
    async fn forget_user(&self, id: &UserId) -> StoreResult<()> {
        let _ = id;
        Ok(())
    }
}

/// What a session store that keeps users beside sessions holds of a session's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCopy {
    /// The store keeps no users: read the account store.
    NotKept,
    /// No copy now: read the account store, then [`SessionStore::keep_user`] with this
    /// generation.
    Missing(u64),
    /// The user as last kept. Its `password_hash` is [`crate::user::PASSWORD_NOT_KEPT`] when
    /// the account has a password: password checks read the account store.
    Kept(User),
}

/// Failure counters for sign-in throttling, keyed by account or client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Consecutive failures recorded.
    pub failures: u32,
    /// When the last one was recorded.
    pub last_failure_at: Timestamp,
}

/// Sign-in failure counters.
#[async_trait]
pub trait ThrottleStore: Send + Sync + 'static {
    /// Adds one failure atomically (parallel calls each count) and returns the new state.
    /// A counter whose last failure is older than `reset_after_secs` starts again at one.
    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        reset_after_secs: i64,
    ) -> StoreResult<FailureCount>;
    /// The current counter, `None` when there is none.
    async fn failures(&self, key: &str) -> StoreResult<Option<FailureCount>>;
    /// Forgets a counter (after a successful sign-in).
    async fn clear_failures(&self, key: &str) -> StoreResult<()>;
    /// Deletes counters whose last failure is before `before`; returns how many.
    async fn purge_failures(&self, before: Timestamp) -> StoreResult<u64>;
    /// Counts one request for a rate limit (a fixed-window counter in the same table) and
    /// returns the count in the window starting at `window_start`, this one included. The
    /// counter starts again at one when its last hit was before `window_start`; parallel calls
    /// each count. [`ThrottleStore::purge_failures`] removes idle counters like any other.
    async fn count_hit(
        &self,
        key: &str,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32>;
}

/// Reachability of the backing services, for `/readyz`.
#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// Succeeds when the store answers.
    async fn ping(&self) -> StoreResult<()>;
}
