//! Single-use marks shared by every instance: a client assertion's `jti` (RFC 7523 §3) or a
//! DPoP proof's `jti` (RFC 9449 §11.1) is accepted once within its lifetime.
//!
//! With several instances, a mark is a counter of the throttle table ([`ThrottleStore::count_hit`], one atomic upsert)
//! whose window never restarts: the first call sees 1, every later one more. The store is the
//! one every instance shares (SQLite for one, PostgreSQL for several), so a value replayed at
//! another instance is refused too. Marks are removed with the other idle counters, never
//! earlier than [`MARK_KEEP_SECS`] after they were set, which outlives every value that can be
//! marked ([`MAX_MARKED_LIFETIME_SECS`] plus clock skew). A deployment of one instance keeps
//! its marks in memory instead ([`SingleUse::local`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::clock::Timestamp;
use crate::secret::TokenHash;
use crate::store::{StoreError, StoreResult, ThrottleStore};

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
    /// A SAML assertion's `ID`, per IdP entity id.
    SamlAssertion,
}

impl MarkKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::ClientAssertion => "jti:assertion",
            Self::DpopProof => "jti:dpop",
            Self::SamlAssertion => "id:saml",
        }
    }
}

/// Most marks a single instance keeps in memory. Each lives until the value it marks could no
/// longer be accepted (about a minute for a DPoP proof), so this allows about 15,000 marked
/// requests a second; beyond it a value is refused as unavailable rather than forgotten.
pub const MAX_LOCAL_MARKS: usize = 1_000_000;

/// Marks values as used: in the store every instance shares, or, for a single instance, in
/// its memory.
#[derive(Clone)]
pub struct SingleUse {
    marks: Marks,
}

#[derive(Clone)]
enum Marks {
    Shared(Arc<dyn ThrottleStore>),
    Local(Arc<Mutex<HashMap<TokenHash, i64>>>),
}

impl SingleUse {
    /// Marks kept in `store`, which every instance shares.
    #[must_use]
    pub fn new(store: Arc<dyn ThrottleStore>) -> Self {
        Self {
            marks: Marks::Shared(store),
        }
    }

    /// Marks kept in this process, for a deployment of one instance (SQLite), where a durable
    /// write per marked request would cost more than the request (RFC 9449 §11.1 allows a
    /// per-server cache). They do not outlive the process: a value used shortly before a
    /// restart can be used once more after it, within its lifetime.
    #[must_use]
    pub fn local() -> Self {
        Self {
            marks: Marks::Local(Arc::new(Mutex::new(HashMap::new()))),
        }
    }

    /// Marks `value` of `owner` (a client id, a key thumbprint) as used and tells whether this
    /// was its first use. `valid_until` is when the value stops being accepted anyway (a
    /// local mark is kept until then). The key holds only a hash of both, so its length is
    /// fixed whatever the caller sends.
    ///
    /// # Errors
    /// Storage failures, or a full local map: the caller must then refuse the value (a mark
    /// that could not be set cannot prove a first use).
    pub async fn first_use(
        &self,
        kind: MarkKind,
        owner: &str,
        value: &str,
        now: Timestamp,
        valid_until: Timestamp,
    ) -> StoreResult<bool> {
        let mut input = Vec::with_capacity(owner.len() + value.len() + 1);
        input.extend_from_slice(owner.as_bytes());
        input.push(0);
        input.extend_from_slice(value.as_bytes());
        match &self.marks {
            Marks::Shared(store) => {
                let key = format!("{}:{}", kind.prefix(), TokenHash::of(&input).to_hex());
                // Window start 0: the counter never starts again, so only the first call sees 1.
                Ok(store.count_hit(&key, Timestamp(0), now).await? == 1)
            }
            Marks::Local(map) => {
                input.extend_from_slice(kind.prefix().as_bytes());
                let key = TokenHash::of(&input);
                let mut seen = map.lock().unwrap_or_else(PoisonError::into_inner);
                if seen.get(&key).is_some_and(|until| *until >= now.secs()) {
                    return Ok(false);
                }
                if seen.len() >= MAX_LOCAL_MARKS {
                    seen.retain(|_, until| *until >= now.secs());
                    if seen.len() >= MAX_LOCAL_MARKS {
                        return Err(StoreError::unavailable(std::io::Error::other(
                            "too many single-use values in flight",
                        )));
                    }
                }
                seen.insert(key, valid_until.secs().max(now.secs()));
                Ok(true)
            }
        }
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
        let until = Timestamp(1_060);
        let first = |kind, owner, value| marks.first_use(kind, owner, value, now, until);
        assert!(first(MarkKind::ClientAssertion, "app", "j1").await.unwrap());
        assert!(!first(MarkKind::ClientAssertion, "app", "j1").await.unwrap());
        // Much later (the counter's window never restarts) it is still used.
        assert!(
            !marks
                .first_use(
                    MarkKind::ClientAssertion,
                    "app",
                    "j1",
                    Timestamp(90_000),
                    Timestamp(90_060)
                )
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

    #[tokio::test]
    async fn local_marks_refuse_a_replay_until_the_value_expires() {
        let marks = SingleUse::local();
        let (now, until) = (Timestamp(1_000), Timestamp(1_065));
        let once = |kind, owner, value, at| marks.first_use(kind, owner, value, at, until);
        assert!(once(MarkKind::DpopProof, "k", "j", now).await.unwrap());
        assert!(
            !once(MarkKind::DpopProof, "k", "j", Timestamp(1_065))
                .await
                .unwrap()
        );
        assert!(once(MarkKind::DpopProof, "k2", "j", now).await.unwrap());
        assert!(
            once(MarkKind::ClientAssertion, "k", "j", now)
                .await
                .unwrap()
        );
        // Once the value could no longer be accepted anyway, its mark may go.
        assert!(
            once(MarkKind::DpopProof, "k", "j", Timestamp(1_066))
                .await
                .unwrap()
        );
    }
}
