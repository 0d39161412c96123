//! The administration calls of the JSON API: users, the audit trail, clients and resources.
//! Each is one call of [`authx_core::admin::Administration`] as the signed-in administrator.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use authx_core::admin::ClientSpec;
use authx_core::audit::AuditQuery;
use authx_core::user::UserId;

use super::views::{audit_json, client_json, user_json};
use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::extract::{Admin, AdminView, JsonBody};
use crate::web::middleware::empty;

/// `{key: [view of each item]}`, the shape of every admin list.
fn listed<T>(key: &str, items: &[T], view: impl Fn(&T) -> Value) -> Json<Value> {
    let list = items.iter().map(view).collect();
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), Value::Array(list));
    Json(Value::Object(body))
}

/// `GET /api/v1/admin/audit` parameters.
#[derive(Deserialize)]
pub(super) struct AuditParams {
    /// A user id or email address.
    user: Option<String>,
    kind: Option<String>,
    /// Unix seconds.
    since: Option<i64>,
    /// Only events after this id, oldest first (for following).
    after: Option<i64>,
    limit: Option<u32>,
}

/// Most audit events one call returns.
const MAX_AUDIT_PAGE: u32 = 1_000;

pub(super) async fn admin_audit_get(
    State(state): State<AppState>,
    admin: AdminView,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "use user, kind, since (Unix seconds), after (an event id) and limit",
        )
    })?;
    let run = admin.run(&state);
    let user_id = match p.user {
        Some(u) => Some(run.user_filter(&u).await?),
        None => None,
    };
    let q = AuditQuery {
        user_id,
        kind: p.kind,
        since: p.since.map(authx_core::Timestamp),
        after_id: p.after,
        limit: p.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE),
    };
    Ok(listed("events", &run.audit(&q).await?, audit_json))
}

pub(super) async fn admin_users_get(
    State(state): State<AppState>,
    admin: AdminView,
) -> Result<Json<Value>, ApiError> {
    Ok(listed(
        "users",
        &admin.run(&state).users().await?,
        user_json,
    ))
}

pub(super) async fn admin_user_disable_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.run(&state).disable_user(&UserId(id)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_user_enable_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.run(&state).enable_user(&UserId(id)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_clients_post(
    State(state): State<AppState>,
    admin: Admin<JsonBody<ClientSpec>>,
) -> Result<Response, ApiError> {
    let run = admin.run(&state);
    let JsonBody(spec) = admin.body;
    let (client, secret) = run.register_client(spec).await?;
    let mut body = json!({"client": client_json(&client)});
    if let Some(s) = secret {
        body["client_secret"] = Value::String(s);
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn admin_clients_get(
    State(state): State<AppState>,
    admin: AdminView,
) -> Result<Json<Value>, ApiError> {
    Ok(listed(
        "clients",
        &admin.run(&state).clients().await?,
        client_json,
    ))
}

pub(super) async fn admin_client_delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.run(&state).delete_client(&id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
pub(super) struct ResourceSpec {
    id: String,
    #[serde(default)]
    scopes: Vec<String>,
}

pub(super) async fn admin_resources_post(
    State(state): State<AppState>,
    admin: Admin<JsonBody<ResourceSpec>>,
) -> Result<Response, ApiError> {
    let run = admin.run(&state);
    let JsonBody(spec) = admin.body;
    let r = run.register_resource(spec.id, spec.scopes).await?;
    Ok((StatusCode::CREATED, Json(json!({"resource": r}))).into_response())
}

pub(super) async fn admin_resources_get(
    State(state): State<AppState>,
    admin: AdminView,
) -> Result<Json<Value>, ApiError> {
    let list = admin.run(&state).resources().await?;
    Ok(Json(json!({"resources": list})))
}

/// `POST /api/v1/admin/email/test` body.
#[derive(Deserialize)]
pub(super) struct EmailTest {
    to: String,
}

/// Queues a test mail through the outbox and answers `202` at once: the mail leaves with the
/// sender task, as every mail does, so a slow or unreachable mail server never delays this.
pub(super) async fn admin_email_test_post(
    State(state): State<AppState>,
    admin: Admin<JsonBody<EmailTest>>,
) -> Result<Response, ApiError> {
    let JsonBody(EmailTest { to }) = admin.body;
    let id =
        authx_core::mail::Mailer::send(&*state.mail, &to, authx_core::mail::Message::Test).await?;
    state.auth.audit().record(
        authx_core::audit::AuditEvent::success("admin_action")
            .user(&admin.auth.user.id)
            .with("action", "email_test")
            .with("target", &id)
            .with("via", "api"),
    );
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response())
}

/// `POST /api/v1/admin/registration-tokens` body: what the initial access token allows.
#[derive(Deserialize)]
pub(super) struct RegistrationTokenSpec {
    /// Lifetime in seconds (default one day).
    ttl_secs: Option<i64>,
    /// How many clients it may register (default 1).
    uses: Option<i64>,
    /// Scopes its clients may have (default the OpenID Connect scopes).
    #[serde(default)]
    scopes: Vec<String>,
    /// APIs its clients may get tokens for (default none).
    #[serde(default)]
    resources: Vec<String>,
}

/// Issues an initial access token for dynamic client registration; the token is in this
/// answer only.
pub(super) async fn admin_registration_tokens_post(
    State(state): State<AppState>,
    admin: Admin<JsonBody<RegistrationTokenSpec>>,
) -> Result<Response, ApiError> {
    let JsonBody(spec) = admin.body;
    let request = authx_core::registration::InitialTokenRequest {
        ttl_secs: spec.ttl_secs,
        uses: spec.uses,
        scopes: spec.scopes,
        resources: spec.resources,
    };
    let actor = authx_core::admin::Actor::Administrator(admin.auth.user.id.clone());
    let (token, secret) = state
        .registration()
        .create_initial_token(request, &actor)
        .await?;
    let body = json!({
        "registration_token": crate::web::registration::initial_token_json(&token),
        "initial_access_token": secret,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn admin_registration_tokens_get(
    State(state): State<AppState>,
    _admin: AdminView,
) -> Result<Json<Value>, ApiError> {
    Ok(listed(
        "registration_tokens",
        &state.registration().initial_tokens().await?,
        crate::web::registration::initial_token_json,
    ))
}

pub(super) async fn admin_registration_token_delete(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = authx_core::admin::Actor::Administrator(admin.auth.user.id.clone());
    if !state
        .registration()
        .revoke_initial_token(&id, &actor)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such registration token",
        ));
    }
    Ok(empty(StatusCode::NO_CONTENT))
}
