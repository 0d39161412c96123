//! Password reset pages: `/forgot` (the address to mail a link to) and `/reset` (the new
//! password, from the link).
//!
//! # Security
//! - `/forgot` answers every address with the same page; the request runs after the answer
//!   (see [`crate::web::recovery::start_reset`]), so neither the page nor its timing tells
//!   whether an account exists.
//! - `GET /reset` only shows the form: mail scanners that prefetch links do not use them up.
//!   `POST /reset` consumes the token.
//! - Both forms carry the pre-session token, like the sign-in form.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use authx_core::auth::AuthError;

use super::super::error::auth::page as error_page;
use super::super::extract::{CurrentSession, FormToken, PreSessionForm};
use super::super::recovery::start_reset;
use super::super::signin::{error_status, pre_session, with_pre_cookie};
use crate::html::account::{Forgot, Reset};
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

pub(super) async fn forgot_get(State(state): State<AppState>, current: CurrentSession) -> Response {
    let (csrf, fresh) = pre_session(&current);
    let page = Forgot {
        csrf: &csrf,
        email: "",
        error: None,
    };
    with_pre_cookie(&state, render(StatusCode::OK, &page), fresh)
}

#[derive(Deserialize)]
pub(super) struct ForgotForm {
    email: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for ForgotForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn forgot_post(
    State(state): State<AppState>,
    PreSessionForm(form): PreSessionForm<ForgotForm>,
) -> Response {
    start_reset(&state, form.email);
    Message::new(
        "Check your mail",
        "Check your mail",
        Paragraph::Text(
            "If an account exists for this address, we sent it a link to choose a new password. \
             The link works once, within 30 minutes.",
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

/// The new-password form for `token`, its form token bound to this browser.
fn reset_page(
    state: &AppState,
    current: &CurrentSession,
    status: StatusCode,
    token: &str,
    error: Option<&str>,
) -> Response {
    let (csrf, fresh) = pre_session(current);
    let min = state.config.auth.password.min_chars;
    let page = Reset {
        csrf: &csrf,
        token,
        error,
        min_chars: min,
        min_text: authx_core::plural::count(min as u64, "character", "characters"),
    };
    with_pre_cookie(state, render(status, &page), fresh)
}

pub(super) async fn reset_get(
    State(state): State<AppState>,
    current: CurrentSession,
    Query(q): Query<TokenQuery>,
) -> Response {
    reset_page(&state, &current, StatusCode::OK, &q.token, None)
}

#[derive(Deserialize)]
pub(super) struct ResetForm {
    #[serde(default)]
    token: String,
    password: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for ResetForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn reset_post(
    State(state): State<AppState>,
    current: CurrentSession,
    PreSessionForm(form): PreSessionForm<ResetForm>,
) -> Response {
    match state.auth.reset_password(&form.token, &form.password).await {
        Ok(_) => Message::new(
            "Password changed",
            "Password changed",
            Paragraph::Text("Your password was changed and every session signed out. Sign in with the new password."),
        )
        .back_to_login()
        .response(StatusCode::OK),
        Err(e @ (AuthError::WeakPassword(_) | AuthError::PasswordTooLong)) => {
            let (status, _) = error_status(&e);
            reset_page(&state, &current, status, &form.token, Some(&e.to_string()))
        }
        Err(e) => error_page(&e),
    }
}
