//! The pages of the links an email change mails: `/account/email/confirm` (to the new
//! address) and `/account/email/cancel` ("this wasn't me", to the old one). The request itself
//! is the account page's form (`POST /account/email`).
//!
//! # Security
//! - A GET only shows a button (mail scanners follow links); the POST, with the pre-session
//!   form token, does the change.
//! - Confirming ends every other session of the user; the confirming browser keeps its
//!   session if it is the user's. Cancelling ends every session, this browser's too.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::super::extract::{CurrentSession, PreSessionForm};
use super::super::signin::{pre_session, with_pre_cookie};
use super::magic_link::{TokenForm, TokenQuery, refused};
use crate::cookies::append_cookie;
use crate::html::links::LinkAction;
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

pub(super) async fn confirm_get(
    State(state): State<AppState>,
    current: CurrentSession,
    Query(q): Query<TokenQuery>,
) -> Response {
    let (csrf, fresh) = pre_session(&current);
    let page = LinkAction {
        title: "Confirm your new email address",
        text: "Press the button to make this address the one of your account. Every other \
               session of the account is signed out.",
        form_id: "email-confirm",
        action: "/account/email/confirm",
        button: "Confirm the new address",
        danger: false,
        token: &q.token,
        csrf: &csrf,
    };
    with_pre_cookie(&state, render(StatusCode::OK, &page), fresh)
}

pub(super) async fn confirm_post(
    State(state): State<AppState>,
    current: CurrentSession,
    PreSessionForm(form): PreSessionForm<TokenForm>,
) -> Response {
    match state
        .auth
        .confirm_email_change(&form.token, current.auth.as_deref())
        .await
    {
        Ok(_) => Message::new(
            "Email address changed",
            "Email address changed",
            Paragraph::Text(
                "Your account now uses this address, and every other session was signed out.",
            ),
        )
        .back_to_login()
        .response(StatusCode::OK),
        Err(e) => refused(&e),
    }
}

pub(super) async fn cancel_get(
    State(state): State<AppState>,
    current: CurrentSession,
    Query(q): Query<TokenQuery>,
) -> Response {
    let (csrf, fresh) = pre_session(&current);
    let page = LinkAction {
        title: "Cancel the email change",
        text: "If you did not ask to change your address, press the button: the change is \
               cancelled (or undone), and every session of your account is signed out.",
        form_id: "email-cancel",
        action: "/account/email/cancel",
        button: "This wasn't me",
        danger: true,
        token: &q.token,
        csrf: &csrf,
    };
    with_pre_cookie(&state, render(StatusCode::OK, &page), fresh)
}

pub(super) async fn cancel_post(
    State(state): State<AppState>,
    current: CurrentSession,
    PreSessionForm(form): PreSessionForm<TokenForm>,
) -> Response {
    match state.auth.cancel_email_change(&form.token).await {
        Ok(user) => {
            let mut res = Message::new(
                "Email change cancelled",
                "Email change cancelled",
                Paragraph::Text(
                    "The change of address was cancelled and every session of your account \
                     was signed out. Reset your password now: someone may know it.",
                ),
            )
            .back_to_login()
            .response(StatusCode::OK);
            if current.auth.is_some_and(|a| a.user.id == user.id) {
                // Its session ended with the others.
                append_cookie(res.headers_mut(), &state.cookies.clear_session());
            }
            res
        }
        Err(e) => refused(&e),
    }
}
