//! `POST /api/v1/email`: the JSON form of the account page's email change; `POST
//! /api/v1/email/verification`: the account page's "send a verification link".
//!
//! # Security
//! Session calls: origin check and `X-CSRF-Token` (the `UserAction` extractor). A change needs
//! the current password or a sign-in within five minutes (decided in core); a verification
//! link goes only to the signed-in account's own address, within its allowance per address.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::extract::{JsonBody, UserAction};

#[derive(Deserialize)]
pub(super) struct EmailChange {
    new_email: String,
    current_password: Option<String>,
}

/// Asks to change the signed-in user's address: `202` once the confirmation link (to the new
/// address) and the notice (to the old one) are queued; the address changes when the link is
/// used.
pub(super) async fn email_post(
    State(state): State<AppState>,
    call: UserAction<JsonBody<EmailChange>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    state
        .auth
        .request_email_change(
            &call.auth,
            &body.new_email,
            body.current_password.as_deref(),
            &call.ctx,
        )
        .await?;
    let message = "a confirmation link was mailed to the new address; the address changes \
                   once it is used";
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "accepted", "message": message })),
    )
        .into_response())
}

/// Mails the signed-in user a new verification link: `202` whether or not one was sent (an
/// address already verified, or past its allowance of mails, gets nothing); `404` where the
/// deployment does not verify addresses (no `[email]` section).
pub(super) async fn verification_post(
    State(state): State<AppState>,
    call: UserAction,
) -> Result<Response, ApiError> {
    if !state.auth.verifies_email() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server does not verify email addresses",
        ));
    }
    state
        .auth
        .request_verification(&call.auth.user.email)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "accepted", "email_verified": call.auth.user.email_verified })),
    )
        .into_response())
}
