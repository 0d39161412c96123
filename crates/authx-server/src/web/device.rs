//! The device authorization grant (RFC 8628): the device authorization endpoint, the
//! device-code grant of the token endpoint, and the `/device` verification page.
//!
//! # Security
//! - The page needs a signed-in session; approve and deny are CSRF-protected POSTs behind the
//!   origin check. Opening the complete verification URI only shows the request.
//! - User-code lookups are rate-limited per session, per account and per network (an IPv4
//!   address, an IPv6 /64 and, at a higher limit, its /48), counted on every miss and checked
//!   before every lookup (SECURITY.md #57): the sixth miss in the window gets 429. A global
//!   backstop counts every miss too, but past it entry is slowed down, not refused: a backstop
//!   that refuses would let one attacker with enough networks stop device sign-in for everyone.
//! - The confirmation page names the client and its scopes and warns that approving hands a
//!   device access to the account (remote phishing, RFC 8628 §5.4).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use authx_core::Timestamp;
use authx_core::csrf;
use authx_core::oauth::OAuthError;
use authx_core::oauth::client::Client;
use authx_core::oauth::device::{PendingDevice, UserCode};
use authx_core::oauth::types::TokenResponse;
use authx_core::ratelimit::network_key;

use super::extract::{CurrentSession, SourceAddr};
use super::oauth::{Params, oauth_error, read_form};
use crate::html::device::{Confirm, Denied, Done, Entry};
use crate::html::{Message, Paragraph, Scope, render};
use crate::state::AppState;

/// The grant type of RFC 8628 §3.4.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Misses allowed per session in one window.
pub const ENTRY_MISSES_PER_SESSION: u32 = 5;
/// Misses allowed per account (all its sessions) in one window.
pub const ENTRY_MISSES_PER_ACCOUNT: u32 = 10;
/// Misses allowed per network in one window: an IPv4 address or an IPv6 /64 (one subscriber
/// holds a whole /64 and can rotate through it).
pub const ENTRY_MISSES_PER_IP: u32 = 5;
/// Misses allowed per IPv6 /48 (a site's allocation: 65,536 /64s) in one window.
pub const ENTRY_MISSES_PER_48: u32 = 20;
/// Misses across the whole server in one window past which every lookup is slowed down by
/// [`ENTRY_BACKSTOP_DELAY`].
pub const ENTRY_MISSES_GLOBAL: u32 = 1_000;
/// How long each lookup waits while the global backstop is exceeded.
pub const ENTRY_BACKSTOP_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// The window: a counter idle for this long starts again.
pub const ENTRY_WINDOW_SECS: i64 = 900;

/// The verification page (behind the origin check).
pub fn browser_router() -> Router<AppState> {
    Router::new().route("/device", get(device_get).post(device_post))
}

/// The device authorization endpoint (client authentication, no cookies).
pub fn machine_router() -> Router<AppState> {
    Router::new().route("/oauth2/device_authorization", post(authorization_post))
}

// ---------------------------------------------------------------------------------------------
// Device authorization and the token endpoint.

async fn authorization_post(
    State(state): State<AppState>,
    source: SourceAddr,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (p, auth, basic) = match read_form(&headers, q.as_deref(), &body) {
        Ok(v) => v,
        Err(res) => return res,
    };
    let client = match state
        .oauth
        .authenticate_client(&auth, source.as_deref())
        .await
    {
        Ok(c) => c,
        Err(e) => return oauth_error(&e, basic),
    };
    match state
        .oauth
        .device_authorization(&client, p.get("scope"), p.get("resource"))
        .await
    {
        Ok(d) => {
            let mut res = Json(d.to_json()).into_response();
            res.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => oauth_error(&e, basic),
    }
}

/// The device-code grant, for the token endpoint.
pub(super) async fn token(
    state: &AppState,
    client: &Client,
    p: &Params,
) -> Result<TokenResponse, OAuthError> {
    let Some(code) = p.get("device_code") else {
        return Err(OAuthError::InvalidRequest("device_code is required".into()));
    };
    state
        .oauth
        .device_token(client, code, &state.auth.policy().throttle)
        .await
}

// ---------------------------------------------------------------------------------------------
// The verification page.

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sends a signed-out browser to sign in, coming back to the page (with the code, if any).
fn to_login(code: Option<&UserCode>) -> Response {
    let back = match code {
        Some(c) => format!("/device?user_code={}", c.display()),
        None => "/device".to_owned(),
    };
    Redirect::to(&format!("/login?return_to={}", urlencode(&back))).into_response()
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "device page: store failure");
    Message::new(
        "Temporarily unavailable",
        "Temporarily unavailable",
        Paragraph::Text("Try again in a moment."),
    )
    .response(StatusCode::SERVICE_UNAVAILABLE)
}

fn entry_page(status: StatusCode, csrf: &str, prefill: &str, error: Option<&str>) -> Response {
    let page = Entry {
        csrf,
        prefill,
        error,
    };
    render(status, &page)
}

fn confirm_page(pending: &PendingDevice, csrf: &str, email: &str) -> Response {
    let code = pending.user_code.display();
    let page = Confirm {
        csrf,
        client_name: &pending.client.name,
        client_id: &pending.client.id,
        code: &code,
        email,
        scopes: Scope::list(pending.grant.scope.split(' ')),
    };
    render(StatusCode::OK, &page)
}

/// The global backstop's counter.
const GLOBAL_KEY: &str = "device_entry:global";

/// The refusing throttle keys of a lookup: per session, per account, per network (address or
/// /64, and /48).
fn entry_keys(current: &CurrentSession) -> Vec<(String, u32)> {
    let mut keys = Vec::with_capacity(4);
    if let Some(a) = &current.auth {
        keys.push((
            format!("device_entry:session:{}", a.session.id.0),
            ENTRY_MISSES_PER_SESSION,
        ));
        keys.push((
            format!("device_entry:user:{}", a.user.id.0),
            ENTRY_MISSES_PER_ACCOUNT,
        ));
    }
    if let Some(ip) = current.ctx.ip.as_deref() {
        let net = network_key(Some(ip), 64);
        keys.push((format!("device_entry:ip:{net}"), ENTRY_MISSES_PER_IP));
        if ip.contains(':') {
            let site = network_key(Some(ip), 48);
            keys.push((format!("device_entry:ip:{site}"), ENTRY_MISSES_PER_48));
        }
    }
    keys
}

enum Lookup {
    Found(Box<PendingDevice>),
    Miss,
    Throttled(i64),
}

/// Looks up what the user typed, under the rate limit; a miss is counted.
async fn lookup(
    state: &AppState,
    current: &CurrentSession,
    input: &str,
) -> Result<Lookup, OAuthError> {
    let throttle = &state.oauth.stores().throttle;
    let now: Timestamp = state.auth.clock().now();
    let keys = entry_keys(current);
    let mut wait = None;
    if throttle.failures(GLOBAL_KEY).await?.is_some_and(|c| {
        c.failures >= ENTRY_MISSES_GLOBAL && now.since(c.last_failure_at) < ENTRY_WINDOW_SECS
    }) {
        state
            .auth
            .audit()
            .record(authx_core::audit::AuditEvent::failure(
                "device_code_backstop_delay",
            ));
        tokio::time::sleep(ENTRY_BACKSTOP_DELAY).await;
    }
    for (key, limit) in &keys {
        if let Some(c) = throttle.failures(key).await? {
            let elapsed = now.since(c.last_failure_at);
            if c.failures >= *limit && elapsed < ENTRY_WINDOW_SECS {
                wait = wait.max(Some(ENTRY_WINDOW_SECS - elapsed));
            }
        }
    }
    if let Some(w) = wait {
        state
            .auth
            .audit()
            .record(authx_core::audit::AuditEvent::failure(
                "device_code_throttled",
            ));
        return Ok(Lookup::Throttled(w));
    }
    match state.oauth.pending_device(input).await? {
        Some(p) => Ok(Lookup::Found(Box::new(p))),
        None => {
            for key in keys.iter().map(|(k, _)| k.as_str()).chain([GLOBAL_KEY]) {
                throttle.record_failure(key, now, ENTRY_WINDOW_SECS).await?;
            }
            state
                .auth
                .audit()
                .record(authx_core::audit::AuditEvent::failure("device_code_miss"));
            Ok(Lookup::Miss)
        }
    }
}

fn throttled(csrf: &str, retry_after: i64) -> Response {
    let mut res = entry_page(
        StatusCode::TOO_MANY_REQUESTS,
        csrf,
        "",
        Some("Too many wrong codes. Wait a few minutes and try again."),
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

const MISS: &str = "That code is not valid or has expired. Check the code on your device.";

async fn device_get(
    State(state): State<AppState>,
    current: CurrentSession,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let typed = p.get("user_code").map(str::to_owned);
    let (Some(auth), Some(csrf)) = (&current.auth, current.csrf_token()) else {
        return to_login(typed.as_deref().and_then(UserCode::normalize).as_ref());
    };
    let Some(typed) = typed else {
        return entry_page(StatusCode::OK, &csrf, "", None);
    };
    // Arriving from the complete URI: show the request, never decide it.
    match lookup(&state, &current, &typed).await {
        Ok(Lookup::Found(pending)) => confirm_page(&pending, &csrf, &auth.user.email),
        Ok(Lookup::Miss) => entry_page(StatusCode::BAD_REQUEST, &csrf, &typed, Some(MISS)),
        Ok(Lookup::Throttled(w)) => throttled(&csrf, w),
        Err(e) => unavailable(&e),
    }
}

async fn device_post(
    State(state): State<AppState>,
    current: CurrentSession,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let (Some(auth), Some(csrf)) = (&current.auth, current.csrf_token()) else {
        return to_login(form.get("user_code").and_then(UserCode::normalize).as_ref());
    };
    if !form
        .get("csrf_token")
        .is_some_and(|t| csrf::matches(&csrf, t))
    {
        state.auth.audit().record(
            authx_core::audit::AuditEvent::failure("csrf_rejected")
                .user(&auth.user.id)
                .with("reason", "device token"),
        );
        return Message::error(
            "Request refused",
            "This form expired or did not come from this site.",
        )
        .response(StatusCode::FORBIDDEN);
    }
    let typed = form.get("user_code").unwrap_or_default().to_owned();
    let pending = match lookup(&state, &current, &typed).await {
        Ok(Lookup::Found(p)) => p,
        Ok(Lookup::Miss) => {
            return entry_page(StatusCode::BAD_REQUEST, &csrf, &typed, Some(MISS));
        }
        Ok(Lookup::Throttled(w)) => return throttled(&csrf, w),
        Err(e) => return unavailable(&e),
    };
    let approve = match form.get("decision") {
        None => return confirm_page(&pending, &csrf, &auth.user.email),
        Some("approve") => true,
        Some("deny") => false,
        Some(_) => {
            return entry_page(
                StatusCode::BAD_REQUEST,
                &csrf,
                &typed,
                Some("Choose Approve or Deny."),
            );
        }
    };
    match state
        .oauth
        .decide_device(
            &pending,
            &auth.user.id,
            &auth.session.id,
            auth.session.created_at,
            approve,
        )
        .await
    {
        Ok(true) if approve => render(
            StatusCode::OK,
            &Done {
                client_name: &pending.client.name,
            },
        ),
        Ok(true) => render(StatusCode::OK, &Denied),
        Ok(false) => entry_page(StatusCode::CONFLICT, &csrf, "", Some(MISS)),
        Err(e) => unavailable(&e),
    }
}
