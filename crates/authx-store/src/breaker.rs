//! A circuit breaker for a backing service that can stop answering without closing its
//! connections (a frozen Redis, a stalled network path).
//!
//! Without it, every request waits the whole response timeout (5 s) before its `503`, so a few
//! clients get a handful of answers in the time the fault lasts, and every waiting request
//! holds a connection and memory. After [`TRIP_AFTER`] calls in a row fail as unavailable, the
//! breaker *opens*: calls fail at once with [`StoreError::Unavailable`] (the web layer answers
//! `503` with `Retry-After`) while one background task probes the service every
//! [`PROBE_EVERY`]; the first probe that is answered within [`PROBE_TIMEOUT`] *closes* the
//! breaker, and calls go through again. A call that fails otherwise (a conflict, corrupt data)
//! or succeeds resets the count.
//!
//! # Security
//! An open breaker only ever refuses: nothing is answered from memory in its place, so a
//! session revoked meanwhile is never accepted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use authx_core::Timestamp;
use authx_core::secret::TokenHash;
use authx_core::session::{Session, SessionId};
use authx_core::store::{SessionStore, SessionTouch, StoreError, StoreResult, UserCopy};
use authx_core::user::{User, UserId};

/// Failed calls in a row that open the breaker.
pub(crate) const TRIP_AFTER: u32 = 2;
/// Time between two probes while the breaker is open.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Time a probe may take to count as an answer.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A probe of the service: `true` when it answered.
pub(crate) type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// The error of a call refused while the breaker is open.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not answering; calls fail at once until a background probe gets an answer")]
pub(crate) struct Open(&'static str);

/// One breaker in front of one service.
#[derive(Clone)]
pub(crate) struct Breaker {
    state: Arc<State>,
}

struct State {
    /// The service's name, for errors and logs.
    name: &'static str,
    failures_in_a_row: AtomicU32,
    open: AtomicBool,
    /// Calls refused at once while open (for tests and logs).
    refused: AtomicU64,
    probe: Probe,
}

impl Breaker {
    /// A closed breaker for the service `name`, which `probe` asks whether it answers.
    pub(crate) fn new(name: &'static str, probe: Probe) -> Self {
        Self {
            state: Arc::new(State {
                name,
                failures_in_a_row: AtomicU32::new(0),
                open: AtomicBool::new(false),
                refused: AtomicU64::new(0),
                probe,
            }),
        }
    }

    /// Runs `call` unless the breaker is open, and learns from its outcome.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] at once while open; otherwise the call's own result.
    pub(crate) async fn call<T>(
        &self,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.call_judged(call, |e| matches!(e, StoreError::Unavailable(_)))
            .await
    }

    /// [`Breaker::call`], where `outage` says which errors mean the service did not answer
    /// (only those count towards opening the breaker; any other outcome resets the count).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] at once while open; otherwise the call's own result.
    pub(crate) async fn call_judged<T>(
        &self,
        call: impl Future<Output = StoreResult<T>>,
        outage: fn(&StoreError) -> bool,
    ) -> StoreResult<T> {
        let s = &self.state;
        if s.open.load(Ordering::Acquire) {
            s.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::unavailable(Open(s.name)));
        }
        let result = call.await;
        match &result {
            Err(e) if outage(e) => {
                let n = s.failures_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= TRIP_AFTER {
                    self.trip();
                }
            }
            _ => s.failures_in_a_row.store(0, Ordering::Release),
        }
        result
    }

    /// Whether calls are refused at once.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.state.open.load(Ordering::Acquire)
    }

    /// How many calls were refused at once so far.
    #[cfg(test)]
    pub(crate) fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Opens the breaker, unless it is open already, and starts the one probing task.
    fn trip(&self) {
        if self.state.open.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            service = self.state.name,
            "circuit opened: failing fast while probing"
        );
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let answered = tokio::time::timeout(PROBE_TIMEOUT, (state.probe)())
                    .await
                    .unwrap_or(false);
                if answered {
                    state.failures_in_a_row.store(0, Ordering::Release);
                    state.open.store(false, Ordering::Release);
                    tracing::info!(
                        service = state.name,
                        refused = state.refused.load(Ordering::Relaxed),
                        "circuit closed: the service answers again"
                    );
                    return;
                }
            }
        });
    }
}

/// A session store behind a [`Breaker`].
pub(crate) struct BreakingSessions<S> {
    inner: S,
    breaker: Breaker,
}

impl<S> BreakingSessions<S> {
    /// `inner`, whose calls go through `breaker`.
    pub(crate) fn new(inner: S, breaker: Breaker) -> Self {
        Self { inner, breaker }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore> SessionStore for BreakingSessions<S> {
    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        self.breaker.call(self.inner.create_session(session)).await
    }

    async fn session_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        self.breaker.call(self.inner.session_by_hash(hash)).await
    }

    async fn touch_session(&self, touch: SessionTouch<'_>) -> StoreResult<bool> {
        self.breaker.call(self.inner.touch_session(touch)).await
    }

    async fn delete_session(&self, user: &UserId, id: &SessionId) -> StoreResult<Option<Session>> {
        self.breaker.call(self.inner.delete_session(user, id)).await
    }

    async fn delete_user_sessions(
        &self,
        user: &UserId,
        keep: Option<&SessionId>,
    ) -> StoreResult<Vec<SessionId>> {
        self.breaker
            .call(self.inner.delete_user_sessions(user, keep))
            .await
    }

    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        self.breaker
            .call(self.inner.list_user_sessions(user, now))
            .await
    }

    async fn count_live_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.breaker.call(self.inner.count_live_sessions(now)).await
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.breaker
            .call(self.inner.purge_expired_sessions(now))
            .await
    }

    async fn session_and_user(&self, hash: &TokenHash) -> StoreResult<Option<(Session, UserCopy)>> {
        self.breaker.call(self.inner.session_and_user(hash)).await
    }

    async fn keep_user(&self, user: &User, generation: u64) -> StoreResult<()> {
        self.breaker
            .call(self.inner.keep_user(user, generation))
            .await
    }

    async fn forget_user(&self, id: &UserId) -> StoreResult<()> {
        self.breaker.call(self.inner.forget_user(id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> StoreResult<()> {
        Err(StoreError::unavailable(std::io::Error::other("timed out")))
    }

    #[tokio::test]
    async fn opens_after_failures_in_a_row_refuses_at_once_and_closes_when_a_probe_answers() {
        let up = Arc::new(AtomicBool::new(false));
        let probed = Arc::clone(&up);
        let breaker = Breaker::new(
            "test service",
            Arc::new(move || {
                let up = probed.load(Ordering::SeqCst);
                Box::pin(async move { up })
            }),
        );
        // One failure, then a success: the count starts again.
        assert!(breaker.call(async { unavailable() }).await.is_err());
        breaker.call(async { Ok(()) }).await.unwrap();
        assert!(breaker.call(async { unavailable() }).await.is_err());
        assert!(!breaker.is_open());
        // A conflict is an answer, not an outage.
        assert!(
            breaker
                .call(async { StoreResult::<()>::Err(StoreError::Conflict) })
                .await
                .is_err()
        );
        assert!(breaker.call(async { unavailable() }).await.is_err());
        assert!(!breaker.is_open());
        assert!(breaker.call(async { unavailable() }).await.is_err());
        assert!(breaker.is_open());

        // Open: the call is not even made.
        let made = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&made);
        let refused = breaker
            .call(async move {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(refused, Err(StoreError::Unavailable(_))));
        assert!(!made.load(Ordering::SeqCst));
        assert_eq!(breaker.refused(), 1);

        // The service answers again: a probe closes the breaker by itself.
        up.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), async {
            while breaker.is_open() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        breaker.call(async { Ok(()) }).await.unwrap();
    }
}
