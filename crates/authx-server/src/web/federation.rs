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
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use authx_core::auth::AuthError;
use authx_core::federation::{
    self, Browser, Completed, FederationError, PendingLink, RelyingParty,
};

use super::error::federation::{failed, sign_in_failure, unknown_provider};
use super::error::http::extract;
use super::extract::{CurrentSession, PageForm};
use super::signin::{
    pre_session, pre_token_ok, safe_return_to, set_retry_after, signed_in_redirect, with_pre_cookie,
};
use crate::cookies::append_cookie;
use crate::html::federation::Link;
use crate::html::render;
use crate::state::AppState;

/// The federation routes (browser-facing: POSTs pass the origin check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/federation/{provider}/start", get(start_get))
        .route("/federation/{provider}/callback", get(callback_get))
        .route("/federation/link", get(link_get).post(link_post))
}

pub(super) fn relying_party(state: &AppState) -> RelyingParty<'_> {
    RelyingParty {
        auth: &state.auth,
        store: state.federation.as_ref(),
        sign_ins: &state.metrics,
    }
}

pub(super) fn browser(current: &CurrentSession) -> Browser<'_> {
    Browser {
        ctx: &current.ctx,
        session: current.token.as_ref(),
        binding: current.federation_binding.as_ref(),
    }
}

/// What both ends of an upstream sign-in read from the request: the provider's name in the
/// path, the browser's cookies and the raw query.
struct Arrival {
    name: String,
    current: CurrentSession,
    query: Option<String>,
}

impl FromRequestParts<AppState> for Arrival {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Path(name) = extract::<Path<String>>(parts, state).await?;
        Ok(Self {
            name,
            current: extract(parts, state).await?,
            query: parts.uri.query().map(str::to_owned),
        })
    }
}

async fn start_get(State(state): State<AppState>, req: Arrival) -> Response {
    let Some(upstream) =
        state
            .upstreams
            .client(&req.name, &state.config.issuer, state.oauth.issuer())
    else {
        return unknown_provider();
    };
    let return_to = safe_return_to(req.query.as_deref().and_then(start_return_to).as_deref());
    let started = relying_party(&state)
        .start(&upstream, req.current.federation_binding, return_to)
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
pub(super) fn start_return_to(raw: &str) -> Option<String> {
    let mut values = form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| k == "return_to");
    match (values.next(), values.next()) {
        (Some((_, v)), None) => Some(v.into_owned()),
        _ => None,
    }
}

async fn callback_get(State(state): State<AppState>, req: Arrival) -> Response {
    let Some(upstream) =
        state
            .upstreams
            .client(&req.name, &state.config.issuer, state.oauth.issuer())
    else {
        return unknown_provider();
    };
    let done = relying_party(&state)
        .complete(&upstream, browser(&req.current), req.query.as_deref())
        .await;
    match done {
        Ok(Completed::SignedIn { signed, return_to }) => {
            signed_in_redirect(&state, &signed, &return_to)
        }
        Err(FederationError::SignIn(AuthError::SecondFactorRequired(c))) => {
            super::pages::mfa::challenge_page(&state, &req.current, &c)
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
    let saml = || {
        state
            .config
            .saml
            .iter()
            .find(|p| p.name == pending.provider)
            .map(|p| p.display_name.clone())
    };
    let provider = state
        .upstreams
        .provider(&pending.provider)
        .map(|p| p.display_name.clone())
        .or_else(saml)
        .unwrap_or_else(|| pending.provider.clone());
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
    PageForm(form): PageForm<LinkForm>,
) -> Response {
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
        Err(FederationError::SignIn(AuthError::SecondFactorRequired(c))) => {
            // The password was right; the link waits until the user signs in with it again.
            let mut res = super::pages::mfa::challenge_page(&state, &current, &c);
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
