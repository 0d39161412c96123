//! Group commit of refresh-token rotations on SQLite.
//!
//! SQLite has one write lock, and with `synchronous=FULL` every commit waits for an `fsync` of
//! the WAL. A transaction per rotation therefore costs one `fsync` each, and concurrent
//! rotations on several pooled connections queue on the lock through the busy handler, which
//! sleeps. Instead, [`Writer::rotate`] queues the rotation for one task that owns them all: it
//! takes the first rotation waiting, with every other one already queued (up to
//! [`MAX_BATCH`]), runs them in order in one `BEGIN IMMEDIATE` transaction on a connection
//! from the pool, commits once, and then answers each caller. Under load, many rotations share
//! one `fsync`; alone, a rotation waits for nothing but its own commit.
//!
//! Each rotation keeps the promise of `GrantStore::rotate_refresh`: the conditional `UPDATE`
//! consumes the old token only if it is unconsumed, and the successor is inserted only if it
//! did. The rotations of a batch run one after the other in the transaction, so a token
//! presented twice in one batch is rotated by the first and refused (`false`) to the second.
//! A successor whose hash is already taken fails that rotation alone with
//! [`StoreError::Conflict`], its old token left unconsumed, as with a transaction of its own.
//! Any other failure (of a statement, of the commit) rolls the whole batch back and every
//! caller in it gets the error: nothing of a failed batch is applied.

use std::sync::Arc;

use authx_core::Timestamp;
use authx_core::oauth::grant::RefreshToken;
use authx_core::secret::TokenHash;
use authx_core::store::{StoreError, StoreResult};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::sql::grants::CONSUME_TOKEN;
use crate::sql::store_error;

/// Most rotations committed in one transaction: enough to share an `fsync` widely, few enough
/// that the write lock is not held long.
pub(crate) const MAX_BATCH: usize = 128;

/// Rotations that may wait for the writer; a caller beyond that waits to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;

/// The successor, unless its hash is taken: then nothing is inserted, and the rotation is
/// undone with [`UNCONSUME_TOKEN`] rather than failing the batch.
const INSERT_SUCCESSOR: &str = "INSERT INTO refresh_tokens \
     (token_hash, family_id, issued_at, idle_expires_at, consumed_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING";

/// Takes back a consumption made earlier in the same transaction (the token was unconsumed
/// before it, or [`CONSUME_TOKEN`] would not have matched).
const UNCONSUME_TOKEN: &str = "UPDATE refresh_tokens SET consumed_at = NULL WHERE token_hash = $1";

/// One rotation waiting for the writer, and where its answer goes.
struct Rotation {
    old: TokenHash,
    new: RefreshToken,
    now: Timestamp,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// The handle that callers queue rotations through. Dropping it (with the store) closes the
/// queue, and the writer task ends once it has answered what was queued.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Rotation>>,
}

impl Writer {
    /// Starts the writer task over `pool` on the current Tokio runtime. Outside a runtime there
    /// is none, and every rotation fails as unavailable.
    pub(crate) fn spawn(pool: SqlitePool) -> Self {
        let queue = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (queue, rotations) = mpsc::channel(QUEUE);
            rt.spawn(run(pool, rotations));
            queue
        });
        Self { queue }
    }

    /// Rotates `old` into `new` at `now`, committed with whatever else is queued; see the module
    /// documentation.
    pub(crate) async fn rotate(
        &self,
        old: &TokenHash,
        new: &RefreshToken,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| StoreError::unavailable(WriterGone))?;
        let (reply, answer) = oneshot::channel();
        let rotation = Rotation {
            old: *old,
            new: new.clone(),
            now,
            reply,
        };
        queue
            .send(rotation)
            .await
            .map_err(|_| StoreError::unavailable(WriterGone))?;
        // The writer answers every rotation it takes; no answer means it is gone.
        answer
            .await
            .map_err(|_| StoreError::unavailable(WriterGone))?
    }
}

/// The writer task: one batch at a time, until the queue is closed and empty.
async fn run(pool: SqlitePool, mut rotations: mpsc::Receiver<Rotation>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rotations.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A caller that stopped waiting would never learn the outcome: leave its token as it
        // is, so that presenting it again still works.
        batch.retain(|r: &Rotation| !r.reply.is_closed());
        if !batch.is_empty() {
            commit(&pool, &mut batch).await;
        }
    }
}

/// Runs `batch` in one transaction and answers each caller, emptying `batch`.
async fn commit(pool: &SqlitePool, batch: &mut Vec<Rotation>) {
    match apply(pool, batch).await {
        Ok(outcomes) => {
            for (rotation, outcome) in batch.drain(..).zip(outcomes) {
                // A caller that has gone away no longer needs the answer.
                let _ = rotation.reply.send(outcome.into_result());
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for rotation in batch.drain(..) {
                let _ = rotation.reply.send(Err(share(&e)));
            }
        }
    }
}

/// What one rotation of a committed batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The old token is consumed and the successor stored.
    Rotated,
    /// The old token was consumed already, unknown, or of another family: nothing changed.
    Refused,
    /// The successor's hash is taken: nothing changed.
    Taken,
}

impl Outcome {
    fn into_result(self) -> StoreResult<bool> {
        match self {
            Self::Rotated => Ok(true),
            Self::Refused => Ok(false),
            Self::Taken => Err(StoreError::Conflict),
        }
    }
}

/// The batch in one `BEGIN IMMEDIATE` transaction on a connection from the pool: every
/// outcome once committed, or the error that rolled it all back.
async fn apply(pool: &SqlitePool, batch: &[Rotation]) -> StoreResult<Vec<Outcome>> {
    let mut conn = pool.acquire().await.map_err(store_error)?;
    let applied = in_transaction(&mut conn, batch).await;
    if applied.is_err() {
        // Dropping the transaction queued its rollback; the connection runs commands in order,
        // so once the ping is answered the rollback has run. If it failed (SQLite may end a
        // transaction by itself on a full disk or an I/O error, and the driver then still
        // counts it as open), the connection would refuse every later `BEGIN IMMEDIATE`: it is
        // closed instead of going back to the pool.
        let _ = conn.ping().await;
        if conn.is_in_transaction() {
            conn.close_on_drop();
        }
    }
    applied
}

async fn in_transaction(
    conn: &mut SqliteConnection,
    batch: &[Rotation],
) -> StoreResult<Vec<Outcome>> {
    // IMMEDIATE takes the write lock at once (waiting on the busy timeout for another
    // connection's write), so no statement below can fail for want of it.
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_error)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for rotation in batch {
        // On an error, dropping `tx` rolls the whole batch back.
        outcomes.push(rotate_one(&mut tx, rotation).await?);
    }
    // A failed commit leaves the transaction open, and dropping it rolls back.
    tx.commit().await.map_err(store_error)?;
    Ok(outcomes)
}

/// One rotation inside the batch's transaction.
async fn rotate_one(conn: &mut SqliteConnection, r: &Rotation) -> StoreResult<Outcome> {
    let old = r.old.to_hex();
    let consumed = sqlx::query(CONSUME_TOKEN)
        .bind(r.now.0)
        .bind(&old)
        .bind(&r.new.family_id)
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    if consumed.rows_affected() == 0 {
        return Ok(Outcome::Refused);
    }
    let inserted = sqlx::query(INSERT_SUCCESSOR)
        .bind(r.new.hash.to_hex())
        .bind(&r.new.family_id)
        .bind(r.new.issued_at.0)
        .bind(r.new.idle_expires_at.0)
        .bind(r.new.consumed_at.map(|t| t.0))
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    if inserted.rows_affected() == 0 {
        sqlx::query(UNCONSUME_TOKEN)
            .bind(&old)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
        return Ok(Outcome::Taken);
    }
    Ok(Outcome::Rotated)
}

/// The error of a failed batch, as each of its callers gets it.
fn share(e: &Arc<StoreError>) -> StoreError {
    match &**e {
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Unavailable(_) => StoreError::unavailable(BatchFailed(Arc::clone(e))),
    }
}

/// The rotation was committed with others, and that transaction failed for the cause below.
#[derive(Debug, thiserror::Error)]
#[error("the transaction of this rotation's batch failed")]
struct BatchFailed(#[source] Arc<StoreError>);

/// The writer task is not running (no Tokio runtime at start, or the runtime has shut down).
#[derive(Debug, thiserror::Error)]
#[error("the SQLite rotation writer is not running")]
struct WriterGone;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use authx_core::oauth::grant::{self, RefreshFamily};
    use authx_core::oauth::store::GrantStore as _;
    use authx_core::secret::random_id;
    use authx_core::user::UserId;

    use super::*;
    use crate::options::ConnectOptions;
    use crate::sqlite::{MIGRATOR, SqliteStore, open};

    async fn memory_store() -> SqliteStore {
        store_at("sqlite::memory:", &ConnectOptions::default()).await
    }

    /// A store over `url` with a user `u1` and a client `app`.
    async fn store_at(url: &str, opts: &ConnectOptions) -> SqliteStore {
        let pool = open(url, opts).await.unwrap();
        crate::migrations::apply(&pool, &MIGRATOR).await.unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, status, is_admin, created_at, \
             password_changed_at) VALUES ('u1', 'a@example.com', 'x', 'active', 0, 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, redirect_uris, post_logout_redirect_uris, \
             grant_types, scopes, first_party, id_token_alg, access_token_ttl_secs, \
             refresh_token_ttl_secs, refresh_idle_secs, created_at) \
             VALUES ('app', 'App', '[]', '[]', '[\"refresh_token\"]', '[]', 0, 'RS256', 1, 1, 1, 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        SqliteStore::new(pool)
    }

    fn token(family_id: &str, issued: i64) -> RefreshToken {
        RefreshToken {
            hash: TokenHash::of(random_id().as_bytes()),
            family_id: family_id.to_owned(),
            issued_at: Timestamp(issued),
            idle_expires_at: Timestamp(4_000_000_000),
            consumed_at: None,
        }
    }

    /// A new family with its first token.
    async fn family(store: &SqliteStore) -> RefreshToken {
        let id = random_id();
        let family = RefreshFamily {
            id: id.clone(),
            client_id: "app".into(),
            user_id: UserId("u1".into()),
            session_id: None,
            scope: "read".into(),
            resource: None,
            auth_time: Timestamp(1),
            auth_methods: String::new(),
            created_at: Timestamp(1),
            expires_at: Timestamp(4_000_000_000),
            revoked_at: None,
            dpop_jkt: None,
        };
        let first = token(&id, 1);
        store.create_family(&family, Some(&first)).await.unwrap();
        first
    }

    fn rotation(
        old: &RefreshToken,
        new: &RefreshToken,
        now: i64,
    ) -> (Rotation, oneshot::Receiver<StoreResult<bool>>) {
        let (reply, answer) = oneshot::channel();
        let rotation = Rotation {
            old: old.hash,
            new: new.clone(),
            now: Timestamp(now),
            reply,
        };
        (rotation, answer)
    }

    /// Commits the rotations as one batch and returns each caller's answer.
    async fn commit_batch(
        store: &SqliteStore,
        rotations: &[(&RefreshToken, &RefreshToken)],
    ) -> Vec<StoreResult<bool>> {
        let (mut batch, answers): (Vec<_>, Vec<_>) = rotations
            .iter()
            .map(|(old, new)| rotation(old, new, 2))
            .unzip();
        commit(store.pool.inner(), &mut batch).await;
        assert!(batch.is_empty());
        let mut out = Vec::new();
        for answer in answers {
            out.push(answer.await.unwrap());
        }
        out
    }

    async fn consumed_at(store: &SqliteStore, t: &RefreshToken) -> Option<Option<Timestamp>> {
        store
            .refresh_token(&t.hash)
            .await
            .unwrap()
            .map(|(t, _)| t.consumed_at)
    }

    #[tokio::test]
    async fn a_token_presented_twice_in_one_batch_rotates_once() {
        let store = memory_store().await;
        let t0 = family(&store).await;
        let (t1, t2) = (token(&t0.family_id, 2), token(&t0.family_id, 2));
        let other = family(&store).await;
        let other_next = token(&other.family_id, 2);

        let answers = commit_batch(&store, &[(&t0, &t1), (&other, &other_next), (&t0, &t2)]).await;
        assert!(
            matches!(answers[..], [Ok(true), Ok(true), Ok(false)]),
            "{answers:?}"
        );
        assert_eq!(consumed_at(&store, &t0).await, Some(Some(Timestamp(2))));
        assert_eq!(consumed_at(&store, &t1).await, Some(None));
        assert_eq!(consumed_at(&store, &t2).await, None);
        assert_eq!(consumed_at(&store, &other_next).await, Some(None));

        // The successor can be rotated later in the same batch, and the chain holds.
        let (t3, t4) = (token(&t0.family_id, 2), token(&t0.family_id, 2));
        let answers = commit_batch(&store, &[(&t1, &t3), (&t3, &t4), (&t1, &t4)]).await;
        assert!(
            matches!(answers[..], [Ok(true), Ok(true), Ok(false)]),
            "{answers:?}"
        );
        assert_eq!(consumed_at(&store, &t3).await, Some(Some(Timestamp(2))));
        assert_eq!(consumed_at(&store, &t4).await, Some(None));
    }

    #[tokio::test]
    async fn a_taken_successor_fails_its_rotation_alone() {
        let store = memory_store().await;
        let (a, b, c) = (
            family(&store).await,
            family(&store).await,
            family(&store).await,
        );
        let (a1, c1) = (token(&a.family_id, 2), token(&c.family_id, 2));
        // B's successor would take C's token hash.
        let clash = RefreshToken {
            hash: c.hash,
            ..token(&b.family_id, 2)
        };

        let answers = commit_batch(&store, &[(&a, &a1), (&b, &clash), (&c, &c1)]).await;
        assert!(
            matches!(answers[..], [Ok(true), Err(StoreError::Conflict), Ok(true)]),
            "{answers:?}"
        );
        // B is as before, still usable; C's row is C's own, consumed by its own rotation.
        assert_eq!(consumed_at(&store, &b).await, Some(None));
        let (stored_c, _) = store.refresh_token(&c.hash).await.unwrap().unwrap();
        assert_eq!(stored_c.family_id, c.family_id);
        assert_eq!(stored_c.consumed_at, Some(Timestamp(2)));
        assert_eq!(consumed_at(&store, &a1).await, Some(None));
        assert_eq!(consumed_at(&store, &c1).await, Some(None));

        let b1 = token(&b.family_id, 3);
        assert!(
            store
                .rotate_refresh(grant::Rotation {
                    old: &b.hash,
                    new: &b1,
                    now: Timestamp(3)
                })
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_failing_statement_rolls_the_whole_batch_back() {
        let store = memory_store().await;
        // Stands for any failure of a statement inside the batch (a full disk, an I/O error).
        sqlx::query(
            "CREATE TRIGGER refuse_issued_at_666 BEFORE INSERT ON refresh_tokens \
             WHEN NEW.issued_at = 666 BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(store.pool.inner())
        .await
        .unwrap();
        let (a, b, c) = (
            family(&store).await,
            family(&store).await,
            family(&store).await,
        );
        let (a1, b1, c1) = (
            token(&a.family_id, 2),
            token(&b.family_id, 666),
            token(&c.family_id, 2),
        );

        let answers = commit_batch(&store, &[(&a, &a1), (&b, &b1), (&c, &c1)]).await;
        assert_eq!(answers.len(), 3);
        for answer in &answers {
            assert!(
                matches!(answer, Err(StoreError::Unavailable(_))),
                "{answers:?}"
            );
        }
        // Nothing of the batch was applied, not even the rotation before the failure.
        for old in [&a, &b, &c] {
            assert_eq!(consumed_at(&store, old).await, Some(None));
        }
        for new in [&a1, &b1, &c1] {
            assert_eq!(consumed_at(&store, new).await, None);
        }

        // The connection is back in the pool outside any transaction, and the writer goes on.
        let a2 = token(&a.family_id, 3);
        assert!(
            store
                .rotate_refresh(grant::Rotation {
                    old: &a.hash,
                    new: &a2,
                    now: Timestamp(3)
                })
                .await
                .unwrap()
        );
        assert_eq!(consumed_at(&store, &a).await, Some(Some(Timestamp(3))));
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_batch_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("full.db").display());
        // One connection, so that the page limit below is the writer's too.
        let opts = ConnectOptions {
            max_connections: 1,
            sqlite_synchronous_full: false,
            ..ConnectOptions::default()
        };
        let store = store_at(&url, &opts).await;
        let mut olds = Vec::new();
        for _ in 0..MAX_BATCH {
            olds.push(family(&store).await);
        }
        let news: Vec<_> = olds.iter().map(|t| token(&t.family_id, 2)).collect();
        // The file may not grow: a batch that needs a new page fails with SQLITE_FULL.
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(store.pool.inner())
            .await
            .unwrap();
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(store.pool.inner())
            .await
            .unwrap();

        let pairs: Vec<_> = olds.iter().zip(&news).collect();
        let answers = commit_batch(&store, &pairs).await;
        for answer in &answers {
            assert!(
                matches!(answer, Err(StoreError::Unavailable(_))),
                "{answer:?}"
            );
        }
        sqlx::query("PRAGMA max_page_count = 4294967294")
            .execute(store.pool.inner())
            .await
            .unwrap();
        for (old, new) in olds.iter().zip(&news) {
            assert_eq!(consumed_at(&store, old).await, Some(None));
            assert_eq!(consumed_at(&store, new).await, None);
        }

        // With room again, the same rotations go through, and so does the writer.
        let answers = commit_batch(&store, &pairs).await;
        assert!(answers.iter().all(|a| matches!(a, Ok(true))), "{answers:?}");
        let (old, new) = (&olds[0], token(&olds[0].family_id, 3));
        assert!(
            !store
                .rotate_refresh(grant::Rotation {
                    old: &old.hash,
                    new: &new,
                    now: Timestamp(3)
                })
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_rotations_share_the_one_memory_connection() {
        let store = Arc::new(memory_store().await);
        let mut olds = Vec::new();
        for _ in 0..(2 * MAX_BATCH + 10) {
            olds.push(family(&store).await);
        }
        let news: Vec<_> = olds.iter().map(|t| token(&t.family_id, 2)).collect();
        let tasks: Vec<_> = olds
            .iter()
            .zip(&news)
            .map(|(old, new)| {
                let (store, old, new) = (Arc::clone(&store), old.hash, new.clone());
                tokio::spawn(async move {
                    // Reads on the same single connection interleave with the batches.
                    store.refresh_token(&old).await.unwrap();
                    store
                        .rotate_refresh(grant::Rotation {
                            old: &old,
                            new: &new,
                            now: Timestamp(2),
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap());
        }
        for (old, new) in olds.iter().zip(&news) {
            assert_eq!(consumed_at(&store, old).await, Some(Some(Timestamp(2))));
            assert_eq!(consumed_at(&store, new).await, Some(None));
        }
    }

    #[tokio::test]
    async fn a_caller_that_stopped_waiting_changes_nothing() {
        let store = memory_store().await;
        let t0 = family(&store).await;
        let t1 = token(&t0.family_id, 2);
        let (rotation, answer) = rotation(&t0, &t1, 2);
        drop(answer);
        let (queue, rotations) = mpsc::channel(1);
        queue.send(rotation).await.unwrap();
        drop(queue);
        run(store.pool.inner().clone(), rotations).await;
        assert_eq!(consumed_at(&store, &t0).await, Some(None));
        assert_eq!(consumed_at(&store, &t1).await, None);
    }

    #[tokio::test]
    async fn the_writer_ends_when_its_queue_closes() {
        let store = memory_store().await;
        let (queue, rotations) = mpsc::channel(1);
        let task = tokio::spawn(run(store.pool.inner().clone(), rotations));
        drop(queue);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the writer should end")
            .unwrap();
    }

    #[test]
    fn without_a_writer_a_rotation_fails_instead_of_waiting() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = rt.block_on(memory_store());
        let t0 = rt.block_on(family(&store));
        let t1 = token(&t0.family_id, 2);

        // Started outside any runtime: there is no writer at all.
        let orphan = Writer::spawn(store.pool.inner().clone());
        let err = rt
            .block_on(orphan.rotate(&t0.hash, &t1, Timestamp(2)))
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

        // The runtime the writer ran on has shut down: the writer is gone with it.
        drop(rt);
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = other
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    store.rotate_refresh(grant::Rotation {
                        old: &t0.hash,
                        new: &t1,
                        now: Timestamp(2),
                    }),
                )
                .await
            })
            .expect("a rotation without a writer must not hang")
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
}
