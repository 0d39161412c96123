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
