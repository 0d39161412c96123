//! How a database connection pool is opened.

use std::time::Duration;

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Most connections the pool opens. SQLite uses at most [`SQLITE_MAX_CONNECTIONS`] of them
    /// (it serialises writes anyway) and exactly one for an in-memory database.
    pub max_connections: u32,
    /// How long a store call waits for a free connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL only: how long one call (a statement, or a step of a transaction) may take,
    /// connection included, before it fails as unavailable. Calls that keep failing so open a
    /// circuit breaker: further calls fail at once until the database answers a probe again.
    pub statement_timeout: Duration,
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
            statement_timeout: Duration::from_secs(30),
            sqlite_synchronous_full: true,
        }
    }
}

/// The most connections a SQLite pool opens, whatever [`ConnectOptions::max_connections`] says.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;
