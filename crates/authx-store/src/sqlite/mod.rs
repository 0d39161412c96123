//! The SQLite backend: one database file in WAL mode, a small pool, and one writer task that
//! commits refresh-token rotations in groups ([`rotation`]).

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::ConnectError;
use crate::options::{ConnectOptions, SQLITE_MAX_CONNECTIONS};
use crate::sql::{Dialect, Pool, Rotated, Rotation, SqlStore};

mod rotation;

/// The SQLite schema, embedded at build time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every store over one SQLite pool.
pub(crate) type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// The stores over `pool`, with the rotation writer started on the current Tokio runtime.
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self {
            rotations: rotation::Writer::spawn(pool.clone()),
            pool: Pool::unbounded(pool),
        }
    }
}

/// Refresh-token rotations are committed in groups by one task ([`rotation`]).
impl Dialect for Sqlite {
    type Rotations = rotation::Writer;

    fn rotate_refresh<'a>(store: &'a SqlStore<Self>, r: Rotation<'a>) -> Rotated<'a> {
        Box::pin(store.rotations.rotate(r.old, r.new, r.now))
    }

    /// A plain `?`: SQLite numbers anonymous parameters in order at no cost, while each named
    /// `$n` is looked up among the statement's names when it is prepared, which grows with the
    /// square of their number (an audit batch has up to 2,304).
    fn push_placeholder(sql: &mut String, _n: usize) {
        sql.push('?');
    }
}

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
        // A file on this machine does not drop connections the way a network server does; the
        // ping sqlx would otherwise send on every acquire is one more thread round trip per
        // query (BENCHMARKS.md, "Where the time goes").
        .test_before_acquire(false)
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
    use authx_core::Timestamp;
    use authx_core::secret::TokenHash;
    use authx_core::session::{Session, SessionId};
    use authx_core::store::{AccountStore as _, SessionStore as _, StoreError};
    use authx_core::user::{User, UserId, UserStatus};

    use super::*;

    async fn memory_store() -> SqliteStore {
        let pool = open("sqlite::memory:", &ConnectOptions::default())
            .await
            .unwrap();
        crate::migrations::apply(&pool, &MIGRATOR).await.unwrap();
        SqliteStore::new(pool)
    }

    #[tokio::test]
    async fn migrate_counts_what_it_applied() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
        let opts = ConnectOptions::default();
        let known = MIGRATOR.iter().count();
        assert!(known > 0);
        assert_eq!(crate::connect::migrate(&url, &opts).await.unwrap(), known);
        assert_eq!(crate::connect::migrate(&url, &opts).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn undecodable_rows_are_corrupt() {
        let store = memory_store().await;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, status, is_admin, created_at, \
             password_changed_at) VALUES ('u1', 'a@example.com', 'x', 'frozen', 0, 1, 1)",
        )
        .execute(store.pool.inner())
        .await
        .unwrap();
        let err = store.user_by_id(&UserId("u1".into())).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("frozen")));

        sqlx::query("UPDATE users SET status = 'active'")
            .execute(store.pool.inner())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, auth_method) \
             VALUES ('s1', 'not-hex', 'u1', 1, 1, 9, 9, 'password')",
        )
        .execute(store.pool.inner())
        .await
        .unwrap();
        let err = store
            .delete_session(&UserId("u1".into()), &SessionId("s1".into()))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)));
    }

    #[tokio::test]
    async fn memory_database_is_shared_and_sessions_cascade_with_their_user() {
        let store = memory_store().await;
        let user = User {
            id: UserId("u1".into()),
            email: "a@example.com".into(),
            password_hash: "x".into(),
            status: UserStatus::Active,
            is_admin: false,
            created_at: Timestamp(1),
            password_changed_at: Timestamp(1),
            email_verified: false,
        };
        store.create_user(&user).await.unwrap();
        let session = Session {
            id: SessionId("s1".into()),
            token_hash: TokenHash::of(b"t"),
            user_id: user.id.clone(),
            created_at: Timestamp(1),
            last_seen_at: Timestamp(1),
            idle_expires_at: Timestamp(9),
            absolute_expires_at: Timestamp(9),
            ip: None,
            user_agent: None,
            auth_method: "password".into(),
        };
        store.create_session(&session).await.unwrap();

        // A session for a user that does not exist is refused by the foreign key.
        let orphan = Session {
            id: SessionId("s2".into()),
            token_hash: TokenHash::of(b"u"),
            user_id: UserId("nobody".into()),
            ..session.clone()
        };
        assert!(store.create_session(&orphan).await.is_err());

        sqlx::query("DELETE FROM users WHERE id = 'u1'")
            .execute(store.pool.inner())
            .await
            .unwrap();
        assert_eq!(
            store.session_by_hash(&session.token_hash).await.unwrap(),
            None
        );
    }

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite://shared?mode=memory&cache=shared"));
        assert!(!is_memory("sqlite://authx.db"));
        assert!(!is_memory("sqlite://memory.db?mode=rwc"));
    }
}
