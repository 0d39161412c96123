//! Access tokens this server found active, kept so that introspecting or presenting the same
//! token again costs a hash and a map lookup instead of a signature check and the revocation
//! queries.
//!
//! An entry is served only while nothing has been revoked since it was filled, for at most
//! [`TTL_SECS`], and never past the token's own expiry. "Nothing revoked" is a
//! [`Stamp`](crate::generation::Stamp) of [`Generations`]: any revocation published or received
//! by this process bumps its local count, and where several instances share the store, any
//! revocation anywhere bumps the shared count (one Redis `GET` per lookup), so a token revoked
//! on another instance is refused here from the very next request. Tokens minted from a browser
//! session (a `sid` and no family) are not kept: the session can end by idling out, which
//! publishes nothing. A grant's tokens are checked against their family alone, which ends only
//! by revocation.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::Timestamp;
use crate::generation::{Generations, Stamp};
use crate::oauth::jwt::AccessTokenClaims;
use crate::secret::TokenHash;
use crate::store::StoreResult;

/// The longest an entry is served: the bound on a change this process cannot hear of (the CLI
/// disabling a user in the same SQLite file).
pub const TTL_SECS: i64 = 30;
/// Entries kept.
const CAPACITY: usize = 10_000;

pub(crate) struct TokenCache {
    generations: Generations,
    map: Mutex<HashMap<TokenHash, Entry>>,
}

struct Entry {
    claims: AccessTokenClaims,
    stamp: Stamp,
    until: i64,
}

impl TokenCache {
    pub(crate) fn new(generations: Generations) -> Self {
        Self {
            generations,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stamp a lookup starts at: pass it to [`Self::get`] and then to [`Self::put`].
    ///
    /// # Errors
    /// The shared count cannot be read (the caller fails closed).
    pub(crate) async fn stamp(&self) -> StoreResult<Stamp> {
        self.generations.stamp().await
    }

    /// Makes every entry stale (new keys).
    pub(crate) fn invalidate(&self) {
        self.generations.bump_local();
    }

    /// The claims kept for `hash`, if they were found active under `stamp` (read just now).
    pub(crate) fn get(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        stamp: Stamp,
    ) -> Option<AccessTokenClaims> {
        let map = self.lock();
        map.get(hash)
            .filter(|e| e.stamp == stamp && now.secs() < e.until)
            .map(|e| e.claims.clone())
    }

    /// Keeps `claims`, found active by a check that began at `stamp`, unless this process
    /// knows of a revocation since (a shared one makes the entry stale at its first use).
    /// `expires` is when the token stops being valid (its `exp` plus the verification leeway).
    pub(crate) fn put(
        &self,
        hash: TokenHash,
        claims: &AccessTokenClaims,
        stamp: Stamp,
        now: Timestamp,
        expires: i64,
    ) {
        let mut map = self.lock();
        // Read under the lock: a bump after this point makes the entry stale at its first use.
        if !self.generations.locally_current(stamp) {
            return;
        }
        if map.len() >= CAPACITY {
            map.retain(|_, e| e.stamp == stamp && now.secs() < e.until);
            crate::cache::make_room(&mut map, CAPACITY);
        }
        map.insert(
            hash,
            Entry {
                claims: claims.clone(),
                stamp,
                until: expires.min(now.secs().saturating_add(TTL_SECS)),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::RevocationGeneration;

    fn claims(exp: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://id.example.com".into(),
            sub: "client:app".into(),
            aud: "urn:api".into(),
            exp,
            iat: exp - 900,
            jti: "j1".into(),
            client_id: "app".into(),
            scope: "read".into(),
            sid: None,
            fid: None,
            auth_time: None,
            acr: None,
            cnf: None,
        }
    }

    fn setup() -> (Arc<RevocationGeneration>, TokenCache, TokenHash) {
        let generation = Arc::new(RevocationGeneration::default());
        let cache = TokenCache::new(Generations::local(Arc::clone(&generation)));
        (
            generation,
            cache,
            TokenHash::of(b"header.payload.signature"),
        )
    }

    #[tokio::test]
    async fn an_entry_is_served_until_anything_is_revoked() {
        let (generation, cache, hash) = setup();
        let now = Timestamp(1_000);
        let g = cache.stamp().await.unwrap();
        cache.put(hash, &claims(1_900), g, now, 1_930);
        let g = cache.stamp().await.unwrap();
        assert_eq!(cache.get(&hash, now, g), Some(claims(1_900)));
        generation.bump();
        let g = cache.stamp().await.unwrap();
        assert_eq!(
            cache.get(&hash, now, g),
            None,
            "a revocation makes it stale"
        );
    }

    #[tokio::test]
    async fn a_check_that_raced_a_revocation_is_not_kept() {
        let (generation, cache, hash) = setup();
        let now = Timestamp(1_000);
        let g = cache.stamp().await.unwrap();
        // The revocation is published while the check is still reading the store.
        generation.bump();
        cache.put(hash, &claims(1_900), g, now, 1_930);
        assert!(cache.lock().is_empty());
        let g = cache.stamp().await.unwrap();
        assert_eq!(cache.get(&hash, now, g), None);
    }

    #[tokio::test]
    async fn a_revocation_on_another_instance_makes_every_entry_stale() {
        let shared = Arc::new(crate::generation::tests::InMemory::default());
        let cache = TokenCache::new(Generations::shared(
            Arc::new(RevocationGeneration::default()),
            shared.clone(),
        ));
        let hash = TokenHash::of(b"header.payload.signature");
        let now = Timestamp(1_000);
        // A check that began before another instance's revocation is kept, but never served.
        let before = cache.stamp().await.unwrap();
        crate::generation::SharedGeneration::bump(shared.as_ref())
            .await
            .unwrap();
        cache.put(hash, &claims(1_900), before, now, 1_930);
        let after = cache.stamp().await.unwrap();
        assert_eq!(cache.get(&hash, now, after), None);
        // Filled and read under the same count: served.
        cache.put(hash, &claims(1_900), after, now, 1_930);
        assert!(
            cache
                .get(&hash, now, cache.stamp().await.unwrap())
                .is_some()
        );
    }

    #[tokio::test]
    async fn an_entry_never_outlives_the_token_or_the_ttl() {
        let (_, cache, hash) = setup();
        let now = Timestamp(1_000);
        let g = cache.stamp().await.unwrap();
        cache.put(hash, &claims(1_010), g, now, 1_010);
        assert!(cache.get(&hash, Timestamp(1_009), g).is_some());
        assert_eq!(cache.get(&hash, Timestamp(1_010), g), None, "expired token");

        cache.put(hash, &claims(5_000), g, now, 5_000);
        assert!(
            cache
                .get(&hash, Timestamp(1_000 + TTL_SECS - 1), g)
                .is_some()
        );
        assert_eq!(
            cache.get(&hash, Timestamp(1_000 + TTL_SECS), g),
            None,
            "TTL"
        );
    }

    #[tokio::test]
    async fn new_keys_make_every_entry_stale() {
        let (_, cache, hash) = setup();
        let now = Timestamp(1_000);
        cache.put(
            hash,
            &claims(1_900),
            cache.stamp().await.unwrap(),
            now,
            1_930,
        );
        cache.invalidate();
        assert_eq!(cache.get(&hash, now, cache.stamp().await.unwrap()), None);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let (_, cache, _) = setup();
        let now = Timestamp(1_000);
        let g = cache.stamp().await.unwrap();
        for i in 0..(CAPACITY + 10) {
            let hash = TokenHash::of(i.to_string().as_bytes());
            cache.put(hash, &claims(1_900), g, now, 1_930);
        }
        assert!(cache.lock().len() <= CAPACITY);
    }
}
