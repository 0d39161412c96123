//! Per-backend fixtures: fresh stores for one test, and their cleanup.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::generation::SharedGeneration;
use authx_core::oauth::grant::Redemption;
use authx_core::oauth::store::{ClientStore, GrantStore, KeyStore};
use authx_core::secret::{SessionToken, TokenHash, random_id};
use authx_core::session::{Session, SessionId};
use authx_core::store::{AccountStore, Health, SessionStore, ThrottleStore};
use authx_core::user::{User, UserId, UserStatus};
use authx_store::{ConnectOptions, connect, redis_counters, redis_sessions};

/// Two handles of the shared generation, as two instances hold them, and the Redis URL and key
/// prefix it lives under.
type SharedCount = (
    Arc<dyn SharedGeneration>,
    Arc<dyn SharedGeneration>,
    String,
    String,
);

/// The stores under test. Redis provides sessions, counters and the shared generation.
#[derive(Clone)]
pub(crate) struct Stores {
    accounts: Option<Arc<dyn AccountStore>>,
    sessions: Option<Arc<dyn SessionStore>>,
    throttle: Option<Arc<dyn ThrottleStore>>,
    health: Option<Arc<dyn Health>>,
    clients: Option<Arc<dyn ClientStore>>,
    keys: Option<Arc<dyn KeyStore>>,
    grants: Option<Arc<dyn GrantStore>>,
    audit: Option<Arc<dyn authx_core::audit::AuditStore>>,
    /// The database URL the SQL stores were opened with.
    url: Option<String>,
    /// Two handles of the shared generation, as two instances hold them, and where it lives.
    generations: Option<SharedCount>,
}

impl Stores {
    pub(crate) fn accounts(&self) -> &dyn AccountStore {
        self.accounts
            .as_deref()
            .expect("backend has no account store")
    }

    pub(crate) fn sessions(&self) -> Arc<dyn SessionStore> {
        self.sessions.clone().expect("backend has no session store")
    }

    pub(crate) fn throttle(&self) -> Arc<dyn ThrottleStore> {
        self.throttle
            .clone()
            .expect("backend has no throttle store")
    }

    pub(crate) fn clients(&self) -> Arc<dyn ClientStore> {
        self.clients.clone().expect("backend has no client store")
    }

    pub(crate) fn keys(&self) -> Arc<dyn KeyStore> {
        self.keys.clone().expect("backend has no key store")
    }

    pub(crate) fn grants(&self) -> Arc<dyn GrantStore> {
        self.grants.clone().expect("backend has no grant store")
    }

    pub(crate) fn audit(&self) -> Arc<dyn authx_core::audit::AuditStore> {
        self.audit.clone().expect("backend has no audit store")
    }

    pub(crate) fn url(&self) -> &str {
        self.url.as_deref().expect("backend has no database URL")
    }

    pub(crate) fn generation(&self) -> Arc<dyn SharedGeneration> {
        self.generations
            .clone()
            .expect("backend has no shared generation")
            .0
    }

    pub(crate) fn second_generation(&self) -> Arc<dyn SharedGeneration> {
        self.generations
            .clone()
            .expect("backend has no shared generation")
            .1
    }

    /// Deletes the shared generation's key, as a Redis restarted without persistence would.
    pub(crate) async fn forget_generation(&self) {
        let (_, _, url, prefix) = self.generations.clone().expect("no shared generation");
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{prefix}generation"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    pub(crate) fn health(&self) -> &dyn Health {
        self.health.as_deref().expect("backend has no health check")
    }

    /// A fresh active user, stored when the backend keeps accounts (SQL session rows reference
    /// their user; Redis sessions do not).
    pub(crate) async fn user(&self) -> UserId {
        let user = user(&format!("{}@example.com", random_id()), Timestamp(1_000));
        if let Some(accounts) = &self.accounts {
            accounts.create_user(&user).await.unwrap();
        }
        user.id
    }
}

/// A user record with the given email, created at `at`.
/// A redemption of the code or device grant `hash`.
pub(crate) fn redemption<'a>(
    hash: &'a TokenHash,
    family_id: &'a str,
    now: Timestamp,
) -> Redemption<'a> {
    Redemption {
        hash,
        family_id,
        now,
    }
}

pub(crate) fn user(email: &str, at: Timestamp) -> User {
    User {
        id: UserId::generate(),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        status: UserStatus::Active,
        is_admin: false,
        created_at: at,
        password_changed_at: at,
        email_verified: false,
    }
}

/// A session of `user` created at `created`, with the given deadlines.
pub(crate) fn session(user: &UserId, created: i64, idle: i64, absolute: i64) -> Session {
    Session {
        id: SessionId::generate(),
        token_hash: SessionToken::generate().hash(),
        user_id: user.clone(),
        created_at: Timestamp(created),
        last_seen_at: Timestamp(created),
        idle_expires_at: Timestamp(idle),
        absolute_expires_at: Timestamp(absolute),
        ip: Some("192.0.2.1".into()),
        user_agent: Some("Mozilla/5.0 (conformance)".into()),
        auth_method: "password".into(),
    }
}

/// What to undo after a test.
pub(crate) enum Cleanup {
    /// The temporary directory holding the SQLite file, removed on drop.
    TempDir(#[allow(dead_code)] tempfile::TempDir),
    /// A PostgreSQL schema to drop.
    PgSchema { admin: sqlx::PgPool, schema: String },
    /// A Redis key prefix whose keys to delete.
    RedisPrefix { url: String, prefix: String },
}

impl Cleanup {
    async fn run(self) {
        match self {
            Self::TempDir(dir) => drop(dir),
            Self::PgSchema { admin, schema } => {
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
            }
            Self::RedisPrefix { url, prefix } => {
                let client = redis::Client::open(url.as_str()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if !keys.is_empty() {
                    let () = redis::cmd("DEL")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }
        }
    }
}

/// Fresh stores for one test, or `None` when the backend is not available here.
pub(crate) type Fixture = Option<(Stores, Cleanup)>;

/// Runs `body` against the stores from `fixture`, then cleans up whether or not it passed.
pub(crate) async fn run<F, FF, B, BF>(test: &'static str, fixture: F, body: B)
where
    F: FnOnce(&'static str) -> FF,
    FF: Future<Output = Fixture>,
    B: FnOnce(Stores) -> BF,
    BF: Future<Output = ()> + Send + 'static,
{
    let Some((stores, cleanup)) = fixture(test).await else {
        return;
    };
    // The body runs as its own task so that a failing assertion still lets cleanup run.
    let outcome = tokio::spawn(body(stores)).await;
    cleanup.run().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Reports a backend that cannot run here: loudly, and fatally when CI requires it.
fn skip(test: &str, why: &str) -> Fixture {
    if std::env::var("AUTHX_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: {why}, but AUTHX_TEST_REQUIRE_SERVICES=1");
    }
    // Written straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} ({why})");
    None
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The PostgreSQL the tests use when `AUTHX_TEST_POSTGRES_URL` is unset: the local server on
/// its default port (the same default as `authx_testkit::services`).
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis the tests use when `AUTHX_TEST_REDIS_URL` is unset.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `var` when set, else `default`; and where it came from, for skip messages.
fn service_url(var: &str, default: &str) -> (String, String) {
    match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
        Some(url) => (url, var.to_owned()),
        None => (
            default.to_owned(),
            format!("the default {default}; set {var} to use another"),
        ),
    }
}

/// A SQLite database in a fresh temporary file.
pub(crate) async fn sqlite(_test: &'static str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("authx.db").display());
    let backend = connect(&url, &ConnectOptions::default()).await.unwrap();
    let stores = Stores {
        accounts: Some(backend.accounts),
        sessions: Some(backend.sessions),
        throttle: Some(backend.throttle),
        health: Some(backend.health),
        clients: Some(backend.clients),
        keys: Some(backend.keys),
        grants: Some(backend.grants),
        audit: Some(backend.audit),
        url: Some(url),
        generations: None,
    };
    Some((stores, Cleanup::TempDir(dir)))
}

/// The PostgreSQL database of `AUTHX_TEST_POSTGRES_URL` (or the local default), in a fresh
/// schema.
pub(crate) async fn postgres(test: &'static str) -> Fixture {
    let (url, from) = service_url("AUTHX_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL);
    let admin = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            return skip(
                test,
                &format!("postgres unreachable at {from}: {}", chain(&e)),
            );
        }
    };
    let schema = format!(
        "authx_test_{}",
        random_id().to_ascii_lowercase().replace('-', "_")
    );
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .unwrap();
    // Every connection of the store's pool starts with the test schema as its search path.
    let sep = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let backend = connect(&schema_url, &ConnectOptions::default())
        .await
        .unwrap();
    let stores = Stores {
        accounts: Some(backend.accounts),
        sessions: Some(backend.sessions),
        throttle: Some(backend.throttle),
        health: Some(backend.health),
        clients: Some(backend.clients),
        keys: Some(backend.keys),
        grants: Some(backend.grants),
        audit: Some(backend.audit),
        url: Some(schema_url),
        generations: None,
    };
    Some((stores, Cleanup::PgSchema { admin, schema }))
}

/// The Redis server of `AUTHX_TEST_REDIS_URL` (or the local default), under a fresh key prefix.
pub(crate) async fn redis(test: &'static str) -> Fixture {
    let (url, from) = service_url("AUTHX_TEST_REDIS_URL", DEFAULT_REDIS_URL);
    let prefix = format!("authx-test:{}:", random_id());
    let sessions = match redis_sessions(&url, &prefix).await {
        Ok(store) => store,
        Err(e) => return skip(test, &format!("redis unreachable at {from}: {}", chain(&e))),
    };
    let counters = redis_counters(&url, &prefix, 3_600).await.unwrap();
    let other = redis_counters(&url, &prefix, 3_600).await.unwrap();
    let stores = Stores {
        accounts: None,
        sessions: Some(sessions),
        throttle: Some(counters.clone()),
        health: None,
        clients: None,
        keys: None,
        grants: None,
        audit: None,
        url: None,
        generations: Some((counters, other, url.clone(), prefix.clone())),
    };
    Some((stores, Cleanup::RedisPrefix { url, prefix }))
}
