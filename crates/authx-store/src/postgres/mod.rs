//! The PostgreSQL backend, for any number of server instances sharing one database.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::ConnectError;
use crate::options::ConnectOptions;
use crate::sql::{Dialect, Pool, SqlStore, select_one};

pub(crate) mod events;

/// The PostgreSQL schema, embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Every store over one PostgreSQL pool.
pub(crate) type PgStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
    /// The stores over `pool`, each call bounded by `statement_timeout` and behind a circuit
    /// breaker (`crate::sql::pool`).
    pub(crate) fn new(pool: PgPool, statement_timeout: Duration) -> Self {
        let probe = select_one(pool.clone());
        Self {
            pool: Pool::bounded(pool, "PostgreSQL", statement_timeout, probe),
            rotations: (),
        }
    }
}

/// Each refresh-token rotation is a transaction of its own (the default): PostgreSQL takes
/// row locks, so concurrent rotations of different tokens do not wait for each other.
impl Dialect for Postgres {
    type Rotations = ();

    /// Two administrators demoting each other at once: each statement locks the other
    /// administrators' rows it counts, so the second waits for the first and sees its change.
    const ROW_LOCK: &'static str = " FOR UPDATE";
}

/// Connects to the PostgreSQL database named by `url` (`postgres://...`). Tables live in the
/// connection's `search_path`, which the URL can set with `options=-c search_path=NAME`.
pub(crate) async fn open(url: &str, opts: &ConnectOptions) -> Result<PgPool, ConnectError> {
    let connect = PgConnectOptions::from_str(url).map_err(ConnectError::from_open)?;
    PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(ConnectError::from_open)
}
