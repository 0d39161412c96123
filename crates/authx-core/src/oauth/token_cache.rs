//! Access tokens this server found active, kept so that introspecting or presenting the same
//! token again costs a hash and a map lookup instead of a signature check and the revocation
//! queries.
//!
//! An entry is served only while nothing has been revoked since it was filled (any revocation
//! published or received bumps the [`RevocationGeneration`], which makes every entry stale), for
//! at most [`TTL_SECS`], and never past the token's own expiry. Tokens minted from a browser
//! session (a `sid` and no family) are not kept: the session can end by idling out, which
//! publishes nothing. A grant's tokens are checked against their family alone, which ends only
//! by revocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Timestamp;
use crate::events::RevocationGeneration;
use crate::oauth::jwt::AccessTokenClaims;
use crate::secret::TokenHash;

/// The longest an entry is served: the bound on a change this process cannot hear of (the CLI
/// disabling a user in the same SQLite file).
pub const TTL_SECS: i64 = 30;
/// Entries kept.
const CAPACITY: usize = 10_000;

pub(crate) struct TokenCache {
    generation: Arc<RevocationGeneration>,
    map: Mutex<HashMap<TokenHash, Entry>>,
}

struct Entry {
    claims: AccessTokenClaims,
    generation: u64,
    until: i64,
}

impl TokenCache {
    pub(crate) fn new(generation: Arc<RevocationGeneration>) -> Self {
        Self {
            generation,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation a lookup starts at; pass it to [`Self::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.current()
    }

    /// Makes every entry stale (new keys).
    pub(crate) fn invalidate(&self) {
        self.generation.bump();
    }

    pub(crate) fn get(&self, hash: &TokenHash, now: Timestamp) -> Option<AccessTokenClaims> {
        let generation = self.generation.current();
        let map = self.lock();
        map.get(hash)
            .filter(|e| e.generation == generation && now.secs() < e.until)
            .map(|e| e.claims.clone())
    }

    /// Keeps `claims`, found active by a check that began at `generation`, unless something
    /// was revoked since. `expires` is when the token stops being valid (its `exp` plus the
    /// verification leeway).
    pub(crate) fn put(
        &self,
        hash: TokenHash,
        claims: &AccessTokenClaims,
        generation: u64,
        now: Timestamp,
        expires: i64,
    ) {
        let mut map = self.lock();
        // Read under the lock: a bump after this point makes the entry stale at its first use.
        let current = self.generation.current();
        if current != generation {
            return;
        }
        if map.len() >= CAPACITY {
            map.retain(|_, e| e.generation == current && now.secs() < e.until);
            crate::cache::make_room(&mut map, CAPACITY);
        }
        map.insert(
            hash,
            Entry {
                claims: claims.clone(),
                generation,
                until: expires.min(now.secs().saturating_add(TTL_SECS)),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cache = TokenCache::new(Arc::clone(&generation));
        (
            generation,
            cache,
            TokenHash::of(b"header.payload.signature"),
        )
    }

    #[test]
    fn an_entry_is_served_until_anything_is_revoked() {
        let (generation, cache, hash) = setup();
        let now = Timestamp(1_000);
        let g = cache.generation();
        cache.put(hash, &claims(1_900), g, now, 1_930);
        assert_eq!(cache.get(&hash, now), Some(claims(1_900)));
        generation.bump();
        assert_eq!(cache.get(&hash, now), None, "a revocation makes it stale");
    }

    #[test]
    fn a_check_that_raced_a_revocation_is_not_kept() {
        let (generation, cache, hash) = setup();
        let now = Timestamp(1_000);
        let g = cache.generation();
        // The revocation is published while the check is still reading the store.
        generation.bump();
        cache.put(hash, &claims(1_900), g, now, 1_930);
        assert_eq!(cache.get(&hash, now), None);
    }

    #[test]
    fn an_entry_never_outlives_the_token_or_the_ttl() {
        let (_, cache, hash) = setup();
        let now = Timestamp(1_000);
        cache.put(hash, &claims(1_010), cache.generation(), now, 1_010);
        assert!(cache.get(&hash, Timestamp(1_009)).is_some());
        assert_eq!(cache.get(&hash, Timestamp(1_010)), None, "expired token");

        cache.put(hash, &claims(5_000), cache.generation(), now, 5_000);
        assert!(cache.get(&hash, Timestamp(1_000 + TTL_SECS - 1)).is_some());
        assert_eq!(cache.get(&hash, Timestamp(1_000 + TTL_SECS)), None, "TTL");
    }

    #[test]
    fn new_keys_make_every_entry_stale() {
        let (_, cache, hash) = setup();
        let now = Timestamp(1_000);
        cache.put(hash, &claims(1_900), cache.generation(), now, 1_930);
        cache.invalidate();
        assert_eq!(cache.get(&hash, now), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let (_, cache, _) = setup();
        let now = Timestamp(1_000);
        for i in 0..(CAPACITY + 10) {
            let hash = TokenHash::of(i.to_string().as_bytes());
            cache.put(hash, &claims(1_900), cache.generation(), now, 1_930);
        }
        assert!(cache.lock().len() <= CAPACITY);
    }
}
