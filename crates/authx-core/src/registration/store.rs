//! The storage port of dynamic client registration: initial access tokens and the registration
//! access token of each client registered through the protocol. Only SHA-256 hashes are kept.

use async_trait::async_trait;

use crate::Timestamp;
use crate::secret::TokenHash;
use crate::store::StoreResult;

/// An initial access token (RFC 7591 §3): an administrator's permission to register clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialToken {
    /// A public id, to list and revoke it by (never the token).
    pub id: String,
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// How many more clients it may register.
    pub uses_left: i64,
    /// The scopes a client registered with it may have (at most).
    pub scopes: Vec<String>,
    /// The APIs (resource ids) a client registered with it may get access tokens for.
    pub resources: Vec<String>,
}

/// What is kept of a client registered through the protocol (RFC 7592).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistration {
    /// The client.
    pub client_id: String,
    /// SHA-256 of its current registration access token.
    pub token_hash: TokenHash,
    /// The scopes its initial access token allowed: an update may not go beyond them.
    pub allowed_scopes: Vec<String>,
    /// When the registration was made or last changed.
    pub updated_at: Timestamp,
}

/// Initial access tokens and client registrations. A client's registration goes with it
/// when the client is deleted.
#[async_trait]
pub trait RegistrationStore: Send + Sync + 'static {
    /// Stores a new initial access token.
    async fn insert_initial_token(&self, token: &InitialToken) -> StoreResult<()>;
    /// The token with `hash` if it still works at `now` (unexpired, uses left).
    async fn initial_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<InitialToken>>;
    /// Spends one use of the token with `hash` in one atomic step; `false` (nothing changed)
    /// when it is expired at `now`, used up or gone. Of concurrent spends of its last use, one
    /// succeeds.
    async fn spend_initial_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool>;
    /// Every initial access token, oldest first.
    async fn list_initial_tokens(&self) -> StoreResult<Vec<InitialToken>>;
    /// Deletes (revokes) an initial access token. Returns whether it existed.
    async fn delete_initial_token(&self, id: &str) -> StoreResult<bool>;
    /// Deletes the tokens expired or used up at `now`; returns how many.
    async fn purge_initial_tokens(&self, now: Timestamp) -> StoreResult<u64>;

    /// Records the registration of a client that exists.
    async fn insert_client_registration(
        &self,
        registration: &ClientRegistration,
    ) -> StoreResult<()>;
    /// The registration of a client, if it was registered through the protocol.
    async fn client_registration(&self, client_id: &str)
    -> StoreResult<Option<ClientRegistration>>;
    /// Replaces the registration of `registration.client_id` only if its token hash is still
    /// `current` (a compare-and-set, so a token rotates once). Returns whether it did.
    async fn replace_client_registration(
        &self,
        registration: &ClientRegistration,
        current: &TokenHash,
    ) -> StoreResult<bool>;
}
