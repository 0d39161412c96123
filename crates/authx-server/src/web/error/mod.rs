//! The one mapping from failures to HTTP responses for the JSON API: a stable
//! `{"error": code, "message": text}` body with the right status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use authx_core::StoreError;
use authx_core::auth::AuthError;

pub mod federation;
pub mod feed;
pub mod http;
pub mod oauth;

/// An error answer of the JSON API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable text.
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<i64>,
}

impl ApiError {
    /// An error with the given status, code and message.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 401: no valid session.
    #[must_use]
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first")
    }

    /// 403: the CSRF token is missing or wrong.
    #[must_use]
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "missing or invalid CSRF token",
        )
    }

    /// 503: a dependency is down; authentication fails closed.
    #[must_use]
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable",
            )
        }
    }

    /// 500 with a generic message; the cause is logged, never sent.
    #[must_use]
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }
}

/// Status, code and `Retry-After` for an account-service error.
#[must_use]
pub fn classify(e: &AuthError) -> (StatusCode, &'static str, Option<i64>) {
    match e {
        AuthError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", None),
        AuthError::Throttled { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            Some(*retry_after_secs),
        ),
        AuthError::SignUpDisabled => (StatusCode::FORBIDDEN, "sign_up_disabled", None),
        AuthError::EmailTaken => (StatusCode::CONFLICT, "email_taken", None),
        AuthError::InvalidEmail => (StatusCode::BAD_REQUEST, "invalid_email", None),
        AuthError::WeakPassword(_) => (StatusCode::BAD_REQUEST, "weak_password", None),
        AuthError::PasswordTooLong => (StatusCode::BAD_REQUEST, "password_too_long", None),
        AuthError::WrongPassword => (StatusCode::FORBIDDEN, "wrong_password", None),
        AuthError::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
        AuthError::Busy | AuthError::Store(StoreError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1))
        }
        AuthError::Store(_) | AuthError::Internal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None)
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (status, code, retry_after) = classify(&e);
        let message = match &e {
            AuthError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "store unavailable");
                "the service is temporarily unavailable".to_owned()
            }
            AuthError::Busy => "the service is temporarily unavailable".to_owned(),
            AuthError::Store(_) | AuthError::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        Self {
            status,
            code,
            message,
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}
