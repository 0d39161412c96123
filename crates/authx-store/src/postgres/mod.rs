//! The PostgreSQL backend, for any number of server instances sharing one database.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::ConnectError;
use crate::options::ConnectOptions;
use crate::sql::{Dialect, Pool, Rotated, Rotation, SqlStore, select_one, stmt};

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

/// The compare-and-set of a rotation and the insertion of the successor in one statement, so
/// one round trip and one commit: the successor is inserted only from the row the `UPDATE`
/// consumed. A successor whose hash is taken fails the statement, and with it the consumption
/// (a statement is atomic); a token rotated by a concurrent statement is found consumed when
/// the row lock is released, and nothing is inserted.
const ROTATE: &str = "WITH consumed AS (\
       UPDATE refresh_tokens SET consumed_at = $1 \
       WHERE token_hash = $2 AND family_id = $3 AND consumed_at IS NULL \
       RETURNING family_id) \
     INSERT INTO refresh_tokens \
       (token_hash, family_id, issued_at, idle_expires_at, consumed_at) \
     SELECT $4, family_id, $5, $6, $7 FROM consumed";

/// Each refresh-token rotation is one statement of its own ([`ROTATE`]): PostgreSQL takes row
/// locks, so concurrent rotations of different tokens do not wait for each other, and its own
/// group commit lets concurrent commits share a WAL flush.
impl Dialect for Postgres {
    type Rotations = ();

    fn rotate_refresh<'a>(store: &'a SqlStore<Self>, r: Rotation<'a>) -> Rotated<'a> {
        Box::pin(async move {
            let old = r.old.to_hex();
            let new = r.new.hash.to_hex();
            let inserted = stmt(ROTATE)
                .bind(r.now)
                .bind(&old)
                .bind(&r.new.family_id)
                .bind(&new)
                .bind(r.new.issued_at)
                .bind(r.new.idle_expires_at)
                .bind(r.new.consumed_at)
                .execute(&store.pool)
                .await?;
            Ok(inserted == 1)
        })
    }

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
