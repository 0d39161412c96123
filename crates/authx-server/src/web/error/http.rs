//! The answers of the middleware, in the dialect of the endpoint that was asked: RFC 6749
//! JSON under `/oauth2/`, the JSON API's shape under `/api/`, and a page anywhere else.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::html::{Message, Paragraph};
use crate::state::AppState;

/// Runs the extractor `T`, its rejection as the answer; for extractors made of others.
pub(crate) async fn extract<T>(parts: &mut Parts, state: &AppState) -> Result<T, Response>
where
    T: FromRequestParts<AppState>,
    T::Rejection: IntoResponse,
{
    T::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)
}

/// 403: a state-changing request that did not come from a page of this site (the origin check
/// refused it for `reason`).
pub(crate) fn forbidden(path: &str, reason: &str) -> Response {
    if path.starts_with("/api/") {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            format!("request refused: {reason}"),
        )
        .into_response()
    } else {
        let text = format!(
            "This request did not come from a page of this site ({reason}). \
             Go back, reload the page and try again."
        );
        refusal(
            "Request refused",
            "Request refused",
            &text,
            StatusCode::FORBIDDEN,
        )
    }
}

/// `429` when the caller's rate limit is spent; `Retry-After` says when to come back.
pub(crate) fn too_many_requests(path: &str, retry_after: i64) -> Response {
    let message = format!(
        "too many requests; try again in {}",
        authx_core::plural::count(retry_after, "second", "seconds")
    );
    if path.starts_with("/api/") {
        return ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
        .into_response();
    }
    let mut res = if path.starts_with("/oauth2/") {
        // `slow_down` (RFC 8628 §3.5, registered for the token endpoint) tells any client to
        // wait before its next request.
        oauth_json(StatusCode::TOO_MANY_REQUESTS, "slow_down", &message)
    } else {
        refusal(
            "Too many requests",
            "Too many requests",
            "Too many requests came from your network. Wait a minute and try again.",
            StatusCode::TOO_MANY_REQUESTS,
        )
    };
    if let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// `503` when the rate-limit counters cannot be reached: fail closed, like authentication.
pub(crate) fn unavailable(path: &str) -> Response {
    if path.starts_with("/api/") {
        return ApiError::unavailable().into_response();
    }
    let mut res = if path.starts_with("/oauth2/") {
        oauth_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the server could not complete the request",
        )
    } else {
        refusal(
            "Unavailable",
            "Temporarily unavailable",
            "Try again in a moment.",
            StatusCode::SERVICE_UNAVAILABLE,
        )
    };
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// 500 for a handler that panicked; nothing of the panic is sent.
pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}

/// An RFC 6749 §5.2 error body.
pub(crate) fn oauth_json(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// A page that refuses the request.
fn refusal(title: &str, heading: &str, text: &str, status: StatusCode) -> Response {
    Message::new(title, heading, Paragraph::Refusal(text)).response(status)
}
