//! The subscriber of the issuer's revocation feed (`/api/v1/revocations`, Server-Sent Events).
//!
//! It reconnects after any failure and resumes with `Last-Event-ID`, so no event is missed; the
//! issuer replays whatever happened meanwhile. Every byte received counts as contact, and the
//! issuer sends a comment every few seconds, so a silent connection is a dead one.
//!
//! An event this guard cannot read (an event kind from a newer issuer, or a malformed one) is
//! never stepped over: the resume position stays before it and the guard counts as stale (so
//! it refuses with `503` or introspects, as configured) until a connection replays past that
//! point without such an event. Readable events after it are still applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authx_core::events::LoggedEvent;

use crate::Shared;

/// No byte for this long means the connection is dead.
const IDLE_LIMIT: Duration = Duration::from_secs(15);
/// First delay before reconnecting; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest line accepted from the feed.
const MAX_LINE: usize = 64 * 1024;
/// How long a connection that met an unreadable event is kept before reconnecting to see
/// whether the event is still there (it leaves the log once every token it concerns expired).
const BLOCKED_RETRY: Duration = Duration::from_secs(60);

/// Where the subscriber stands, shared with request handling.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    /// The position to resume from.
    pub(crate) position: i64,
    /// The last time anything arrived.
    pub(crate) last_contact: Option<Instant>,
    /// Whether the replay after the first connection finished.
    pub(crate) caught_up_once: bool,
    /// Whether the current connection finished its replay.
    pub(crate) connected: bool,
    /// How many events were applied.
    pub(crate) applied: u64,
    /// An event after `position` could not be read: the deny-set may lack it.
    pub(crate) blocked: bool,
}

/// Runs until the guard is dropped.
pub(crate) async fn run(shared: std::sync::Weak<Shared>, client_id: String, secret: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(s) = shared.upgrade() else { return };
        let started = Instant::now();
        match connect_once(&s, &client_id, &secret).await {
            Ok(()) => tracing::info!("revocation feed closed by the issuer; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "revocation feed interrupted; reconnecting"),
        }
        if let Ok(mut f) = s.feed.lock() {
            f.connected = false;
        }
        drop(s);
        if started.elapsed() > Duration::from_secs(30) {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect_once(s: &Arc<Shared>, client_id: &str, secret: &str) -> Result<(), String> {
    let position = s.feed.lock().map(|f| f.position).unwrap_or(0);
    let mut req = s
        .http
        .streaming
        .get(&s.feed_url)
        .header(
            reqwest::header::AUTHORIZATION,
            crate::http::basic_auth(client_id, secret),
        )
        .header(reqwest::header::ACCEPT, "text/event-stream");
    if position > 0 {
        req = req.header("last-event-id", position.to_string());
    }
    let mut res = tokio::time::timeout(s.config.http_timeout, req.send())
        .await
        .map_err(|_| "timed out connecting".to_owned())?
        .map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        let status = res.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            tracing::error!(%status, "the issuer refused the guard's credentials for the revocation feed");
            // Do not hammer the issuer with refused credentials.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        return Err(format!("the issuer answered {status}"));
    }
    let mut parser = Parser::default();
    let started = Instant::now();
    // Whether this connection met an event it could not read: from then on it applies what it
    // can but no longer moves the resume position.
    let mut blocked = false;
    loop {
        let chunk = tokio::time::timeout(IDLE_LIMIT, res.chunk())
            .await
            .map_err(|_| "no keep-alive from the issuer".to_owned())?
            .map_err(|e| e.to_string())?;
        let Some(chunk) = chunk else { return Ok(()) };
        if let Ok(mut f) = s.feed.lock() {
            f.last_contact = Some(Instant::now());
        }
        for msg in parser.push(&chunk)? {
            handle(s, msg, &mut blocked);
        }
        if blocked && started.elapsed() >= BLOCKED_RETRY {
            return Err("reconnecting to retry an unreadable revocation event".into());
        }
    }
}

/// Applies one message. An unreadable event sets `blocked` (for this connection) and the
/// guard's `blocked` flag instead of being stepped over.
fn handle(s: &Shared, msg: Message, blocked: &mut bool) {
    let mut applied = false;
    match msg.event.as_str() {
        "revocation" => match serde_json::from_str::<LoggedEvent>(&msg.data) {
            Ok(e) => {
                if let Ok(mut d) = s.deny.write() {
                    d.apply(&e);
                }
                s.on_event();
                applied = true;
                tracing::debug!(seq = e.seq, "revocation applied");
            }
            Err(err) => {
                tracing::error!(
                    error = %err,
                    id = msg.id.as_deref().unwrap_or_default(),
                    "unreadable revocation event (is the issuer newer than this guard?); \
                     the guard stays stale until it can read it"
                );
                *blocked = true;
            }
        },
        "caught_up" | "position" => {}
        // A kind of message this guard does not know that moves the position may carry a
        // revocation: never step over it.
        other if msg.id.is_some() => {
            tracing::error!(
                event = other,
                "unknown revocation feed message (is the issuer newer than this guard?); \
                 the guard stays stale until it can read it"
            );
            *blocked = true;
        }
        _ => {}
    }
    let caught_up = msg.event == "caught_up";
    if let Ok(mut f) = s.feed.lock() {
        if *blocked {
            f.blocked = true;
        } else if let Some(id) = msg.id.as_deref().and_then(|i| i.parse::<i64>().ok()) {
            f.position = f.position.max(id);
        }
        if applied {
            f.applied += 1;
        }
        if caught_up {
            f.caught_up_once = true;
            f.connected = true;
            // A replay from the resume position that met nothing unreadable: whatever blocked
            // an earlier connection is gone (expired from the log).
            if !*blocked {
                f.blocked = false;
            }
        }
    }
    if caught_up {
        s.caught_up.notify_waiters();
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) event: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

/// An incremental `text/event-stream` parser (the parts the feed uses: `event`, `id`, `data`,
/// comments).
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buf: Vec<u8>,
    current: Message,
    has_data: bool,
}

impl Parser {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| "feed is not UTF-8".to_owned())?;
            if line.is_empty() {
                if self.has_data || !self.current.event.is_empty() {
                    let mut m = std::mem::take(&mut self.current);
                    if m.event.is_empty() {
                        m.event = "message".into();
                    }
                    out.push(m);
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => value.clone_into(&mut self.current.event),
                "id" => self.current.id = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err("feed line too long".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_messages_and_ignores_comments() {
        let mut p = Parser::default();
        assert!(p.push(b": ping\n\nevent: revo").unwrap().is_empty());
        let got = p
            .push(b"cation\r\nid: 7\ndata: {\"a\":1}\n\nevent: caught_up\nid: 7\ndata: {}\n\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                Message {
                    event: "revocation".into(),
                    id: Some("7".into()),
                    data: "{\"a\":1}".into()
                },
                Message {
                    event: "caught_up".into(),
                    id: Some("7".into()),
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn refuses_endless_lines() {
        let mut p = Parser::default();
        assert!(p.push(&vec![b'x'; MAX_LINE + 1]).is_err());
    }
}
