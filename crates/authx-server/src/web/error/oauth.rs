//! OAuth failures (`OAuthError`) as HTTP answers.

use axum::http::StatusCode;

use authx_core::oauth::OAuthError;

use super::ApiError;

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
