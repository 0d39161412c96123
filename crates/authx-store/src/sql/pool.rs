//! The connection pool the shared statements run on, and the bounds a shared database puts on
//! each call.
//!
//! A PostgreSQL server can stop answering without closing its connections (frozen, or a network
//! path that drops packets). sqlx would then wait for ever on a statement already sent, and
//! every request would hold a connection and memory until the fault ends. So on PostgreSQL each
//! call (a statement, or a transaction's begin, statements and commit) is bounded in time, and
//! goes through a circuit [`Breaker`]: after a few calls in a row fail as unavailable, calls
//! fail at once (the web layer answers `503` with `Retry-After`) while one background task
//! probes with `SELECT 1`, and the first answer closes it again. A call refused by the breaker
//! is only ever a refusal: nothing is answered in its place.
//!
//! SQLite is a local file: its calls are not bounded here (its own busy timeout applies).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use authx_core::store::{StoreError, StoreResult};
use sqlx::{Database, Transaction};

use super::db::store_error;
use crate::breaker::{Breaker, Probe};

/// A connection pool, with the bounds of [`Guard`] on a shared database.
pub(crate) struct Pool<DB: Database> {
    inner: sqlx::Pool<DB>,
    guard: Option<Guard>,
}

/// What bounds each call to a shared database: a time limit, and the circuit breaker.
#[derive(Clone)]
struct Guard {
    breaker: Breaker,
    timeout: Duration,
}

/// The error of a call that took longer than the statement timeout.
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {0:?}")]
struct TimedOut(Duration);

impl<DB: Database> Pool<DB> {
    /// `inner`, its calls unbounded (SQLite).
    pub(crate) fn unbounded(inner: sqlx::Pool<DB>) -> Self {
        Self { inner, guard: None }
    }

    /// `inner`, each call bounded by `timeout` and behind a breaker for the service `name`,
    /// which `probe` asks whether it answers again.
    pub(crate) fn bounded(
        inner: sqlx::Pool<DB>,
        name: &'static str,
        timeout: Duration,
        probe: Probe,
    ) -> Self {
        Self {
            inner,
            guard: Some(Guard {
                breaker: Breaker::new(name, probe),
                timeout,
            }),
        }
    }

    /// The sqlx pool, for what runs outside the shared statements (tests, SQLite's writer).
    pub(crate) fn inner(&self) -> &sqlx::Pool<DB> {
        &self.inner
    }

    /// Runs `call` within the pool's bounds.
    pub(crate) async fn run<T>(
        &self,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        bounded(self.guard.as_ref(), call).await
    }

    /// A transaction, whose statements and commit stay within the pool's bounds.
    pub(crate) async fn begin(&self) -> StoreResult<Tx<DB>> {
        let inner = self
            .run(async { self.inner.begin().await.map_err(store_error) })
            .await?;
        Ok(Tx {
            inner,
            guard: self.guard.clone(),
        })
    }
}

/// A transaction on a [`Pool`]; dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx<DB: Database> {
    inner: Transaction<'static, DB>,
    guard: Option<Guard>,
}

impl<DB: Database> Tx<DB> {
    /// Runs `call` on the transaction's connection, within the pool's bounds.
    pub(crate) async fn run<'a, T, F, Fut>(&'a mut self, call: F) -> StoreResult<T>
    where
        F: FnOnce(&'a mut DB::Connection) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'a,
    {
        let conn: &'a mut DB::Connection = &mut self.inner;
        bounded(self.guard.as_ref(), call(conn)).await
    }

    /// Commits the transaction.
    pub(crate) async fn commit(self) -> StoreResult<()> {
        let Self { inner, guard } = self;
        bounded(guard.as_ref(), async {
            inner.commit().await.map_err(store_error)
        })
        .await
    }
}

/// `call` within `guard`'s bounds: refused at once while the breaker is open, and failed as
/// unavailable when it takes longer than the timeout.
async fn bounded<T>(
    guard: Option<&Guard>,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let Some(g) = guard else {
        return call.await;
    };
    g.breaker
        .call_judged(
            async {
                tokio::time::timeout(g.timeout, call)
                    .await
                    .unwrap_or_else(|_| Err(StoreError::unavailable(TimedOut(g.timeout))))
            },
            no_answer,
        )
        .await
}

/// Whether `e` means the database did not answer. An error the server itself returned (a
/// constraint it enforced, a statement it refused) shows that it answers, so it never counts
/// towards opening the breaker.
fn no_answer(e: &StoreError) -> bool {
    match e {
        StoreError::Unavailable(source) => !matches!(
            source.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(_))
        ),
        _ => false,
    }
}

/// A probe asking `pool` for `SELECT 1`.
pub(crate) fn select_one(pool: sqlx::PgPool) -> Probe {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() })
    })
}
