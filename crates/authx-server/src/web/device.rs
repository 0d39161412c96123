//! The device authorization grant (RFC 8628): the device authorization endpoint and the
//! `/device` verification page. The device's polls are a grant of the token endpoint
//! (`web::oauth`); the user-code entry and its rate limit are core's
//! (`OAuthService::enter_user_code`).
//!
//! # Security
//! - The page needs a signed-in session; approve and deny are CSRF-protected POSTs behind the
//!   origin check. Opening the complete verification URI only shows the request.
//! - User-code lookups are rate-limited (SECURITY.md #57): a throttled entry gets 429 with
//!   `Retry-After`.
//! - The confirmation page names the client and its scopes and warns that approving hands a
//!   device access to the account (remote phishing, RFC 8628 §5.4).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use authx_core::auth::Authenticated;
use authx_core::csrf;
use authx_core::oauth::OAuthError;
use authx_core::oauth::device::{PendingDevice, UserCode, UserCodeEntry};

pub use authx_core::oauth::device::{
    ENTRY_BACKSTOP_DELAY, ENTRY_MISSES_GLOBAL, ENTRY_MISSES_PER_48, ENTRY_MISSES_PER_ACCOUNT,
    ENTRY_MISSES_PER_IP, ENTRY_MISSES_PER_SESSION, ENTRY_WINDOW_SECS,
};

use super::error::oauth::{csrf_rejected, device_unavailable_page, oauth_error};
use super::extract::CurrentSession;
use super::form::{AuthenticatedClient, Params};
use super::oauth::no_cache_json;
use crate::html::device::{Confirm, Denied, Done, Entry};
use crate::html::{Scope, render};
use crate::state::AppState;

/// The verification page (behind the origin check).
pub fn browser_router() -> Router<AppState> {
    Router::new().route("/device", get(device_get).post(device_post))
}

/// The device authorization endpoint (client authentication, no cookies).
pub fn machine_router() -> Router<AppState> {
    Router::new().route("/oauth2/device_authorization", post(authorization_post))
}

async fn authorization_post(State(state): State<AppState>, req: AuthenticatedClient) -> Response {
    match state
        .oauth
        .device_authorization(
            &req.client,
            req.params.get("scope"),
            req.params.get("resource"),
        )
        .await
    {
        Ok(d) => no_cache_json(d.to_json()),
        Err(e) => oauth_error(&e, req.basic),
    }
}

// ---------------------------------------------------------------------------------------------
// The verification page.

/// Sends a signed-out browser to sign in, coming back to the page (with the code, if any).
fn to_login(typed: Option<&str>) -> Response {
    let back = match typed.and_then(UserCode::normalize) {
        Some(c) => format!("/device?user_code={}", c.display()),
        None => "/device".to_owned(),
    };
    let back: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    Redirect::to(&format!("/login?return_to={back}")).into_response()
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

const MISS: &str = "That code is not valid or has expired. Check the code on your device.";

/// Looks up what the user typed through core's rate-limited entry: the pending request, or
/// the finished page of a miss, a throttled entry or a store failure.
#[allow(clippy::result_large_err)] // The error is the finished response.
async fn enter(
    state: &AppState,
    current: &CurrentSession,
    auth: &Authenticated,
    csrf: &str,
    typed: &str,
) -> Result<Box<PendingDevice>, Response> {
    let entry = state
        .oauth
        .enter_user_code(
            &auth.user.id,
            &auth.session.id,
            current.ctx.ip.as_deref(),
            typed,
        )
        .await;
    match entry {
        Ok(UserCodeEntry::Found(pending)) => Ok(pending),
        Ok(UserCodeEntry::Miss) => {
            Err(entry_page(StatusCode::BAD_REQUEST, csrf, typed, Some(MISS)))
        }
        Ok(UserCodeEntry::Throttled { retry_after_secs }) => {
            let mut res = entry_page(
                StatusCode::TOO_MANY_REQUESTS,
                csrf,
                "",
                Some("Too many wrong codes. Wait a few minutes and try again."),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Err(res)
        }
        Err(e) => Err(device_unavailable_page(&e)),
    }
}

async fn device_get(
    State(state): State<AppState>,
    current: CurrentSession,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let typed = p.get("user_code");
    let (Some(auth), Some(csrf)) = (&current.auth, current.csrf_token()) else {
        return to_login(typed);
    };
    let Some(typed) = typed else {
        return entry_page(StatusCode::OK, &csrf, "", None);
    };
    // Arriving from the complete URI: show the request, never decide it.
    match enter(&state, &current, auth, &csrf, typed).await {
        Ok(pending) => confirm_page(&pending, &csrf, &auth.user.email),
        Err(res) => res,
    }
}

async fn device_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Params,
) -> Response {
    let (Some(auth), Some(csrf)) = (&current.auth, current.csrf_token()) else {
        return to_login(form.get("user_code"));
    };
    if !form
        .get("csrf_token")
        .is_some_and(|t| csrf::matches(&csrf, t))
    {
        return csrf_rejected(state.auth.audit(), &auth.user.id, "device token");
    }
    let typed = form.get("user_code").unwrap_or_default();
    let pending = match enter(&state, &current, auth, &csrf, typed).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let approve = match form.get("decision") {
        None => return confirm_page(&pending, &csrf, &auth.user.email),
        Some("approve") => true,
        Some("deny") => false,
        Some(_) => {
            let error = Some("Choose Approve or Deny.");
            return entry_page(StatusCode::BAD_REQUEST, &csrf, typed, error);
        }
    };
    let decided = state
        .oauth
        .decide_device(&pending, super::oauth::signed_in(auth, false), approve)
        .await;
    render_decided(decided, approve, &pending, &csrf)
}

/// The page after the user's decision: done, denied, or the entry again when the request was
/// decided or expired meanwhile.
fn render_decided(
    decided: Result<bool, OAuthError>,
    approve: bool,
    pending: &PendingDevice,
    csrf: &str,
) -> Response {
    match decided {
        Ok(true) if approve => render(
            StatusCode::OK,
            &Done {
                client_name: &pending.client.name,
            },
        ),
        Ok(true) => render(StatusCode::OK, &Denied),
        Ok(false) => entry_page(StatusCode::CONFLICT, csrf, "", Some(MISS)),
        Err(e) => device_unavailable_page(&e),
    }
}
