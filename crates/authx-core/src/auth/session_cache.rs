//! This instance's cache of live sessions, keyed by token hash, so most requests cost no store
//! read. Every revocation invalidates it before the call returns; events from other instances
//! invalidate it as they arrive, and a gap in the event bus drops it whole. A change made
//! behind the process's back (the `authx` command line writing the same SQLite file, which
//! publishes no event this process hears) is seen within [`crate::cache::TTL`]: no entry is
//! served older than that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::events::RevocationEvent;
use crate::secret::TokenHash;

use super::Authenticated;

/// A bounded map from token hash to the identity behind it. Invalidation bumps an epoch so that
/// a lookup that began before a revocation cannot put a stale entry back afterwards.
pub(super) struct SessionCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

/// A cached identity and when it was read from the store.
struct Cached {
    auth: Arc<Authenticated>,
    read_at: Instant,
}

#[derive(Default)]
struct CacheInner {
    epoch: u64,
    bus_epoch: u64,
    /// Each identity and when it was read from the store.
    map: HashMap<TokenHash, Cached>,
}

impl SessionCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry for `hash`, if any, and the epoch to pass to [`Self::put_if_epoch`]; first
    /// drops everything when the bus reports a new epoch (events may have been lost).
    pub(super) fn lookup(
        &self,
        hash: &TokenHash,
        bus_epoch: u64,
    ) -> (Option<Arc<Authenticated>>, u64) {
        let mut inner = self.lock();
        if inner.bus_epoch != bus_epoch {
            inner.bus_epoch = bus_epoch;
            inner.epoch += 1;
            inner.map.clear();
        }
        let fresh = inner
            .map
            .get(hash)
            .filter(|c| c.read_at.elapsed() < crate::cache::TTL)
            .map(|c| Arc::clone(&c.auth));
        (fresh, inner.epoch)
    }

    pub(super) fn put_if_epoch(&self, hash: TokenHash, auth: Arc<Authenticated>, epoch: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if !inner.map.contains_key(&hash) {
            // Random eviction: no recency to track on the hot path.
            crate::cache::make_room(&mut inner.map, self.capacity);
        }
        let read_at = Instant::now();
        inner.map.insert(hash, Cached { auth, read_at });
    }

    pub(super) fn remove(&self, hash: &TokenHash) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.remove(hash);
    }

    /// Drops the cached sessions of `user`, so the next request reads the changed account
    /// (a verified address) from the store.
    pub(super) fn forget_user(&self, user: &crate::user::UserId) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.retain(|_, c| &c.auth.user.id != user);
    }

    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.clear();
    }

    pub(super) fn invalidate(&self, event: &RevocationEvent) {
        let mut inner = self.lock();
        inner.epoch += 1;
        match event {
            RevocationEvent::SessionEnded { session_id, .. } => {
                inner.map.retain(|_, c| &c.auth.session.id != session_id);
            }
            RevocationEvent::UserSessionsEnded { user_id, kept, .. } => {
                inner.map.retain(|_, c| {
                    &c.auth.user.id != user_id || Some(&c.auth.session.id) == kept.as_ref()
                });
            }
            // Sessions hold no grant or client: nothing cached here is tied to these.
            RevocationEvent::FamilyRevoked { .. }
            | RevocationEvent::AccessTokenRevoked { .. }
            | RevocationEvent::ClientRevoked { .. } => {}
            RevocationEvent::UserDisabled { user_id }
            | RevocationEvent::UserChanged { user_id } => {
                inner.map.retain(|_, c| &c.auth.user.id != user_id);
            }
        }
    }
}
