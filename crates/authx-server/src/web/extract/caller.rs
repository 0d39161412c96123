//! Who calls the JSON API: a signed-in user, a signed-in user's state-changing request (the
//! `X-CSRF-Token` header checked), and an administrator's. Each runs the checks of the handler
//! preambles in the order the API has always answered them: the session is resolved (503 when
//! the store is down), a JSON body is read (415, 413, 400), then the caller must be signed in
//! (401), an administrator where required (403), with a second factor proved where
//! `[mfa] required_for` covers administrators (403), and present the session's CSRF token (403).

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

/// A caller of the JSON API who passed the checks `ADMIN` (an administrator, else 403) and
/// `CSRF` (the `X-CSRF-Token` header matches the session, else 403) on top of being signed in
/// (else 401); `B` is its JSON body (`JsonBody<T>`), or `()` for none. Handlers name it
/// through the aliases below.
#[derive(Debug)]
pub struct Caller<const ADMIN: bool, const CSRF: bool, B = ()> {
    /// The signed-in user.
    pub auth: Arc<Authenticated>,
    /// Where the call came from.
    pub ctx: ClientContext,
    /// The body.
    pub body: B,
}

/// A signed-in user's read (no CSRF token needed: nothing changes).
pub type SignedInUser = Caller<false, false>;
/// A signed-in user's state-changing call.
pub type UserAction<B = ()> = Caller<false, true, B>;
/// An administrator's read.
pub type AdminView = Caller<true, false>;
/// An administrator's state-changing call; every action through [`Caller::run`] is audited
/// under the administrator's name.
pub type Admin<B = ()> = Caller<true, true, B>;

impl<const CSRF: bool, B> Caller<true, CSRF, B> {
    /// The administration as this administrator.
    #[must_use]
    pub fn run<'a>(&self, state: &'a AppState) -> Administration<'a> {
        Administration::new(
            &state.auth,
            &state.oauth,
            state.audit_store.as_ref(),
            Actor::Administrator(self.auth.user.id.clone()),
        )
    }
}

impl<const ADMIN: bool, const CSRF: bool> Caller<ADMIN, CSRF> {
    /// The checks, once the session is resolved and any body read.
    fn check<B>(
        state: &AppState,
        current: CurrentSession,
        presented: &str,
        body: B,
    ) -> Result<Caller<ADMIN, CSRF, B>, ApiError> {
        let auth = current.auth.clone().ok_or_else(ApiError::unauthenticated)?;
        if ADMIN && !auth.user.is_admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "administrators only",
            ));
        }
        // Where policy requires administrators to have a second factor, their session must
        // have proved it (a session from before the policy, or a sign-in that skipped the
        // step, steps up first).
        if ADMIN
            && state.auth.mfa_requirement().applies_to(&auth.user)
            && !auth.authentication().has_second_factor()
        {
            record_current(
                AuditEvent::failure("admin_refused")
                    .user(&auth.user.id)
                    .with("reason", "second_factor_required"),
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "second_factor_required",
                "sign in with your second factor (GET /login/step-up) to use the admin API",
            ));
        }
        if CSRF {
            check_csrf(presented, &current)?;
        }
        Ok(Caller {
            auth,
            ctx: current.ctx,
            body,
        })
    }
}

impl<const ADMIN: bool, const CSRF: bool> FromRequestParts<AppState> for Caller<ADMIN, CSRF> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let current = CurrentSession::from_request_parts(parts, state).await?;
        Self::check(state, current, &header_token(&parts.headers), ())
    }
}

impl<const ADMIN: bool, const CSRF: bool, T: DeserializeOwned> FromRequest<AppState>
    for Caller<ADMIN, CSRF, JsonBody<T>>
{
    type Rejection = ApiError;

    /// The body is read before the caller is checked, as the API always answered.
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let current = CurrentSession::from_request_parts(&mut parts, state).await?;
        let presented = header_token(&parts.headers);
        let body = JsonBody::from_request(Request::from_parts(parts, body), state).await?;
        Caller::<ADMIN, CSRF>::check(state, current, &presented, body)
    }
}

fn header_token(headers: &HeaderMap) -> String {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
