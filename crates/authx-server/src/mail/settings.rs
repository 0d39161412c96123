//! The `[email]` section: which transport, who the mail is from, and how often to retry.

use std::path::PathBuf;
use std::time::Duration;

use authx_core::mail::RetryPolicy;
use serde::Deserialize;

/// `[email]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailFile {
    /// `log` (the default: mail is printed, not sent), `file` or `smtp`.
    pub transport: Option<String>,
    /// The `From` mailbox, `Name <address>` or `address`.
    pub from: Option<String>,
    /// The product name in subjects and bodies (default `authx`).
    pub product_name: Option<String>,
    /// `file` transport: the directory that receives one `.eml` file per mail.
    pub directory: Option<String>,
    /// `smtp`: the server's host name.
    pub smtp_host: Option<String>,
    /// `smtp`: the port (default 587 for STARTTLS, 465 for implicit TLS, 25 without TLS).
    pub smtp_port: Option<u16>,
    /// `smtp`: `starttls` (default), `implicit` or `none` (loopback only).
    pub tls: Option<String>,
    /// `smtp`: the user name, when the server needs authentication.
    pub username: Option<String>,
    /// `smtp`: the environment variable holding the password.
    pub password_env: Option<String>,
    /// `smtp`: a file holding the password (its first line).
    pub password_file: Option<String>,
    /// `smtp`: seconds to connect and for each command (default 30).
    pub timeout_secs: Option<u64>,
    /// Attempts before a mail is given up (default 8).
    pub max_attempts: Option<u32>,
    /// Seconds to wait after the first failure; doubled after each further one (default 30).
    pub retry_base_secs: Option<i64>,
    /// The longest wait between two attempts, in seconds (default 3600).
    pub retry_max_secs: Option<i64>,
    /// Milliseconds between two looks for due mail queued by other instances (default 5000).
    pub poll_interval_ms: Option<u64>,
    /// Whether the sign-in page offers to mail a single-use sign-in link (default `false`).
    pub magic_links: Option<bool>,
}

/// A password that never appears in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password itself, for the SMTP login only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// A plain connection upgraded with `STARTTLS`, which is required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No TLS: only to a server on this machine.
    None,
}

/// A validated SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connection protection.
    pub tls: SmtpTls,
    /// User name and password, when the relay authenticates.
    pub credentials: Option<(String, Password)>,
    /// Connect and command timeout.
    pub timeout: Duration,
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSettings {
    /// Printed in the log (development).
    Log,
    /// Written as `.eml` files into a directory.
    File(PathBuf),
    /// Sent through an SMTP relay.
    Smtp(SmtpSettings),
}

/// The validated `[email]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    /// Where mail goes.
    pub transport: TransportSettings,
    /// The `From` mailbox.
    pub from: String,
    /// The product name in subjects and bodies.
    pub product_name: String,
    /// Retries and leases.
    pub retry: RetryPolicy,
    /// Time between two looks for due mail.
    pub poll_interval: Duration,
    /// Whether sign-in by a mailed link is offered (off unless configured).
    pub magic_links: bool,
}

impl EmailSettings {
    /// Validates `[email]`; `issuer_host` names the default sender's domain.
    ///
    /// # Errors
    /// A message naming the bad key and why.
    pub fn from_file(f: EmailFile, issuer_host: &str) -> Result<Self, String> {
        let transport = match f.transport.as_deref() {
            None | Some("log") => TransportSettings::Log,
            Some("file") => {
                let dir = f
                    .directory
                    .clone()
                    .filter(|d| !d.is_empty())
                    .ok_or("email.directory is required with transport = \"file\"")?;
                TransportSettings::File(PathBuf::from(dir))
            }
            Some("smtp") => TransportSettings::Smtp(smtp(&f)?),
            Some(other) => {
                return Err(format!(
                    "email.transport = {other:?}: use \"log\", \"file\" or \"smtp\""
                ));
            }
        };
        let from = f.from.unwrap_or_else(|| default_from(issuer_host));
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "email.from = {from:?} is not a mailbox like \"Example <no-reply@example.com>\""
            ));
        }
        let product_name = f.product_name.unwrap_or_else(|| "authx".to_owned());
        if product_name.trim().is_empty()
            || product_name.chars().count() > 64
            || product_name.chars().any(char::is_control)
        {
            return Err("email.product_name must be 1 to 64 characters on one line".into());
        }
        let defaults = RetryPolicy::default();
        let max_attempts = f.max_attempts.unwrap_or(defaults.max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err("email.max_attempts must be between 1 and 100".into());
        }
        let base_delay_secs = f.retry_base_secs.unwrap_or(defaults.base_delay_secs);
        let max_delay_secs = f.retry_max_secs.unwrap_or(defaults.max_delay_secs);
        if base_delay_secs < 1 || max_delay_secs < base_delay_secs {
            return Err(
                "email.retry_base_secs must be at least 1 and at most email.retry_max_secs".into(),
            );
        }
        let timeout = match &transport {
            TransportSettings::Smtp(s) => s.timeout,
            _ => Duration::from_secs(30),
        };
        let poll_ms = f.poll_interval_ms.unwrap_or(5_000);
        if !(10..=600_000).contains(&poll_ms) {
            return Err("email.poll_interval_ms must be between 10 and 600000".into());
        }
        Ok(Self {
            transport,
            from,
            product_name,
            retry: RetryPolicy {
                max_attempts,
                base_delay_secs,
                max_delay_secs,
                // A claim outlives the slowest send: connect, then each command, with room.
                lease_secs: i64::try_from(timeout.as_secs().saturating_mul(4))
                    .unwrap_or(i64::MAX)
                    .max(60),
            },
            poll_interval: Duration::from_millis(poll_ms),
            magic_links: f.magic_links.unwrap_or(false),
        })
    }
}

/// `no-reply@HOST` for a named issuer host, `no-reply@localhost` for an address.
fn default_from(issuer_host: &str) -> String {
    let host = issuer_host.trim_start_matches('[').split([']', ':']).next();
    match host {
        Some(h) if !h.is_empty() && h.parse::<std::net::IpAddr>().is_err() => {
            format!("no-reply@{h}")
        }
        _ => "no-reply@localhost".to_owned(),
    }
}

fn smtp(f: &EmailFile) -> Result<SmtpSettings, String> {
    let host = f
        .smtp_host
        .clone()
        .filter(|h| !h.is_empty())
        .ok_or("email.smtp_host is required with transport = \"smtp\"")?;
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(format!("email.smtp_host = {host:?} is not a host name"));
    }
    let tls = match f.tls.as_deref() {
        None | Some("starttls") => SmtpTls::StartTls,
        Some("implicit") => SmtpTls::Implicit,
        Some("none") => SmtpTls::None,
        Some(other) => {
            return Err(format!(
                "email.tls = {other:?}: use \"starttls\", \"implicit\" or \"none\""
            ));
        }
    };
    if tls == SmtpTls::None && !is_loopback_host(&host) {
        return Err(
            "email.tls = \"none\" is allowed only for a server on this machine (127.0.0.1, ::1 \
             or localhost): a password and the mail's links would cross the network in clear"
                .into(),
        );
    }
    let port = f.smtp_port.unwrap_or(match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
    });
    let timeout_secs = f.timeout_secs.unwrap_or(30);
    if !(1..=300).contains(&timeout_secs) {
        return Err("email.timeout_secs must be between 1 and 300".into());
    }
    let credentials = match &f.username {
        None => {
            if f.password_env.is_some() || f.password_file.is_some() {
                return Err(
                    "email.password_env and email.password_file need email.username".into(),
                );
            }
            None
        }
        Some(user) => Some((user.clone(), password(f)?)),
    };
    Ok(SmtpSettings {
        host,
        port,
        tls,
        credentials,
        timeout: Duration::from_secs(timeout_secs),
    })
}

/// The SMTP password from the named environment variable or file (never from the file
/// itself, which is often readable by more people than the secret should be).
fn password(f: &EmailFile) -> Result<Password, String> {
    let value = match (&f.password_env, &f.password_file) {
        (Some(var), None) => std::env::var(var)
            .map_err(|_| format!("email.password_env: the variable {var} is not set"))?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("email.password_file: cannot read {path}: {e}"))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => {
            return Err("email.username needs email.password_env or email.password_file".into());
        }
        (Some(_), Some(_)) => {
            return Err("use one of email.password_env and email.password_file".into());
        }
    };
    if value.is_empty() {
        return Err("the SMTP password is empty".into());
    }
    Ok(Password(value))
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
