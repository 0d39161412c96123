//! The domain core of authx: secrets and their hashes, passwords, users, browser sessions,
//! throttling, revocation events and the store traits that the storage adapters implement.
//!
//! Nothing here speaks HTTP or SQL. Time comes from an injected [`Clock`], so every rule can be
//! tested with a [`ManualClock`].
//!
//! ```
//! use authx_core::secret::SessionToken;
//!
//! let token = SessionToken::generate();
//! // Only the hash is ever stored; the raw value goes to the browser once.
//! let hash = token.hash();
//! assert_eq!(token.expose().len(), 43);
//! assert_eq!(SessionToken::parse(token.expose()).unwrap().hash(), hash);
//! ```

pub mod admin;
pub mod amr;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod cookie;
pub mod csrf;
pub mod events;
pub mod federation;
pub mod generation;
pub mod links;
pub mod mail;
#[cfg(test)]
mod memory;
pub mod mfa;
pub mod oauth;
pub mod password;
pub mod plural;
pub mod ratelimit;
pub mod registration;
pub mod replay;
pub mod secret;
pub mod session;
pub mod store;
pub mod throttle;
pub mod user;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use store::StoreError;
