//! The revocation feed: every revocation event, in order, for resource-server guards.
//!
//! `GET /api/v1/revocations` with `Accept: text/event-stream` is a Server-Sent Events stream:
//! first every event that still matters after the caller's position (`Last-Event-ID`, or
//! `?after=`), then a `caught_up` event, then each new event as it happens, with a comment every
//! few seconds so the guard can tell a quiet feed from a dead one. Any other `Accept` gets one
//! page of the same events as JSON (`{"events": [...], "next": N, "more": bool}`) for a guard that
//! prefers to poll.
//!
//! Only registered APIs may read it: the caller authenticates with HTTP Basic as a confidential
//! client whose id is a registered resource id (the same identity that may introspect tokens for
//! that API).
//!
//! Each event's SSE `id` is the position up to which the caller has seen everything. On
//! PostgreSQL two revocations committing at once can become visible out of order; an event after a
//! gap is sent at once, but the position only moves past the gap once the missing number appears
//! or [`GAP_WAIT`] has passed (a number lost to a rolled-back insert), so a guard that resumes
//! never skips an event (it may see one twice, which is harmless).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};

use authx_core::events::LoggedEvent;
use authx_core::oauth::OAuthError;
use authx_core::oauth::types::ClientAuth;

use super::error::feed;
use super::error::http::extract;
use super::extract::SourceAddr;
use super::form::parse_basic;
use crate::state::AppState;

/// Most events in one JSON page or one catch-up read.
const PAGE: u32 = 500;
/// How long the position waits behind a missing sequence number.
pub const GAP_WAIT: Duration = Duration::from_secs(2);
/// How often the stream re-reads the log even without a wake-up (a lost bus message).
const POLL_EVERY: Duration = Duration::from_secs(5);
/// How often the stream re-reads while it waits behind a gap.
const GAP_POLL: Duration = Duration::from_millis(200);
/// A comment line at least this often keeps idle connections (and the guard's staleness clock)
/// alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The feed's routes.
pub fn machine_router() -> Router<AppState> {
    Router::new().route("/api/v1/revocations", get(feed))
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<String>,
}

/// A request to read the feed, from a client that is a registered API: where to resume and
/// whether to stream.
struct FeedRequest {
    client: String,
    after: i64,
    stream: bool,
}

impl FromRequestParts<AppState> for FeedRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Query(q) = extract::<Query<FeedQuery>>(parts, state).await?;
        let client = registered_api(state, parts).await?;
        let position = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(q.after);
        let after = match position.as_deref().map(str::trim) {
            None | Some("") => 0,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => n,
                _ => return Err(feed::bad_position()),
            },
        };
        let stream = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
        Ok(Self {
            client,
            after,
            stream,
        })
    }
}

/// The client that authenticated with HTTP Basic, if it is a registered API.
async fn registered_api(state: &AppState, parts: &mut Parts) -> Result<String, Response> {
    let Some((id, secret)) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(parse_basic)
    else {
        return Err(feed::client_refused(&OAuthError::InvalidClient));
    };
    let source: SourceAddr = extract(parts, state).await?;
    let client = state
        .oauth
        .authenticate_client(&ClientAuth::Secret { id, secret }, source.as_deref())
        .await
        .map_err(|e| feed::client_refused(&e))?;
    match state.oauth.stores().clients.resource(&client.id).await {
        Ok(Some(_)) => Ok(client.id),
        Ok(None) => {
            state.auth.audit().record(
                authx_core::audit::AuditEvent::failure("revocation_feed_refused")
                    .client(&client.id),
            );
            Err(feed::not_an_api())
        }
        Err(e) => Err(feed::store_failure(e)),
    }
}

async fn feed(State(state): State<AppState>, req: FeedRequest) -> Response {
    state.auth.audit().record(
        authx_core::audit::AuditEvent::success("revocation_feed_opened")
            .client(&req.client)
            .with("after", req.after)
            .with("stream", req.stream),
    );
    if req.stream {
        stream(state, req.after)
    } else {
        page(&state, req.after).await
    }
}

async fn page(state: &AppState, after: i64) -> Response {
    let now = state.oauth.now();
    match state
        .revocations
        .log()
        .events_after(after, now, PAGE + 1)
        .await
    {
        Ok(mut events) => {
            let more = events.len() > PAGE as usize;
            events.truncate(PAGE as usize);
            let next = events.last().map_or(after, |e| e.seq);
            Json(json!({"events": events, "next": next, "more": more})).into_response()
        }
        Err(e) => feed::store_failure(e),
    }
}

fn stream(state: AppState, after: i64) -> Response {
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    // Subscribed before the first read, so nothing published in between is missed.
    let wake = state.bus.subscribe();
    tokio::spawn(produce(state, after, wake, tx));
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>))
    });
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies must not buffer the stream.
    res.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    res
}

/// Where the stream stands: everything up to `position` was sent; `sent` holds numbers beyond a
/// gap that were sent already.
struct Cursor {
    position: i64,
    sent: BTreeSet<i64>,
    gap_since: Option<Instant>,
}

impl Cursor {
    /// Records `seq` as sent; returns whether it is new.
    fn record(&mut self, seq: i64) -> bool {
        seq > self.position && self.sent.insert(seq)
    }

    /// Moves the position over every number that is settled.
    fn advance(&mut self, now: Instant) {
        while let Some(&next) = self.sent.first() {
            if next == self.position + 1 {
                self.position = next;
                self.sent.remove(&next);
                self.gap_since = None;
                continue;
            }
            let since = *self.gap_since.get_or_insert(now);
            if now.duration_since(since) >= GAP_WAIT {
                self.position = next;
                self.sent.remove(&next);
                self.gap_since = None;
                continue;
            }
            break;
        }
    }

    fn behind_gap(&self) -> bool {
        !self.sent.is_empty()
    }
}

async fn produce(
    state: AppState,
    after: i64,
    mut wake: broadcast::Receiver<authx_core::events::RevocationEvent>,
    tx: mpsc::Sender<Event>,
) {
    let mut closing = state.closing.subscribe();
    let mut cursor = Cursor {
        position: after,
        sent: BTreeSet::new(),
        gap_since: None,
    };
    // Catch-up, then the marker. Numbers missing at the start (purged, or still committing)
    // hold the position back like any other gap.
    if !drain(&state, &mut cursor, &tx).await
        || tx.send(marker("caught_up", cursor.position)).await.is_err()
    {
        return;
    }
    while next_read(&mut wake, &mut closing, &tx, cursor.behind_gap()).await {
        let before = cursor.position;
        if !drain(&state, &mut cursor, &tx).await {
            return;
        }
        cursor.advance(Instant::now());
        // The position moved past a gap with nothing new to send: tell the guard.
        if cursor.position != before && tx.send(marker("position", cursor.position)).await.is_err()
        {
            return;
        }
    }
}

/// Waits until the log is worth reading again: a wake-up from the bus, or the poll interval
/// (shorter behind a gap). `false` when the stream is over: the server is closing, the guard
/// went away, or the bus closed.
async fn next_read(
    wake: &mut broadcast::Receiver<authx_core::events::RevocationEvent>,
    closing: &mut watch::Receiver<bool>,
    tx: &mpsc::Sender<Event>,
    behind_gap: bool,
) -> bool {
    let wait = if behind_gap { GAP_POLL } else { POLL_EVERY };
    tokio::select! {
        r = wake.recv() => {
            if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                return false;
            }
        }
        () = tokio::time::sleep(wait) => {}
        _ = closing.changed() => return false,
        () = tx.closed() => return false,
    }
    !*closing.borrow()
}

/// Sends every event after the position that was not sent yet. Reads start at the position
/// (a number behind a gap may have committed since) and page on from the last number read, so
/// a full page of already-sent events never stalls the stream. `false` when the stream is over.
async fn drain(state: &AppState, cursor: &mut Cursor, tx: &mpsc::Sender<Event>) -> bool {
    let mut from = cursor.position;
    loop {
        let Ok(batch) = read(state, from).await else {
            return false;
        };
        for e in &batch {
            if cursor.record(e.seq) {
                cursor.advance(Instant::now());
                if !send(tx, e, cursor.position).await {
                    return false;
                }
            }
        }
        match batch.last() {
            Some(last) if batch.len() >= PAGE as usize => from = last.seq,
            _ => return true,
        }
    }
}

fn marker(name: &'static str, position: i64) -> Event {
    Event::default()
        .event(name)
        .id(position.to_string())
        .data(json!({ "position": position }).to_string())
}

async fn read(state: &AppState, after: i64) -> Result<Vec<LoggedEvent>, ()> {
    let now = state.oauth.now();
    match state.revocations.log().events_after(after, now, PAGE).await {
        Ok(v) => Ok(v),
        Err(e) => {
            // The guard reconnects and resumes; its staleness clock decides meanwhile.
            tracing::warn!(error = %e, "revocation feed cannot read the log");
            Err(())
        }
    }
}

async fn send(tx: &mpsc::Sender<Event>, e: &LoggedEvent, position: i64) -> bool {
    let Ok(data) = serde_json::to_string(e) else {
        return false;
    };
    let event = Event::default()
        .event("revocation")
        .id(position.to_string())
        .data(data);
    tx.send(event).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_waits_behind_a_gap_then_moves_on() {
        let t0 = Instant::now();
        let mut c = Cursor {
            position: 10,
            sent: BTreeSet::new(),
            gap_since: None,
        };
        assert!(c.record(11));
        c.advance(t0);
        assert_eq!(c.position, 11);
        // 13 arrives before 12.
        assert!(c.record(13));
        c.advance(t0);
        assert_eq!(c.position, 11);
        assert!(c.behind_gap());
        assert!(!c.record(13), "sent once");
        // 12 shows up: both settle.
        assert!(c.record(12));
        c.advance(t0 + Duration::from_millis(100));
        assert_eq!(c.position, 13);
        assert!(!c.behind_gap());
        // 15 with 14 never appearing: settles after the wait.
        assert!(c.record(15));
        c.advance(t0);
        assert_eq!(c.position, 13);
        c.advance(t0 + GAP_WAIT);
        assert_eq!(c.position, 15);
        assert!(!c.record(14), "behind the position");
    }
}
