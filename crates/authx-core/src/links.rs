//! Single-use link tokens: the secret in a link that a mail carries (a password reset today;
//! email verification, email change and magic links use the same kind of token).
//!
//! # Security
//! - A token is 32 bytes from the OS CSPRNG ([`LinkToken`]); only its SHA-256 is stored, and a
//!   presented token is found by the hash of what was presented, never by a comparison of raw
//!   values. `Debug` never prints the secret.
//! - A token is bound to one [`LinkPurpose`] and one user, and expires: a token issued for one
//!   purpose is refused for any other, and an expired one is refused and later purged.
//! - [`LinkTokenStore::take_link_token`] deletes the token in the same atomic step that finds
//!   it, so of any number of concurrent uses exactly one succeeds.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::secret::{TokenHash, opaque_secret};
use crate::store::StoreResult;
use crate::user::UserId;

opaque_secret!(
    /// The secret of a single-use link (32 random bytes), carried once in a mail.
    LinkToken
);

/// What a link token is for: a token of one purpose is never accepted for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkPurpose {
    /// Setting a new password without the old one.
    PasswordReset,
    /// Proving control of the account's address.
    VerifyEmail,
    /// Confirming a new address.
    ChangeEmail,
    /// Signing in from a mail.
    MagicLink,
}

impl LinkPurpose {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::VerifyEmail => "verify_email",
            Self::ChangeEmail => "change_email",
            Self::MagicLink => "magic_link",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::PasswordReset,
            Self::VerifyEmail,
            Self::ChangeEmail,
            Self::MagicLink,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// How long a link of this purpose stays valid, in seconds.
    #[must_use]
    pub fn lifetime_secs(self) -> i64 {
        match self {
            Self::PasswordReset => 30 * 60,
            Self::VerifyEmail => 24 * 3600,
            Self::ChangeEmail => 24 * 3600,
            Self::MagicLink => 10 * 60,
        }
    }
}

/// A stored link token: its hash, purpose, user and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// What the token is for.
    pub purpose: LinkPurpose,
    /// The user the token acts for.
    pub user_id: UserId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
}

impl LinkRecord {
    /// A fresh token for `purpose` and `user`, valid from `now` for the purpose's lifetime,
    /// and the record to store for it.
    #[must_use]
    pub fn issue(purpose: LinkPurpose, user: &UserId, now: Timestamp) -> (LinkToken, Self) {
        let token = LinkToken::generate();
        let record = Self {
            hash: token.hash(),
            purpose,
            user_id: user.clone(),
            created_at: now,
            expires_at: now.plus(purpose.lifetime_secs()),
        };
        (token, record)
    }
}

/// Where link tokens are kept.
#[async_trait]
pub trait LinkTokenStore: Send + Sync + 'static {
    /// Stores a token. [`crate::StoreError::Conflict`] when its hash is taken.
    async fn insert_link_token(&self, record: &LinkRecord) -> StoreResult<()>;

    /// Finds and deletes, in one atomic step, the token with `hash` issued for `purpose` that is
    /// still valid at `now`. A token of another purpose is left as it is; `None` for an unknown,
    /// used, expired or mismatched token. Of concurrent takes of one token, one gets it.
    async fn take_link_token(
        &self,
        hash: &TokenHash,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<LinkRecord>>;

    /// Deletes every token of `user` for `purpose` (the others of a used kind); returns how many.
    async fn delete_user_link_tokens(
        &self,
        user: &UserId,
        purpose: LinkPurpose,
    ) -> StoreResult<u64>;

    /// Deletes the tokens expired at `now`; returns how many.
    async fn purge_link_tokens(&self, now: Timestamp) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip_and_reset_lasts_half_an_hour() {
        for p in [
            LinkPurpose::PasswordReset,
            LinkPurpose::VerifyEmail,
            LinkPurpose::ChangeEmail,
            LinkPurpose::MagicLink,
        ] {
            assert_eq!(LinkPurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(LinkPurpose::parse("reset"), None);
        assert_eq!(LinkPurpose::PasswordReset.lifetime_secs(), 1800);
    }

    #[test]
    fn an_issued_token_is_stored_only_as_its_hash() {
        let user = UserId::generate();
        let (token, record) = LinkRecord::issue(LinkPurpose::PasswordReset, &user, Timestamp(10));
        assert_eq!(record.hash, token.hash());
        assert_eq!(record.expires_at, Timestamp(1810));
        assert_eq!(token.expose().len(), 43);
        assert!(!format!("{record:?}{token:?}").contains(token.expose()));
    }
}
