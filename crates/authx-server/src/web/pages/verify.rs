//! Email verification pages: `/verify` (the link's button), `/verify/resend` (another link, for
//! the address typed) and `/account/verify` (another link, for the signed-in account).
//!
//! # Security
//! - `GET /verify` only shows the button: mail scanners that prefetch links do not use them up.
//!   `POST /verify` consumes the token, and signs nobody in.
//! - `/verify/resend` answers every address with the same page; the request runs after the
//!   answer, so neither the page nor its timing tells whether an account exists. It is rate
//!   limited per network with the reset requests, and per address in core.
//! - Every form carries a synchronizer token: the pre-session one before sign-in, the
//!   session's on `/account`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use authx_core::audit::AuditEvent;

use super::super::error::auth::page as error_page;
use super::super::extract::{CsrfForm, CurrentSession, FormToken, PreSessionForm};
use super::super::signin::{pre_session, with_pre_cookie};
use super::CsrfOnly;
use crate::html::verify::{Verify, VerifyPending};
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

/// Asks for a verification link for `email` and returns at once: the lookup and the mail run
/// after the answer. A failure is logged and audited (the caller's answer does not change).
pub(super) fn start_verification(state: &AppState, email: String) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state.auth.request_verification(&email).await {
            tracing::warn!(error = %e, "a verification request failed");
            state.auth.audit().record(
                AuditEvent::failure("email_verification_requested").with("reason", "error"),
            );
        }
    });
}

/// The answer to a sign-in that owes a verified address: a link was sent; a form sends another.
pub(super) fn pending_page(state: &AppState, current: &CurrentSession, email: &str) -> Response {
    let (csrf, fresh) = pre_session(current);
    let page = VerifyPending { csrf: &csrf, email };
    with_pre_cookie(state, render(StatusCode::FORBIDDEN, &page), fresh)
}

/// The "check your mail" page of a sign-up or a resend: the same for every address.
pub(super) fn check_mail() -> Response {
    Message::new(
        "Check your mail",
        "Check your mail",
        Paragraph::Text(
            "We sent a mail to this address with what to do next. \
             A verification link works once, within 24 hours; then sign in.",
        ),
    )
    .back_to_login()
    .response(StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub(super) async fn verify_get(
    State(state): State<AppState>,
    current: CurrentSession,
    Query(q): Query<TokenQuery>,
) -> Response {
    if !state.auth.verifies_email() {
        return super::not_found().await;
    }
    let (csrf, fresh) = pre_session(&current);
    let page = Verify {
        csrf: &csrf,
        token: &q.token,
    };
    with_pre_cookie(&state, render(StatusCode::OK, &page), fresh)
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for VerifyForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn verify_post(
    State(state): State<AppState>,
    PreSessionForm(form): PreSessionForm<VerifyForm>,
) -> Response {
    if !state.auth.verifies_email() {
        return super::not_found().await;
    }
    match state.auth.verify_email(&form.token).await {
        Ok(_) => Message::new(
            "Address verified",
            "Address verified",
            Paragraph::Text("Your email address is verified. You can sign in."),
        )
        .back_to_login()
        .response(StatusCode::OK),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct ResendForm {
    email: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for ResendForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn resend_post(
    State(state): State<AppState>,
    PreSessionForm(form): PreSessionForm<ResendForm>,
) -> Response {
    if !state.auth.verifies_email() {
        return super::not_found().await;
    }
    start_verification(&state, form.email);
    check_mail()
}

pub(super) async fn account_verify_post(
    State(state): State<AppState>,
    form: CsrfForm<CsrfOnly>,
) -> Response {
    if !state.auth.verifies_email() {
        return super::not_found().await;
    }
    if let Err(e) = state.auth.request_verification(&form.auth.user.email).await {
        return error_page(&e);
    }
    Redirect::to("/account?done=verify").into_response()
}
