//! Applying a backend's embedded migrations, refusing a schema newer than this build.

use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Database, Pool};

use crate::error::ConnectError;

/// [`apply`], then closes the pool: for a run that only migrates.
pub(crate) async fn apply_and_close<DB>(
    pool: Pool<DB>,
    migrator: &Migrator,
) -> Result<usize, ConnectError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let applied = apply(&pool, migrator).await;
    pool.close().await;
    applied
}

/// Applies the pending migrations of `migrator`, returning how many were pending.
///
/// Before anything runs, the applied migrations are compared with the ones this build knows:
/// a version this build does not know means a newer authx migrated the database, and this
/// build refuses to touch it ([`ConnectError::SchemaTooNew`]).
pub(crate) async fn apply<DB>(pool: &Pool<DB>, migrator: &Migrator) -> Result<usize, ConnectError>
where
    DB: Database,
    DB::Connection: Migrate,
{
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| ConnectError::unreachable("the database", e))?;
    // The migration lock (a PostgreSQL advisory lock) belongs to the connection: if anything
    // below fails, close the connection rather than return it to the pool still locked.
    let pending = match pending_migrations(&mut *conn, migrator).await {
        Ok(pending) => pending,
        Err(e) => {
            conn.close_on_drop();
            return Err(e);
        }
    };
    // Runs even with nothing pending: it also checks that every applied migration matches
    // this build's copy, refusing a database whose history was edited.
    if let Err(e) = migrator.run_direct(&mut *conn).await {
        conn.close_on_drop();
        return Err(e.into());
    }
    if pending > 0 {
        tracing::info!(applied = pending, "database migrations applied");
    }
    Ok(pending)
}

/// Counts the migrations this build would apply, under the migration lock.
async fn pending_migrations<C: Migrate>(
    conn: &mut C,
    migrator: &Migrator,
) -> Result<usize, ConnectError> {
    conn.lock().await?;
    conn.ensure_migrations_table().await?;
    if let Some(version) = conn.dirty_version().await? {
        return Err(ConnectError::Migration(MigrateError::Dirty(version)));
    }
    let applied = conn.list_applied_migrations().await?;
    conn.unlock().await?;
    plan(
        migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version),
        applied.iter().map(|m| m.version),
    )
}

/// Given the versions this build knows and those the database has applied, the number still
/// to apply, or [`ConnectError::SchemaTooNew`] naming the newest version this build lacks.
fn plan(
    known: impl Iterator<Item = i64>,
    applied: impl Iterator<Item = i64>,
) -> Result<usize, ConnectError> {
    let known: Vec<i64> = known.collect();
    let applied: Vec<i64> = applied.collect();
    if let Some(version) = applied.iter().copied().filter(|v| !known.contains(v)).max() {
        return Err(ConnectError::SchemaTooNew { version });
    }
    Ok(known.iter().filter(|v| !applied.contains(v)).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_counts_pending_and_refuses_unknown_versions() {
        assert_eq!(plan([1, 2, 3].into_iter(), [].into_iter()).unwrap(), 3);
        assert_eq!(plan([1, 2, 3].into_iter(), [1, 2].into_iter()).unwrap(), 1);
        assert_eq!(plan([1, 2].into_iter(), [1, 2].into_iter()).unwrap(), 0);
        assert!(matches!(
            plan([1, 2].into_iter(), [1, 2, 5, 4].into_iter()),
            Err(ConnectError::SchemaTooNew { version: 5 })
        ));
    }
}
