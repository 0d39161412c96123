//! A count that every instance of a deployment shares, raised by every change that a copy kept
//! in one instance's memory could outlive: a revocation, a change to a client or a resource.
//!
//! Several instances cannot trust an event to reach them before a client's next request, so a
//! per-instance cache is only as good as a check against shared state. [`SharedGeneration`] is
//! that check at its cheapest: one read of one counter (one Redis `GET`). A cache stamps each
//! entry with the count it read *before* reading the store, and serves the entry only while the
//! count is unchanged. A change stores itself first, then raises the count, then reports done;
//! so the very next request on any instance reads a higher count and goes to the store, and a
//! fill that raced the change carries the older count and is never served.
//!
//! Within one request ([`in_request`]) the shared count is read once: a request that looks up a
//! client and then a token stamps both with the count of its first lookup, unless this process
//! counted a change in between, through any cache's counts, which ends the reuse.
//! A change reported done before the request began is in that first read, so the very next
//! request still refuses what the change ended; a change that completes while a request is under
//! way may or may not be seen by it, as with any request that overlaps a change.
//!
//! The price of one counter for everything is that any change empties every cache at once.
//! Revocations and changes to clients are rare next to the requests that read them; a
//! deployment that revokes hundreds of times a second loses the caches' benefit, never their
//! correctness.

use std::cell::Cell;
use std::sync::Arc;

use async_trait::async_trait;

use crate::store::StoreResult;

/// Counts the revocations this process has published or received. A cache of anything a
/// revocation could end stamps each entry with the count it was filled at and serves it only
/// while the count is unchanged, so it needs no knowledge of which event concerns which entry.
#[derive(Debug, Default)]
pub struct RevocationGeneration(std::sync::atomic::AtomicU64);

impl RevocationGeneration {
    /// The current count.
    #[must_use]
    pub fn current(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts one more revocation (or a gap in the events received).
    pub fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The shared count read by the request being served: which counter (its address),
/// [`CHANGES`] at the read, and the value read.
type Memo = Cell<Option<(usize, u64, u64)>>;

/// The changes this process has counted through any [`Generations`] (each cache has its own
/// local count, so a change counted by one must still end the reuse of a read by another).
static CHANGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn changes() -> u64 {
    CHANGES.load(std::sync::atomic::Ordering::SeqCst)
}

tokio::task_local! {
    static REQUEST_MEMO: Memo;
}

/// Runs `f` as one request: the shared count is read at most once within it while this
/// process changes nothing (see the module documentation). Outside such a scope every stamp
/// reads the count.
pub async fn in_request<F: Future>(f: F) -> F::Output {
    REQUEST_MEMO.scope(Cell::new(None), f).await
}

/// The shared count (see the module documentation).
#[async_trait]
pub trait SharedGeneration: Send + Sync + 'static {
    /// The count now: every raise reported done before this call began is in it.
    ///
    /// # Errors
    /// The shared store is unavailable (the caller fails closed).
    async fn current(&self) -> StoreResult<u64>;

    /// Raises the count; once this returns, every instance's next [`Self::current`] sees it.
    ///
    /// # Errors
    /// The shared store is unavailable: the change being reported must fail too, since caches
    /// elsewhere may still serve what it changed (for at most their time-to-live).
    async fn bump(&self) -> StoreResult<()>;
}

/// What a cache entry was filled under: this process's count of the changes it has seen, and
/// the deployment's shared count where several instances share the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    local: u64,
    shared: u64,
}

/// The counts a cache checks its entries against: always this process's, and the shared one
/// where there is one.
#[derive(Clone)]
pub struct Generations {
    local: Arc<RevocationGeneration>,
    shared: Option<Arc<dyn SharedGeneration>>,
}

impl Generations {
    /// This process's count alone: for a single instance, which hears of every change at once.
    #[must_use]
    pub fn local(local: Arc<RevocationGeneration>) -> Self {
        Self {
            local,
            shared: None,
        }
    }

    /// This process's count and the deployment's shared one.
    #[must_use]
    pub fn shared(local: Arc<RevocationGeneration>, shared: Arc<dyn SharedGeneration>) -> Self {
        Self {
            local,
            shared: Some(shared),
        }
    }

    /// The stamp now: read before the store, compared on every use. One round trip to the
    /// shared store where there is one.
    ///
    /// # Errors
    /// The shared store is unavailable.
    pub async fn stamp(&self) -> StoreResult<Stamp> {
        // The local count first: a local change after it is then seen by the comparison.
        let local = self.local.current();
        let Some(s) = &self.shared else {
            return Ok(Stamp { local, shared: 0 });
        };
        // The counter's address tells one shared count from another in the same request.
        let which = Arc::as_ptr(s).cast::<()>() as usize;
        let changes = changes();
        let memo = REQUEST_MEMO.try_with(Cell::get).ok().flatten();
        if let Some((w, c, shared)) = memo
            && w == which
            && c == changes
        {
            return Ok(Stamp { local, shared });
        }
        let shared = s.current().await?;
        // Outside a request there is nothing to keep it in.
        let _ = REQUEST_MEMO.try_with(|m| m.set(Some((which, changes, shared))));
        Ok(Stamp { local, shared })
    }

    /// Whether `stamp` may still be filled: nothing this process knows of changed since.
    /// (Shared changes are caught when the entry is next used.)
    #[must_use]
    pub fn locally_current(&self, stamp: Stamp) -> bool {
        self.local.current() == stamp.local
    }

    /// Counts a change made by this process: locally, and in the shared count before the
    /// caller reports the change done.
    ///
    /// # Errors
    /// The shared store is unavailable.
    pub async fn bump(&self) -> StoreResult<()> {
        self.local.bump();
        CHANGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match &self.shared {
            Some(s) => s.bump().await,
            None => Ok(()),
        }
    }

    /// Counts a change this process made or heard of, in this process only.
    pub fn bump_local(&self) {
        self.local.bump();
        CHANGES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A shared count in memory, standing for the one in Redis.
    #[derive(Default)]
    pub(crate) struct InMemory(pub(crate) AtomicU64);

    #[async_trait]
    impl SharedGeneration for InMemory {
        async fn current(&self) -> StoreResult<u64> {
            Ok(self.0.load(Ordering::SeqCst))
        }

        async fn bump(&self) -> StoreResult<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A log that keeps nothing: the publish path is what is under test.
    struct NoLog;

    #[async_trait]
    impl crate::events::RevocationLog for NoLog {
        async fn append_event(
            &self,
            _: &crate::events::RevocationEvent,
            _: crate::Timestamp,
            _: crate::Timestamp,
        ) -> StoreResult<i64> {
            Ok(1)
        }

        async fn events_after(
            &self,
            _: i64,
            _: crate::Timestamp,
            _: u32,
        ) -> StoreResult<Vec<crate::events::LoggedEvent>> {
            Ok(Vec::new())
        }

        async fn purge_events(&self, _: crate::Timestamp) -> StoreResult<u64> {
            Ok(0)
        }
    }

    /// Every revocation published raises the shared count before the publish returns: the
    /// raise, not the event's delivery, is what lets another instance refuse what it kept
    /// from its very next request.
    #[tokio::test]
    async fn every_publish_raises_the_shared_count_before_it_returns() {
        use crate::events::{DurableBus, EventBus, InProcessBus, RevocationEvent};
        let shared = Arc::new(InMemory::default());
        let bus = DurableBus::new(
            Arc::new(NoLog),
            Arc::new(InProcessBus::default()),
            Arc::new(crate::ManualClock::new(crate::Timestamp(1_000))),
            3_600,
        )
        .with_shared_generation(shared.clone());
        let other_instance = Generations::shared(Arc::default(), shared.clone());
        let before = other_instance.stamp().await.unwrap();
        bus.publish(&RevocationEvent::FamilyRevoked {
            family_id: "f1".into(),
            user_id: crate::user::UserId("u1".into()),
        })
        .await
        .unwrap();
        assert_eq!(shared.current().await.unwrap(), 1);
        assert_ne!(other_instance.stamp().await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_stamp_changes_with_either_count() {
        let local = Arc::new(RevocationGeneration::default());
        let shared = Arc::new(InMemory::default());
        let g = Generations::shared(Arc::clone(&local), shared.clone());
        let first = g.stamp().await.unwrap();
        assert_eq!(g.stamp().await.unwrap(), first);
        // Another instance's change.
        shared.bump().await.unwrap();
        let second = g.stamp().await.unwrap();
        assert_ne!(second, first);
        assert!(g.locally_current(second));
        // A change this process heard of.
        g.bump_local();
        assert!(!g.locally_current(second));
        assert_ne!(g.stamp().await.unwrap(), second);
        // A change this process made raises both.
        let before = shared.current().await.unwrap();
        g.bump().await.unwrap();
        assert_eq!(shared.current().await.unwrap(), before + 1);
    }
}
