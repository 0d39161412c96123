//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592):
//! `POST /oauth2/register` with an initial access token, and `GET`, `PUT` and `DELETE` of
//! `/oauth2/register/{client_id}` with the client's registration access token, both as
//! `Authorization: Bearer`. Served only with `[registration] enabled = true` (otherwise the
//! paths are 404); the rules live in [`authx_core::registration`].
//!
//! # Security
//! - Metadata documents are at most [`MAX_METADATA_BYTES`] of `application/json`.
//! - A missing or unusable token is `401` with an RFC 6750 challenge, whatever the reason,
//!   and says nothing about whether the client exists.
//! - Every answer is `Cache-Control: no-store` (secrets and tokens travel in them) and the
//!   paths are rate-limited per client address (`web::middleware`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use authx_core::registration::{ClientMetadata, InitialToken, Registered, RegistrationError};

use super::error::oauth::oauth_error;
use super::middleware::empty;
use crate::state::AppState;

/// Largest client metadata document accepted.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The registration endpoints (mounted only when registration is enabled).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/register", post(register_post))
        .route(
            "/oauth2/register/{client_id}",
            axum::routing::get(registration_get)
                .put(registration_put)
                .delete(registration_delete),
        )
}

async fn register_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metadata = match metadata(&headers, body) {
        Ok(m) => m,
        Err(res) => return res,
    };
    match state
        .registration()
        .register(bearer(&headers), metadata)
        .await
    {
        Ok(r) => answer(&state, StatusCode::CREATED, &r),
        Err(e) => error(&e, &headers),
    }
}

async fn registration_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    match state
        .registration()
        .read(&client_id, bearer(&headers))
        .await
    {
        Ok(r) => answer(&state, StatusCode::OK, &r),
        Err(e) => error(&e, &headers),
    }
}

async fn registration_put(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The token is checked before the body is judged: a stranger learns nothing from it.
    if bearer(&headers).is_none() {
        return error(&RegistrationError::InvalidToken, &headers);
    }
    let metadata = match metadata(&headers, body) {
        Ok(m) => m,
        Err(res) => return res,
    };
    match state
        .registration()
        .update(&client_id, bearer(&headers), metadata)
        .await
    {
        Ok(r) => answer(&state, StatusCode::OK, &r),
        Err(e) => error(&e, &headers),
    }
}

async fn registration_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Response {
    match state
        .registration()
        .delete(&client_id, bearer(&headers))
        .await
    {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => error(&e, &headers),
    }
}

/// The one `Authorization: Bearer` credential of the request; none when the header is
/// missing, repeated or of another scheme.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The metadata document of a request, or the answer refusing it.
#[allow(clippy::result_large_err)] // The error is the finished response.
fn metadata(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ClientMetadata, Response> {
    let body = body.map_err(IntoResponse::into_response)?;
    if body.len() > MAX_METADATA_BYTES {
        return Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            &format!("client metadata are at most {MAX_METADATA_BYTES} bytes"),
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "send the client metadata as application/json",
        ));
    }
    ClientMetadata::from_json(&body).map_err(|e| error(&e, headers))
}

/// The URI at which a client manages its registration (RFC 7592 §1).
fn registration_client_uri(state: &AppState, client_id: &str) -> String {
    format!("{}/oauth2/register/{client_id}", state.config.issuer)
}

/// The client information response.
fn answer(state: &AppState, status: StatusCode, r: &Registered) -> Response {
    let body = r.to_json(&registration_client_uri(state, &r.client.id));
    let mut res = (status, Json(body)).into_response();
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// An RFC 7591 §3.2.2 error (`error`, `error_description`) with `status`.
fn refusal(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

/// A refused registration request: `401 invalid_token` with an RFC 6750 challenge (naming the
/// error only when a token was presented), `400` with the RFC 7591 code, or the provider's
/// failure as the token endpoint answers it.
fn error(e: &RegistrationError, headers: &HeaderMap) -> Response {
    match e {
        RegistrationError::InvalidToken => {
            let mut res = refusal(StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
            let challenge = if headers.contains_key(header::AUTHORIZATION) {
                "Bearer realm=\"authx\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"authx\""
            };
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            res
        }
        RegistrationError::InvalidRedirectUri(m)
        | RegistrationError::InvalidClientMetadata(m)
        | RegistrationError::InvalidRequest(m) => refusal(StatusCode::BAD_REQUEST, e.code(), m),
        RegistrationError::OAuth(inner) => oauth_error(inner, false),
    }
}

/// An initial access token as the admin API and `authx registration-token list --json` show
/// it (never the token itself).
#[must_use]
pub fn initial_token_json(t: &InitialToken) -> Value {
    json!({
        "id": t.id,
        "created_at": super::rfc3339(t.created_at),
        "expires_at": super::rfc3339(t.expires_at),
        "uses_left": t.uses_left,
        "scopes": t.scopes,
        "resources": t.resources,
    })
}
