//! Who calls the JSON API: a signed-in user, a signed-in user's state-changing request (the
//! `X-CSRF-Token` header checked), and an administrator's. Each runs the checks of the handler
//! preambles in the order the API has always answered them: the session is resolved (503 when
//! the store is down), a JSON body is read (415, 413, 400), then the caller must be signed in
//! (401), an administrator where required (403) and present the session's CSRF token (403).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use authx_core::admin::{Actor, Administration};
use authx_core::audit::{AuditEvent, record_current};
use authx_core::auth::Authenticated;
use authx_core::session::ClientContext;

use super::{CurrentSession, JsonBody};
use crate::state::AppState;
use crate::web::error::ApiError;

/// The header carrying the synchronizer token of a session-authenticated call.
const CSRF_HEADER: &str = "x-csrf-token";

/// Checks the `X-CSRF-Token` header against the session's token; a mismatch is audited.
///
/// # Errors
/// 401 without a session, 403 `csrf_failed` for a missing or wrong token.
pub fn check_csrf_header(headers: &HeaderMap, current: &CurrentSession) -> Result<(), ApiError> {
    check_csrf(&header_token(headers), current)
}

fn check_csrf(presented: &str, current: &CurrentSession) -> Result<(), ApiError> {
    let expected = current.csrf_token().ok_or_else(ApiError::unauthenticated)?;
    if authx_core::csrf::matches(&expected, presented) {
        return Ok(());
    }
    let mut event = AuditEvent::failure("csrf_rejected").with("reason", "bad token");
    if let Some(a) = &current.auth {
        event = event.user(&a.user.id);
    }
    record_current(event);
    Err(ApiError::csrf())
}

/// The identity of a signed-in caller, 401 otherwise.
fn signed_in(current: &CurrentSession) -> Result<Arc<Authenticated>, ApiError> {
    current.auth.clone().ok_or_else(ApiError::unauthenticated)
}

/// The identity of a signed-in administrator: 401 without a session, 403 for anyone else.
fn administrator(current: &CurrentSession) -> Result<Arc<Authenticated>, ApiError> {
    let auth = signed_in(current)?;
    if auth.user.is_admin {
        Ok(auth)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "administrators only",
        ))
    }
}

/// A signed-in user's read (no CSRF token needed: nothing changes).
#[derive(Debug)]
pub struct SignedInUser(pub Arc<Authenticated>);

impl FromRequestParts<AppState> for SignedInUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        Ok(Self(signed_in(&current)?))
    }
}

/// A signed-in user's state-changing call, with its CSRF token checked; `B` is its JSON body
/// (`JsonBody<T>`), or `()` for none.
#[derive(Debug)]
pub struct UserAction<B = ()> {
    /// The caller.
    pub auth: Arc<Authenticated>,
    /// Where the call came from.
    pub ctx: ClientContext,
    /// The body.
    pub body: B,
}

/// An administrator's read (no CSRF token needed: nothing changes).
#[derive(Debug)]
pub struct AdminView(pub Arc<Authenticated>);

impl AdminView {
    /// The administration as this administrator.
    #[must_use]
    pub fn run<'a>(&self, state: &'a AppState) -> Administration<'a> {
        administration(state, &self.0)
    }
}

impl FromRequestParts<AppState> for AdminView {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        Ok(Self(administrator(&current)?))
    }
}

/// An administrator's state-changing call, with its CSRF token checked; every action through
/// [`Admin::run`] is audited under the administrator's name. `B` as for [`UserAction`].
#[derive(Debug)]
pub struct Admin<B = ()> {
    /// The administrator.
    pub auth: Arc<Authenticated>,
    /// The body.
    pub body: B,
}

impl<B> Admin<B> {
    /// The administration as this administrator.
    #[must_use]
    pub fn run<'a>(&self, state: &'a AppState) -> Administration<'a> {
        administration(state, &self.auth)
    }
}

fn administration<'a>(state: &'a AppState, admin: &Authenticated) -> Administration<'a> {
    Administration::new(
        &state.auth,
        &state.oauth,
        state.audit_store.as_ref(),
        Actor::Administrator(admin.user.id.clone()),
    )
}

/// The session, the CSRF header and the JSON body of a call, the body read last.
async fn with_body<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
) -> Result<(CurrentSession, String, T), ApiError> {
    let (mut parts, body) = req.into_parts();
    let current = CurrentSession::from_request_parts(&mut parts, state).await?;
    let presented = header_token(&parts.headers);
    let JsonBody(value) = JsonBody::from_request(Request::from_parts(parts, body), state).await?;
    Ok((current, presented, value))
}

fn header_token(headers: &HeaderMap) -> String {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl FromRequestParts<AppState> for UserAction {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        let auth = signed_in(&current)?;
        check_csrf_header(&parts.headers, &current)?;
        Ok(Self {
            auth,
            ctx: current.ctx,
            body: (),
        })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for UserAction<JsonBody<T>> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (current, presented, body) = with_body(req, state).await?;
        let auth = signed_in(&current)?;
        check_csrf(&presented, &current)?;
        Ok(Self {
            auth,
            ctx: current.ctx,
            body: JsonBody(body),
        })
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        let auth = administrator(&current)?;
        check_csrf_header(&parts.headers, &current)?;
        Ok(Self { auth, body: () })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for Admin<JsonBody<T>> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (current, presented, body) = with_body(req, state).await?;
        let auth = administrator(&current)?;
        check_csrf(&presented, &current)?;
        Ok(Self {
            auth,
            body: JsonBody(body),
        })
    }
}
