//! Extractors: where a request came from, which session it carries, and bodies whose failures
//! become clear 4xx answers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use authx_core::auth::Authenticated;
use authx_core::secret::{PreSessionToken, SessionToken};
use authx_core::session::ClientContext;

use super::error::ApiError;
use crate::cookies::cookie_value;
use crate::state::AppState;

mod caller;
mod form;

pub use caller::{Admin, AdminView, Caller, SignedInUser, UserAction, check_csrf_header};
pub(crate) use form::{
    CsrfForm, FormToken, PageForm, PreSessionForm, csrf_refused, session_token_ok, to_login,
};

/// The TCP peer of the connection, set by the server for every request.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Longest user agent recorded.
const MAX_USER_AGENT: usize = 256;

/// The client's address and user agent. The address is the TCP peer, or, when the peer is a
/// configured trusted proxy, the nearest untrusted hop of `X-Forwarded-For`; a header sent by
/// anyone else is ignored, so rotating it never escapes a rate limit.
#[must_use]
pub fn client_context(parts: &Parts, state: &AppState) -> ClientContext {
    let ip = client_ip(parts, state);
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect::<String>()
        });
    ClientContext {
        ip: ip.map(|i| i.to_string()),
        user_agent,
    }
}

/// The client's address alone, by the rule of [`client_context`].
fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip());
    match peer {
        Some(p) if state.config.trusted_proxies.contains(&p) => {
            Some(forwarded_client(parts, &state.config.trusted_proxies).unwrap_or(p))
        }
        other => other,
    }
}

/// The client address of a request (see [`client_context`]), for handlers that key limits by
/// where a request came from but need nothing else of it.
#[derive(Debug, Clone)]
pub struct SourceAddr(pub Option<String>);

impl SourceAddr {
    /// The address, as [`ClientContext::ip`] holds it.
    #[must_use]
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl FromRequestParts<AppState> for SourceAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, state).map(|i| i.to_string())))
    }
}

/// The nearest hop that is not a trusted proxy, read from the right of `X-Forwarded-For` (the
/// hops a proxy appended); everything to its left was written by the client and is ignored.
fn forwarded_client(parts: &Parts, trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut hops: Vec<&str> = Vec::new();
    for v in parts.headers.get_all("x-forwarded-for") {
        hops.extend(v.to_str().ok()?.split(','));
    }
    for hop in hops.into_iter().rev() {
        // An unreadable hop ends the trusted chain: nothing beyond it is believed.
        let ip: IpAddr = hop.trim().parse().ok()?;
        if !trusted.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

/// The session a request carries, resolved once. Anonymous when the cookie is absent,
/// malformed, unknown, expired or revoked; a store failure rejects the request with 503
/// (fail closed).
#[derive(Debug)]
pub struct CurrentSession {
    /// The identity, when the session is valid.
    pub auth: Option<std::sync::Arc<Authenticated>>,
    /// The well-formed token the request presented, valid or not.
    pub token: Option<SessionToken>,
    /// Where the request came from.
    pub ctx: ClientContext,
    /// The well-formed pre-session token, if any.
    pub pre: Option<PreSessionToken>,
    /// The well-formed federation browser-binding cookie, if any.
    pub federation_binding: Option<authx_core::federation::BrowserBinding>,
    /// The well-formed pending-link cookie, if any.
    pub federation_link: Option<authx_core::federation::LinkToken>,
}

impl CurrentSession {
    /// The CSRF token bound to this request's session.
    #[must_use]
    pub fn csrf_token(&self) -> Option<String> {
        self.auth
            .as_ref()
            .and(self.token.as_ref())
            .map(authx_core::csrf::token_for_session)
    }
}

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = client_context(parts, state);
        let token =
            cookie_value(&parts.headers, state.cookies.session).and_then(SessionToken::parse);
        let pre = cookie_value(&parts.headers, state.cookies.pre_session)
            .and_then(PreSessionToken::parse);
        let federation_binding = cookie_value(&parts.headers, state.cookies.federation_binding)
            .and_then(authx_core::federation::BrowserBinding::parse);
        let federation_link = cookie_value(&parts.headers, state.cookies.federation_link)
            .and_then(authx_core::federation::LinkToken::parse);
        let auth = match &token {
            Some(t) => state
                .auth
                .authenticate(t, &ctx)
                .await
                .map_err(ApiError::from)?,
            None => None,
        };
        Ok(Self {
            auth,
            token,
            ctx,
            pre,
            federation_binding,
            federation_link,
        })
    }
}

/// A JSON body (`application/json` only) whose problems map to 400, 413 or 415.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(_)) => Err(too_large()),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                body_message(&e.body_text()),
            )),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded` only).
#[derive(Debug)]
pub struct FormBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for FormBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(FormRejection::InvalidFormContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/x-www-form-urlencoded",
            )),
            Err(FormRejection::BytesRejection(_)) => Err(too_large()),
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the form is malformed",
            )),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is too large",
    )
}

/// A body error message without echoing the input back.
fn body_message(detail: &str) -> String {
    let cut: String = detail
        .chars()
        .take(160)
        .filter(|c| !c.is_control())
        .collect();
    format!("the JSON body is invalid: {cut}")
}
