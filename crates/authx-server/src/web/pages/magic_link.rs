//! Sign-in by a link mailed to the account's address (`[email] magic_links = true`; without it
//! these routes answer 404): `POST /magic-link` asks for one, `/magic-link/sign-in` uses it.
//!
//! # Security
//! - `POST /magic-link` answers every address with the same page, and the lookup, token and
//!   mail happen after the answer (as for a reset request), so neither the page nor its timing
//!   tells whether an account exists. It is rate-limited per network with reset requests, and
//!   per address in core.
//! - The answer sets the binding cookie (`HttpOnly; SameSite=Lax`, 10 minutes; kept when the
//!   browser has one already, so two requests both work); the link's record holds its hash,
//!   and `POST /magic-link/sign-in` signs in only with it. Another browser gets a readable
//!   refusal.
//! - `GET /magic-link/sign-in` only shows a button: mail scanners that follow links use
//!   nothing up. Both forms carry the pre-session token, like the sign-in form. The button's
//!   page has the sign-in page's Content-Security-Policy (no `form-action`), since its POST
//!   may end in a redirect to an application.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use authx_core::audit::AuditEvent;
use authx_core::auth::{AuthError, LinkBinding, SignInOutcome};
use authx_core::links::LinkPurpose;
use authx_core::secret::TokenHash;

use super::super::extract::{CurrentSession, FormToken, PreSessionForm};
use super::super::signin::{
    error_status, pre_session, safe_return_to, signed_in_redirect, with_pre_cookie,
};
use super::not_found;
use crate::cookies::{append_cookie, cookie_value};
use crate::html::links::LinkAction;
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

#[derive(Deserialize)]
pub(super) struct MagicLinkForm {
    email: String,
    return_to: Option<String>,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for MagicLinkForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// The binding cookie this browser presented, if well formed.
fn binding(state: &AppState, headers: &HeaderMap) -> Option<LinkBinding> {
    cookie_value(headers, state.cookies.magic_link_binding()).and_then(LinkBinding::parse)
}

pub(super) async fn magic_link_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<PreSessionForm<MagicLinkForm>, Response>,
) -> Response {
    if !state.config.email.magic_links {
        return not_found().await;
    }
    let form = match form {
        Ok(PreSessionForm(f)) => f,
        Err(res) => return res,
    };
    let binding = binding(&state, &headers).unwrap_or_else(LinkBinding::generate);
    let return_to = safe_return_to(form.return_to.as_deref());
    start_request(&state, form.email, binding.hash(), return_to);
    let mut res = Message::new(
        "Check your mail",
        "Check your mail",
        Paragraph::Text(
            "If an account exists for this address, we sent it a sign-in link. Open it in this \
             browser within 10 minutes; it works once.",
        ),
    )
    .back_to_login()
    .response(StatusCode::OK);
    let lifetime = LinkPurpose::MagicLink.lifetime_secs();
    append_cookie(
        res.headers_mut(),
        &state
            .cookies
            .set_magic_link_binding(binding.expose(), lifetime),
    );
    res
}

/// Starts a magic-link request and returns at once (see the module's security notes). A
/// failure is logged and audited; the caller's answer does not change.
fn start_request(state: &AppState, email: String, binding: TokenHash, return_to: String) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state
            .auth
            .request_magic_link(&email, &binding, &return_to)
            .await
        {
            tracing::warn!(error = %e, "a magic link request failed");
            state
                .auth
                .audit()
                .record(AuditEvent::failure("magic_link_requested").with("reason", "error"));
        }
    });
}

pub(super) async fn sign_in_get(
    State(state): State<AppState>,
    current: CurrentSession,
    Query(q): Query<TokenQuery>,
) -> Response {
    if !state.config.email.magic_links {
        return not_found().await;
    }
    let (csrf, fresh) = pre_session(&current);
    let page = LinkAction {
        title: "Sign in",
        text: "Press the button to sign in to your account in this browser.",
        form_id: "magic-sign-in",
        action: "/magic-link/sign-in",
        button: "Sign in",
        danger: false,
        token: &q.token,
        csrf: &csrf,
    };
    let mut res = with_pre_cookie(&state, render(StatusCode::OK, &page), fresh);
    // The sign-in may end in a redirect to an application (`return_to` through
    // `/oauth2/authorize`), which browsers check against `form-action`: as on `/login`.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::LOGIN_CSP),
    );
    res
}

/// The query of a mailed link.
#[derive(Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    pub(super) token: String,
}

/// The form of a link page's button.
#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    pub(super) token: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for TokenForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn sign_in_post(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    form: Result<PreSessionForm<TokenForm>, Response>,
) -> Response {
    if !state.config.email.magic_links {
        return not_found().await;
    }
    let form = match form {
        Ok(PreSessionForm(f)) => f,
        Err(res) => return res,
    };
    let binding = binding(&state, &headers);
    let result = state
        .auth
        .sign_in_with_magic_link(
            &form.token,
            binding.as_ref(),
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state.metrics.sign_in(SignInOutcome::of(&result));
    match result {
        Ok(m) => {
            let to = safe_return_to(Some(&m.return_to));
            let mut res = signed_in_redirect(&state, &m.signed, &to);
            append_cookie(res.headers_mut(), &state.cookies.clear_magic_link_binding());
            res
        }
        Err(AuthError::SecondFactorRequired(c)) => {
            let mut res = super::mfa::challenge_page(&state, &current, &c);
            append_cookie(res.headers_mut(), &state.cookies.clear_magic_link_binding());
            res
        }
        Err(e) => refused(&e),
    }
}

/// The readable refusal of a link that cannot be used (unknown, used, expired, another
/// browser's, a disabled account's).
pub(super) fn refused(e: &authx_core::auth::AuthError) -> Response {
    let (status, _) = error_status(e);
    if status.is_server_error() {
        return super::super::error::auth::page(e);
    }
    let msg = e.to_string();
    Message::new(
        "Link refused",
        "This link cannot be used",
        Paragraph::Alert(&msg),
    )
    .back_to_login()
    .response(status)
}
