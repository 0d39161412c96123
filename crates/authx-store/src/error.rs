//! Why a database, or Redis, could not be opened or migrated.

use std::error::Error as StdError;

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
    pub(crate) fn unreachable(
        service: &'static str,
        e: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Unreachable {
            service,
            source: Box::new(e),
        }
    }

    /// Classifies an error from opening a pool: bad options are the URL's fault, anything else
    /// means the database could not be reached.
    pub(crate) fn from_open(e: sqlx::Error) -> Self {
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
