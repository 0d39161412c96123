//! Picking and opening the backend that a database URL names: its migrations applied, every
//! store behind its trait.

use std::sync::Arc;

use authx_core::oauth::store::{ClientStore, GrantStore, KeyStore};
use authx_core::store::{AccountStore, Health, SessionStore, ThrottleStore};

use crate::error::ConnectError;
use crate::options::ConnectOptions;
use crate::{migrations, postgres, sqlite};

/// The stores of one database, each behind its trait.
///
/// Every field points at the same connection pool. To keep sessions elsewhere (for example in
/// Redis, see [`redis_sessions`](crate::redis_sessions)), replace [`Backend::sessions`].
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
    /// The outbox of mail waiting to be sent.
    pub outbox: Arc<dyn authx_core::mail::OutboxStore>,
    /// Single-use link tokens.
    pub links: Arc<dyn authx_core::links::LinkTokenStore>,
    /// Second factors and recovery codes.
    pub factors: Arc<dyn authx_core::mfa::FactorStore>,
    /// Pushed authorization requests (RFC 9126).
    pub pushed: Arc<dyn authx_core::oauth::store::PushedRequestStore>,
    /// Initial access tokens and client registrations (RFC 7591, RFC 7592).
    pub registrations: Arc<dyn authx_core::registration::RegistrationStore>,
    /// The SAML service provider's key pair, sealed.
    pub sp_keys: Arc<dyn authx_core::federation::SpKeyStore>,
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
    let kind = BackendKind::from_url(url)?;
    match kind {
        BackendKind::Sqlite => {
            let pool = sqlite::open(url, opts).await?;
            migrations::apply(&pool, &sqlite::MIGRATOR).await?;
            Ok(backend(Arc::new(sqlite::SqliteStore::new(pool)), kind))
        }
        BackendKind::Postgres => {
            let pool = postgres::open(url, opts).await?;
            migrations::apply(&pool, &postgres::MIGRATOR).await?;
            Ok(backend(
                Arc::new(postgres::PgStore::new(pool, opts.statement_timeout)),
                kind,
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
            migrations::apply_and_close(sqlite::open(url, opts).await?, &sqlite::MIGRATOR).await
        }
        BackendKind::Postgres => {
            let pool = postgres::open(url, opts).await?;
            migrations::apply_and_close(pool, &postgres::MIGRATOR).await
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
        + authx_core::federation::FederationStore
        + authx_core::mail::OutboxStore
        + authx_core::links::LinkTokenStore
        + authx_core::mfa::FactorStore
        + authx_core::oauth::store::PushedRequestStore
        + authx_core::registration::RegistrationStore
        + authx_core::federation::SpKeyStore,
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
        outbox: store.clone(),
        links: store.clone(),
        factors: store.clone(),
        pushed: store.clone(),
        registrations: store.clone(),
        sp_keys: store.clone(),
        health: store,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::time::Duration;

    use super::*;

    #[test]
    fn url_schemes_pick_the_backend() {
        for (url, kind) in [
            ("sqlite://authx.db", BackendKind::Sqlite),
            ("sqlite::memory:", BackendKind::Sqlite),
            ("postgres://u@h/db", BackendKind::Postgres),
            ("PostgreSQL://u@h/db", BackendKind::Postgres),
        ] {
            assert_eq!(BackendKind::from_url(url).unwrap(), kind, "{url}");
        }
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
