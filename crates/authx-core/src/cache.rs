//! Read-through caches in front of the stores.
//!
//! Every token, introspection and revocation request authenticates a client and reads its
//! failure counter, and most read a resource: rows that change a few times a year, or (the
//! counter) only when this very process writes them. Reading them from memory saves the
//! database round trips that dominate those requests (BENCHMARKS.md).
//!
//! # Consistency
//! - Writes go through the decorator, which forgets the entry after the store has it. An
//!   epoch stops a read that began before a write from putting the old row back afterwards, so
//!   a change made through this process holds from the very next request.
//! - With several instances ([`CachedClients::checked`] with a shared
//!   [`Generations`](crate::generation::Generations)), every lookup first reads the count
//!   every instance shares (one Redis `GET` in place of a database query), and every write
//!   bumps it before it returns: a client changed or deleted on one instance is read afresh by
//!   the very next request on any other.
//! - Changes made behind the server's back (the `authx` CLI run against the same SQLite file
//!   while the server runs) are seen within [`TTL`]: no entry is older than that.
//! - Only rows that exist are cached for clients and resources, so unknown ids sent by anyone
//!   cannot fill memory; failure counters are cached either way (most keys have none). Each
//!   cache is bounded: when full it starts over. Failure counters are cached only by a single
//!   instance ([`CachedThrottle`]); several share them in Redis.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::Timestamp;
use crate::generation::{Generations, Stamp};
use crate::oauth::client::{Client, Resource};
use crate::oauth::store::ClientStore;
use crate::store::{FailureCount, StoreResult, ThrottleStore};

/// The longest an entry is served before the store is asked again.
pub const TTL: Duration = Duration::from_secs(5);

/// Clients and resources kept.
const CLIENT_CAPACITY: usize = 1024;
/// Failure counters kept.
const THROTTLE_CAPACITY: usize = 10_000;

/// When `map` holds `capacity` entries or more, drops an arbitrary eighth of them: the order
/// of a `HashMap` is seeded at random per process, so this is random eviction, which keeps most
/// of a hot set without tracking recency on every hit (and, unlike starting over, never drops
/// all of it at once).
pub(crate) fn make_room<K, V>(map: &mut HashMap<K, V>, capacity: usize) {
    if map.len() < capacity {
        return;
    }
    let mut drop = (map.len() / 8).max(map.len() + 1 - capacity);
    map.retain(|_, _| {
        if drop == 0 {
            return true;
        }
        drop -= 1;
        false
    });
}

/// A bounded map whose entries expire after [`TTL`], with an epoch against stale fills.
struct Memo<K, V> {
    capacity: usize,
    inner: Mutex<MemoInner<K, V>>,
}

struct MemoInner<K, V> {
    epoch: u64,
    map: HashMap<K, (V, Instant, Stamp)>,
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(MemoInner {
                epoch: 0,
                map: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoInner<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh entry filled under `stamp`, or `None` and the epoch a fill must still match.
    fn get<Q>(&self, key: &Q, stamp: Stamp) -> Result<V, u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.lock();
        match inner.map.get(key) {
            Some((v, filled, s)) if *s == stamp && filled.elapsed() < TTL => Ok(v.clone()),
            _ => Err(inner.epoch),
        }
    }

    fn fill(&self, key: K, value: V, epoch: u64, stamp: Stamp) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.map.len() >= self.capacity {
            // Expired entries go first; if that frees nothing, an arbitrary eighth.
            inner
                .map
                .retain(|_, (_, filled, s)| *s == stamp && filled.elapsed() < TTL);
            make_room(&mut inner.map, self.capacity);
        }
        inner.map.insert(key, (value, Instant::now(), stamp));
    }

    fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.remove(key);
    }

    fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.clear();
    }
}

impl<V: Clone> Memo<String, V> {
    /// The fresh entry for `key` filled under `stamp` (read before this call), or what `load`
    /// reads from the store, kept under `stamp` if `keep` says so. (`load` is called only on a
    /// miss: a store call allocates its future.)
    async fn read_through<F>(
        &self,
        key: &str,
        stamp: Stamp,
        load: impl FnOnce() -> F,
        keep: fn(&V) -> bool,
    ) -> StoreResult<V>
    where
        F: std::future::Future<Output = StoreResult<V>>,
    {
        let epoch = match self.get(key, stamp) {
            Ok(v) => return Ok(v),
            Err(epoch) => epoch,
        };
        let found = load().await?;
        if keep(&found) {
            self.fill(key.to_owned(), found.clone(), epoch, stamp);
        }
        Ok(found)
    }
}

/// A [`ClientStore`] that serves clients and resources from memory (see the module docs).
pub struct CachedClients {
    inner: Arc<dyn ClientStore>,
    // Only rows that exist are kept (`Some`).
    clients: Memo<String, Option<Client>>,
    resources: Memo<String, Option<Resource>>,
    generations: Generations,
    generation: Option<Arc<crate::events::RevocationGeneration>>,
}

impl CachedClients {
    /// Caches reads of `inner`, for the one instance that writes its database.
    #[must_use]
    pub fn new(inner: Arc<dyn ClientStore>) -> Self {
        Self::checked(inner, Generations::local(Arc::default()))
    }

    /// Caches reads of `inner`, each entry checked on use against `generations`, which every
    /// write here bumps before it returns: with a shared count, for instances that share the
    /// store (one read of the count per lookup in place of a database query).
    #[must_use]
    pub fn checked(inner: Arc<dyn ClientStore>, generations: Generations) -> Self {
        Self {
            inner,
            clients: Memo::new(CLIENT_CAPACITY),
            resources: Memo::new(CLIENT_CAPACITY),
            generations,
            generation: None,
        }
    }

    /// Bumps `generation` when a client is deleted: its grants go with it, without a
    /// revocation event, so access tokens kept in memory must be checked again.
    #[must_use]
    pub fn with_generation(mut self, generation: Arc<crate::events::RevocationGeneration>) -> Self {
        self.generation = Some(generation);
        self
    }

    /// `written`, once the change is counted: the local entry of `key` forgotten by `forget`,
    /// and the generations bumped. A write that failed may still have been stored, so the
    /// count goes up either way; failing to count it fails the call.
    async fn counted<T>(&self, written: StoreResult<T>, forget: impl FnOnce()) -> StoreResult<T> {
        forget();
        self.generations.bump().await?;
        written
    }
}

#[async_trait]
impl ClientStore for CachedClients {
    async fn put_client(&self, client: &Client) -> StoreResult<()> {
        let r = self.inner.put_client(client).await;
        self.counted(r, || self.clients.forget(client.id.as_str()))
            .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<Client>> {
        let stamp = self.generations.stamp().await?;
        self.clients
            .read_through(id, stamp, || self.inner.client(id), Option::is_some)
            .await
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        self.inner.list_clients().await
    }

    async fn page_clients(&self, offset: u64, limit: u32) -> StoreResult<(Vec<Client>, u64)> {
        self.inner.page_clients(offset, limit).await
    }

    async fn update_client(&self, client: &Client) -> StoreResult<bool> {
        let r = self.inner.update_client(client).await;
        self.counted(r, || self.clients.forget(client.id.as_str()))
            .await
    }

    async fn delete_client(&self, id: &str) -> StoreResult<bool> {
        let r = self.inner.delete_client(id).await;
        if let Some(g) = &self.generation {
            g.bump();
        }
        self.counted(r, || self.clients.forget(id)).await
    }

    async fn put_resource(&self, resource: &Resource) -> StoreResult<()> {
        let r = self.inner.put_resource(resource).await;
        self.counted(r, || self.resources.forget(resource.id.as_str()))
            .await
    }

    async fn resource(&self, id: &str) -> StoreResult<Option<Resource>> {
        let stamp = self.generations.stamp().await?;
        self.resources
            .read_through(id, stamp, || self.inner.resource(id), Option::is_some)
            .await
    }

    async fn list_resources(&self) -> StoreResult<Vec<Resource>> {
        self.inner.list_resources().await
    }

    async fn delete_resource(&self, id: &str) -> StoreResult<bool> {
        let r = self.inner.delete_resource(id).await;
        // The resource left the lists of the clients that had it.
        self.counted(r, || {
            self.resources.forget(id);
            self.clients.clear();
        })
        .await
    }
}

/// A [`ThrottleStore`] that serves failure counters from memory (see the module docs). Rate
/// limit hits always go to the store.
pub struct CachedThrottle {
    inner: Arc<dyn ThrottleStore>,
    counters: Memo<String, Option<FailureCount>>,
}

impl CachedThrottle {
    /// Caches reads of `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn ThrottleStore>) -> Self {
        Self {
            inner,
            counters: Memo::new(THROTTLE_CAPACITY),
        }
    }
}

#[async_trait]
impl ThrottleStore for CachedThrottle {
    async fn record_failure(
        &self,
        key: &str,
        now: Timestamp,
        reset_after_secs: i64,
    ) -> StoreResult<FailureCount> {
        // Parallel failures may return in any order: the next read asks the store.
        let r = self.inner.record_failure(key, now, reset_after_secs).await;
        self.counters.forget(key);
        r
    }

    async fn failures(&self, key: &str) -> StoreResult<Option<FailureCount>> {
        // No counter is kept too: most keys have none.
        self.counters
            .read_through(key, Stamp::default(), || self.inner.failures(key), |_| true)
            .await
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        let r = self.inner.clear_failures(key).await;
        self.counters.forget(key);
        r
    }

    async fn purge_failures(&self, before: Timestamp) -> StoreResult<u64> {
        let r = self.inner.purge_failures(before).await;
        self.counters.clear();
        r
    }

    async fn count_hit(
        &self,
        key: &str,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        self.inner.count_hit(key, window_start, now).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store that counts its reads.
    #[derive(Default)]
    struct Counting {
        reads: AtomicUsize,
        resources: Mutex<HashMap<String, Resource>>,
        counters: Mutex<HashMap<String, FailureCount>>,
    }

    impl Counting {
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl ClientStore for Counting {
        async fn put_client(&self, _: &Client) -> StoreResult<()> {
            Ok(())
        }
        async fn client(&self, _: &str) -> StoreResult<Option<Client>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
        async fn list_clients(&self) -> StoreResult<Vec<Client>> {
            Ok(Vec::new())
        }
        async fn page_clients(&self, _: u64, _: u32) -> StoreResult<(Vec<Client>, u64)> {
            Ok((Vec::new(), 0))
        }
        async fn delete_client(&self, _: &str) -> StoreResult<bool> {
            Ok(false)
        }
        async fn update_client(&self, _: &Client) -> StoreResult<bool> {
            Ok(false)
        }
        async fn put_resource(&self, r: &Resource) -> StoreResult<()> {
            self.resources
                .lock()
                .unwrap()
                .insert(r.id.clone(), r.clone());
            Ok(())
        }
        async fn resource(&self, id: &str) -> StoreResult<Option<Resource>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.resources.lock().unwrap().get(id).cloned())
        }
        async fn list_resources(&self) -> StoreResult<Vec<Resource>> {
            Ok(self.resources.lock().unwrap().values().cloned().collect())
        }
        async fn delete_resource(&self, id: &str) -> StoreResult<bool> {
            Ok(self.resources.lock().unwrap().remove(id).is_some())
        }
    }

    #[async_trait]
    impl ThrottleStore for Counting {
        async fn record_failure(
            &self,
            key: &str,
            now: Timestamp,
            _: i64,
        ) -> StoreResult<FailureCount> {
            let mut m = self.counters.lock().unwrap();
            let c = m.entry(key.to_owned()).or_insert(FailureCount {
                failures: 0,
                last_failure_at: now,
            });
            c.failures += 1;
            c.last_failure_at = now;
            Ok(*c)
        }
        async fn failures(&self, key: &str) -> StoreResult<Option<FailureCount>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.counters.lock().unwrap().get(key).copied())
        }
        async fn clear_failures(&self, key: &str) -> StoreResult<()> {
            self.counters.lock().unwrap().remove(key);
            Ok(())
        }
        async fn purge_failures(&self, _: Timestamp) -> StoreResult<u64> {
            let mut m = self.counters.lock().unwrap();
            let n = m.len() as u64;
            m.clear();
            Ok(n)
        }
        async fn count_hit(&self, _: &str, _: Timestamp, _: Timestamp) -> StoreResult<u32> {
            Ok(1)
        }
    }

    fn api(id: &str, scope: &str) -> Resource {
        Resource {
            id: id.into(),
            scopes: vec![scope.into()],
            created_at: Timestamp(1),
        }
    }

    #[tokio::test]
    async fn resources_are_read_once_and_writes_through_the_cache_hold_at_once() {
        let store = Arc::new(Counting::default());
        let cache = CachedClients::new(store.clone());
        cache.put_resource(&api("urn:api", "read")).await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                cache.resource("urn:api").await.unwrap().unwrap().scopes,
                ["read"]
            );
        }
        assert_eq!(store.reads(), 1, "served from memory after the first read");

        assert!(cache.delete_resource("urn:api").await.unwrap());
        assert_eq!(
            cache.resource("urn:api").await.unwrap(),
            None,
            "deleted means gone"
        );
        cache.put_resource(&api("urn:api", "write")).await.unwrap();
        assert_eq!(
            cache.resource("urn:api").await.unwrap().unwrap().scopes,
            ["write"],
            "a new registration replaces the cached one"
        );
    }

    #[tokio::test]
    async fn unknown_ids_are_never_cached() {
        let store = Arc::new(Counting::default());
        let cache = CachedClients::new(store.clone());
        for i in 0..5 {
            assert_eq!(cache.client("nobody").await.unwrap(), None);
            assert_eq!(cache.resource(&format!("urn:x{i}")).await.unwrap(), None);
        }
        assert_eq!(store.reads(), 10, "every unknown id goes to the store");
        assert!(cache.resources.lock().map.is_empty());
    }

    #[tokio::test]
    async fn a_read_that_began_before_a_write_cannot_put_the_old_row_back() {
        let store = Arc::new(Counting::default());
        let cache = CachedClients::new(store.clone());
        store.put_resource(&api("urn:api", "read")).await.unwrap();
        // A read misses and notes the epoch; a deletion lands before the read fills.
        let Err(epoch) = cache.resources.get("urn:api", Stamp::default()) else {
            panic!("empty cache");
        };
        let old = store.resource("urn:api").await.unwrap();
        cache.delete_resource("urn:api").await.unwrap();
        cache
            .resources
            .fill("urn:api".into(), old, epoch, Stamp::default());
        assert_eq!(cache.resource("urn:api").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_change_on_another_instance_is_read_at_once() {
        use crate::generation::tests::InMemory;
        let store = Arc::new(Counting::default());
        let shared = Arc::new(InMemory::default());
        let on = || {
            CachedClients::checked(
                store.clone(),
                Generations::shared(Arc::default(), shared.clone()),
            )
        };
        let (a, b) = (on(), on());
        b.put_resource(&api("urn:api", "read")).await.unwrap();
        assert_eq!(
            a.resource("urn:api").await.unwrap(),
            Some(api("urn:api", "read"))
        );
        assert_eq!(
            a.resource("urn:api").await.unwrap(),
            Some(api("urn:api", "read"))
        );
        assert_eq!(store.reads(), 1, "the second read is served from memory");
        b.put_resource(&api("urn:api", "write")).await.unwrap();
        assert_eq!(
            a.resource("urn:api").await.unwrap(),
            Some(api("urn:api", "write")),
            "the very next read on A sees B's change"
        );
        b.delete_resource("urn:api").await.unwrap();
        assert_eq!(a.resource("urn:api").await.unwrap(), None);
    }

    #[tokio::test]
    async fn failure_counters_are_cached_and_every_failure_is_seen() {
        let store = Arc::new(Counting::default());
        let cache = CachedThrottle::new(store.clone());
        let now = Timestamp(100);
        assert_eq!(cache.failures("client:a").await.unwrap(), None);
        assert_eq!(cache.failures("client:a").await.unwrap(), None);
        assert_eq!(store.reads(), 1, "no counter is cached too");
        for n in 1..=3 {
            cache.record_failure("client:a", now, 60).await.unwrap();
            assert_eq!(
                cache
                    .failures("client:a")
                    .await
                    .unwrap()
                    .map(|c| c.failures),
                Some(n),
                "failure {n} counts at once"
            );
        }
        cache.clear_failures("client:a").await.unwrap();
        assert_eq!(cache.failures("client:a").await.unwrap(), None);
        cache.record_failure("client:b", now, 60).await.unwrap();
        assert!(cache.failures("client:b").await.unwrap().is_some());
        cache.purge_failures(Timestamp(200)).await.unwrap();
        assert_eq!(cache.failures("client:b").await.unwrap(), None, "purged");
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let memo: Memo<u32, u32> = Memo::new(8);
        for i in 0..100 {
            let epoch = memo.get(&i, Stamp::default()).unwrap_err();
            memo.fill(i, i, epoch, Stamp::default());
            assert!(memo.lock().map.len() <= 8);
        }
        assert_eq!(memo.get(&99, Stamp::default()), Ok(99));
    }

    #[test]
    fn making_room_drops_an_eighth_not_everything() {
        let mut map: HashMap<u32, ()> = (0..800).map(|i| (i, ())).collect();
        make_room(&mut map, 800);
        assert_eq!(map.len(), 700);
        make_room(&mut map, 800);
        assert_eq!(map.len(), 700, "below capacity: untouched");
        let mut tiny: HashMap<u32, ()> = (0..3).map(|i| (i, ())).collect();
        make_room(&mut tiny, 3);
        assert_eq!(tiny.len(), 2, "at least one goes");
    }
}
