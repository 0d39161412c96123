//! The SQLite backend: one database file in WAL mode, a small pool.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::sql::impl_sql_stores;
use crate::{ConnectError, ConnectOptions, SQLITE_MAX_CONNECTIONS};

/// The SQLite schema, embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every store over one SQLite pool.
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

impl_sql_stores!(SqliteStore);

/// Opens (creating if missing) the SQLite database named by `url`.
pub(crate) async fn open(url: &str, opts: &ConnectOptions) -> Result<SqlitePool, ConnectError> {
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(ConnectError::from_open)?
        .create_if_missing(true)
        // WAL lets readers proceed while one connection writes.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if opts.sqlite_synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        // Sessions cascade with their user.
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = if is_memory(url) {
        // Every connection to `sqlite::memory:` would otherwise see its own empty database,
        // and the shared one vanishes with its last connection: keep exactly one, forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        // SQLite serialises writers; more connections only queue on the write lock.
        SqlitePoolOptions::new()
            .max_connections(opts.max_connections.clamp(1, SQLITE_MAX_CONNECTIONS))
    };
    pool.acquire_timeout(opts.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(ConnectError::from_open)
}

/// Whether `url` names an in-memory database (`sqlite::memory:` or `mode=memory`).
fn is_memory(url: &str) -> bool {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite://shared?mode=memory&cache=shared"));
        assert!(!is_memory("sqlite://authx.db"));
        assert!(!is_memory("sqlite://memory.db?mode=rwc"));
    }
}
