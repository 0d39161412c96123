//! The revocation feed's refusals, as RFC 6749 §5.2 JSON like the other endpoints that
//! authenticate a client.

use axum::http::StatusCode;
use axum::response::Response;

use authx_core::StoreError;
use authx_core::oauth::OAuthError;

use super::http::oauth_json;
use super::oauth::oauth_error;

/// 401 (with a `Basic` challenge) or another client-authentication failure.
pub(crate) fn client_refused(e: &OAuthError) -> Response {
    oauth_error(e, true)
}

/// 403: the client is not a registered API.
pub(crate) fn not_an_api() -> Response {
    oauth_json(
        StatusCode::FORBIDDEN,
        "access_denied",
        "only a registered API may read the revocation feed: \
         authenticate as the confidential client whose id is the API's id",
    )
}

/// 400: the position to resume from is not a sequence number.
pub(crate) fn bad_position() -> Response {
    oauth_json(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Last-Event-ID (or after) must be a non-negative integer",
    )
}

/// The log or the clients could not be read.
pub(crate) fn store_failure(e: StoreError) -> Response {
    oauth_error(&OAuthError::Store(e), false)
}
