//! Connecting and migrating: `connect`, `migrate` and the schema-version guard.

use authx_core::Timestamp;
use authx_store::{BackendKind, ConnectError, ConnectOptions, connect, migrate};

use crate::harness::{Stores, user};

/// A migration version no build of authx has (yet).
const FUTURE: i64 = 9_999_123_100;

/// Runs one statement on the test database with a connection of its own, outside the stores.
async fn execute(url: &str, sql: &str, version: i64, checksum: Vec<u8>) {
    match BackendKind::from_url(url).unwrap() {
        BackendKind::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sql)
                .bind(version)
                .bind(checksum)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        BackendKind::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql)
                .bind(version)
                .bind(checksum)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

pub(crate) async fn reconnecting_applies_nothing(s: Stores) {
    let kate = user("kate@example.com", Timestamp(1));
    s.accounts().create_user(&kate).await.unwrap();

    let opts = ConnectOptions::default();
    assert_eq!(migrate(s.url(), &opts).await.unwrap(), 0);
    let again = connect(s.url(), &opts).await.unwrap();
    again.health.ping().await.unwrap();
    assert_eq!(
        again.accounts.user_by_id(&kate.id).await.unwrap(),
        Some(kate)
    );
}

pub(crate) async fn modified_migration_is_refused(s: Stores) {
    execute(
        s.url(),
        "UPDATE _sqlx_migrations SET checksum = $2 WHERE version = $1",
        1,
        vec![0; 48],
    )
    .await;
    let err = connect(s.url(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Migration(_)), "{err:?}");
    assert_eq!(err.to_string(), "database migration failed");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("modified"), "{cause}");
}

pub(crate) async fn newer_schema_is_refused(s: Stores) {
    // What a newer build leaves behind after applying a migration this build lacks.
    execute(
        s.url(),
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer build', TRUE, $2, 0)",
        FUTURE,
        vec![0; 48],
    )
    .await;
    let opts = ConnectOptions::default();
    for err in [
        connect(s.url(), &opts).await.unwrap_err(),
        migrate(s.url(), &opts).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, ConnectError::SchemaTooNew { version: FUTURE }),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
    // The stores already open keep working; only new connections are refused.
    s.health().ping().await.unwrap();
}

/// A database at the schema before migration 0007 (per-client resources): `url` for a
/// fresh database of the same backend as `base`, migrated with 0001–0006 only.
async fn database_before_0007(base: &str, dir: &std::path::Path) -> (String, Option<String>) {
    let kind = BackendKind::from_url(base).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(kind.as_str());
    let old = dir.join("migrations");
    std::fs::create_dir(&old).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.unwrap();
    match kind {
        BackendKind::Sqlite => {
            let url = format!("sqlite://{}", dir.join("old.db").display());
            let opts = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
            (url, None)
        }
        BackendKind::Postgres => {
            // The fixture's URL names its schema in the search path: use a sibling schema.
            let (_, tail) = base.split_once("search_path%3D").unwrap();
            let schema = format!("{tail}_before_0007");
            let admin = sqlx::PgPool::connect(base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let url = base.replace(tail, &schema);
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
            (url, Some(schema))
        }
    }
}

/// Runs statements on a database with a connection of its own.
async fn execute_all(url: &str, statements: &[&str]) {
    match BackendKind::from_url(url).unwrap() {
        BackendKind::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        BackendKind::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

/// Issue 14 item 3: upgrading gives every client registered before per-client resources
/// existed every API registered at that moment (nothing that worked stops working), and
/// turns earlier consents into consents that name no API.
pub(crate) async fn upgrade_grants_existing_clients_every_api(s: Stores) {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = database_before_0007(s.url(), dir.path()).await;
    execute_all(
        &url,
        &[
            "INSERT INTO users (id, email, password_hash, status, is_admin, created_at, \
             password_changed_at) VALUES ('u1', 'kate@example.com', 'x', 'active', FALSE, 1, 1)",
            "INSERT INTO oauth_resources (id, scopes, created_at) \
             VALUES ('urn:b', '[\"write\"]', 1), ('https://a.example.com', '[\"read\"]', 1)",
            "INSERT INTO oauth_clients (id, name, secret_hash, redirect_uris, \
             post_logout_redirect_uris, grant_types, scopes, first_party, id_token_alg, \
             access_token_ttl_secs, refresh_token_ttl_secs, refresh_idle_secs, created_at) \
             VALUES ('app', 'App', NULL, '[]', '[]', '[\"authorization_code\"]', '[\"read\"]', \
             FALSE, 'RS256', 900, 900, 900, 1)",
            "INSERT INTO consents (user_id, client_id, scope, granted_at) \
             VALUES ('u1', 'app', 'openid read', 5)",
        ],
    )
    .await;
    let backend = connect(&url, &ConnectOptions::default()).await.unwrap();
    let app = backend.clients.client("app").await.unwrap().unwrap();
    assert_eq!(app.resources, ["https://a.example.com", "urn:b"]);
    let user = authx_core::user::UserId("u1".into());
    // Migration 0011: an account from before verification existed starts unverified.
    let kate = backend.accounts.user_by_id(&user).await.unwrap().unwrap();
    assert!(!kate.email_verified);
    let earlier = backend
        .grants
        .consent(&user, "app", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (earlier.resource, earlier.scope.as_str()),
        (None, "openid read")
    );
    assert_eq!(
        backend
            .grants
            .consent(&user, "app", Some("https://a.example.com"))
            .await
            .unwrap(),
        None
    );
    // An API registered after the upgrade is granted to nobody until an administrator says so.
    backend
        .clients
        .put_resource(&authx_core::oauth::client::Resource {
            id: "urn:c".into(),
            scopes: vec![],
            created_at: Timestamp(2),
        })
        .await
        .unwrap();
    let app = backend.clients.client("app").await.unwrap().unwrap();
    assert!(!app.may_target("urn:c"));
    drop(backend);
    if let Some(schema) = schema {
        execute_all(s.url(), &[&format!("DROP SCHEMA \"{schema}\" CASCADE")]).await;
    }
}
