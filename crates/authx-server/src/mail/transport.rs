//! The transports: the log (development), a directory of `.eml` files, and SMTP.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use authx_core::mail::{MailTransport, OutgoingMail, TransportError};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::{EmailSettings, SmtpSettings, SmtpTls, TransportSettings};

/// The transport `settings` name.
///
/// # Errors
/// When the SMTP TLS parameters cannot be built.
pub fn build(settings: &EmailSettings) -> anyhow::Result<Arc<dyn MailTransport>> {
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
    Ok(match &settings.transport {
        TransportSettings::Log => Arc::new(LogTransport),
        TransportSettings::File(dir) => Arc::new(FileTransport {
            dir: dir.clone(),
            from,
        }),
        TransportSettings::Smtp(s) => Arc::new(SmtpTransport {
            inner: smtp(s)?,
            from,
        }),
    })
}

/// The MIME message of `mail`: text and HTML alternatives, with the outbox's `Message-ID`.
fn message(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, TransportError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|_| TransportError("invalid recipient address".into()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(mail.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            mail.text_body.clone(),
            mail.html_body.clone(),
        ))
        .map_err(|e| TransportError(format!("cannot build the message: {e}")))
}

/// Prints each mail in the log instead of sending it: `authx serve` works with no mail server
/// and a developer sees the links.
struct LogTransport;

#[async_trait]
impl MailTransport for LogTransport {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), TransportError> {
        tracing::info!(
            target: "authx::mail",
            to = %mail.to,
            subject = %mail.subject,
            message_id = %mail.message_id,
            "MAIL (log transport, not sent)\n{}",
            mail.text_body
        );
        Ok(())
    }
}

/// Writes each mail as `<outbox id>.eml` into a directory (written under a temporary name,
/// then renamed, so a reader never sees half a file).
struct FileTransport {
    dir: PathBuf,
    from: Mailbox,
}

#[async_trait]
impl MailTransport for FileTransport {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), TransportError> {
        let bytes = message(&self.from, mail)?.formatted();
        let name: String = mail
            .id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let tmp = self.dir.join(format!(".{name}.eml.tmp"));
        let path = self.dir.join(format!("{name}.eml"));
        let io = |e: std::io::Error| TransportError(format!("cannot write the mail: {e}"));
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }
}

/// Sends each mail through an SMTP relay, one connection per mail.
struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[async_trait]
impl MailTransport for SmtpTransport {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), TransportError> {
        let msg = message(&self.from, mail)?;
        self.inner.send(msg).await.map(drop).map_err(|e| {
            // The error and its causes on one line (lettre never includes credentials).
            TransportError(format!("{:#}", anyhow::Error::new(e)))
        })
    }
}

fn smtp(s: &SmtpSettings) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let tls = match s.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(TlsParameters::new(s.host.clone())?),
        SmtpTls::Implicit => Tls::Wrapper(TlsParameters::new(s.host.clone())?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(s.timeout));
    if let Some((user, password)) = &s.credentials {
        b = b.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(b.build())
}
