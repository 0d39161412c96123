//! The administration calls of the JSON API: users, the audit trail, clients and resources.
//! Each is one call of [`authx_core::admin::Administration`] as the signed-in administrator.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use authx_core::admin::{ClientSpec, MAX_USERS_PAGE};
use authx_core::audit::AuditQuery;
use authx_core::session::SessionId;
use authx_core::user::UserId;

use super::views::{audit_json, client_json, grant_json, key_json, session_json, user_json};
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
    /// A client id.
    client: Option<String>,
    /// `success` or `failure`.
    outcome: Option<String>,
    /// Unix seconds.
    since: Option<i64>,
    /// Unix seconds (exclusive).
    until: Option<i64>,
    /// Only events before this id, newest first (paging back).
    before: Option<i64>,
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
            "use user, kind, client, outcome, since and until (Unix seconds), before or after \
             (an event id) and limit",
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
        client_id: p.client,
        outcome: p.outcome,
        until: p.until.map(authx_core::Timestamp),
        before_id: p.before,
        after_id: p.after,
        limit: p.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE),
    };
    Ok(listed("events", &run.audit(&q).await?, audit_json))
}

/// `GET /api/v1/admin/users` parameters: a search and a page.
#[derive(Deserialize)]
pub(super) struct UsersParams {
    /// Text the address contains.
    #[serde(default)]
    q: String,
    /// From 0.
    #[serde(default)]
    page: u64,
    per_page: Option<u32>,
}

pub(super) async fn admin_users_get(
    State(state): State<AppState>,
    admin: AdminView,
    params: Result<Query<UsersParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "use q (text the address contains), page (from 0) and per_page",
        )
    })?;
    let per_page = p.per_page.unwrap_or(MAX_USERS_PAGE);
    let page = admin
        .run(&state)
        .search_users(&p.q, p.page, per_page)
        .await?;
    let users: Vec<Value> = page.users.iter().map(user_json).collect();
    Ok(Json(
        json!({"users": users, "total": page.total, "page": p.page}),
    ))
}

/// `POST /api/v1/admin/users` body.
#[derive(Deserialize)]
pub(super) struct NewUser {
    email: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

pub(super) async fn admin_users_post(
    State(state): State<AppState>,
    admin: Admin<JsonBody<NewUser>>,
) -> Result<Response, ApiError> {
    let run = admin.run(&state);
    let JsonBody(u) = admin.body;
    let user = run.create_user(&u.email, &u.password, u.admin).await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user_json(&user)}))).into_response())
}

/// A user with their sessions and grants: the one inventory an administrator revokes from.
pub(super) async fn admin_user_get(
    State(state): State<AppState>,
    admin: AdminView,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = admin.run(&state);
    let id = UserId(id);
    let user = run.user(&id).await?;
    let sessions: Vec<Value> = run
        .user_sessions(&id)
        .await?
        .iter()
        .map(|s| session_json(s, false))
        .collect();
    let grants: Vec<Value> = run
        .user_grants(&id)
        .await?
        .iter()
        .map(|(f, c)| grant_json(f, c.as_ref()))
        .collect();
    Ok(Json(
        json!({"user": user_json(&user), "sessions": sessions, "grants": grants}),
    ))
}

/// `POST /api/v1/admin/users/{id}/admin` body.
#[derive(Deserialize)]
pub(super) struct AdminFlag {
    admin: bool,
}

pub(super) async fn admin_user_admin_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    admin: Admin<JsonBody<AdminFlag>>,
) -> Result<Response, ApiError> {
    let run = admin.run(&state);
    run.set_admin(&UserId(id), admin.body.0.admin).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_user_revoke_all_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ended = admin.run(&state).revoke_everything(&UserId(id)).await?;
    Ok(Json(json!({"sessions_ended": ended})))
}

pub(super) async fn admin_user_reset_link_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin.run(&state).send_reset_link(&UserId(id)).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(super) async fn admin_user_reset_factors_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let removed = admin.run(&state).reset_factors(&UserId(id)).await?;
    Ok(Json(json!({"factors_removed": removed})))
}

pub(super) async fn admin_user_session_delete(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin
        .run(&state)
        .revoke_session(&UserId(id), &SessionId(session))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_user_grant_delete(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, grant)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin.run(&state).revoke_grant(&UserId(id), &grant).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Replaces a client's registration; the id in the path wins over one in the body.
pub(super) async fn admin_client_put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    admin: Admin<JsonBody<ClientSpec>>,
) -> Result<Json<Value>, ApiError> {
    let run = admin.run(&state);
    let JsonBody(mut spec) = admin.body;
    spec.id = id;
    let client = run.update_client(spec).await?;
    Ok(Json(json!({"client": client_json(&client)})))
}

pub(super) async fn admin_client_get(
    State(state): State<AppState>,
    admin: AdminView,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = admin.run(&state).client(&id).await?;
    Ok(Json(json!({"client": client_json(&client)})))
}

/// A new secret for a confidential client, in this answer only.
pub(super) async fn admin_client_secret_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let secret = admin.run(&state).rotate_client_secret(&id).await?;
    Ok(Json(json!({"client_id": id, "client_secret": secret})))
}

pub(super) async fn admin_keys_get(
    State(state): State<AppState>,
    admin: AdminView,
) -> Result<Json<Value>, ApiError> {
    Ok(listed("keys", &admin.run(&state).keys().await?, key_json))
}

/// Publishes a new key of every algorithm (each signs after the publication lead time).
pub(super) async fn admin_keys_rotate_post(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Json<Value>, ApiError> {
    let published: Vec<Value> = admin
        .run(&state)
        .rotate_keys()
        .await?
        .iter()
        .map(|(alg, kid)| json!({"alg": alg.as_str(), "kid": kid}))
        .collect();
    Ok(Json(json!({"published": published})))
}

/// The configured upstream providers (never their secrets).
pub(super) async fn admin_federation_get(
    State(state): State<AppState>,
    _admin: AdminView,
) -> Json<Value> {
    let providers: Vec<Value> = state
        .upstreams
        .providers()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "display_name": p.display_name,
                "issuer": p.issuer,
                "client_id": p.client_id,
                "allow_sign_up": p.allow_sign_up,
            })
        })
        .collect();
    Json(json!({"providers": providers}))
}

/// Fetches a provider's discovery document now and says what came back (`502` when it fails).
pub(super) async fn admin_federation_test_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.auth.audit().record(
        authx_core::audit::AuditEvent::success("admin_action")
            .user(&admin.auth.user.id)
            .with("action", "test_discovery")
            .with("target", &name)
            .with("via", "api"),
    );
    match state
        .upstreams
        .test_discovery(&name, state.oauth.now())
        .await
    {
        Ok(m) => Ok(Json(json!({
            "issuer": m.issuer,
            "authorization_endpoint": m.authorization_endpoint,
            "token_endpoint": m.token_endpoint,
            "jwks_uri": m.jwks_uri,
        }))),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "discovery_failed",
            format!("{name}: discovery failed: {e}"),
        )),
    }
}

/// Fetches provider `name`'s discovery document now, audited as `actor`'s action.
///
/// # Errors
/// As [`crate::upstream::Upstreams::test_discovery`].
pub(crate) async fn test_discovery(
    state: &AppState,
    actor: &authx_core::admin::Actor,
    name: &str,
) -> Result<
    std::sync::Arc<authx_core::federation::upstream::Metadata>,
    authx_core::federation::upstream::UpstreamError,
> {
    state.auth.audit().record(
        actor
            .on(authx_core::audit::AuditEvent::success("admin_action"))
            .with("action", "test_discovery")
            .with("target", name)
            .with("via", actor.via()),
    );
    state
        .upstreams
        .test_discovery(name, state.oauth.now())
        .await
}

pub(super) async fn admin_overview_get(
    State(state): State<AppState>,
    admin: AdminView,
) -> Result<Json<Value>, ApiError> {
    let o = admin.run(&state).overview().await?;
    let keys: Vec<Value> = o.keys.iter().map(key_json).collect();
    Ok(Json(json!({
        "users": o.users,
        "live_sessions": o.live_sessions,
        "grants": o.grants,
        "clients": o.clients,
        "resources": o.resources,
        "sign_ins_24h": o.sign_ins_24h,
        "sign_in_failures_24h": o.sign_in_failures_24h,
        "failures_24h": o.failures_24h,
        "keys": keys,
    })))
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
    let actor = authx_core::admin::Actor::Administrator(admin.auth.user.id.clone());
    let id = queue_test_mail(&state, &actor, &to).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response())
}

/// Queues a test mail to `to` through the outbox (the path every mail takes), audited as
/// `actor`'s action; returns the mail's id.
///
/// # Errors
/// A refused address or an outbox that cannot take it.
pub(crate) async fn queue_test_mail(
    state: &AppState,
    actor: &authx_core::admin::Actor,
    to: &str,
) -> Result<String, authx_core::mail::MailError> {
    let id =
        authx_core::mail::Mailer::send(&*state.mail, to, authx_core::mail::Message::Test).await?;
    if let Some(admin) = actor.admin_id() {
        state.auth.audit().record(
            authx_core::audit::AuditEvent::success("admin_action")
                .user(admin)
                .with("action", "email_test")
                .with("target", &id)
                .with("via", actor.via()),
        );
    }
    Ok(id)
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
