//! What an upstream sign-in keeps between requests: the one-time transaction, the link of an
//! upstream identity to a local account, the pending link waiting for the local password, and
//! the store that holds them.

use async_trait::async_trait;

use crate::Timestamp;
use crate::secret::TokenHash;
use crate::store::StoreResult;
use crate::user::UserId;

/// How long an upstream sign-in may take from start to callback.
pub const TRANSACTION_TTL_SECS: i64 = 600;

/// How long a pending link waits for the local password.
pub const PENDING_LINK_TTL_SECS: i64 = 600;

crate::secret::opaque_secret!(
    /// The `state` of an upstream authorization request (RFC 6749 §10.12): 256 random bits,
    /// stored only as its hash.
    FederationState
);

crate::secret::opaque_secret!(
    /// The value of the cookie that binds upstream sign-ins to the browser that started them.
    BrowserBinding
);

crate::secret::opaque_secret!(
    /// The value of the cookie that names a pending link waiting for the local password.
    LinkToken
);

/// One upstream sign-in in flight, from `/federation/{provider}/start` to its callback.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    /// SHA-256 of the `state` sent upstream.
    pub state_hash: TokenHash,
    /// The configured provider's name.
    pub provider: String,
    /// The issuer the response must come from (mix-up defence, RFC 9700 §4.4).
    pub issuer: String,
    /// SHA-256 of the browser-binding cookie of the browser that started it.
    pub browser_hash: TokenHash,
    /// The `nonce` the ID token must carry; for SAML, the AuthnRequest ID the response's
    /// `InResponseTo` must name.
    pub nonce: String,
    /// The PKCE verifier (RFC 7636) sent with the code; lives only as long as the transaction.
    /// For SAML, empty until the assertion consumer service keeps the received response here
    /// for the same-site step that verifies it.
    pub pkce_verifier: String,
    /// The local path to go to afterwards.
    pub return_to: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A local account's link to an upstream identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Public identifier (for listing and removal).
    pub id: String,
    /// The configured provider's name when the link was made.
    pub provider: String,
    /// The upstream issuer.
    pub issuer: String,
    /// The upstream subject.
    pub subject: String,
    /// The local account.
    pub user_id: UserId,
    /// The upstream email when the link was made, for display.
    pub email: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
}

/// An upstream identity waiting for the user to prove control of the local account it names.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLink {
    /// SHA-256 of the [`LinkToken`] cookie.
    pub token_hash: TokenHash,
    /// The provider.
    pub provider: String,
    /// The upstream issuer.
    pub issuer: String,
    /// The upstream subject.
    pub subject: String,
    /// The local account whose email the upstream asserted.
    pub user_id: UserId,
    /// The (verified) upstream email.
    pub email: String,
    /// Where to go once linked.
    pub return_to: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PendingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLink")
            .field("provider", &self.provider)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Transactions, links and pending links.
#[async_trait]
pub trait FederationStore: Send + Sync + 'static {
    /// Stores a new transaction.
    async fn put_transaction(&self, t: &Transaction) -> StoreResult<()>;
    /// Removes and returns the transaction of a `state` in one step, expired or not, so a
    /// `state` is used at most once.
    async fn take_transaction(&self, state_hash: &TokenHash) -> StoreResult<Option<Transaction>>;
    /// The link of an upstream identity.
    async fn link(&self, issuer: &str, subject: &str) -> StoreResult<Option<Link>>;
    /// Creates a link. [`StoreError::Conflict`] when the upstream identity is already linked.
    async fn create_link(&self, link: &Link) -> StoreResult<()>;
    /// The links of a user, oldest first.
    async fn user_links(&self, user: &UserId) -> StoreResult<Vec<Link>>;
    /// Removes one link of `user`; returns whether there was one.
    async fn delete_link(&self, user: &UserId, id: &str) -> StoreResult<bool>;
    /// Stores a pending link.
    async fn put_pending_link(&self, p: &PendingLink) -> StoreResult<()>;
    /// A pending link by the hash of its cookie, expired or not.
    async fn pending_link(&self, token_hash: &TokenHash) -> StoreResult<Option<PendingLink>>;
    /// Removes a pending link; returns whether it was there (exactly one caller gets `true`).
    async fn delete_pending_link(&self, token_hash: &TokenHash) -> StoreResult<bool>;
    /// Deletes expired transactions and pending links; returns how many.
    async fn purge_federation(&self, now: Timestamp) -> StoreResult<u64>;
}
