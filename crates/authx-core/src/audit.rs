//! The audit trail (SECURITY.md #66, #67): one recorder for every security event, which writes
//! each event as one log line (target `authx::audit`) and to the store.
//!
//! # Delivery
//! Recording never fails and never waits on the database: the log line is written at once and
//! the event is queued for a background writer that stores events in batches (one transaction
//! each). An event that cannot be stored is never dropped silently: when the queue is full or
//! the store keeps failing, an error line on `authx::audit` says how many events were not
//! stored (each of them is already in the log) and [`Audit::unstored`] counts them for metrics.
//! [`Audit::flush`] waits until everything queued so far is stored (the CLI and a stopping
//! server call it).
//!
//! # Security
//! - Events carry identifiers only (user, client, session and family ids, key ids), never a
//!   password, token, code, secret, cookie or `Authorization` header.
//! - Fields a client controls (email typed at sign-in, user agent, client id) are truncated,
//!   and in log lines every control character is escaped, so a value holding `\r\n` cannot
//!   start a forged line.
//! - The request context (request id, client address, user agent) comes from the HTTP layer
//!   through [`in_request`], so the services need no HTTP types.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, Timestamp};
use crate::store::StoreResult;

/// Longest value kept of any one field.
const MAX_FIELD_CHARS: usize = 256;
/// Events queued for the writer before recording reports them unstored.
const QUEUE_CAPACITY: usize = 10_000;
/// Events stored per transaction.
const BATCH: usize = 256;
/// Attempts to store a batch before giving up on it.
const ATTEMPTS: u32 = 5;

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was refused.
    Failure,
}

impl Outcome {
    /// `success` or `failure`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// An event as a service reports it; the recorder adds time and request context.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    kind: &'static str,
    outcome: Outcome,
    user_id: Option<String>,
    client_id: Option<String>,
    detail: serde_json::Map<String, serde_json::Value>,
}

impl AuditEvent {
    /// An event of `kind` (a stable snake_case name such as `sign_in_failed`).
    #[must_use]
    pub fn new(kind: &'static str, outcome: Outcome) -> Self {
        Self {
            kind,
            outcome,
            user_id: None,
            client_id: None,
            detail: serde_json::Map::new(),
        }
    }

    /// A successful action.
    #[must_use]
    pub fn success(kind: &'static str) -> Self {
        Self::new(kind, Outcome::Success)
    }

    /// A refused action.
    #[must_use]
    pub fn failure(kind: &'static str) -> Self {
        Self::new(kind, Outcome::Failure)
    }

    /// The subject: the user the event is about.
    #[must_use]
    pub fn user(mut self, id: impl std::fmt::Display) -> Self {
        self.user_id = Some(clip(&id.to_string()));
        self
    }

    /// The OAuth client involved.
    #[must_use]
    pub fn client(mut self, id: impl std::fmt::Display) -> Self {
        self.client_id = Some(clip(&id.to_string()));
        self
    }

    /// One more field (an identifier or a short reason; never a secret).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.detail.insert(
            key.to_owned(),
            serde_json::Value::String(clip(&value.to_string())),
        );
        self
    }

    /// One more numeric field.
    #[must_use]
    pub fn with_count(mut self, key: &str, n: u64) -> Self {
        self.detail.insert(key.to_owned(), n.into());
        self
    }
}

/// A recorded event, as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// Position in the trail (assigned by the store; 0 before).
    pub id: i64,
    /// When it happened (UTC seconds).
    pub at: Timestamp,
    /// What happened.
    pub kind: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The request it happened in.
    pub request_id: Option<String>,
    /// The OAuth client involved.
    pub client_id: Option<String>,
    /// The user it is about.
    pub user_id: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The user agent.
    pub user_agent: Option<String>,
    /// Further fields, a JSON object.
    pub detail: String,
}

impl AuditRecord {
    /// The event as one log-safe line of `key=value` pairs: every value has its control
    /// characters, quotes and backslashes escaped, so the line can never be split or extended.
    #[must_use]
    pub fn to_line(&self) -> String {
        Line(self).to_string()
    }
}

/// [`AuditRecord::to_line`], written only when displayed.
struct Line<'a>(&'a AuditRecord);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        write!(
            f,
            "event={} outcome={}",
            r.kind.escape_debug(),
            r.outcome.escape_debug()
        )?;
        for (k, v) in [
            ("request_id", &r.request_id),
            ("client_id", &r.client_id),
            ("user_id", &r.user_id),
            ("ip", &r.ip),
            ("user_agent", &r.user_agent),
        ] {
            if let Some(v) = v {
                write!(f, " {k}=\"{}\"", v.escape_debug())?;
            }
        }
        if r.detail != "{}" {
            write!(f, " detail={}", r.detail.escape_debug())?;
        }
        Ok(())
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_FIELD_CHARS).collect()
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events about this user id.
    pub user_id: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events about this OAuth client.
    pub client_id: Option<String>,
    /// Only `success` or only `failure` events.
    pub outcome: Option<String>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// Only events before this id (paging back through the newest).
    pub before_id: Option<i64>,
    /// Only events after this id, oldest first (for following); without it, the newest.
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// Where audit events are kept.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends events in one transaction, in order.
    async fn append_audit(&self, events: &[AuditRecord]) -> StoreResult<()>;
    /// Events matching `q`, oldest first: the newest `q.limit` of them, or with
    /// `q.after_id` the first `q.limit` after it.
    async fn list_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;
    /// How many events match `q`'s filters (its limit and position ignored).
    async fn count_audit(&self, q: &AuditQuery) -> StoreResult<u64>;
    /// Deletes events before `before`; returns how many.
    async fn purge_audit(&self, before: Timestamp) -> StoreResult<u64>;
}

/// Where a request came from, for the events recorded while it is served.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The request id (also in the `x-request-id` response header).
    pub request_id: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The user agent.
    pub user_agent: Option<String>,
    /// The recorder of this server, for [`record_current`].
    pub recorder: Option<Audit>,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `f` with `ctx` as the request context of every event it records.
pub async fn in_request<F: Future>(ctx: RequestContext, f: F) -> F::Output {
    REQUEST.scope(ctx, f).await
}

/// Records an event with the recorder of the request being served (code that has no service
/// at hand, such as request guards); outside a request, the event is only logged.
pub fn record_current(event: AuditEvent) {
    let recorder = REQUEST.try_with(|c| c.recorder.clone()).ok().flatten();
    match recorder {
        Some(r) => r.record(event),
        None => Audit::log_only(Arc::new(crate::clock::SystemClock)).record(event),
    }
}

enum Message {
    Event(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// The recorder. Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct Audit {
    clock: Arc<dyn Clock>,
    tx: Option<mpsc::Sender<Message>>,
    unstored: Arc<AtomicU64>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("stored", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// A recorder that writes log lines only.
    #[must_use]
    pub fn log_only(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            tx: None,
            unstored: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A recorder that also stores every event, through a writer task on the current Tokio
    /// runtime.
    #[must_use]
    pub fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let unstored = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(store, rx, Arc::clone(&unstored)));
        Self {
            clock,
            tx: Some(tx),
            unstored,
        }
    }

    /// Records an event: a log line now, a stored row soon after.
    pub fn record(&self, event: AuditEvent) {
        let ctx = REQUEST.try_with(Clone::clone).unwrap_or_default();
        let record = AuditRecord {
            id: 0,
            at: self.clock.now(),
            kind: event.kind.to_owned(),
            outcome: event.outcome.as_str().to_owned(),
            request_id: ctx.request_id.map(|s| clip(&s)),
            client_id: event.client_id,
            user_id: event.user_id,
            ip: ctx.ip.map(|s| clip(&s)),
            user_agent: ctx.user_agent.map(|s| clip(&s)),
            detail: serde_json::Value::Object(event.detail).to_string(),
        };
        // Formatted only if the line is logged at all.
        let line = Line(&record);
        match event.outcome {
            Outcome::Success => tracing::info!(target: "authx::audit", "{line}"),
            Outcome::Failure => tracing::warn!(target: "authx::audit", "{line}"),
        }
        if let Some(tx) = &self.tx {
            if tx.try_send(Message::Event(record)).is_err() {
                self.unstored.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    target: "authx::audit",
                    "audit queue full or closed: the event above is in this log only"
                );
            }
        }
    }

    /// Waits until every event recorded before this call has been stored (or given up on).
    pub async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = oneshot::channel();
            if tx.send(Message::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }

    /// Events that were logged but could not be stored, since start.
    #[must_use]
    pub fn unstored(&self) -> u64 {
        self.unstored.load(Ordering::Relaxed)
    }
}

async fn writer(
    store: Arc<dyn AuditStore>,
    mut rx: mpsc::Receiver<Message>,
    unstored: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Message::Event(e) => batch.push(e),
                Message::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            store_batch(store.as_ref(), &batch, &unstored).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn store_batch(store: &dyn AuditStore, batch: &[AuditRecord], unstored: &AtomicU64) {
    let mut attempt = 0;
    loop {
        match store.append_audit(batch).await {
            Ok(()) => return,
            Err(e) => {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    unstored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(
                        target: "authx::audit",
                        count = batch.len(),
                        error = %e,
                        "audit events could not be stored: they are in this log only"
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_escape_what_a_client_controls() {
        let r = AuditRecord {
            id: 0,
            at: Timestamp(0),
            kind: "sign_in_failed".into(),
            outcome: "failure".into(),
            request_id: None,
            client_id: None,
            user_id: None,
            ip: Some("192.0.2.1".into()),
            user_agent: Some("ua\r\nevent=sign_in outcome=success".into()),
            detail: serde_json::json!({"email": "a@b.c\r\nFAKE"}).to_string(),
        };
        let line = r.to_line();
        assert!(!line.contains('\r') && !line.contains('\n'), "{line}");
        assert!(line.contains(r"ua\r\nevent=sign_in"), "{line}");
        assert!(line.contains(r"FAKE"), "{line}");
    }

    struct BrokenStore;

    #[async_trait]
    impl AuditStore for BrokenStore {
        async fn append_audit(&self, _: &[AuditRecord]) -> StoreResult<()> {
            Err(crate::StoreError::Corrupt("the table is gone".into()))
        }
        async fn list_audit(&self, _: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
            Ok(Vec::new())
        }
        async fn count_audit(&self, _: &AuditQuery) -> StoreResult<u64> {
            Ok(0)
        }
        async fn purge_audit(&self, _: Timestamp) -> StoreResult<u64> {
            Ok(0)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_never_fails_the_caller_and_is_counted() {
        let clock: Arc<dyn Clock> = Arc::new(crate::ManualClock::new(Timestamp(0)));
        let audit = Audit::new(Arc::new(BrokenStore), clock);
        // Recording returns at once, whatever the store does.
        audit.record(AuditEvent::success("sign_in").user("u1"));
        audit.record(AuditEvent::failure("sign_in_failed"));
        assert_eq!(audit.unstored(), 0, "not given up yet");
        audit.flush().await;
        assert_eq!(audit.unstored(), 2, "given up after retrying, and counted");
    }

    #[test]
    fn fields_are_clipped() {
        let e = AuditEvent::failure("x").with("email", "a".repeat(10_000));
        assert_eq!(
            e.detail["email"].as_str().map(str::len),
            Some(MAX_FIELD_CHARS)
        );
    }
}
