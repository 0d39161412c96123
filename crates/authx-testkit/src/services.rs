//! Shared services for multi-instance tests: a fresh PostgreSQL schema and a fresh Redis key
//! prefix per test, from `AUTHX_TEST_POSTGRES_URL` and `AUTHX_TEST_REDIS_URL`, or, where they
//! are unset, the local servers on their default ports ([`DEFAULT_POSTGRES_URL`],
//! [`DEFAULT_REDIS_URL`]).
//!
//! A test whose services are not configured or not reachable prints `SKIPPED: <name> (<why>)`
//! to stderr and does not run, unless `AUTHX_TEST_REQUIRE_SERVICES=1`, in which case it fails
//! (the same rule as the store conformance suite).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use authx_testkit::TestServer;
//! use authx_testkit::services::SharedServices;
//!
//! let Some(services) = SharedServices::acquire("scale::demo").await else { return Ok(()) };
//! let a = TestServer::start_on(&services.database_url, services.configure()).await?;
//! let b = TestServer::start_on(&services.database_url, services.configure()).await?;
//! // ... a and b share users, sessions and revocation events ...
//! # drop((a, b));
//! services.cleanup().await;
//! # Ok(()) }
//! ```

use std::io::Write as _;
use std::time::Duration;

use authx_server::config::{FileConfig, OAuthFile};

/// Reports a test that cannot run here: loudly on stderr, and as a failure when
/// `AUTHX_TEST_REQUIRE_SERVICES=1`.
///
/// # Panics
/// When `AUTHX_TEST_REQUIRE_SERVICES=1`: CI must not skip.
#[allow(clippy::panic)]
pub fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("AUTHX_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: {why}, but AUTHX_TEST_REQUIRE_SERVICES=1");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} ({why})");
    None
}

/// The PostgreSQL the tests use when `AUTHX_TEST_POSTGRES_URL` is unset: the local server on
/// its default port, database `test`, user `postgres`.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis the tests use when `AUTHX_TEST_REDIS_URL` is unset: the local server on its
/// default port (every test works under a key prefix of its own).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

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

/// An error and its causes, on one line.
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

/// A fresh PostgreSQL schema and Redis key prefix for one test.
#[derive(Debug)]
pub struct SharedServices {
    /// `AUTHX_TEST_POSTGRES_URL` with the test's schema as the search path.
    pub database_url: String,
    /// `AUTHX_TEST_REDIS_URL`.
    pub redis_url: String,
    /// The test's Redis key prefix.
    pub redis_key_prefix: String,
    admin: sqlx::PgPool,
    schema: String,
}

impl SharedServices {
    /// Creates the schema and picks the prefix, or reports the skip and returns `None`.
    ///
    /// # Panics
    /// When a service is missing and `AUTHX_TEST_REQUIRE_SERVICES=1`, or when a reachable
    /// PostgreSQL refuses to create a schema.
    #[allow(clippy::panic)]
    pub async fn acquire(test: &str) -> Option<Self> {
        let (pg_url, pg_from) = service_url("AUTHX_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL);
        let (redis_url, redis_from) = service_url("AUTHX_TEST_REDIS_URL", DEFAULT_REDIS_URL);
        let admin = match sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&pg_url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                return skip(
                    test,
                    &format!("postgres unreachable at {pg_from}: {}", chain(&e)),
                );
            }
        };
        if let Err(e) = redis_ping(&redis_url).await {
            admin.close().await;
            return skip(
                test,
                &format!("redis unreachable at {redis_from}: {}", chain(&e)),
            );
        }
        let id = authx_core::secret::random_id()
            .to_ascii_lowercase()
            .replace('-', "_");
        let schema = format!("authx_test_{id}");
        if let Err(e) = sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
        {
            panic!("{test}: cannot create schema {schema}: {e}");
        }
        let sep = if pg_url.contains('?') { '&' } else { '?' };
        Some(Self {
            database_url: format!("{pg_url}{sep}options=-c%20search_path%3D{schema}"),
            redis_url,
            redis_key_prefix: format!("authx-test:{id}:"),
            admin,
            schema,
        })
    }

    /// A configuration step for [`crate::TestServer::start_on`]: this test's Redis URL and
    /// prefix, and the key-encryption key every instance of a deployment shares.
    pub fn configure(&self) -> impl Fn(&mut FileConfig) + Send + Sync + 'static {
        self.configure_redis(&self.redis_url)
    }

    /// As [`SharedServices::configure`], but reaching Redis at `redis_url` (for example
    /// through a proxy).
    pub fn configure_redis(
        &self,
        redis_url: &str,
    ) -> impl Fn(&mut FileConfig) + Send + Sync + 'static {
        let url = redis_url.to_owned();
        let prefix = self.redis_key_prefix.clone();
        move |f: &mut FileConfig| {
            shared_key(f);
            f.redis_url = Some(url.clone());
            f.redis_key_prefix = Some(prefix.clone());
        }
    }

    /// A configuration step for instances that share PostgreSQL only (no Redis).
    pub fn configure_without_redis(&self) -> impl Fn(&mut FileConfig) + Send + Sync + 'static {
        shared_key
    }

    /// Drops the schema and deletes the keys under the prefix.
    pub async fn cleanup(self) {
        let _ = sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ))
        .execute(&self.admin)
        .await;
        self.admin.close().await;
        let _ = delete_prefix(&self.redis_url, &self.redis_key_prefix).await;
    }
}

/// The key-encryption key of test deployments (32 bytes, base64): instances on one database
/// must share it to open the signing keys.
pub const TEST_KEY_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn shared_key(f: &mut FileConfig) {
    let oauth = f.oauth.get_or_insert_with(OAuthFile::default);
    oauth.key_encryption_key = Some(TEST_KEY_ENCRYPTION_KEY.to_owned());
}

async fn redis_ping(url: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| {
        redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out connecting",
        ))
    })??;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

async fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    }
    Ok(())
}

/// `url` with its `host:port` replaced by `addr` (for example a proxy's address); works for
/// `postgres://` and `redis://` URLs with or without credentials.
#[must_use]
pub fn with_addr(url: &str, addr: std::net::SocketAddr) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) if rest[..at].find('/').is_none() => (&rest[..=at], &rest[at + 1..]),
        _ => ("", rest),
    };
    let tail_at = hostpart.find(['/', '?']).unwrap_or(hostpart.len());
    format!("{scheme}://{userinfo}{addr}{}", &hostpart[tail_at..])
}

/// The `host:port` a `postgres://` or `redis://` URL points at (the default port when absent).
#[must_use]
pub fn addr_of(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let hostpart = match rest.rfind('@') {
        Some(at) if rest[..at].find('/').is_none() => &rest[at + 1..],
        _ => rest,
    };
    let host = &hostpart[..hostpart.find(['/', '?']).unwrap_or(hostpart.len())];
    if host.is_empty() {
        return None;
    }
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        Some(host.to_owned())
    } else {
        Some(format!("{host}:{default_port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_swapped_without_touching_the_rest() {
        let proxy: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(
            with_addr("postgres://postgres@127.0.0.1:5432/test?options=x", proxy),
            "postgres://postgres@127.0.0.1:40000/test?options=x"
        );
        assert_eq!(
            with_addr("redis://127.0.0.1:6379", proxy),
            "redis://127.0.0.1:40000"
        );
        assert_eq!(
            with_addr("redis://:pw@cache/2", proxy),
            "redis://:pw@127.0.0.1:40000/2"
        );
        assert_eq!(
            addr_of("postgres://postgres@127.0.0.1:5432/test", 5432).as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            addr_of("redis://localhost", 6379).as_deref(),
            Some("localhost:6379")
        );
    }
}
