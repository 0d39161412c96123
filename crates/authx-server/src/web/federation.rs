//! Sign-in through an upstream OpenID provider: `/federation/{provider}/start`, its
//! `/callback`, and `/federation/link`, where a user proves control of an existing account
//! before an upstream identity is linked to it.
//!
//! Every decision is `authx_core::federation`'s ([`RelyingParty`]); these handlers read the
//! request, make one call and render the result.
//!
//! # Security
//! - The checks of the callback (one-time `state`, browser binding, RFC 9207 `iss`, the ID
//!   token, the account by (issuer, subject)) are made in core (SECURITY.md #61-#64).
//! - Every failure ends on a readable page with a 4xx or 502 status, never a 500, and no
//!   session is created.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use authx_core::auth::AuthError;
use authx_core::federation::{
    self, Browser, Completed, FederationError, PendingLink, RelyingParty,
};

use super::error::ApiError;
use super::extract::{CurrentSession, FormBody};
use super::signin::{
    bad_form, error_status, pre_session, pre_token_ok, safe_return_to, set_retry_after,
    signed_in_redirect, with_pre_cookie,
};
use crate::cookies::append_cookie;
use crate::html::federation::Link;
use crate::html::{Message, render};
use crate::state::AppState;

/// The federation routes (browser-facing: POSTs pass the origin check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/federation/{provider}/start", get(start_get))
        .route("/federation/{provider}/callback", get(callback_get))
        .route("/federation/link", get(link_get).post(link_post))
}

fn relying_party(state: &AppState) -> RelyingParty<'_> {
    RelyingParty {
        auth: &state.auth,
        store: state.federation.as_ref(),
        sign_ins: &state.metrics,
    }
}

fn browser(current: &CurrentSession) -> Browser<'_> {
    Browser {
        ctx: &current.ctx,
        session: current.token.as_ref(),
        binding: current.federation_binding.as_ref(),
    }
}

/// A readable failure page.
fn failure(status: StatusCode, title: &str, msg: &str) -> Response {
    Message::error(title, msg).back_to_login().response(status)
}

fn unknown_provider() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "Unknown identity provider",
        "No identity provider of this name is configured here.",
    )
}

const UNAVAILABLE: &str = "The service is temporarily unavailable. Try again shortly.";

/// The page for every way an upstream sign-in or a link can stop; `provider` is the display
/// name of the upstream.
fn failed(provider: &str, e: &FederationError) -> Response {
    let forbidden = |msg: &str| failure(StatusCode::FORBIDDEN, "Sign-in refused", msg);
    match e {
        FederationError::Upstream(u) => {
            tracing::warn!(%provider, error = %u, "upstream sign-in failed");
            failure(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                &format!("Signing in with {provider} did not work: {u}. Try again later."),
            )
        }
        FederationError::Store(s) => {
            tracing::warn!(error = %s, "federation store failed");
            let status = if matches!(s, authx_core::StoreError::Unavailable(_)) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            };
            failure(status, "Sign-in unavailable", UNAVAILABLE)
        }
        FederationError::Denied(code) => failure(
            StatusCode::BAD_REQUEST,
            "Sign-in cancelled",
            &format!("{provider} did not sign you in ({code})."),
        ),
        FederationError::IdToken(t) => failure(
            StatusCode::BAD_GATEWAY,
            "Sign-in refused",
            &format!("{provider} sent a sign-in that cannot be trusted: {t}."),
        ),
        FederationError::Refused(r) => {
            forbidden(&format!("Signing in with {provider} is not possible: {r}."))
        }
        FederationError::Disabled => forbidden(&e.to_string()),
        FederationError::SignIn(a) => {
            let (status, retry, msg) = sign_in_failure(a);
            if status.is_server_error() {
                tracing::warn!(error = %a, "federated sign-in failed");
            }
            let status = if status == StatusCode::INTERNAL_SERVER_ERROR {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                status
            };
            let mut res = failure(status, "Sign-in failed", &msg);
            set_retry_after(&mut res, retry);
            res
        }
        FederationError::NoPendingLink => {
            failure(StatusCode::BAD_REQUEST, "Nothing to link", &e.to_string())
        }
        _ => failure(StatusCode::BAD_REQUEST, "Sign-in refused", &e.to_string()),
    }
}

/// The status, wait and message of a failed local sign-in; a server failure is not described.
fn sign_in_failure(e: &AuthError) -> (StatusCode, Option<i64>, String) {
    let (status, retry) = error_status(e);
    let msg = if status.is_server_error() {
        UNAVAILABLE.to_owned()
    } else {
        e.to_string()
    };
    (status, retry, msg)
}

async fn start_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    current: CurrentSession,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(upstream) = state.upstreams.client(&name, &state.config.issuer) else {
        return unknown_provider();
    };
    let return_to = safe_return_to(raw.as_deref().and_then(start_return_to).as_deref());
    let started = relying_party(&state)
        .start(&upstream, current.federation_binding, return_to)
        .await;
    match started {
        Ok(s) => {
            let mut res = Redirect::to(&s.location).into_response();
            let cookie = state
                .cookies
                .set_federation_binding(s.binding.expose(), federation::TRANSACTION_TTL_SECS);
            append_cookie(res.headers_mut(), &cookie);
            res
        }
        Err(e) => failed(&upstream.config().display_name, &e),
    }
}

/// `return_to` of the start's query; a repeated one counts as none.
fn start_return_to(raw: &str) -> Option<String> {
    let mut values = form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| k == "return_to");
    match (values.next(), values.next()) {
        (Some((_, v)), None) => Some(v.into_owned()),
        _ => None,
    }
}

async fn callback_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    current: CurrentSession,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(upstream) = state.upstreams.client(&name, &state.config.issuer) else {
        return unknown_provider();
    };
    let done = relying_party(&state)
        .complete(&upstream, browser(&current), raw.as_deref())
        .await;
    match done {
        Ok(Completed::SignedIn { signed, return_to }) => {
            signed_in_redirect(&state, &signed, &return_to)
        }
        Ok(Completed::ProveControl { token }) => {
            let mut res = Redirect::to("/federation/link").into_response();
            let cookie = state
                .cookies
                .set_federation_link(token.expose(), federation::PENDING_LINK_TTL_SECS);
            append_cookie(res.headers_mut(), &cookie);
            res
        }
        Err(e) => failed(&upstream.config().display_name, &e),
    }
}

/// The pending link this browser's cookie names, or the page saying there is none.
async fn current_pending(
    state: &AppState,
    current: &CurrentSession,
) -> Result<PendingLink, Response> {
    match relying_party(state)
        .pending_link(current.federation_link.as_ref())
        .await
    {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(failed("", &FederationError::NoPendingLink)),
        Err(e) => Err(failed("", &FederationError::Store(e))),
    }
}

fn link_page(
    state: &AppState,
    status: StatusCode,
    pending: &PendingLink,
    token: &str,
    error: Option<&str>,
) -> Response {
    let provider = state
        .upstreams
        .provider(&pending.provider)
        .map_or_else(|| pending.provider.clone(), |p| p.display_name.clone());
    let page = Link {
        csrf: token,
        email: &pending.email,
        provider: &provider,
        error,
    };
    render(status, &page)
}

/// The link page again, with a message and a fresh form token.
fn link_page_again(
    state: &AppState,
    current: &CurrentSession,
    pending: &PendingLink,
    status: StatusCode,
    msg: &str,
) -> Response {
    let (token, fresh) = pre_session(current);
    let res = link_page(state, status, pending, &token, Some(msg));
    with_pre_cookie(state, res, fresh)
}

/// A link form whose token does not match this browser's pre-session cookie.
fn link_form_expired(
    state: &AppState,
    current: &CurrentSession,
    pending: &PendingLink,
) -> Response {
    authx_core::audit::record_current(
        authx_core::audit::AuditEvent::failure("csrf_rejected")
            .with("reason", "bad form token")
            .with("path", "/federation/link"),
    );
    let msg = "This form expired. Please try again.";
    link_page_again(state, current, pending, StatusCode::FORBIDDEN, msg)
}

async fn link_get(State(state): State<AppState>, current: CurrentSession) -> Response {
    let pending = match current_pending(&state, &current).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let (token, fresh) = pre_session(&current);
    let res = link_page(&state, StatusCode::OK, &pending, &token, None);
    with_pre_cookie(&state, res, fresh)
}

#[derive(Deserialize)]
struct LinkForm {
    password: String,
    #[serde(default)]
    csrf_token: String,
}

async fn link_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<LinkForm>, ApiError>,
) -> Response {
    let form = match form {
        Ok(FormBody(f)) => f,
        Err(e) => return bad_form(e),
    };
    let pending = match current_pending(&state, &current).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    if !pre_token_ok(&current, &form.csrf_token) {
        return link_form_expired(&state, &current, &pending);
    }
    let linked = relying_party(&state)
        .link(&pending, &form.password, browser(&current))
        .await;
    match linked {
        Ok(signed) => {
            let mut res = signed_in_redirect(&state, &signed, &pending.return_to);
            append_cookie(res.headers_mut(), &state.cookies.clear_federation_link());
            res
        }
        Err(FederationError::SignIn(e)) => {
            let (status, retry, msg) = sign_in_failure(&e);
            let mut res = link_page_again(&state, &current, &pending, status, &msg);
            set_retry_after(&mut res, retry);
            res
        }
        Err(e) => failed(&pending.provider, &e),
    }
}
