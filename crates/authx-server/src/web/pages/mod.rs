//! HTML pages: `/login`, `/signup`, `/logout`, `/account` (sessions and password), password
//! reset and email verification.
//!
//! # Security
//! Forms carry a synchronizer token: bound to the pre-session cookie before sign-in and to the
//! session afterwards. Nothing changes on GET. Redirects after a credential POST are 303.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use authx_core::audit::{AuditEvent, record_current};
use authx_core::auth::{AuthError, SignUpOutcome};

use super::error::auth::page as error_page;
use super::extract::{CurrentSession, FormToken, PageForm, csrf_refused, session_token_ok};
use super::signin::{
    buttons, error_status, pre_session, pre_token_ok, safe_return_to, set_retry_after, sign_in,
    signed_in_redirect, with_pre_cookie,
};
use crate::cookies::append_cookie;
use crate::html::account::{Login, Logout, SignUp};
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

pub(crate) mod account;
mod email_change;
mod magic_link;
pub(crate) mod mfa;
pub(crate) mod passkey;
mod recovery;
mod verify;

/// The page routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_get).post(login_post))
        .route("/signup", get(signup_get).post(signup_post))
        .route("/logout", get(logout_get).post(logout_post))
        .route(
            "/forgot",
            get(recovery::forgot_get).post(recovery::forgot_post),
        )
        .route(
            "/reset",
            get(recovery::reset_get).post(recovery::reset_post),
        )
        .route("/account", get(account::account_get))
        .route(
            "/account/sessions/revoke-others",
            post(account::revoke_others_post),
        )
        .route("/account/sessions/{id}/revoke", post(account::revoke_post))
        .route("/account/password", post(account::password_post))
        .route(
            "/account/grants/{id}/revoke",
            post(account::grant_revoke_post),
        )
        .route(
            "/account/consents/{client_id}/withdraw",
            post(account::consent_withdraw_post),
        )
        .route(
            "/account/links/{id}/remove",
            post(account::link_remove_post),
        )
        .route("/verify", get(verify::verify_get).post(verify::verify_post))
        .route("/verify/resend", post(verify::resend_post))
        .route("/account/verify", post(verify::account_verify_post))
        .route("/account/email", post(account::email_post))
        .route(
            "/account/email/confirm",
            get(email_change::confirm_get).post(email_change::confirm_post),
        )
        .route(
            "/account/email/cancel",
            get(email_change::cancel_get).post(email_change::cancel_post),
        )
        .route("/login/second-factor", post(mfa::second_factor_post))
        .route("/login/step-up", get(mfa::step_up_get))
        .route("/account/mfa/totp", post(mfa::totp_begin_post))
        .route("/account/mfa/totp/confirm", post(mfa::totp_confirm_post))
        .route(
            "/account/mfa/recovery-codes",
            post(mfa::recovery_codes_post),
        )
        .route("/account/mfa/{id}/remove", post(mfa::factor_remove_post))
        .route("/account/mfa/{id}/rename", post(mfa::factor_rename_post))
        .route("/magic-link", post(magic_link::magic_link_post))
        .route(
            "/magic-link/sign-in",
            get(magic_link::sign_in_get).post(magic_link::sign_in_post),
        )
        .route("/assets/authx.css", get(css_get))
        .route("/assets/passkey.js", get(passkey::script_get))
        .route("/account/passkeys/begin", post(passkey::register_begin))
        .route("/account/passkeys/finish", post(passkey::register_finish))
        .route("/login/passkey/begin", post(passkey::sign_in_begin))
        .route("/login/passkey/finish", post(passkey::sign_in_finish))
        .route(
            "/login/second-factor/passkey/begin",
            post(passkey::second_factor_begin),
        )
        .route(
            "/login/second-factor/passkey/finish",
            post(passkey::second_factor_finish),
        )
}

/// The fallback: a readable 404.
pub async fn not_found() -> Response {
    Message::new(
        "Not found",
        "Not found",
        Paragraph::Text("There is no page at this address."),
    )
    .response(StatusCode::NOT_FOUND)
}

async fn css_get() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        crate::html::CSS,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct ReturnTo {
    return_to: Option<String>,
}

/// The sign-in page may end in a redirect to an application (through `/oauth2/authorize`), whose
/// origin browsers check against `form-action`: the login form's policy leaves it open.
pub(crate) const LOGIN_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What a sign-in or sign-up page shows besides its form: the address typed, an error, and how
/// long to wait before trying again.
#[derive(Default)]
struct Again<'a> {
    email: &'a str,
    error: Option<String>,
    retry: Option<i64>,
}

impl<'a> Again<'a> {
    /// The form again after its token was refused.
    fn expired(email: &'a str, error: &str) -> Self {
        Self {
            email,
            error: Some(error.to_owned()),
            retry: None,
        }
    }

    /// The form again after the account service refused it, and the status to answer with.
    fn failed(email: &'a str, e: &AuthError) -> (StatusCode, Self) {
        let (status, retry) = error_status(e);
        let again = Self {
            email,
            error: Some(e.to_string()),
            retry,
        };
        (status, again)
    }
}

/// The sign-in page, with the providers' buttons, its form token bound to this browser.
fn login_page(
    state: &AppState,
    current: &CurrentSession,
    status: StatusCode,
    return_to: &str,
    again: &Again<'_>,
) -> Response {
    let (token, fresh) = pre_session(current);
    let page = Login {
        csrf: &token,
        return_to,
        email: again.email,
        error: again.error.as_deref(),
        sign_up: state.config.auth.sign_up_enabled,
        magic_links: state.config.email.magic_links,
        providers: buttons(state, return_to),
        passkeys: state.auth.passkeys_enabled(),
    };
    let mut res = with_pre_cookie(state, render(status, &page), fresh);
    set_retry_after(&mut res, again.retry);
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(LOGIN_CSP),
    );
    if page.passkeys {
        passkey::allow_passkey_script(&mut res, true);
    }
    res
}

async fn login_get(
    State(state): State<AppState>,
    current: CurrentSession,
    q: Query<ReturnTo>,
) -> Response {
    let return_to = safe_return_to(q.return_to.as_deref());
    login_page(
        &state,
        &current,
        StatusCode::OK,
        &return_to,
        &Again::default(),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf_token: String,
    return_to: Option<String>,
}

async fn login_post(
    State(state): State<AppState>,
    current: CurrentSession,
    PageForm(form): PageForm<LoginForm>,
) -> Response {
    let return_to = safe_return_to(form.return_to.as_deref());
    let email = form.email.as_str();
    if !pre_token_ok(&current, &form.csrf_token) {
        record_current(
            AuditEvent::failure("csrf_rejected")
                .with("reason", "bad form token")
                .with("path", "/login"),
        );
        let again = Again::expired(email, "This form expired. Please sign in again.");
        return login_page(&state, &current, StatusCode::FORBIDDEN, &return_to, &again);
    }
    match sign_in(&state, &current, email, &form.password, Some(&return_to)).await {
        Ok(signed) => signed_in_redirect(&state, &signed, &return_to),
        Err(AuthError::EmailNotVerified) => verify::pending_page(&state, &current, email),
        Err(AuthError::SecondFactorRequired(c)) => mfa::challenge_page(&state, &current, &c),
        Err(e) => {
            let (status, again) = Again::failed(email, &e);
            login_page(&state, &current, status, &return_to, &again)
        }
    }
}

/// The sign-up page, its form token bound to this browser.
fn signup_page(
    state: &AppState,
    current: &CurrentSession,
    status: StatusCode,
    again: &Again<'_>,
) -> Response {
    let (token, fresh) = pre_session(current);
    let min = state.config.auth.password.min_chars;
    let page = SignUp {
        csrf: &token,
        email: again.email,
        error: again.error.as_deref(),
        min_chars: min,
        min_text: authx_core::plural::count(min as u64, "character", "characters"),
    };
    let mut res = render(status, &page);
    set_retry_after(&mut res, again.retry);
    with_pre_cookie(state, res, fresh)
}

async fn signup_get(State(state): State<AppState>, current: CurrentSession) -> Response {
    if !state.config.auth.sign_up_enabled {
        return sign_up_disabled();
    }
    signup_page(&state, &current, StatusCode::OK, &Again::default())
}

fn sign_up_disabled() -> Response {
    Message::new(
        "Sign-up disabled",
        "Sign-up is disabled",
        Paragraph::Text("Ask an administrator for an account."),
    )
    .response(StatusCode::FORBIDDEN)
}

#[derive(Deserialize)]
struct SignUpForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf_token: String,
}

async fn signup_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<PageForm<SignUpForm>, Response>,
) -> Response {
    if !state.config.auth.sign_up_enabled {
        return sign_up_disabled();
    }
    let form = match form {
        Ok(PageForm(f)) => f,
        Err(res) => return res,
    };
    let email = form.email.as_str();
    if !pre_token_ok(&current, &form.csrf_token) {
        let again = Again::expired(email, "This form expired. Please try again.");
        return signup_page(&state, &current, StatusCode::FORBIDDEN, &again);
    }
    match super::signin::sign_up(&state, email, &form.password, &current.ctx).await {
        Ok(SignUpOutcome::SignedIn(signed)) => signed_in_redirect(&state, &signed, "/account"),
        // The same page whether or not the address already had an account.
        Ok(SignUpOutcome::CheckMail) => verify::check_mail(),
        Err(e) => {
            let (status, again) = Again::failed(email, &e);
            signup_page(&state, &current, status, &again)
        }
    }
}

async fn logout_get(current: CurrentSession) -> Response {
    let Some(token) = current.csrf_token() else {
        return Redirect::to("/login").into_response();
    };
    // No state change on GET: sign-out is the POST of this form.
    render(StatusCode::OK, &Logout { csrf: &token })
}

/// A form with nothing but the synchronizer token.
#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for CsrfOnly {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

async fn logout_post(
    State(state): State<AppState>,
    current: CurrentSession,
    PageForm(form): PageForm<CsrfOnly>,
) -> Response {
    if current.auth.is_some() && !session_token_ok(&current, &form.csrf_token) {
        return csrf_refused();
    }
    if let Some(token) = &current.token {
        if let Err(e) = state.auth.sign_out(token).await {
            return error_page(&e);
        }
    }
    let mut res = Redirect::to("/login").into_response();
    append_cookie(res.headers_mut(), &state.cookies.clear_session());
    res.headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    res
}
