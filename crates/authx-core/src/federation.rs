//! Federation: signing in through an upstream OpenID provider, with authx as the relying party.
//!
//! This module holds what must be right and needs no network: the one-time transaction of an
//! upstream sign-in, validation of the upstream ID token (OIDC Core §3.1.3.7), the link between
//! an upstream identity and a local account, and the store that keeps them. [`flow`] is the
//! relying party's whole decision, from the authorization request to a local session; it
//! reaches the upstream through the [`UpstreamClient`] port, which the server implements with
//! its outbound HTTP calls and caches. [`sp_key`] keeps the SAML service provider's key pair,
//! sealed under the key-encryption key.
//!
//! # Security
//! - A transaction is taken from the store in one step, so a `state` is redeemed at most once,
//!   and it is bound to the browser that started it (SECURITY.md #61).
//! - Identities are keyed by (issuer, subject), never by email. An upstream email that matches
//!   an existing account only leads to a *pending* link, completed when the user proves control
//!   of the account by signing in with its password, and only when the upstream says the email
//!   is verified (SECURITY.md #64; the nOAuth failure).
//! - The ID token's algorithm comes from the upstream key, never from the token, and only
//!   asymmetric algorithms exist (RFC 8725 §3.1).

pub mod account;
pub mod flow;
pub mod id_token;
pub mod records;
pub mod sp_key;
pub mod upstream;

pub use account::{
    NO_PASSWORD, Refusal, Resolution, UpstreamIdentity, has_password, new_link, resolve,
};
pub use flow::{
    AccountRules, Browser, Completed, FederationError, RelyingParty, SignInCounter, Started,
    record_refusal,
};
pub use id_token::{
    Expected, IdTokenError, MAX_ID_TOKEN_LEN, MAX_SUBJECT_LEN, UpstreamKeys, VerifiedIdToken,
    verify_id_token,
};
pub use records::{
    BrowserBinding, FederationState, FederationStore, Link, LinkToken, PENDING_LINK_TTL_SECS,
    PendingLink, TRANSACTION_TTL_SECS, Transaction,
};
pub use sp_key::{
    DEPLOYMENT_SP_KEY, GeneratedSpKey, OpenedSpKey, SpKeyError, SpKeyStore, StoredSpKey,
    ensure_sp_key,
};
pub use upstream::{Metadata, Provider, UpstreamClient, UpstreamError, UpstreamTokens};
