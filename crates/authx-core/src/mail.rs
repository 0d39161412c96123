//! Outgoing mail: a durable outbox that a request writes to and a sender drains.
//!
//! A flow that needs a mail calls a [`Mailer`] with a typed [`Message`]; the server renders it
//! (text and HTML) and enqueues it as an [`OutgoingMail`] in the [`OutboxStore`], then returns at
//! once. A sender task calls [`Outbox::deliver_due`]: it claims due mails with a lease, hands
//! each to a [`MailTransport`], and marks it sent, schedules a retry with exponential backoff
//! ([`RetryPolicy`]), or marks it failed after the last attempt.
//!
//! # Delivery
//! - **Never lost**: a mail is a row from the moment it is enqueued; a server that stops or
//!   crashes leaves its claimed mails to be claimed again once their lease expires.
//! - **One sender at a time**: a claim sets a lease and a random claim id in one atomic
//!   statement, so with several instances each mail is held by one sender at a time, and only
//!   the holder of the current claim can record its outcome.
//! - **At least once**: a crash between the transport's acceptance and the row's update sends
//!   the mail again, with the same `Message-ID` (fixed at enqueue), so receivers can drop the
//!   duplicate.
//!
//! # Security
//! A body may hold single-use links: the store wipes the bodies when a mail is sent or finally
//! failed, and nothing here logs a body.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::{Clock, Timestamp};
use crate::secret::random_id;
use crate::store::StoreResult;

/// A mail as the sender hands it to a transport.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The outbox row id (random, stable across attempts).
    pub id: String,
    /// The `Message-ID` header value, with its angle brackets (stable across attempts).
    pub message_id: String,
    /// What the mail is (the [`Message::kind`] it was rendered from), for audit and metrics.
    pub kind: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text_body: String,
    /// The HTML body.
    pub html_body: String,
}

impl std::fmt::Debug for OutgoingMail {
    // The bodies may hold single-use links: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl OutgoingMail {
    /// A new mail with a fresh id, and a `Message-ID` in `domain` derived from it.
    #[must_use]
    pub fn new(kind: &str, to: &str, domain: &str, rendered: Rendered) -> Self {
        let id = random_id();
        Self {
            message_id: format!("<{id}@{domain}>"),
            id,
            kind: kind.to_owned(),
            to: to.to_owned(),
            subject: rendered.subject,
            text_body: rendered.text_body,
            html_body: rendered.html_body,
        }
    }
}

/// A message rendered for one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text_body: String,
    /// The HTML body.
    pub html_body: String,
}

/// A mail claimed by a sender: the mail, and the claim that entitles it to record the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMail {
    /// The mail.
    pub mail: OutgoingMail,
    /// The claim id this sender holds until the lease ends.
    pub claim: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// Where a mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Waiting to be sent (or being sent under a lease).
    Pending,
    /// Accepted by the transport.
    Sent,
    /// Given up after the last attempt.
    Failed,
}

impl MailState {
    /// `pending`, `sent` or `failed`, as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// The outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Stores `mail`, due at `now`. [`crate::StoreError::Conflict`] when its id is taken.
    async fn enqueue_mail(&self, mail: &OutgoingMail, now: Timestamp) -> StoreResult<()>;

    /// Claims up to `limit` pending mails due at `now` whose lease (if any) has ended, oldest
    /// due first: each gets a fresh claim id, a lease until `lease_until`, and one more attempt
    /// counted. Atomic: two claimers never hold the same mail at once.
    async fn claim_mail(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedMail>>;

    /// Marks the mail of `claim` sent and wipes its bodies. `false` when the claim is no longer
    /// current (the lease ended and another sender claimed the mail).
    async fn mark_mail_sent(&self, id: &str, claim: &str, now: Timestamp) -> StoreResult<bool>;

    /// Releases the mail of `claim` to be tried again at `next_attempt_at`, keeping a short
    /// reason (never a body). `false` when the claim is no longer current.
    async fn retry_mail(
        &self,
        id: &str,
        claim: &str,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;

    /// Marks the mail of `claim` failed for good and wipes its bodies. `false` when the claim
    /// is no longer current.
    async fn fail_mail(
        &self,
        id: &str,
        claim: &str,
        now: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;

    /// Where the mail `id` stands and how many attempts it took, if it exists.
    async fn mail_state(&self, id: &str) -> StoreResult<Option<(MailState, u32)>>;

    /// Deletes sent and failed mails finished before `before`; returns how many.
    async fn purge_mail(&self, before: Timestamp) -> StoreResult<u64>;
}

/// How often and how late a mail is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a mail is marked failed (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; each further failure doubles it.
    pub base_delay_secs: i64,
    /// The longest wait between two attempts.
    pub max_delay_secs: i64,
    /// How long a claim holds a mail: longer than the transport can take to send one.
    pub lease_secs: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_secs: 30,
            max_delay_secs: 3600,
            lease_secs: 300,
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts: `base * 2^(attempts - 1)`, at most
    /// `max_delay_secs`, at least one second.
    #[must_use]
    pub fn delay_after(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(62);
        self.base_delay_secs
            .max(1)
            .saturating_mul(1_i64 << doublings)
            .min(self.max_delay_secs.max(1))
    }

    /// What to do after attempt number `attempts` failed.
    #[must_use]
    pub fn after_failure(&self, attempts: u32, now: Timestamp) -> AfterFailure {
        if attempts >= self.max_attempts.max(1) {
            AfterFailure::GiveUp
        } else {
            AfterFailure::RetryAt(now.plus(self.delay_after(attempts)))
        }
    }
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(Timestamp),
    /// That was the last attempt.
    GiveUp,
}

/// Why a transport did not take a mail (a short reason, never the body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Something that delivers a mail: SMTP, a log, a directory of files.
#[async_trait]
pub trait MailTransport: Send + Sync + 'static {
    /// Hands `mail` on. `Ok` once the next hop accepted it.
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), TransportError>;
}

/// What one [`Outbox::deliver_due`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Mails the transport accepted.
    pub sent: u32,
    /// Mails that failed and will be tried again.
    pub retried: u32,
    /// Mails given up on: `(mail, attempts, last error)`.
    pub failed: Vec<(OutgoingMail, u32, String)>,
    /// Mails whose claim was lost before the outcome could be recorded.
    pub lost_claims: u32,
}

/// The outbox: enqueueing, and delivery passes with their retry rules.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn OutboxStore>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
}

/// Mails claimed per delivery pass.
const CLAIM_BATCH: u32 = 16;

impl Outbox {
    /// The outbox over `store`.
    #[must_use]
    pub fn new(store: Arc<dyn OutboxStore>, clock: Arc<dyn Clock>, policy: RetryPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.store
    }

    /// The retry rules.
    #[must_use]
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Stores `mail`, due now.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn enqueue(&self, mail: &OutgoingMail) -> StoreResult<()> {
        self.store.enqueue_mail(mail, self.clock.now()).await
    }

    /// Claims the mails due now and delivers each through `transport`, recording the outcome.
    /// Returns when the claimed batch is done (call again while it was full).
    ///
    /// # Errors
    /// Storage failures (a mail whose outcome could not be recorded is claimed again once its
    /// lease ends).
    pub async fn deliver_due(
        &self,
        transport: &dyn MailTransport,
    ) -> StoreResult<(DeliveryReport, bool)> {
        let now = self.clock.now();
        let claimed = self
            .store
            .claim_mail(now, now.plus(self.policy.lease_secs), CLAIM_BATCH)
            .await?;
        let full = claimed.len() >= CLAIM_BATCH as usize;
        let mut report = DeliveryReport::default();
        for c in claimed {
            self.deliver_one(transport, c, &mut report).await?;
        }
        Ok((report, full))
    }

    async fn deliver_one(
        &self,
        transport: &dyn MailTransport,
        c: ClaimedMail,
        report: &mut DeliveryReport,
    ) -> StoreResult<()> {
        let (id, claim) = (c.mail.id.as_str(), c.claim.as_str());
        let error = match transport.deliver(&c.mail).await {
            Ok(()) => {
                let kept = self
                    .store
                    .mark_mail_sent(id, claim, self.clock.now())
                    .await?;
                tally(kept, &mut report.sent, &mut report.lost_claims);
                return Ok(());
            }
            Err(e) => e.0,
        };
        let now = self.clock.now();
        match self.policy.after_failure(c.attempts, now) {
            AfterFailure::RetryAt(at) => {
                let kept = self.store.retry_mail(id, claim, at, &error).await?;
                tally(kept, &mut report.retried, &mut report.lost_claims);
            }
            AfterFailure::GiveUp => {
                if self.store.fail_mail(id, claim, now, &error).await? {
                    report.failed.push((c.mail, c.attempts, error));
                } else {
                    report.lost_claims += 1;
                }
            }
        }
        Ok(())
    }
}

fn tally(kept: bool, done: &mut u32, lost: &mut u32) {
    if kept {
        *done += 1;
    } else {
        *lost += 1;
    }
}

/// A mail a flow asks for. Each flow adds its variant; the server renders it.
///
/// Not `non_exhaustive` on purpose: the server renders each variant in one `match`, so a
/// variant added without its templates does not compile.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// A test of the mail settings, sent by an operator.
    Test,
    /// A link to set a new password: `token` goes in `{issuer}/reset?token=...`.
    PasswordReset {
        /// The single-use token of the link (a secret: never printed).
        token: String,
        /// Minutes the link stays valid.
        valid_minutes: i64,
    },
    /// A reset was asked for an account that signs in only through another provider and has
    /// no password to reset.
    PasswordResetUnavailable,
    /// The account's password was changed (a notice, with what to do if it was not the owner).
    PasswordChanged,
    /// A link to prove control of the address: `token` goes in `{issuer}/verify?token=...`.
    VerifyEmail {
        /// The single-use token of the link (a secret: never printed).
        token: String,
        /// Hours the link stays valid.
        valid_hours: i64,
    },
    /// To the new address of an email change: `token` goes in
    /// `{issuer}/account/email/confirm?token=...`.
    EmailChangeConfirm {
        /// The single-use token of the link (a secret: never printed).
        token: String,
        /// Hours the link stays valid.
        valid_hours: i64,
    },
    /// Someone tried to create an account with the address of an existing one (a notice to
    /// the owner, with links to sign in and to reset the password).
    SignUpAttempt,
    /// To the old address of an email change: what was asked, and a "this wasn't me" link
    /// `{issuer}/account/email/cancel?token=...`.
    EmailChangeNotice {
        /// The single-use token of the cancel link (a secret: never printed).
        token: String,
        /// The address the change is to.
        new_email: String,
    },
    /// A sign-in link: `token` goes in `{issuer}/magic-link/sign-in?token=...`.
    MagicLink {
        /// The single-use token of the link (a secret: never printed).
        token: String,
        /// Minutes the link stays valid.
        valid_minutes: i64,
    },
    /// A recovery code of the account was used to sign in (a notice, with how many remain and
    /// what to do if it was not the owner).
    RecoveryCodeUsed {
        /// Unused codes left.
        remaining: u64,
    },
}

impl std::fmt::Debug for Message {
    // A variant may hold a single-use token: only the kind is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({})", self.kind())
    }
}

impl Message {
    /// A stable snake_case name, stored with the mail and used in audit events and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::PasswordReset { .. } => "password_reset",
            Self::PasswordResetUnavailable => "password_reset_unavailable",
            Self::PasswordChanged => "password_changed",
            Self::VerifyEmail { .. } => "verify_email",
            Self::SignUpAttempt => "sign_up_attempt",
            Self::EmailChangeConfirm { .. } => "email_change_confirm",
            Self::EmailChangeNotice { .. } => "email_change_notice",
            Self::MagicLink { .. } => "magic_link",
            Self::RecoveryCodeUsed { .. } => "recovery_code_used",
        }
    }
}

/// Why a mail could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient's address is not one a mail can go to.
    #[error("invalid recipient address")]
    InvalidAddress,
    /// The message could not be rendered.
    #[error("cannot render the mail: {0}")]
    Render(String),
    /// The outbox could not store it.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// What flows call to send a mail: renders `message` for `to` and queues it; returns once the
/// mail is stored (delivery happens later, in the background).
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Queues `message` for `to`, returning the outbox id.
    ///
    /// # Errors
    /// [`MailError`].
    async fn send(&self, to: &str, message: Message) -> Result<String, MailError>;
}

/// Whether `addr` is a plausible single mailbox (`local@domain`, no spaces, controls or
/// header-breaking characters): a first check before a transport parses it properly.
#[must_use]
pub fn plausible_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && addr.len() <= 254
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !addr.chars().any(|c| {
            c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::ManualClock;

    /// The outbox in memory, for these tests.
    #[derive(Default)]
    struct MemoryOutbox {
        rows: Mutex<BTreeMap<String, Row>>,
    }

    struct Row {
        mail: OutgoingMail,
        state: MailState,
        attempts: u32,
        due: Timestamp,
        lease_until: Option<Timestamp>,
        claim: Option<String>,
        finished: Option<Timestamp>,
    }

    impl MemoryOutbox {
        fn update(&self, id: &str, claim: &str, f: impl FnOnce(&mut Row)) -> bool {
            let mut rows = self.rows.lock().unwrap();
            match rows.get_mut(id) {
                Some(r) if r.state == MailState::Pending && r.claim.as_deref() == Some(claim) => {
                    f(r);
                    true
                }
                _ => false,
            }
        }
    }

    fn finish(r: &mut Row, state: MailState, now: Timestamp) {
        r.state = state;
        r.finished = Some(now);
        r.mail.text_body.clear();
        r.mail.html_body.clear();
    }

    #[async_trait]
    impl OutboxStore for MemoryOutbox {
        async fn enqueue_mail(&self, mail: &OutgoingMail, now: Timestamp) -> StoreResult<()> {
            let row = Row {
                mail: mail.clone(),
                state: MailState::Pending,
                attempts: 0,
                due: now,
                lease_until: None,
                claim: None,
                finished: None,
            };
            self.rows.lock().unwrap().insert(mail.id.clone(), row);
            Ok(())
        }

        async fn claim_mail(
            &self,
            now: Timestamp,
            lease_until: Timestamp,
            limit: u32,
        ) -> StoreResult<Vec<ClaimedMail>> {
            let mut rows = self.rows.lock().unwrap();
            let mut out = Vec::new();
            for r in rows.values_mut() {
                let free = r.lease_until.is_none_or(|l| l <= now);
                if r.state == MailState::Pending
                    && r.due <= now
                    && free
                    && out.len() < limit as usize
                {
                    r.attempts += 1;
                    r.lease_until = Some(lease_until);
                    let claim = random_id();
                    r.claim = Some(claim.clone());
                    out.push(ClaimedMail {
                        mail: r.mail.clone(),
                        claim,
                        attempts: r.attempts,
                    });
                }
            }
            Ok(out)
        }

        async fn mark_mail_sent(&self, id: &str, claim: &str, now: Timestamp) -> StoreResult<bool> {
            Ok(self.update(id, claim, |r| finish(r, MailState::Sent, now)))
        }

        async fn retry_mail(
            &self,
            id: &str,
            claim: &str,
            next_attempt_at: Timestamp,
            _error: &str,
        ) -> StoreResult<bool> {
            Ok(self.update(id, claim, |r| {
                r.due = next_attempt_at;
                r.lease_until = None;
                r.claim = None;
            }))
        }

        async fn fail_mail(
            &self,
            id: &str,
            claim: &str,
            now: Timestamp,
            _error: &str,
        ) -> StoreResult<bool> {
            Ok(self.update(id, claim, |r| finish(r, MailState::Failed, now)))
        }

        async fn mail_state(&self, id: &str) -> StoreResult<Option<(MailState, u32)>> {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .get(id)
                .map(|r| (r.state, r.attempts)))
        }

        async fn purge_mail(&self, before: Timestamp) -> StoreResult<u64> {
            let mut rows = self.rows.lock().unwrap();
            let n = rows.len();
            rows.retain(|_, r| r.finished.is_none_or(|f| f >= before));
            Ok((n - rows.len()) as u64)
        }
    }

    /// A transport that refuses while `down` and records what it accepted.
    #[derive(Default)]
    struct Sink {
        down: Mutex<bool>,
        got: Mutex<Vec<OutgoingMail>>,
    }

    #[async_trait]
    impl MailTransport for Sink {
        async fn deliver(&self, mail: &OutgoingMail) -> Result<(), TransportError> {
            if *self.down.lock().unwrap() {
                return Err(TransportError("connection refused".into()));
            }
            self.got.lock().unwrap().push(mail.clone());
            Ok(())
        }
    }

    fn mail(to: &str) -> OutgoingMail {
        OutgoingMail::new(
            "test",
            to,
            "auth.example.com",
            Rendered {
                subject: "Hello".into(),
                text_body: "link https://auth.example.com/x?t=secret".into(),
                html_body: "<p>hi</p>".into(),
            },
        )
    }

    fn outbox(policy: RetryPolicy) -> (Outbox, Arc<MemoryOutbox>, ManualClock) {
        let store = Arc::new(MemoryOutbox::default());
        let clock = ManualClock::new(Timestamp(1_000_000));
        let outbox = Outbox::new(store.clone(), Arc::new(clock.clone()), policy);
        (outbox, store, clock)
    }

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay_secs: 10,
        max_delay_secs: 25,
        lease_secs: 60,
    };

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let delays: Vec<i64> = (1..=5).map(|a| POLICY.delay_after(a)).collect();
        assert_eq!(delays, [10, 20, 25, 25, 25]);
        let huge = RetryPolicy {
            max_delay_secs: i64::MAX,
            ..POLICY
        };
        assert_eq!(huge.delay_after(u32::MAX), i64::MAX);
        let zero = RetryPolicy {
            base_delay_secs: 0,
            max_delay_secs: 0,
            ..POLICY
        };
        assert_eq!(zero.delay_after(3), 1);
    }

    #[test]
    fn the_last_attempt_gives_up() {
        let now = Timestamp(100);
        assert_eq!(
            POLICY.after_failure(1, now),
            AfterFailure::RetryAt(Timestamp(110))
        );
        assert_eq!(
            POLICY.after_failure(3, now),
            AfterFailure::RetryAt(Timestamp(125))
        );
        assert_eq!(POLICY.after_failure(4, now), AfterFailure::GiveUp);
        let once = RetryPolicy {
            max_attempts: 0,
            ..POLICY
        };
        assert_eq!(once.after_failure(1, now), AfterFailure::GiveUp);
    }

    #[test]
    fn message_ids_are_stable_and_bodies_are_not_printed() {
        let m = mail("kate@example.com");
        assert_eq!(m.message_id, format!("<{}@auth.example.com>", m.id));
        let shown = format!("{m:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("kate"), "{shown}");
    }

    #[test]
    fn plausible_addresses() {
        for ok in ["a@b", "kate+x@example.com"] {
            assert!(plausible_address(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@b",
            "a@",
            "a b@c",
            "a@b\r\nBcc: x@y",
            "<a@b>",
            "a@b,c@d",
            "a@.b",
        ] {
            assert!(!plausible_address(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_due_mail_is_sent_once_and_its_body_wiped() {
        let (outbox, store, _clock) = outbox(POLICY);
        let sink = Sink::default();
        let m = mail("kate@example.com");
        outbox.enqueue(&m).await.unwrap();
        let (report, full) = outbox.deliver_due(&sink).await.unwrap();
        assert_eq!((report.sent, full), (1, false));
        assert_eq!(
            sink.got.lock().unwrap().as_slice(),
            std::slice::from_ref(&m)
        );
        assert_eq!(
            store.mail_state(&m.id).await.unwrap(),
            Some((MailState::Sent, 1))
        );
        assert!(store.rows.lock().unwrap()[&m.id].mail.text_body.is_empty());
        let (again, _) = outbox.deliver_due(&sink).await.unwrap();
        assert_eq!(again, DeliveryReport::default());
    }

    #[tokio::test]
    async fn failures_back_off_then_give_up() {
        let (outbox, store, clock) = outbox(POLICY);
        let sink = Sink::default();
        *sink.down.lock().unwrap() = true;
        let m = mail("kate@example.com");
        outbox.enqueue(&m).await.unwrap();
        for (attempt, wait) in [(1, 10), (2, 20), (3, 25)] {
            let (report, _) = outbox.deliver_due(&sink).await.unwrap();
            assert_eq!(report.retried, 1, "attempt {attempt}");
            // Not due again before the backoff has passed.
            clock.advance(wait - 1);
            assert_eq!(
                outbox.deliver_due(&sink).await.unwrap().0,
                DeliveryReport::default()
            );
            clock.advance(1);
        }
        let (report, _) = outbox.deliver_due(&sink).await.unwrap();
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].1, 4);
        assert_eq!(report.failed[0].2, "connection refused");
        assert_eq!(
            store.mail_state(&m.id).await.unwrap(),
            Some((MailState::Failed, 4))
        );
        assert!(store.rows.lock().unwrap()[&m.id].mail.html_body.is_empty());
        clock.advance(3600);
        assert_eq!(
            outbox.deliver_due(&sink).await.unwrap().0,
            DeliveryReport::default()
        );
    }

    #[tokio::test]
    async fn a_recovered_transport_delivers_the_retried_mail() {
        let (outbox, _store, clock) = outbox(POLICY);
        let sink = Sink::default();
        *sink.down.lock().unwrap() = true;
        outbox.enqueue(&mail("kate@example.com")).await.unwrap();
        assert_eq!(outbox.deliver_due(&sink).await.unwrap().0.retried, 1);
        *sink.down.lock().unwrap() = false;
        clock.advance(10);
        assert_eq!(outbox.deliver_due(&sink).await.unwrap().0.sent, 1);
    }

    #[tokio::test]
    async fn a_lost_lease_is_claimed_again_and_the_stale_claim_is_refused() {
        let (outbox, store, clock) = outbox(POLICY);
        let m = mail("kate@example.com");
        outbox.enqueue(&m).await.unwrap();
        let now = Timestamp(1_000_000);
        // A sender claims and then dies before recording anything.
        let first = store.claim_mail(now, now.plus(60), 10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            store
                .claim_mail(now, now.plus(60), 10)
                .await
                .unwrap()
                .is_empty()
        );
        clock.advance(60);
        let sink = Sink::default();
        let (report, _) = outbox.deliver_due(&sink).await.unwrap();
        assert_eq!(report.sent, 1);
        // The same Message-ID goes out again: receivers can drop a duplicate.
        assert_eq!(sink.got.lock().unwrap()[0].message_id, m.message_id);
        assert!(
            !store
                .mark_mail_sent(&m.id, &first[0].claim, clock.now())
                .await
                .unwrap()
        );
        assert_eq!(
            store.mail_state(&m.id).await.unwrap(),
            Some((MailState::Sent, 2))
        );
    }

    #[tokio::test]
    async fn purge_keeps_pending_and_recent_mail() {
        let (outbox, store, clock) = outbox(POLICY);
        let sink = Sink::default();
        let sent = mail("a@example.com");
        outbox.enqueue(&sent).await.unwrap();
        outbox.deliver_due(&sink).await.unwrap();
        clock.advance(100);
        let pending = mail("b@example.com");
        outbox.enqueue(&pending).await.unwrap();
        assert_eq!(store.purge_mail(Timestamp(1_000_000)).await.unwrap(), 0);
        assert_eq!(store.purge_mail(clock.now()).await.unwrap(), 1);
        assert!(store.mail_state(&pending.id).await.unwrap().is_some());
    }

    #[test]
    fn message_kinds_are_stable() {
        assert_eq!(Message::Test.kind(), "test");
    }
}
