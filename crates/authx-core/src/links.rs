//! Single-use link tokens: the secret in a link that a mail carries (password reset, email
//! verification, email change and its cancellation, magic links).
//!
//! # Security
//! - A token is 32 bytes from the OS CSPRNG ([`LinkToken`]); only its SHA-256 is stored, and a
//!   presented token is found by the hash of what was presented, never by a comparison of raw
//!   values. `Debug` never prints the secret.
//! - A token is bound to one [`LinkPurpose`] and one user, and expires: a token issued for one
//!   purpose is refused for any other, and an expired one is refused and later purged.
//! - [`LinkTokenStore::take_link_token`] deletes the token in the same atomic step that finds
//!   it, so of any number of concurrent uses exactly one succeeds.
//! - A record's [`LinkRecord::detail`] is what the purpose needs besides the user (the new
//!   address of an email change, the hash of a magic link's browser binding): stored with the
//!   hash and taken with it, so a link cannot be pointed at another value after it was mailed.

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
    /// Undoing an email change from the old address ("this wasn't me").
    CancelEmailChange,
    /// A sign-in waiting for its second factor (its token is a cookie, not a mailed link).
    SecondFactor,
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
            Self::CancelEmailChange => "cancel_email_change",
            Self::SecondFactor => "second_factor",
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
            Self::CancelEmailChange,
            Self::SecondFactor,
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
            // Outlives the confirmation link, so the owner of the old address can still undo a
            // change confirmed in the meantime.
            Self::CancelEmailChange => 7 * 24 * 3600,
            Self::SecondFactor => 5 * 60,
        }
    }
}

/// A stored link token: its hash, purpose, user, lifetime and what the purpose needs besides.
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
    /// What the purpose needs besides the user (`None` for most): the new address of
    /// [`LinkPurpose::ChangeEmail`], the old one of [`LinkPurpose::CancelEmailChange`], the
    /// browser binding of [`LinkPurpose::MagicLink`]. Never a secret in clear.
    pub detail: Option<String>,
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
            detail: None,
        };
        (token, record)
    }

    /// The record with `detail` attached.
    #[must_use]
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..self
        }
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
            LinkPurpose::CancelEmailChange,
            LinkPurpose::SecondFactor,
        ] {
            assert_eq!(LinkPurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(LinkPurpose::parse("reset"), None);
        assert_eq!(LinkPurpose::PasswordReset.lifetime_secs(), 1800);
        assert_eq!(LinkPurpose::MagicLink.lifetime_secs(), 600);
        assert!(
            LinkPurpose::CancelEmailChange.lifetime_secs()
                > LinkPurpose::ChangeEmail.lifetime_secs()
        );
    }

    #[test]
    fn an_issued_token_is_stored_only_as_its_hash() {
        let user = UserId::generate();
        let (token, record) = LinkRecord::issue(LinkPurpose::PasswordReset, &user, Timestamp(10));
        assert_eq!(record.hash, token.hash());
        assert_eq!(record.expires_at, Timestamp(1810));
        assert_eq!(record.detail, None);
        let record = record.with_detail("new@example.com");
        assert_eq!(record.detail.as_deref(), Some("new@example.com"));
        assert_eq!(token.expose().len(), 43);
        assert!(!format!("{record:?}{token:?}").contains(token.expose()));
    }
}
