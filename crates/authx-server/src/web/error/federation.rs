//! Upstream sign-in failures (`FederationError`) as pages.
//!
//! Every way an upstream sign-in or a link can stop ends on a readable page with a 4xx, 502 or
//! 503 status, never a 500, and never says more about a server failure than that the service
//! is unavailable.

use axum::http::StatusCode;
use axum::response::Response;

use authx_core::StoreError;
use authx_core::auth::AuthError;
use authx_core::federation::FederationError;

use super::classify;
use super::set_retry_after;
use crate::html::Message;

const UNAVAILABLE: &str = "The service is temporarily unavailable. Try again shortly.";

/// A readable failure page with a link back to the sign-in page.
fn failure(status: StatusCode, title: &str, msg: &str) -> Response {
    Message::error(title, msg).back_to_login().response(status)
}

/// 404: the path names no configured upstream provider.
pub(crate) fn unknown_provider() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "Unknown identity provider",
        "No identity provider of this name is configured here.",
    )
}

/// The page for every way an upstream sign-in or a link can stop; `provider` is the display
/// name of the upstream.
pub(crate) fn failed(provider: &str, e: &FederationError) -> Response {
    let forbidden = |msg: &str| failure(StatusCode::FORBIDDEN, "Sign-in refused", msg);
    match e {
        FederationError::Upstream(u) => {
            tracing::warn!(%provider, error = %u, "upstream sign-in failed");
            failure(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                &format!("Signing in with {provider} did not work: {u}. Try again later."),
            )
        }
        FederationError::Store(s) => store_failed(s),
        FederationError::Denied(code) => failure(
            StatusCode::BAD_REQUEST,
            "Sign-in cancelled",
            &format!("{provider} did not sign you in ({code})."),
        ),
        FederationError::IdToken(t) => failure(
            StatusCode::BAD_GATEWAY,
            "Sign-in refused",
            &format!("{provider} sent a sign-in that cannot be trusted: {t}."),
        ),
        FederationError::Assertion(t) => failure(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            &format!("{provider} sent a sign-in that cannot be trusted: {t}."),
        ),
        FederationError::Refused(r) => {
            forbidden(&format!("Signing in with {provider} is not possible: {r}."))
        }
        FederationError::Disabled => forbidden(&e.to_string()),
        FederationError::SignIn(a) => sign_in_failed(a),
        FederationError::NoPendingLink => {
            failure(StatusCode::BAD_REQUEST, "Nothing to link", &e.to_string())
        }
        _ => failure(StatusCode::BAD_REQUEST, "Sign-in refused", &e.to_string()),
    }
}

/// 503 when the store is down, 502 for any other store failure.
fn store_failed(s: &StoreError) -> Response {
    tracing::warn!(error = %s, "federation store failed");
    let status = if matches!(s, StoreError::Unavailable(_)) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    failure(status, "Sign-in unavailable", UNAVAILABLE)
}

/// The local sign-in behind a federated one failed: its status (a server failure is a 503)
/// and wait.
fn sign_in_failed(a: &AuthError) -> Response {
    let (status, retry, msg) = sign_in_failure(a);
    if status.is_server_error() {
        tracing::warn!(error = %a, "federated sign-in failed");
    }
    let status = if status == StatusCode::INTERNAL_SERVER_ERROR {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    let mut res = failure(status, "Sign-in failed", &msg);
    set_retry_after(&mut res, retry);
    res
}

/// The status, wait and message of a failed local sign-in; a server failure is not described.
pub(crate) fn sign_in_failure(e: &AuthError) -> (StatusCode, Option<i64>, String) {
    let (status, _, retry) = classify(e);
    let msg = if status.is_server_error() {
        UNAVAILABLE.to_owned()
    } else {
        e.to_string()
    };
    (status, retry, msg)
}
