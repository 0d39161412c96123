//! The JSON API under `/api/v1`: sign-up, sign-in, sign-out, CSRF token, me, sessions, password,
//! and user administration.
//!
//! # Security
//! Every state-changing call has passed the origin check. Calls authenticated by the session
//! cookie also need the synchronizer token in `X-CSRF-Token` (from `GET /api/v1/auth/csrf`).
//! Sign-in and sign-up take JSON only, which a cross-site form cannot send.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use authx_core::auth::{Authenticated, SignInOutcome, SignedIn};
use authx_core::secret::PreSessionToken;
use authx_core::session::{Session, SessionId};
use authx_core::user::{User, UserId};

use super::error::ApiError;
use super::error::oauth::api_error as oauth_api_error;
use super::extract::{CurrentSession, JsonBody};
use super::middleware::empty;
use super::rfc3339;
use crate::cookies::append_cookie;
use crate::state::AppState;

/// The `/api/v1` routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let r = Router::new()
        .route("/api/v1/auth/sign-up", post(sign_up_post))
        .route("/api/v1/auth/sign-in", post(sign_in_post))
        .route("/api/v1/auth/sign-out", post(sign_out_post))
        .route("/api/v1/auth/csrf", get(csrf_get))
        .route("/api/v1/me", get(me_get))
        .route("/api/v1/sessions", get(sessions_get))
        .route("/api/v1/sessions/revoke-others", post(revoke_others_post))
        .route("/api/v1/sessions/{id}", delete(session_delete))
        .route("/api/v1/password", post(password_post))
        .route("/api/v1/admin/users", get(admin_users_get))
        .route("/api/v1/admin/audit", get(admin_audit_get))
        .route(
            "/api/v1/admin/users/{id}/disable",
            post(admin_user_disable_post),
        )
        .route(
            "/api/v1/admin/users/{id}/enable",
            post(admin_user_enable_post),
        )
        .route(
            "/api/v1/admin/clients",
            get(admin_clients_get).post(admin_clients_post),
        )
        .route("/api/v1/admin/clients/{id}", delete(admin_client_delete))
        .route(
            "/api/v1/admin/resources",
            get(admin_resources_get).post(admin_resources_post),
        )
        .route("/api/v1/auth/token", post(session_token_post))
        .route("/api/v1/consents", get(consents_get))
        .route("/api/v1/consents/{client_id}", delete(consent_delete));
    if state.config.cors_allowed_origins.is_empty() {
        r
    } else {
        r.layer(cors(&state.config.cors_allowed_origins))
    }
}

/// CORS for configured origins only: exact list, credentials allowed, `Vary: Origin` always.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-csrf-token"),
        ])
        // A cross-origin page may read how long to back off after a 429 or 503.
        .expose_headers([header::RETRY_AFTER])
        .vary([header::ORIGIN])
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
    /// Non-browser clients may ask for the session token in the body, once.
    #[serde(default)]
    return_token: bool,
}

async fn sign_up_post(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let signed = state
        .auth
        .sign_up(&body.email, &body.password, &current.ctx)
        .await?;
    Ok(signed_in_response(
        &state,
        StatusCode::CREATED,
        signed,
        body.return_token,
    ))
}

async fn sign_in_post(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let result = state
        .auth
        .sign_in(
            &body.email,
            &body.password,
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state.metrics.sign_in(SignInOutcome::of(&result));
    Ok(signed_in_response(
        &state,
        StatusCode::OK,
        result?,
        body.return_token,
    ))
}

fn signed_in_response(
    state: &AppState,
    status: StatusCode,
    signed: SignedIn,
    return_token: bool,
) -> Response {
    let max_age = signed
        .session
        .absolute_expires_at
        .since(signed.session.created_at);
    let mut body = json!({
        "user": user_json(&signed.user),
        "session": session_json(&signed.session, true),
    });
    if return_token {
        body["session_token"] = Value::String(signed.token.expose().to_owned());
    }
    let mut res = (status, Json(body)).into_response();
    append_cookie(
        res.headers_mut(),
        &state.cookies.set_session(signed.token.expose(), max_age),
    );
    // The pre-session cookie and its CSRF token die with sign-in.
    append_cookie(res.headers_mut(), &state.cookies.clear_pre_session());
    res
}

/// Checks the `X-CSRF-Token` header against the session's token.
fn require_csrf(headers: &HeaderMap, current: &CurrentSession) -> Result<(), ApiError> {
    let expected = current.csrf_token().ok_or_else(ApiError::unauthenticated)?;
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if authx_core::csrf::matches(&expected, presented) {
        Ok(())
    } else {
        let mut event =
            authx_core::audit::AuditEvent::failure("csrf_rejected").with("reason", "bad token");
        if let Some(a) = &current.auth {
            event = event.user(&a.user.id);
        }
        authx_core::audit::record_current(event);
        Err(ApiError::csrf())
    }
}

fn signed_in(current: &CurrentSession) -> Result<&Authenticated, ApiError> {
    current
        .auth
        .as_deref()
        .ok_or_else(ApiError::unauthenticated)
}

async fn sign_out_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
) -> Result<Response, ApiError> {
    if current.auth.is_some() {
        require_csrf(&headers, &current)?;
    }
    if let Some(token) = &current.token {
        state.auth.sign_out(token).await?;
    }
    let mut res = empty(StatusCode::NO_CONTENT);
    append_cookie(res.headers_mut(), &state.cookies.clear_session());
    res.headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    Ok(res)
}

async fn csrf_get(State(state): State<AppState>, current: CurrentSession) -> Response {
    if let Some(token) = current.csrf_token() {
        return Json(json!({"csrf_token": token})).into_response();
    }
    // Not signed in: bind the token to a pre-session cookie, minted here if there is none.
    let (pre, fresh) = match current.pre {
        Some(p) => (p, false),
        None => (PreSessionToken::generate(), true),
    };
    let mut res =
        Json(json!({"csrf_token": authx_core::csrf::token_for_pre_session(&pre)})).into_response();
    if fresh {
        append_cookie(
            res.headers_mut(),
            &state.cookies.set_pre_session(pre.expose()),
        );
    }
    res
}

async fn me_get(current: CurrentSession) -> Result<Response, ApiError> {
    let auth = signed_in(&current)?;
    // Serialized straight from borrowed views: the most frequent authenticated call builds no
    // intermediate JSON tree.
    #[derive(Serialize)]
    struct Me<'a> {
        user: UserView<'a>,
        session: SessionView<'a>,
    }
    Ok(Json(Me {
        user: UserView::of(&auth.user),
        session: SessionView::of(&auth.session, true),
    })
    .into_response())
}

async fn sessions_get(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Json<Value>, ApiError> {
    let auth = signed_in(&current)?;
    let sessions = state.auth.sessions(&auth.user.id).await?;
    let mut list: Vec<Value> = sessions
        .iter()
        .map(|s| session_json(s, s.id == auth.session.id))
        .collect();
    // One inventory: the grants held by applications stand beside the browser sessions.
    let grants = state
        .oauth
        .user_grants(&auth.user.id)
        .await
        .map_err(oauth_api_error)?;
    list.extend(grants.iter().map(|(f, c)| grant_json(f, c.as_ref())));
    Ok(Json(json!({"sessions": list})))
}

/// The public view of an application's grant (a refresh-token family).
#[must_use]
pub fn grant_json(
    f: &authx_core::oauth::grant::RefreshFamily,
    client: Option<&authx_core::oauth::client::Client>,
) -> Value {
    json!({
        "id": f.id,
        "kind": "application",
        "client_id": f.client_id,
        "client_name": client.map(|c| c.name.clone()),
        "scope": f.scope,
        "created_at": rfc3339(f.created_at),
        "last_seen_at": Value::Null,
        "expires_at": rfc3339(f.expires_at),
        "ip": Value::Null,
        "user_agent": Value::Null,
        "current": false,
    })
}

async fn session_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = signed_in(&current)?;
    require_csrf(&headers, &current)?;
    match state
        .auth
        .revoke_session(&auth.user.id, &SessionId(id.clone()))
        .await
    {
        Ok(()) => Ok(empty(StatusCode::NO_CONTENT)),
        // Not a browser session: perhaps an application's grant of this user.
        Err(authx_core::auth::AuthError::NotFound) => {
            if state
                .oauth
                .revoke_user_grant(&auth.user.id, &id)
                .await
                .map_err(oauth_api_error)?
            {
                Ok(empty(StatusCode::NO_CONTENT))
            } else {
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "not found",
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn revoke_others_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
) -> Result<Json<Value>, ApiError> {
    let auth = signed_in(&current)?;
    require_csrf(&headers, &current)?;
    let n = state
        .auth
        .revoke_other_sessions(&auth.user.id, Some(&auth.session.id))
        .await?;
    Ok(Json(json!({"revoked": n})))
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

async fn password_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    let auth = signed_in(&current)?;
    require_csrf(&headers, &current)?;
    let signed = state
        .auth
        .change_password(
            auth,
            &body.current_password,
            &body.new_password,
            &current.ctx,
        )
        .await?;
    let csrf = authx_core::csrf::token_for_session(&signed.token);
    let max_age = signed
        .session
        .absolute_expires_at
        .since(signed.session.created_at);
    let mut res = Json(json!({
        "user": user_json(&signed.user),
        "session": session_json(&signed.session, true),
        "csrf_token": csrf,
    }))
    .into_response();
    append_cookie(
        res.headers_mut(),
        &state.cookies.set_session(signed.token.expose(), max_age),
    );
    Ok(res)
}

fn require_admin(current: &CurrentSession) -> Result<&Authenticated, ApiError> {
    let auth = signed_in(current)?;
    if auth.user.is_admin {
        Ok(auth)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "administrators only",
        ))
    }
}

/// Records an administrator's action (the subject is the administrator; `target` what it
/// acted on), before the action runs.
fn admin_action(state: &AppState, admin: &Authenticated, action: &str, target: &str) {
    state.auth.audit().record(
        authx_core::audit::AuditEvent::success("admin_action")
            .user(&admin.user.id)
            .with("action", action)
            .with("target", target)
            .with("via", "api"),
    );
}

/// `GET /api/v1/admin/audit` parameters.
#[derive(Deserialize)]
struct AuditParams {
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

async fn admin_audit_get(
    State(state): State<AppState>,
    current: CurrentSession,
    params: Result<axum::extract::Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&current)?;
    let axum::extract::Query(p) = params.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "use user, kind, since (Unix seconds), after (an event id) and limit",
        )
    })?;
    let user_id = match p.user {
        Some(u) => Some(resolve_user(&state, &u).await?),
        None => None,
    };
    let q = authx_core::audit::AuditQuery {
        user_id,
        kind: p.kind,
        since: p.since.map(authx_core::Timestamp),
        after_id: p.after,
        limit: p.limit.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE),
    };
    let events = state
        .audit_store
        .list_audit(&q)
        .await
        .map_err(authx_core::auth::AuthError::from)?;
    Ok(Json(
        json!({"events": events.iter().map(audit_json).collect::<Vec<_>>()}),
    ))
}

/// A user id, or the id of the user with that email address (unknown addresses match nothing).
async fn resolve_user(state: &AppState, user: &str) -> Result<String, ApiError> {
    if !user.contains('@') {
        return Ok(user.to_owned());
    }
    let Ok(email) = authx_core::user::canonical_email(user) else {
        return Ok(String::new());
    };
    let found = state
        .auth
        .stores()
        .accounts
        .user_by_email(&email)
        .await
        .map_err(authx_core::auth::AuthError::from)?;
    Ok(found.map(|u| u.id.0).unwrap_or_default())
}

/// The public view of an audit event.
#[must_use]
pub fn audit_json(e: &authx_core::audit::AuditRecord) -> Value {
    json!({
        "id": e.id,
        "at": rfc3339(e.at),
        "kind": e.kind,
        "outcome": e.outcome,
        "request_id": e.request_id,
        "client_id": e.client_id,
        "user_id": e.user_id,
        "ip": e.ip,
        "user_agent": e.user_agent,
        "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
    })
}

async fn admin_users_get(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Json<Value>, ApiError> {
    require_admin(&current)?;
    let users = state
        .auth
        .stores()
        .accounts
        .list_users()
        .await
        .map_err(authx_core::auth::AuthError::from)?;
    Ok(Json(
        json!({"users": users.iter().map(user_json).collect::<Vec<_>>()}),
    ))
}

async fn admin_user_disable_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = require_admin(&current)?;
    require_csrf(&headers, &current)?;
    admin_action(&state, admin, "disable_user", &id);
    state.auth.disable_user(&UserId(id)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn admin_user_enable_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = require_admin(&current)?;
    require_csrf(&headers, &current)?;
    admin_action(&state, admin, "enable_user", &id);
    state.auth.enable_user(&UserId(id)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The public view of a user.
#[must_use]
pub fn user_json(u: &User) -> Value {
    serde_json::to_value(UserView::of(u)).unwrap_or_default()
}

/// The public view of a user, as serialized.
#[derive(Serialize)]
struct UserView<'a> {
    id: &'a authx_core::user::UserId,
    email: &'a str,
    status: authx_core::user::UserStatus,
    is_admin: bool,
    created_at: String,
}

impl<'a> UserView<'a> {
    fn of(u: &'a User) -> Self {
        Self {
            id: &u.id,
            email: &u.email,
            status: u.status,
            is_admin: u.is_admin,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// The public view of a session, as serialized.
#[derive(Serialize)]
struct SessionView<'a> {
    id: &'a authx_core::session::SessionId,
    kind: &'static str,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    auth_method: &'a str,
    current: bool,
}

impl<'a> SessionView<'a> {
    fn of(s: &'a Session, current: bool) -> Self {
        Self {
            id: &s.id,
            kind: "browser",
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.idle_expires_at.min(s.absolute_expires_at)),
            ip: s.ip.as_deref(),
            user_agent: s.user_agent.as_deref(),
            auth_method: &s.auth_method,
            current,
        }
    }
}

/// The public view of a session.
#[must_use]
pub fn session_json(s: &Session, current: bool) -> Value {
    serde_json::to_value(SessionView::of(s, current)).unwrap_or_default()
}

/// A client registration, as the admin API and the CLI take it.
#[derive(Deserialize)]
pub struct ClientSpec {
    /// `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Allowed grants (`authorization_code`, `refresh_token`, `client_credentials`).
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The APIs (resource ids) the client may get access tokens for; each must be registered.
    #[serde(default)]
    pub resources: Vec<String>,
    /// A public client (no secret, PKCE only).
    #[serde(default)]
    pub public: bool,
    /// Skips the consent page.
    #[serde(default)]
    pub first_party: bool,
    /// Post-logout redirect URIs.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// OIDC back-channel logout URI.
    pub backchannel_logout_uri: Option<String>,
    /// ID token algorithm (`RS256` default, `ES256`, `EdDSA`).
    pub id_token_alg: Option<String>,
    /// Access token lifetime in seconds (default 900, at most 3600).
    pub access_token_ttl_secs: Option<i64>,
    /// Refresh family lifetime in seconds (default 30 days).
    pub refresh_token_ttl_secs: Option<i64>,
    /// Refresh inactivity expiry in seconds (default 7 days).
    pub refresh_idle_secs: Option<i64>,
}

impl ClientSpec {
    /// The client this registration describes (secret and time set at registration).
    ///
    /// # Errors
    /// A readable message for an unknown grant or algorithm or a bad lifetime.
    pub fn into_client(self) -> Result<(authx_core::oauth::client::Client, bool), String> {
        use authx_core::oauth::client::GrantType;
        use authx_core::oauth::keys::SigningAlg;
        let grant_types = if self.grant_types.is_empty() {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        } else {
            self.grant_types
                .iter()
                .map(|g| GrantType::parse(g).ok_or_else(|| format!("unknown grant type {g:?}")))
                .collect::<Result<Vec<_>, _>>()?
        };
        let id_token_alg = match self.id_token_alg.as_deref() {
            None => SigningAlg::Rs256,
            Some(a) => SigningAlg::parse(a).ok_or_else(|| format!("unknown algorithm {a:?}"))?,
        };
        let access = self.access_token_ttl_secs.unwrap_or(900);
        if !(60..=3600).contains(&access) {
            return Err("access_token_ttl_secs must be between 60 and 3600".into());
        }
        let refresh = self.refresh_token_ttl_secs.unwrap_or(30 * 86_400);
        let idle = self.refresh_idle_secs.unwrap_or(7 * 86_400);
        if refresh < 60 || idle < 60 {
            return Err("refresh lifetimes must be at least 60 seconds".into());
        }
        let client = authx_core::oauth::client::Client {
            id: self.id,
            name: self.name,
            secret_hash: None,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            backchannel_logout_uri: self.backchannel_logout_uri,
            grant_types,
            scopes: self.scopes,
            resources: self.resources,
            first_party: self.first_party,
            id_token_alg,
            access_token_ttl_secs: access,
            refresh_token_ttl_secs: refresh,
            refresh_idle_secs: idle.min(refresh),
            created_at: authx_core::Timestamp(0),
        };
        Ok((client, !self.public))
    }
}

/// The public view of a client (never its secret hash).
#[must_use]
pub fn client_json(c: &authx_core::oauth::client::Client) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "public": !c.is_confidential(),
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": c.scopes,
        "resources": c.resources,
        "first_party": c.first_party,
        "id_token_alg": c.id_token_alg.as_str(),
        "access_token_ttl_secs": c.access_token_ttl_secs,
        "refresh_token_ttl_secs": c.refresh_token_ttl_secs,
        "refresh_idle_secs": c.refresh_idle_secs,
        "created_at": rfc3339(c.created_at),
    })
}

async fn admin_clients_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    JsonBody(spec): JsonBody<ClientSpec>,
) -> Result<Response, ApiError> {
    let admin = require_admin(&current)?;
    require_csrf(&headers, &current)?;
    admin_action(&state, admin, "register_client", &spec.id);
    let (client, confidential) = spec
        .into_client()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m))?;
    let (client, secret) = state
        .oauth
        .register_client(client, confidential)
        .await
        .map_err(oauth_api_error)?;
    let mut body = json!({"client": client_json(&client)});
    if let Some(s) = secret {
        body["client_secret"] = Value::String(s);
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn admin_clients_get(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Json<Value>, ApiError> {
    require_admin(&current)?;
    let clients = state
        .oauth
        .stores()
        .clients
        .list_clients()
        .await
        .map_err(|e| oauth_api_error(e.into()))?;
    Ok(Json(
        json!({"clients": clients.iter().map(client_json).collect::<Vec<_>>()}),
    ))
}

async fn admin_client_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = require_admin(&current)?;
    require_csrf(&headers, &current)?;
    admin_action(&state, admin, "delete_client", &id);
    if state
        .oauth
        .delete_client(&id)
        .await
        .map_err(oauth_api_error)?
    {
        state.auth.audit().record(
            authx_core::audit::AuditEvent::success("client_deleted")
                .client(&id)
                .user(&admin.user.id),
        );
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such client",
        ))
    }
}

#[derive(Deserialize)]
struct ResourceSpec {
    id: String,
    #[serde(default)]
    scopes: Vec<String>,
}

async fn admin_resources_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    JsonBody(spec): JsonBody<ResourceSpec>,
) -> Result<Response, ApiError> {
    let admin = require_admin(&current)?;
    require_csrf(&headers, &current)?;
    admin_action(&state, admin, "register_resource", &spec.id);
    let r = register_resource(&state, spec.id, spec.scopes).await?;
    Ok((StatusCode::CREATED, Json(json!({"resource": r}))).into_response())
}

/// Registers an API resource after checking its identifier and scopes.
///
/// # Errors
/// 400 for a bad identifier or scope, 409 for a taken one.
pub async fn register_resource(
    state: &AppState,
    id: String,
    scopes: Vec<String>,
) -> Result<authx_core::oauth::client::Resource, ApiError> {
    let absolute = id.contains(':')
        && id.len() <= 255
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if !absolute {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a resource id is an absolute URI or URN",
        ));
    }
    if authx_core::oauth::scope::Scopes::parse(&scopes.join(" ")).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "malformed scope",
        ));
    }
    let r = authx_core::oauth::client::Resource {
        id,
        scopes,
        created_at: state.auth.clock().now(),
    };
    state
        .oauth
        .stores()
        .clients
        .put_resource(&r)
        .await
        .map_err(|e| oauth_api_error(e.into()))?;
    state.auth.audit().record(
        authx_core::audit::AuditEvent::success("resource_registered")
            .with("resource", &r.id)
            .with("scope", r.scopes.join(" ")),
    );
    Ok(r)
}

async fn admin_resources_get(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Json<Value>, ApiError> {
    require_admin(&current)?;
    let list = state
        .oauth
        .stores()
        .clients
        .list_resources()
        .await
        .map_err(|e| oauth_api_error(e.into()))?;
    Ok(Json(json!({"resources": list})))
}

#[derive(Deserialize)]
struct SessionTokenRequest {
    resource: String,
    scope: Option<String>,
}

/// The first-party hybrid: a signed-in browser session mints a short-lived access token for one
/// of the registered APIs. The token dies with the session.
async fn session_token_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    JsonBody(req): JsonBody<SessionTokenRequest>,
) -> Result<Response, ApiError> {
    let auth = signed_in(&current)?;
    require_csrf(&headers, &current)?;
    let tokens = state
        .oauth
        .session_token(
            &auth.user,
            &auth.session.id,
            &req.resource,
            req.scope.as_deref(),
            state.config.oauth.session_token_ttl_secs,
        )
        .await
        .map_err(oauth_api_error)?;
    Ok(Json(tokens.to_json()).into_response())
}

async fn consents_get(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Json<Value>, ApiError> {
    let auth = signed_in(&current)?;
    let list = state
        .oauth
        .stores()
        .grants
        .list_consents(&auth.user.id)
        .await
        .map_err(|e| oauth_api_error(e.into()))?;
    let items: Vec<Value> = list
        .iter()
        .map(|c| json!({"client_id": c.client_id, "resource": c.resource, "scope": c.scope, "granted_at": rfc3339(c.granted_at)}))
        .collect();
    Ok(Json(json!({"consents": items})))
}

async fn consent_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = signed_in(&current)?;
    require_csrf(&headers, &current)?;
    let grants = &state.oauth.stores().grants;
    if grants
        .delete_consent(&auth.user.id, &client_id)
        .await
        .map_err(|e| oauth_api_error(e.into()))?
    {
        state.auth.audit().record(
            authx_core::audit::AuditEvent::success("consent_revoked")
                .user(&auth.user.id)
                .client(&client_id),
        );
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no consent for that client",
        ))
    }
}
