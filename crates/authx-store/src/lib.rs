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
//! };
//! backend.accounts.create_user(&user).await?;
//! assert_eq!(backend.accounts.user_by_email("kate@example.com").await?, Some(user));
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use authx_core::oauth::store::{ClientStore, GrantStore, KeyStore};
use authx_core::store::{AccountStore, Health, SessionStore, ThrottleStore};

mod events;
mod migrations;
mod postgres;
mod redis;
mod sql;
mod sqlite;

pub use self::postgres::events::{PgEventBus, postgres_event_bus};
pub use self::redis::events::{RedisEventBus, redis_event_bus};
pub use self::redis::redis_sessions;

/// The stores of one database, each behind its trait.
///
/// Every field points at the same connection pool. To keep sessions elsewhere (for example in
/// Redis, see [`redis_sessions`]), replace [`Backend::sessions`].
#[derive(Clone)]
pub struct Backend {
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Browser sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Sign-in failure counters.
    pub throttle: Arc<dyn ThrottleStore>,
    /// OAuth clients and API resources.
    pub clients: Arc<dyn ClientStore>,
    /// Signing keys.
    pub keys: Arc<dyn KeyStore>,
    /// Authorization codes, refresh-token families, consents and revoked access-token ids.
    pub grants: Arc<dyn GrantStore>,
    /// Device authorization grants (RFC 8628).
    pub devices: Arc<dyn authx_core::oauth::device::DeviceStore>,
    /// The durable log of revocation events behind the revocation feed.
    pub revocations: Arc<dyn authx_core::events::RevocationLog>,
    /// The audit trail.
    pub audit: Arc<dyn authx_core::audit::AuditStore>,
    /// Upstream sign-in transactions and federation links.
    pub federation: Arc<dyn authx_core::federation::FederationStore>,
    /// Reachability of the database, for `/readyz`.
    pub health: Arc<dyn Health>,
    /// Which database this is.
    pub kind: BackendKind,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The database behind a [`Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// A SQLite file (or an in-memory database).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl BackendKind {
    /// A short lower-case name for logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// Which backend a database URL names.
    ///
    /// # Errors
    /// [`ConnectError::UnsupportedScheme`] for any scheme other than `sqlite:`, `postgres:` and
    /// `postgresql:`, and [`ConnectError::InvalidUrl`] when there is no scheme at all.
    pub fn from_url(url: &str) -> Result<Self, ConnectError> {
        let Some((scheme, _)) = url.split_once(':') else {
            return Err(ConnectError::InvalidUrl {
                source: "expected sqlite://PATH, sqlite::memory: or postgres://...".into(),
            });
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            // Only the scheme is echoed: the rest of the URL may hold a password.
            _ => Err(ConnectError::UnsupportedScheme {
                scheme: scheme.chars().take(32).collect(),
            }),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Most connections the pool opens. SQLite uses at most [`SQLITE_MAX_CONNECTIONS`] of them
    /// (it serialises writes anyway) and exactly one for an in-memory database.
    pub max_connections: u32,
    /// How long a store call waits for a free connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// SQLite only: `synchronous=FULL` (the default) makes each commit durable across power
    /// loss; `false` selects `NORMAL`, which in WAL mode may lose the last commits on power loss
    /// but never corrupts the database.
    pub sqlite_synchronous_full: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            sqlite_synchronous_full: true,
        }
    }
}

/// The most connections a SQLite pool opens, whatever [`ConnectOptions::max_connections`] says.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// Why a database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL could not be parsed.
    #[error("invalid database URL")]
    InvalidUrl {
        /// What is wrong with it.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The URL names a database that authx does not support.
    #[error(
        "unsupported database URL scheme `{scheme}:` (expected sqlite://PATH, sqlite::memory: or postgres://...)"
    )]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The server did not answer, refused the connection or the credentials, or the SQLite file
    /// could not be opened or created.
    #[error("cannot connect to {service}")]
    Unreachable {
        /// What could not be reached (`the database`, `Redis`).
        service: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The database has a migration applied that this build does not know: a newer authx
    /// migrated it. Running an older build against it could corrupt data, so it refuses.
    #[error(
        "the database schema is newer than this build of authx (it has migration {version}, \
         which this build does not know); run the authx release that migrated it, or a newer one"
    )]
    SchemaTooNew {
        /// The newest unknown migration found in the database.
        version: i64,
    },
    /// A migration could not be applied, or an applied one differs from this build's copy.
    #[error("database migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
}

impl ConnectError {
    fn unreachable(service: &'static str, e: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unreachable {
            service,
            source: Box::new(e),
        }
    }

    /// Classifies an error from opening a pool: bad options are the URL's fault, anything else
    /// means the database could not be reached.
    fn from_open(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Configuration(source) => Self::InvalidUrl { source },
            other => Self::unreachable("the database", other),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for ConnectError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(version) => Self::SchemaTooNew { version },
            other => Self::Migration(other),
        }
    }
}

/// Opens the database named by `url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://...`),
/// creating a SQLite file if missing, and applies migrations.
///
/// # Errors
/// See [`ConnectError`]: a bad or unsupported URL, an unreachable database, a schema newer
/// than this build, or a failed migration.
///
/// # Security
/// Error messages never repeat the URL, which may carry a password.
pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Backend, ConnectError> {
    match BackendKind::from_url(url)? {
        BackendKind::Sqlite => {
            let pool = sqlite::open(url, opts).await?;
            migrations::apply(&pool, &sqlite::MIGRATOR).await?;
            Ok(backend(
                Arc::new(sqlite::SqliteStore::new(pool)),
                BackendKind::Sqlite,
            ))
        }
        BackendKind::Postgres => {
            let pool = postgres::open(url, opts).await?;
            migrations::apply(&pool, &postgres::MIGRATOR).await?;
            Ok(backend(
                Arc::new(postgres::PgStore::new(pool)),
                BackendKind::Postgres,
            ))
        }
    }
}

/// Applies pending migrations only (for `authx migrate`), returning how many were applied.
///
/// # Errors
/// As for [`connect`].
pub async fn migrate(url: &str, opts: &ConnectOptions) -> Result<usize, ConnectError> {
    match BackendKind::from_url(url)? {
        BackendKind::Sqlite => {
            let pool = sqlite::open(url, opts).await?;
            let applied = migrations::apply(&pool, &sqlite::MIGRATOR).await;
            pool.close().await;
            applied
        }
        BackendKind::Postgres => {
            let pool = postgres::open(url, opts).await?;
            let applied = migrations::apply(&pool, &postgres::MIGRATOR).await;
            pool.close().await;
            applied
        }
    }
}

/// One health check over several services (for example the database and Redis): healthy
/// when every part answers, checked in order.
#[must_use]
pub fn all_healthy(parts: Vec<Arc<dyn Health>>) -> Arc<dyn Health> {
    Arc::new(AllHealthy(parts))
}

struct AllHealthy(Vec<Arc<dyn Health>>);

#[async_trait::async_trait]
impl Health for AllHealthy {
    async fn ping(&self) -> authx_core::store::StoreResult<()> {
        for part in &self.0 {
            part.ping().await?;
        }
        Ok(())
    }
}

fn backend<S>(store: Arc<S>, kind: BackendKind) -> Backend
where
    S: AccountStore
        + SessionStore
        + ThrottleStore
        + Health
        + ClientStore
        + KeyStore
        + GrantStore
        + authx_core::oauth::device::DeviceStore
        + authx_core::events::RevocationLog
        + authx_core::audit::AuditStore
        + authx_core::federation::FederationStore,
{
    Backend {
        accounts: store.clone(),
        sessions: store.clone(),
        throttle: store.clone(),
        clients: store.clone(),
        keys: store.clone(),
        grants: store.clone(),
        devices: store.clone(),
        revocations: store.clone(),
        audit: store.clone(),
        federation: store.clone(),
        health: store,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes_pick_the_backend() {
        assert_eq!(
            BackendKind::from_url("sqlite://authx.db").unwrap(),
            BackendKind::Sqlite
        );
        assert_eq!(
            BackendKind::from_url("sqlite::memory:").unwrap(),
            BackendKind::Sqlite
        );
        assert_eq!(
            BackendKind::from_url("postgres://u@h/db").unwrap(),
            BackendKind::Postgres
        );
        assert_eq!(
            BackendKind::from_url("PostgreSQL://u@h/db").unwrap(),
            BackendKind::Postgres
        );
    }

    #[test]
    fn unsupported_urls_do_not_echo_credentials() {
        let err = BackendKind::from_url("mysql://root:hunter2@db/authx").unwrap_err();
        assert!(matches!(err, ConnectError::UnsupportedScheme { .. }));
        let msg = err.to_string();
        assert!(msg.contains("`mysql:`"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");

        let err = BackendKind::from_url("authx.db").unwrap_err();
        assert!(matches!(err, ConnectError::InvalidUrl { .. }));
    }

    #[test]
    fn a_missing_migration_means_a_newer_schema() {
        let err = ConnectError::from(sqlx::migrate::MigrateError::VersionMissing(7));
        assert!(matches!(err, ConnectError::SchemaTooNew { version: 7 }));
        assert!(err.to_string().contains("newer than this build"));
    }

    #[tokio::test]
    async fn bad_sqlite_path_is_reported_as_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}/missing-dir/authx.db",
            dir.path().to_string_lossy()
        );
        let err = connect(&url, &ConnectOptions::default()).await.unwrap_err();
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_postgres_is_reported_as_such() {
        let opts = ConnectOptions {
            acquire_timeout: Duration::from_secs(2),
            ..ConnectOptions::default()
        };
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let err = connect("postgres://authx:secret-pw@127.0.0.1:1/authx", &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(!chain.contains("secret-pw"), "{chain}");
    }
}
