//! The one mapping from failures to HTTP responses: the JSON API's stable
//! `{"error": code, "message": text}` body with the right status, and the error pages of the
//! browser forms. One file per core error type.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub mod admin;
pub mod auth;
pub mod federation;
pub mod feed;
pub mod http;
pub mod mail;
pub mod oauth;
pub mod registration;

pub use auth::classify;

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

impl ApiError {
    /// The error page of a browser form whose body could not be read.
    #[must_use]
    pub fn into_page(self) -> Response {
        crate::html::Message::error("Bad request", &self.message).response(self.status)
    }
}

/// Adds `Retry-After` (at least one second) when there is a wait.
pub fn set_retry_after(res: &mut Response, retry: Option<i64>) {
    if let Some(secs) = retry {
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
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
        set_retry_after(&mut res, self.retry_after);
        res
    }
}
