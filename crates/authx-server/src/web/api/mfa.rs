//! `/api/v1/mfa`: the JSON form of the account page's two-step verification: list the
//! factors, add an authenticator app and confirm it with a first code, remove one, make new
//! recovery codes.
//!
//! # Security
//! Session calls: origin check and `X-CSRF-Token` for every change (the `UserAction`
//! extractor). Adding, removing and new recovery codes need the current password or a
//! sign-in within five minutes (decided in core). The key and the recovery codes are in the
//! answer once, which is `Cache-Control: no-store` like every API answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use authx_core::mfa::FactorId;
use authx_core::mfa::recovery::RecoveryCodes;

use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::extract::{JsonBody, SignedInUser, UserAction};
use crate::web::rfc3339;

/// The codes of a new set, to show once.
fn codes_json(codes: &RecoveryCodes) -> Value {
    json!(
        codes
            .codes
            .iter()
            .map(|c| c.expose().to_owned())
            .collect::<Vec<_>>()
    )
}

/// `GET /api/v1/mfa`: the signed-in user's factors and how many recovery codes are left.
pub(super) async fn factors_get(
    State(state): State<AppState>,
    call: SignedInUser,
) -> Result<Response, ApiError> {
    let factors = state.auth.list_factors(&call.auth).await?;
    let left = match state.auth.factors() {
        Some(f) => f
            .recovery_codes_left(&call.auth.user.id)
            .await
            .map_err(authx_core::auth::AuthError::from)?,
        None => 0,
    };
    let list: Vec<Value> = factors
        .iter()
        .map(|f| {
            json!({
                "id": f.id.0,
                "kind": f.kind.as_str(),
                "name": f.name,
                "created_at": rfc3339(f.created_at),
                "last_used_at": f.last_used_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(json!({ "factors": list, "recovery_codes_left": left })).into_response())
}

#[derive(Deserialize)]
pub(super) struct Begin {
    #[serde(default)]
    name: String,
    current_password: Option<String>,
}

/// `POST /api/v1/mfa/totp`: begins adding an authenticator app; `201` with the key (base32
/// and as an `otpauth://` URI) and the factor to confirm within ten minutes.
pub(super) async fn totp_post(
    State(state): State<AppState>,
    call: UserAction<JsonBody<Begin>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    let e = state
        .auth
        .begin_totp_enrolment(
            &call.auth,
            &body.name,
            body.current_password.as_deref(),
            &call.ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "factor_id": e.factor_id().0,
            "secret": e.secret().to_base32(),
            "otpauth_uri": e.otpauth_uri(),
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct Confirm {
    code: String,
}

/// `POST /api/v1/mfa/totp/{id}/confirm`: the app's first code turns it on; the first time,
/// the answer carries the recovery codes, once.
pub(super) async fn totp_confirm_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    call: UserAction<JsonBody<Confirm>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    let confirmed = state
        .auth
        .confirm_totp_enrolment(&call.auth, &FactorId(id), body.code.trim())
        .await?;
    let mut answer = json!({ "factor_id": confirmed.factor_id.0 });
    if let Some(codes) = &confirmed.recovery_codes {
        answer["recovery_codes"] = codes_json(codes);
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize, Default)]
pub(super) struct Proof {
    current_password: Option<String>,
}

/// `POST /api/v1/mfa/{id}/remove`: removes a factor; every other session ends.
pub(super) async fn remove_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    call: UserAction<JsonBody<Proof>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    state
        .auth
        .remove_factor(
            &call.auth,
            &FactorId(id),
            body.current_password.as_deref(),
            &call.ctx,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct Rename {
    name: String,
}

/// `POST /api/v1/mfa/{id}/rename`: a new name for a factor (`204`).
pub(super) async fn rename_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    call: UserAction<JsonBody<Rename>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    state
        .auth
        .rename_factor(&call.auth, &FactorId(id), &body.name)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/mfa/recovery-codes`: a new set of recovery codes (the old ones stop
/// working), once.
pub(super) async fn recovery_codes_post(
    State(state): State<AppState>,
    call: UserAction<JsonBody<Proof>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    let codes = state
        .auth
        .regenerate_recovery_codes(&call.auth, body.current_password.as_deref(), &call.ctx)
        .await?;
    Ok(Json(json!({ "recovery_codes": codes_json(&codes) })).into_response())
}
