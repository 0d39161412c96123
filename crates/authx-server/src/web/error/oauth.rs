//! OAuth failures as HTTP answers: RFC 6749 §5.2 JSON errors of the token, introspection,
//! revocation and device-authorization endpoints (with RFC 9449's `invalid_dpop_proof` and
//! `use_dpop_nonce`), RFC 6750 bearer and RFC 9449 DPoP challenges of userinfo, the
//! JSON API's answers for `OAuthError`, and the error pages of the browser's endpoints
//! (authorization, consent, logout and the device page).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use authx_core::StoreError;
use authx_core::oauth::OAuthError;

use super::ApiError;
use crate::html::{Message, Paragraph};

/// An OAuth failure as an answer of the JSON API (the admin and session-token endpoints).
pub(crate) fn api_error(e: OAuthError) -> ApiError {
    match e {
        OAuthError::Store(authx_core::StoreError::Conflict) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", "that id is taken")
        }
        OAuthError::Store(s) => ApiError::from(authx_core::auth::AuthError::Store(s)),
        OAuthError::Internal(m) => ApiError::internal(&m),
        OAuthError::InvalidTarget(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_target", m),
        OAuthError::InvalidScope(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_scope", m),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            other.to_string(),
        ),
    }
}

/// An RFC 6749 §5.2 error response. `basic_used` tells whether the client authenticated with
/// HTTP Basic, which a `401` then challenges again.
pub(crate) fn oauth_error(e: &OAuthError, basic_used: bool) -> Response {
    let (status, code) = match e {
        OAuthError::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
        OAuthError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "invalid_client"),
        OAuthError::Store(StoreError::Unavailable(cause)) => {
            tracing::warn!(error = %cause, "store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        OAuthError::Store(_) | OAuthError::Internal(_) => {
            tracing::error!(error = %e, "token endpoint failure");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
        other => (StatusCode::BAD_REQUEST, other.code()),
    };
    let description = if status.is_server_error() {
        "the server could not complete the request".to_owned()
    } else {
        e.to_string()
    };
    let mut res = (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    let h = res.headers_mut();
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::UNAUTHORIZED && basic_used {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"authx\""),
        );
    }
    if let OAuthError::Throttled { retry_after_secs } = e {
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// `400 invalid_request` with `msg` (RFC 6749 §5.2).
pub(crate) fn invalid_request(msg: &str) -> Response {
    oauth_error(&OAuthError::InvalidRequest(msg.to_owned()), false)
}

/// An RFC 6750 §3 challenge, with its error code when a token was presented.
pub(crate) fn bearer_error(status: StatusCode, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"authx\", error=\"{e}\""),
        None => "Bearer realm=\"authx\"".to_owned(),
    };
    let mut res = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// An RFC 9449 §7.1 challenge of a resource endpoint: `401` with `WWW-Authenticate: DPoP`,
/// the proof algorithms accepted and `error` (`invalid_token`, `invalid_dpop_proof`,
/// `use_dpop_nonce`).
pub(crate) fn dpop_challenge(error: &str) -> Response {
    let algs = authx_core::oauth::dpop::SIGNING_ALGS.join(" ");
    let challenge = format!("DPoP algs=\"{algs}\", error=\"{error}\"");
    let mut res = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// An error page of the browser's OAuth endpoints.
pub(crate) fn error_page(status: StatusCode, title: &str, msg: &str) -> Response {
    Message::error(title, msg).response(status)
}

/// The heading of a refused authorization request.
pub(crate) const CANNOT_COMPLETE: &str = "This sign-in request cannot be completed";

/// `400`: an authorization request that cannot be trusted or completed; never a redirect.
pub(crate) fn refused_page(msg: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, CANNOT_COMPLETE, msg)
}

/// `403` for a signed-in user's form whose CSRF token is missing or wrong, recorded as
/// `csrf_rejected` with `reason`.
pub(crate) fn csrf_rejected(
    audit: &authx_core::audit::Audit,
    user: &authx_core::user::UserId,
    reason: &str,
) -> Response {
    audit.record(
        authx_core::audit::AuditEvent::failure("csrf_rejected")
            .user(user)
            .with("reason", reason),
    );
    csrf_page()
}

/// `403`: a form whose CSRF token is missing or wrong.
pub(crate) fn csrf_page() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form expired or did not come from this site.",
    )
}

/// `503`: storage failed while a browser's OAuth request was served; the cause is logged.
pub(crate) fn unavailable_page(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "oauth page: store failure");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Try again in a moment.",
    )
}

/// `503` of the device page: storage failed; the cause is logged.
pub(crate) fn device_unavailable_page(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "device page: store failure");
    Message::new(
        "Temporarily unavailable",
        "Temporarily unavailable",
        Paragraph::Text("Try again in a moment."),
    )
    .response(StatusCode::SERVICE_UNAVAILABLE)
}
