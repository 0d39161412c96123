//! Outgoing mail in the server: rendering a [`Message`] from the templates under
//! `templates/mail/`, queueing it in the outbox, and the sender task that delivers the queue.
//!
//! A flow calls [`MailService::send`] (the [`Mailer`] port): the mail is rendered and stored,
//! the sender on this instance is woken, and the call returns. The sender also looks for due
//! mail every `email.poll_interval_ms`, for retries and for mail queued by other instances.

pub mod settings;
pub mod transport;

use std::sync::Arc;

use askama::Template;
use async_trait::async_trait;
use authx_core::Clock;
use authx_core::audit::{Audit, AuditEvent};
use authx_core::mail::{
    DeliveryReport, MailError, MailTransport, Mailer, Message, Outbox, OutboxStore, OutgoingMail,
    Rendered, plausible_address,
};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use settings::EmailSettings;

/// How long sent and failed mails stay in the outbox (their bodies already wiped).
pub const RETENTION_SECS: i64 = 7 * 86_400;

/// What every mail template sees.
struct Common<'a> {
    product: &'a str,
    issuer: &'a str,
}

/// The text and HTML templates of a mail: each sees the product, the issuer, the subject, the
/// absolute `link` and how long it is valid (a test mail's link is the issuer itself).
macro_rules! link_mail {
    ($text:ident, $text_path:literal, $html:ident, $html_path:literal) => {
        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a>(&'a LinkFields<'a>);

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a>(&'a LinkFields<'a>);

        // The templates name the fields of `LinkFields` directly.
        impl<'a> std::ops::Deref for $text<'a> {
            type Target = LinkFields<'a>;
            fn deref(&self) -> &Self::Target {
                self.0
            }
        }

        impl<'a> std::ops::Deref for $html<'a> {
            type Target = LinkFields<'a>;
            fn deref(&self) -> &Self::Target {
                self.0
            }
        }
    };
}

/// What a link mail's templates show.
struct LinkFields<'a> {
    subject: &'a str,
    product: &'a str,
    issuer: &'a str,
    link: &'a str,
    valid_minutes: i64,
    /// What else the mail names (the new address in an email-change notice), or empty.
    detail: &'a str,
}

link_mail!(TestText, "mail/test.txt", TestHtml, "mail/test.html");
link_mail!(
    ResetText,
    "mail/password_reset.txt",
    ResetHtml,
    "mail/password_reset.html"
);
link_mail!(
    NoPasswordText,
    "mail/password_reset_unavailable.txt",
    NoPasswordHtml,
    "mail/password_reset_unavailable.html"
);
link_mail!(
    ChangedText,
    "mail/password_changed.txt",
    ChangedHtml,
    "mail/password_changed.html"
);
link_mail!(
    VerifyText,
    "mail/verify_email.txt",
    VerifyHtml,
    "mail/verify_email.html"
);
link_mail!(
    SignUpAttemptText,
    "mail/sign_up_attempt.txt",
    SignUpAttemptHtml,
    "mail/sign_up_attempt.html"
);
link_mail!(
    EmailConfirmText,
    "mail/email_change_confirm.txt",
    EmailConfirmHtml,
    "mail/email_change_confirm.html"
);
link_mail!(
    EmailNoticeText,
    "mail/email_change_notice.txt",
    EmailNoticeHtml,
    "mail/email_change_notice.html"
);
link_mail!(
    RecoveryCodeText,
    "mail/recovery_code_used.txt",
    RecoveryCodeHtml,
    "mail/recovery_code_used.html"
);
link_mail!(
    MagicText,
    "mail/magic_link.txt",
    MagicHtml,
    "mail/magic_link.html"
);

/// Renders `message` (subject, text and HTML). Links are absolute, from the issuer.
fn render(message: &Message, c: &Common<'_>) -> Result<Rendered, askama::Error> {
    let (what, link, minutes) = match message {
        Message::Test => ("test mail", c.issuer.to_owned(), 0),
        Message::PasswordReset {
            token,
            valid_minutes,
        } => (
            "reset your password",
            format!("{}/reset?token={token}", c.issuer),
            *valid_minutes,
        ),
        Message::PasswordResetUnavailable => {
            ("reset your password", format!("{}/login", c.issuer), 0)
        }
        Message::PasswordChanged => (
            "your password was changed",
            format!("{}/forgot", c.issuer),
            0,
        ),
        Message::VerifyEmail { token, valid_hours } => (
            "verify your email address",
            format!("{}/verify?token={token}", c.issuer),
            valid_hours * 60,
        ),
        // The template also links `{issuer}/forgot`.
        Message::SignUpAttempt => (
            "someone tried to sign up with your address",
            format!("{}/login", c.issuer),
            0,
        ),
        Message::EmailChangeConfirm { token, valid_hours } => (
            "confirm your new email address",
            format!("{}/account/email/confirm?token={token}", c.issuer),
            valid_hours.saturating_mul(60),
        ),
        Message::EmailChangeNotice { token, .. } => (
            "a change of your email address was asked for",
            format!("{}/account/email/cancel?token={token}", c.issuer),
            0,
        ),
        Message::MagicLink {
            token,
            valid_minutes,
        } => (
            "your sign-in link",
            format!("{}/magic-link/sign-in?token={token}", c.issuer),
            *valid_minutes,
        ),
        Message::RecoveryCodeUsed { .. } => (
            "a recovery code was used",
            format!("{}/forgot", c.issuer),
            0,
        ),
    };
    let remaining;
    let detail = match message {
        Message::EmailChangeNotice { new_email, .. } => new_email.as_str(),
        Message::RecoveryCodeUsed { remaining: n } => {
            remaining = n.to_string();
            remaining.as_str()
        }
        _ => "",
    };
    let subject = format!("{}: {what}", c.product);
    let f = LinkFields {
        subject: &subject,
        product: c.product,
        issuer: c.issuer,
        link: &link,
        valid_minutes: minutes,
        detail,
    };
    let (text_body, html_body) = match message {
        Message::Test => (TestText(&f).render()?, TestHtml(&f).render()?),
        Message::PasswordReset { .. } => (ResetText(&f).render()?, ResetHtml(&f).render()?),
        Message::PasswordResetUnavailable => {
            (NoPasswordText(&f).render()?, NoPasswordHtml(&f).render()?)
        }
        Message::PasswordChanged => (ChangedText(&f).render()?, ChangedHtml(&f).render()?),
        Message::VerifyEmail { .. } => (VerifyText(&f).render()?, VerifyHtml(&f).render()?),
        Message::SignUpAttempt => (
            SignUpAttemptText(&f).render()?,
            SignUpAttemptHtml(&f).render()?,
        ),
        Message::EmailChangeConfirm { .. } => (
            EmailConfirmText(&f).render()?,
            EmailConfirmHtml(&f).render()?,
        ),
        Message::EmailChangeNotice { .. } => {
            (EmailNoticeText(&f).render()?, EmailNoticeHtml(&f).render()?)
        }
        Message::MagicLink { .. } => (MagicText(&f).render()?, MagicHtml(&f).render()?),
        Message::RecoveryCodeUsed { .. } => (
            RecoveryCodeText(&f).render()?,
            RecoveryCodeHtml(&f).render()?,
        ),
    };
    Ok(Rendered {
        subject,
        text_body,
        html_body,
    })
}

/// Renders messages into mails: the product name, the issuer (every link's base) and the
/// `Message-ID` domain.
struct Composer {
    product: String,
    issuer: String,
    domain: String,
}

impl Composer {
    fn new(settings: &EmailSettings, issuer: &str) -> Self {
        let domain = issuer
            .split_once("://")
            .map_or(issuer, |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .filter(|d| !d.is_empty())
            .unwrap_or("localhost")
            .to_owned();
        Self {
            product: settings.product_name.clone(),
            issuer: issuer.to_owned(),
            domain,
        }
    }

    /// `message` for `to`, rendered, as a mail with a fresh id and `Message-ID`.
    fn compose(&self, to: &str, message: &Message) -> Result<OutgoingMail, MailError> {
        if !plausible_address(to) || to.parse::<lettre::Address>().is_err() {
            return Err(MailError::InvalidAddress);
        }
        let common = Common {
            product: &self.product,
            issuer: &self.issuer,
        };
        let rendered = render(message, &common).map_err(|e| MailError::Render(e.to_string()))?;
        Ok(OutgoingMail::new(
            message.kind(),
            to,
            &self.domain,
            rendered,
        ))
    }
}

/// Sends `message` to `to` through the configured transport at once, without the outbox or
/// a database (for `authx email test`, which reports the transport's own answer).
///
/// # Errors
/// An invalid address, or the transport's error.
pub async fn send_direct(
    settings: &EmailSettings,
    issuer: &str,
    to: &str,
    message: &Message,
) -> anyhow::Result<OutgoingMail> {
    let mail = Composer::new(settings, issuer).compose(to, message)?;
    transport::build(settings)?
        .deliver(&mail)
        .await
        .map_err(|e| anyhow::anyhow!("the mail transport refused: {e}"))?;
    Ok(mail)
}

/// The server's mail: settings, outbox, transport and the sender's wake-up.
pub struct MailService {
    settings: EmailSettings,
    composer: Composer,
    outbox: Outbox,
    transport: Arc<dyn MailTransport>,
    wake: Notify,
}

impl std::fmt::Debug for MailService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MailService {
    /// The mail service over `store`, delivering through the transport `settings` name.
    ///
    /// # Errors
    /// When the transport cannot be built.
    pub fn new(
        settings: EmailSettings,
        issuer: &str,
        store: Arc<dyn OutboxStore>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let transport = transport::build(&settings)?;
        Ok(Self {
            outbox: Outbox::new(store, clock, settings.retry),
            composer: Composer::new(&settings, issuer),
            settings,
            transport,
            wake: Notify::new(),
        })
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &EmailSettings {
        &self.settings
    }

    /// The outbox.
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The sender task: delivers due mail until `closing` turns `true`.
    pub async fn run_sender(
        &self,
        audit: &Audit,
        metrics: &Metrics,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *closing.borrow() {
                return;
            }
            if self.pass(audit, metrics).await {
                continue;
            }
            tokio::select! {
                () = self.idle() => {}
                _ = closing.changed() => return,
            }
        }
    }

    /// Waits until woken by a new mail or until the poll interval has passed.
    async fn idle(&self) {
        let _ = tokio::time::timeout(self.settings.poll_interval, self.wake.notified()).await;
    }

    /// One delivery pass over the due mail; `true` when more may be due at once.
    async fn pass(&self, audit: &Audit, metrics: &Metrics) -> bool {
        match self.outbox.deliver_due(self.transport.as_ref()).await {
            Ok((report, full)) => {
                record(&report, audit, metrics);
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the mail outbox; trying again later");
                false
            }
        }
    }
}

#[async_trait]
impl Mailer for MailService {
    async fn send(&self, to: &str, message: Message) -> Result<String, MailError> {
        let mail = self.composer.compose(to, &message)?;
        self.outbox.enqueue(&mail).await?;
        self.wake.notify_one();
        Ok(mail.id)
    }
}

/// Counts and audits the outcome of a pass. Mails given up on are audited one by one.
fn record(report: &DeliveryReport, audit: &Audit, metrics: &Metrics) {
    metrics.mail_outcome("sent", report.sent);
    metrics.mail_outcome("retried", report.retried);
    metrics.mail_outcome("lost_claim", report.lost_claims);
    for (mail, attempts, error) in &report.failed {
        metrics.mail_outcome("failed", 1);
        tracing::error!(
            mail_id = %mail.id,
            kind = %mail.kind,
            attempts,
            error = %error,
            "mail given up after the last attempt"
        );
        audit.record(
            AuditEvent::failure("mail_failed")
                .with("mail_id", &mail.id)
                .with("mail_kind", &mail.kind)
                .with_count("attempts", u64::from(*attempts))
                .with("error", error),
        );
    }
}
