//! Storage ports of the provider. Every backend implements them and passes the conformance
//! suite; what must happen once (code redemption, refresh rotation) is one atomic call.

use async_trait::async_trait;

use super::client::{Client, Resource};
use super::grant::{
    AuthCode, CodeRedemption, Consent, Redemption, RefreshFamily, RefreshToken, Rotation,
};
use super::keys::{KeyState, StoredKey};
use crate::Timestamp;
use crate::secret::TokenHash;
use crate::session::SessionId;
use crate::store::StoreResult;
use crate::user::UserId;

/// Clients and API resources.
#[async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// Registers a client. [`crate::StoreError::Conflict`] when the id is taken.
    async fn put_client(&self, client: &Client) -> StoreResult<()>;
    /// A client by id.
    async fn client(&self, id: &str) -> StoreResult<Option<Client>>;
    /// Every client, by id.
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// At most `limit` clients by id after skipping `offset`, and how many there are in all.
    async fn page_clients(&self, offset: u64, limit: u32) -> StoreResult<(Vec<Client>, u64)>;
    /// Removes a client and everything issued to it. Returns whether it existed.
    async fn delete_client(&self, id: &str) -> StoreResult<bool>;
    /// Replaces every field of the client with `client.id` (its grants stay). Returns whether
    /// it existed.
    async fn update_client(&self, client: &Client) -> StoreResult<bool>;
    /// Registers an API resource. [`crate::StoreError::Conflict`] when the id is taken.
    async fn put_resource(&self, resource: &Resource) -> StoreResult<()>;
    /// A resource by id.
    async fn resource(&self, id: &str) -> StoreResult<Option<Resource>>;
    /// Every resource, by id.
    async fn list_resources(&self) -> StoreResult<Vec<Resource>>;
    /// Removes a resource. Returns whether it existed.
    async fn delete_resource(&self, id: &str) -> StoreResult<bool>;
}

/// A move of a signing key to another state ([`KeyStore::set_key_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStateChange<'a> {
    /// The key.
    pub kid: &'a str,
    /// Its new state.
    pub state: KeyState,
    /// When it started signing; `None` keeps the stored time.
    pub activated_at: Option<Timestamp>,
    /// When it may be deleted; `None` keeps the stored time.
    pub remove_after: Option<Timestamp>,
}

impl<'a> KeyStateChange<'a> {
    /// The key starts signing at `now`.
    #[must_use]
    pub fn activate(kid: &'a str, now: Timestamp) -> Self {
        Self {
            kid,
            state: KeyState::Active,
            activated_at: Some(now),
            remove_after: None,
        }
    }

    /// The key stops signing and may be deleted after `remove_after`.
    #[must_use]
    pub fn retire(kid: &'a str, remove_after: Timestamp) -> Self {
        Self {
            kid,
            state: KeyState::Retired,
            activated_at: None,
            remove_after: Some(remove_after),
        }
    }
}

/// Signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Every stored key, oldest first.
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Stores a new key.
    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()>;
    /// Moves a key to `state`, setting `activated_at`/`remove_after` when given. Returns whether
    /// the key exists.
    async fn set_key_state(&self, change: KeyStateChange<'_>) -> StoreResult<bool>;
    /// Deletes a key. Returns whether it existed.
    async fn delete_key(&self, kid: &str) -> StoreResult<bool>;
}

/// Codes, refresh-token families, consents and revoked access-token ids.
#[async_trait]
pub trait GrantStore: Send + Sync + 'static {
    /// Stores a new code.
    async fn put_code(&self, code: &AuthCode) -> StoreResult<()>;
    /// Redeems a code in one atomic step: the first call for a code that is unexpired at
    /// `now` marks it redeemed with `family_id` and returns it; every later call returns
    /// `AlreadyRedeemed` with the family the first one recorded. Expired or unknown: `Unknown`.
    async fn redeem_code(&self, redemption: Redemption<'_>) -> StoreResult<CodeRedemption>;
    /// Deletes the unredeemed codes a browser session minted (the session ended); returns how
    /// many. Redeemed codes stay until they expire, so a replay is still recognised.
    async fn delete_session_codes(&self, session: &SessionId) -> StoreResult<u64>;
    /// Deletes every unredeemed code of `user` except those minted by the session `keep`;
    /// returns how many.
    async fn delete_user_codes(&self, user: &UserId, keep: Option<&SessionId>) -> StoreResult<u64>;

    /// Creates a family and, optionally, its first refresh token, together.
    async fn create_family(
        &self,
        family: &RefreshFamily,
        first: Option<&RefreshToken>,
    ) -> StoreResult<()>;
    /// A family by id.
    async fn family(&self, id: &str) -> StoreResult<Option<RefreshFamily>>;
    /// A refresh token and its family.
    async fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(RefreshToken, RefreshFamily)>>;
    /// Rotation as one compare-and-set: marks `old` consumed at `now` only if it was not
    /// consumed yet, and in the same transaction inserts `new` (same family). Returns `false`,
    /// changing nothing, when `old` was already consumed or does not exist.
    async fn rotate_refresh(&self, rotation: Rotation<'_>) -> StoreResult<bool>;
    /// Revokes a family (idempotent). Returns whether it was live before.
    async fn revoke_family(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
    /// Revokes every live family of a user; returns their ids.
    async fn revoke_user_families(&self, user: &UserId, now: Timestamp)
    -> StoreResult<Vec<String>>;
    /// Revokes every live family created from a browser session; returns their ids.
    async fn revoke_session_families(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Vec<String>>;
    /// The user's families that are live at `now`, newest first.
    async fn list_user_families(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<RefreshFamily>>;
    /// How many families of any user are live at `now` (the grants applications hold).
    async fn count_live_families(&self, now: Timestamp) -> StoreResult<u64>;

    /// The user's consent for a client and an API (`None`: no API, OpenID scopes only).
    async fn consent(
        &self,
        user: &UserId,
        client_id: &str,
        resource: Option<&str>,
    ) -> StoreResult<Option<Consent>>;
    /// Records (or replaces) the consent for its (user, client, resource).
    async fn put_consent(&self, consent: &Consent) -> StoreResult<()>;
    /// Withdraws every consent of the user for a client, whatever the API. Returns whether
    /// there was one.
    async fn delete_consent(&self, user: &UserId, client_id: &str) -> StoreResult<bool>;
    /// The user's consents.
    async fn list_consents(&self, user: &UserId) -> StoreResult<Vec<Consent>>;

    /// Records a revoked access-token id until `expires_at` (its token's expiry).
    async fn revoke_jti(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    /// Whether an access-token id was revoked.
    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool>;

    /// Deletes expired codes, families past their absolute end (with their tokens), consumed
    /// tokens past their idle expiry, and revoked ids past their expiry; returns how many rows.
    async fn purge_grants(&self, now: Timestamp) -> StoreResult<u64>;
}

/// A stored pushed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRequest {
    /// SHA-256 of the `request_uri`'s random part.
    pub hash: TokenHash,
    /// The client that pushed it.
    pub client_id: String,
    /// The authorization parameters, form-encoded
    /// ([`AuthorizeParams::to_query`](super::authorize::AuthorizeParams::to_query)).
    pub params: String,
    /// When it was pushed.
    pub created_at: Timestamp,
    /// When it stops being usable.
    pub expires_at: Timestamp,
}

/// Where pushed requests are kept.
#[async_trait]
pub trait PushedRequestStore: Send + Sync + 'static {
    /// Stores a pushed request.
    async fn insert_pushed_request(&self, request: &PushedRequest) -> StoreResult<()>;

    /// The request with `hash` if still usable at `now`; its expiry moves to `created_at +
    /// interaction_secs` when that is later (the browser has arrived and may now sign in).
    async fn open_pushed_request(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        interaction_secs: i64,
    ) -> StoreResult<Option<PushedRequest>>;

    /// Finds and deletes, in one atomic step, the request with `hash` still usable at `now`. Of
    /// concurrent takes, one gets it.
    async fn take_pushed_request(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<PushedRequest>>;

    /// Deletes the requests expired at `now`; returns how many.
    async fn purge_pushed_requests(&self, now: Timestamp) -> StoreResult<u64>;
}
