//! Single-use marks shared by every instance: a client assertion's `jti` (RFC 7523 §3) or a
//! DPoP proof's `jti` (RFC 9449 §11.1) is accepted once within its lifetime.
//!
//! A mark is a counter of the throttle table ([`ThrottleStore::count_hit`], one atomic upsert)
//! whose window never restarts: the first call sees 1, every later one more. The store is the
//! one every instance shares (SQLite for one, PostgreSQL for several), so a value replayed at
//! another instance is refused too. Marks are removed with the other idle counters, never
//! earlier than [`MARK_KEEP_SECS`] after they were set, which outlives every value that can be
//! marked ([`MAX_MARKED_LIFETIME_SECS`] plus clock skew).

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::secret::TokenHash;
use crate::store::{StoreResult, ThrottleStore};

/// The longest lifetime, in seconds, of a value that can be marked: callers refuse values that
/// live longer before they mark them.
pub const MAX_MARKED_LIFETIME_SECS: i64 = 300;

/// How long a mark is kept at least: twice the longest lifetime, so that skew and a late purge
/// never free a value that is still valid.
pub const MARK_KEEP_SECS: i64 = 2 * MAX_MARKED_LIFETIME_SECS + 120;

/// What a value is single-use for: it names the mark's key space, so that the same `jti` in a
/// client assertion and in a DPoP proof are two marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A client assertion's `jti`, per client.
    ClientAssertion,
    /// A DPoP proof's `jti`, per key thumbprint.
    DpopProof,
}

impl MarkKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::ClientAssertion => "jti:assertion",
            Self::DpopProof => "jti:dpop",
        }
    }
}

/// Marks values as used, in the store every instance shares.
#[derive(Clone)]
pub struct SingleUse {
    store: Arc<dyn ThrottleStore>,
}

impl SingleUse {
    /// Marks kept in `store`.
    #[must_use]
    pub fn new(store: Arc<dyn ThrottleStore>) -> Self {
        Self { store }
    }

    /// Marks `value` of `owner` (a client id, a key thumbprint) as used and tells whether this
    /// was its first use. The key holds only a hash of both, so its length is fixed whatever
    /// the caller sends.
    ///
    /// # Errors
    /// Storage failures: the caller must then refuse the value (a mark that could not be set
    /// cannot prove a first use).
    pub async fn first_use(
        &self,
        kind: MarkKind,
        owner: &str,
        value: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut input = Vec::with_capacity(owner.len() + value.len() + 1);
        input.extend_from_slice(owner.as_bytes());
        input.push(0);
        input.extend_from_slice(value.as_bytes());
        let key = format!("{}:{}", kind.prefix(), TokenHash::of(&input).to_hex());
        // Window start 0: the counter never starts again, so only the first call sees 1.
        Ok(self.store.count_hit(&key, Timestamp(0), now).await? == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn a_value_is_accepted_once_per_owner_and_kind() {
        let marks = SingleUse::new(Arc::new(MemoryStore::default()));
        let now = Timestamp(1_000);
        let first = |kind, owner, value| marks.first_use(kind, owner, value, now);
        assert!(first(MarkKind::ClientAssertion, "app", "j1").await.unwrap());
        assert!(!first(MarkKind::ClientAssertion, "app", "j1").await.unwrap());
        // Much later (the counter's window never restarts) it is still used.
        assert!(
            !marks
                .first_use(MarkKind::ClientAssertion, "app", "j1", Timestamp(90_000))
                .await
                .unwrap()
        );
        // Another client, another kind, or an owner/value split elsewhere are other marks.
        assert!(
            first(MarkKind::ClientAssertion, "other", "j1")
                .await
                .unwrap()
        );
        assert!(first(MarkKind::DpopProof, "app", "j1").await.unwrap());
        assert!(first(MarkKind::ClientAssertion, "ap", "pj1").await.unwrap());
    }
}
