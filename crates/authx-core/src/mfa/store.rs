//! The factor store: second factors and recovery codes, as the storage adapters keep them.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::secret::TokenHash;
use crate::store::StoreResult;
use crate::user::UserId;

/// A factor's identifier (16 random bytes, base64url): public, not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FactorId(pub String);

impl FactorId {
    /// A fresh identifier.
    #[must_use]
    pub fn generate() -> Self {
        Self(crate::secret::random_id())
    }
}

impl std::fmt::Display for FactorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of second factor a factor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    /// A time-based one-time password app (RFC 6238).
    Totp,
    /// A WebAuthn credential (a passkey or security key): its sealed "secret" is the
    /// credential's public key, counter and flags, as JSON.
    Passkey,
}

impl FactorKind {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Passkey => "passkey",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "totp" => Some(Self::Totp),
            "passkey" => Some(Self::Passkey),
            _ => None,
        }
    }
}

/// A stored factor.
#[derive(Clone, PartialEq, Eq)]
pub struct Factor {
    /// Its identifier.
    pub id: FactorId,
    /// Its owner.
    pub user_id: UserId,
    /// Its kind.
    pub kind: FactorKind,
    /// The name its owner gave it.
    pub name: String,
    /// The secret sealed with the key-encryption key (AES-256-GCM, bound to user and factor).
    pub sealed_secret: Vec<u8>,
    /// When enrolment began.
    pub created_at: Timestamp,
    /// While the enrolment waits for its first code: when it lapses. `None` once confirmed.
    pub pending_until: Option<Timestamp>,
    /// The last time step a code was accepted for (TOTP); no later code may reuse it.
    pub last_step: Option<i64>,
    /// When it last served a sign-in (or its confirmation).
    pub last_used_at: Option<Timestamp>,
    /// A passkey's WebAuthn credential id (base64url, unique across users); `None` for the
    /// other kinds.
    pub credential_id: Option<String>,
}

impl Factor {
    /// Whether enrolment was confirmed, so the factor may be used.
    #[must_use]
    pub fn is_confirmed(&self) -> bool {
        self.pending_until.is_none()
    }
}

impl std::fmt::Debug for Factor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factor")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("pending_until", &self.pending_until)
            .field("last_step", &self.last_step)
            .field("credential_id", &self.credential_id)
            .finish_non_exhaustive()
    }
}

/// An accepted one-time code ([`FactorStore::accept_step`], [`FactorStore::confirm_factor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepUse<'a> {
    /// The factor.
    pub id: &'a FactorId,
    /// Its owner (a factor id of another user matches nothing).
    pub user_id: &'a UserId,
    /// The time step of the accepted code.
    pub step: i64,
    /// Now.
    pub at: Timestamp,
}

/// The server-side state of a begun WebAuthn ceremony (a passkey's registration or an
/// assertion), stored under the hash of the token its browser holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// The user it is for; `None` for a sign-in without a password (the user is not known
    /// until the authenticator names them).
    pub user_id: Option<UserId>,
    /// The ceremony's state (JSON): challenge, allowed credentials, policy, binding.
    pub state: String,
    /// When it began.
    pub created_at: Timestamp,
    /// When it lapses.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Ceremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremony")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Where second factors and recovery codes are kept.
#[async_trait]
pub trait FactorStore: Send + Sync + 'static {
    /// Stores a factor (pending or not). [`crate::StoreError::Conflict`] on a taken id.
    async fn insert_factor(&self, factor: &Factor) -> StoreResult<()>;

    /// The factor `id` of `user`, confirmed or pending, lapsed or not.
    async fn factor(&self, user: &UserId, id: &FactorId) -> StoreResult<Option<Factor>>;

    /// Every factor of `user`, confirmed and pending, oldest first.
    async fn list_factors(&self, user: &UserId) -> StoreResult<Vec<Factor>>;

    /// Confirms a pending enrolment that has not lapsed at `used.at`, recording `used.step` as
    /// its first accepted step, in one conditional update: `false` when the factor is unknown,
    /// already confirmed or lapsed, so of concurrent confirmations one succeeds.
    async fn confirm_factor(&self, used: StepUse<'_>) -> StoreResult<bool>;

    /// Records `used.step` as the last accepted step of a confirmed factor, only if it is later
    /// than the one recorded (one conditional update): `false` for a step already used or
    /// older, so a code is accepted at most once and of concurrent uses one succeeds.
    async fn accept_step(&self, used: StepUse<'_>) -> StoreResult<bool>;

    /// Renames the factor; `false` when `user` has no factor `id`.
    async fn rename_factor(&self, user: &UserId, id: &FactorId, name: &str) -> StoreResult<bool>;

    /// Deletes the factor; `false` when `user` has no factor `id`.
    async fn delete_factor(&self, user: &UserId, id: &FactorId) -> StoreResult<bool>;

    /// Deletes the pending enrolments of `user` (a new enrolment replaces them); returns how
    /// many.
    async fn delete_pending_factors(&self, user: &UserId) -> StoreResult<u64>;

    /// Deletes every factor and recovery code of `user`; returns how many factors went.
    async fn delete_user_factors(&self, user: &UserId) -> StoreResult<u64>;

    /// Replaces every recovery code of `user` with `hashes`, in one transaction.
    async fn replace_recovery_codes(
        &self,
        user: &UserId,
        hashes: &[TokenHash],
        now: Timestamp,
    ) -> StoreResult<()>;

    /// Deletes the recovery code `hash` of `user` in one statement: `true` when it was there,
    /// so a code is used at most once and of concurrent uses one succeeds.
    async fn consume_recovery_code(&self, user: &UserId, hash: &TokenHash) -> StoreResult<bool>;

    /// How many unused recovery codes `user` has.
    async fn count_recovery_codes(&self, user: &UserId) -> StoreResult<u64>;

    /// Deletes the enrolments that lapsed at `now` unconfirmed, and the WebAuthn ceremonies
    /// that lapsed; returns how many rows went.
    async fn purge_pending_factors(&self, now: Timestamp) -> StoreResult<u64>;

    /// The passkey whose WebAuthn credential id is `credential_id`, of whichever user.
    async fn factor_by_credential(&self, credential_id: &str) -> StoreResult<Option<Factor>>;

    /// Replaces the sealed secret of a confirmed factor (a passkey's counter and flags after a
    /// use) and records the use; `false` when `user` has no confirmed factor `id`.
    async fn update_factor_secret(
        &self,
        user: &UserId,
        id: &FactorId,
        sealed_secret: &[u8],
        at: Timestamp,
    ) -> StoreResult<bool>;

    /// Stores a begun ceremony. [`crate::StoreError::Conflict`] when its hash is taken.
    async fn insert_ceremony(&self, ceremony: &Ceremony) -> StoreResult<()>;

    /// Takes (deletes and returns) the ceremony `hash` if it has not lapsed at `now`, in one
    /// statement: of concurrent takes one gets it, so a ceremony finishes at most once.
    async fn take_ceremony(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<Ceremony>>;
}
