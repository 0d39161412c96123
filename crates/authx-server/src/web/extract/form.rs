//! The account forms of the HTML pages: a readable body (else an error page), a signed-in
//! browser (else the sign-in page) and the session's synchronizer token in the form (else a
//! refusal, audited), checked in that order.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use authx_core::audit::{AuditEvent, record_current};
use authx_core::auth::Authenticated;

use super::{CurrentSession, FormBody};
use crate::html::account::Refused;
use crate::html::render;
use crate::state::AppState;

/// A form that carries the synchronizer token in its `csrf_token` field.
pub(crate) trait FormToken {
    /// The token the form presented.
    fn csrf_token(&self) -> &str;
}

/// An account form that passed the checks; the session is signed in.
pub(crate) struct CsrfForm<T> {
    /// The signed-in user.
    pub(crate) auth: Arc<Authenticated>,
    /// The whole session, for pages rendered again in answer.
    pub(crate) current: CurrentSession,
    /// The form.
    pub(crate) form: T,
}

impl<T: DeserializeOwned + FormToken> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (current, form) = session_and_form::<T>(req, state).await?;
        let Some(auth) = current.auth.clone() else {
            return Err(to_login("/account"));
        };
        if !session_token_ok(&current, form.csrf_token()) {
            return Err(csrf_refused());
        }
        Ok(Self {
            auth,
            current,
            form,
        })
    }
}

/// A form posted before sign-in (forgot and reset password) whose token matched this
/// browser's pre-session cookie, as on the sign-in form; any other token is refused.
pub(crate) struct PreSessionForm<T>(pub(crate) T);

impl<T: DeserializeOwned + FormToken> FromRequest<AppState> for PreSessionForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (current, form) = session_and_form::<T>(req, state).await?;
        if crate::web::signin::pre_token_ok(&current, form.csrf_token()) {
            Ok(Self(form))
        } else {
            Err(csrf_refused())
        }
    }
}

/// The browser's session cookies and the form of a page's POST.
async fn session_and_form<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
) -> Result<(CurrentSession, T), Response> {
    let (mut parts, body) = req.into_parts();
    let current = CurrentSession::from_request_parts(&mut parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    let PageForm::<T>(form) =
        PageForm::from_request(Request::from_parts(parts, body), state).await?;
    Ok((current, form))
}

/// A page's form body; one that cannot be read is answered with an error page.
pub(crate) struct PageForm<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match FormBody::<T>::from_request(req, state).await {
            Ok(FormBody(f)) => Ok(Self(f)),
            Err(e) => Err(e.into_page()),
        }
    }
}

/// Whether a form's token matches the browser's session.
pub(crate) fn session_token_ok(current: &CurrentSession, presented: &str) -> bool {
    current
        .csrf_token()
        .is_some_and(|t| authx_core::csrf::matches(&t, presented))
}

/// The refusal of a form whose token is wrong (audited).
pub(crate) fn csrf_refused() -> Response {
    record_current(AuditEvent::failure("csrf_rejected").with("reason", "bad form token"));
    render(StatusCode::FORBIDDEN, &Refused)
}

/// The sign-in page, returning to `return_to` afterwards.
pub(crate) fn to_login(return_to: &str) -> Response {
    let mut target = String::from("/login?return_to=");
    for b in return_to.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            target.push(char::from(b));
        } else {
            target.push_str(&format!("%{b:02X}"));
        }
    }
    Redirect::to(&target).into_response()
}
