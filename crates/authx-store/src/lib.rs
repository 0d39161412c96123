//! Storage adapters for authx: the `authx-core` store traits implemented over SQLite (the
//! default, one file next to the server), PostgreSQL (for several instances) and, for browser
//! sessions only, Redis.
//!
//! For several instances, [`redis_event_bus`] (or [`postgres_event_bus`] without Redis) carries
//! revocation events between them.
//!
//! The backend is picked at startup from a URL, and the server holds each store as an
//! `Arc<dyn Trait>`, so domain code never asks which backend it has. Each SQL backend embeds
//! its own migrations and applies the pending ones when it connects.
//!
//! ```
//! use authx_core::Timestamp;
//! use authx_core::user::{User, UserId, UserStatus};
//! use authx_store::{BackendKind, ConnectOptions, connect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = connect("sqlite::memory:", &ConnectOptions::default()).await?;
//! assert_eq!(backend.kind, BackendKind::Sqlite);
//!
//! let user = User {
//!     id: UserId::generate(),
//!     email: "kate@example.com".into(),
//!     password_hash: "$argon2id$...".into(),
//!     status: UserStatus::Active,
//!     is_admin: false,
//!     created_at: Timestamp(1_700_000_000),
//!     password_changed_at: Timestamp(1_700_000_000),
//!     email_verified: false,
//! };
//! backend.accounts.create_user(&user).await?;
//! assert_eq!(backend.accounts.user_by_email("kate@example.com").await?, Some(user));
//! # Ok(())
//! # }
//! ```

mod breaker;
mod connect;
mod copies;
mod error;
mod events;
mod migrations;
mod options;
mod postgres;
mod redis;
mod sql;
mod sqlite;

pub use self::connect::{Backend, BackendKind, all_healthy, connect, migrate};
pub use self::copies::copying_accounts;
pub use self::error::ConnectError;
pub use self::options::{ConnectOptions, SQLITE_MAX_CONNECTIONS};
pub use self::postgres::events::{PgEventBus, postgres_event_bus};
pub use self::redis::events::{RedisEventBus, redis_event_bus};
pub use self::redis::redis_sessions;
pub use self::redis::shared::{RedisCounters, redis_counters};
