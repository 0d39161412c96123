//! The public JSON views of users, sessions, grants, clients and audit events, shared by the
//! API and the `authx` command line's `--json` output.

use serde::Serialize;
use serde_json::{Value, json};

use authx_core::session::Session;
use authx_core::user::User;

use crate::web::rfc3339;

/// The public view of a user.
#[must_use]
pub fn user_json(u: &User) -> Value {
    serde_json::to_value(UserView::of(u)).unwrap_or_default()
}

/// The public view of a user, as serialized.
#[derive(Serialize)]
pub(crate) struct UserView<'a> {
    id: &'a authx_core::user::UserId,
    email: &'a str,
    status: authx_core::user::UserStatus,
    is_admin: bool,
    email_verified: bool,
    created_at: String,
}

impl<'a> UserView<'a> {
    pub(crate) fn of(u: &'a User) -> Self {
        Self {
            id: &u.id,
            email: &u.email,
            status: u.status,
            is_admin: u.is_admin,
            email_verified: u.email_verified,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// The public view of a session, as serialized.
#[derive(Serialize)]
pub(crate) struct SessionView<'a> {
    id: &'a authx_core::session::SessionId,
    kind: &'static str,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    auth_method: &'a str,
    /// RFC 8176 values of how the session signed in, `mfa` after a second factor.
    amr: Vec<String>,
    /// The authentication context class the sign-in earned.
    acr: &'static str,
    /// When the user authenticated (the session's start; a step-up starts a new session).
    auth_time: String,
    current: bool,
}

impl<'a> SessionView<'a> {
    pub(crate) fn of(s: &'a Session, current: bool) -> Self {
        Self {
            id: &s.id,
            kind: "browser",
            created_at: rfc3339(s.created_at),
            last_seen_at: rfc3339(s.last_seen_at),
            expires_at: rfc3339(s.idle_expires_at.min(s.absolute_expires_at)),
            ip: s.ip.as_deref(),
            user_agent: s.user_agent.as_deref(),
            auth_method: &s.auth_method,
            amr: authx_core::amr::amr_of(&s.auth_method),
            acr: authx_core::amr::acr_of(&s.auth_method),
            auth_time: rfc3339(s.created_at),
            current,
        }
    }
}

/// The public view of a session.
#[must_use]
pub fn session_json(s: &Session, current: bool) -> Value {
    serde_json::to_value(SessionView::of(s, current)).unwrap_or_default()
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

/// The public view of a signing key (never its private part).
#[must_use]
pub fn key_json(k: &authx_core::oauth::keys::StoredKey) -> Value {
    json!({
        "kid": k.kid,
        "alg": k.alg.as_str(),
        "state": k.state.as_str(),
        "created_at": rfc3339(k.created_at),
        "activated_at": k.activated_at.map(rfc3339),
        "remove_after": k.remove_after.map(rfc3339),
    })
}

/// The public view of a client (never its secret hash).
#[must_use]
pub fn client_json(c: &authx_core::oauth::client::Client) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "public": !c.is_confidential(),
        "token_endpoint_auth_method": c.token_endpoint_auth_method.as_str(),
        "jwks": c.jwks.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
        "jwks_uri": c.jwks_uri,
        "dpop_bound_access_tokens": c.dpop_bound_access_tokens,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": c.scopes,
        "resources": c.resources,
        "first_party": c.first_party,
        "require_pushed_authorization_requests": c.require_pushed_authorization_requests,
        "require_acr": c.require_acr,
        "id_token_alg": c.id_token_alg.as_str(),
        "access_token_ttl_secs": c.access_token_ttl_secs,
        "refresh_token_ttl_secs": c.refresh_token_ttl_secs,
        "refresh_idle_secs": c.refresh_idle_secs,
        "created_at": rfc3339(c.created_at),
    })
}

/// A registered client, with its secret the one time there is one to show.
#[must_use]
pub fn registered_client_json(
    c: &authx_core::oauth::client::Client,
    secret: Option<&str>,
) -> Value {
    let mut v = client_json(c);
    if let Some(s) = secret {
        v["client_secret"] = Value::String(s.to_owned());
    }
    v
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

/// A remembered consent.
#[must_use]
pub fn consent_json(c: &authx_core::oauth::grant::Consent) -> Value {
    json!({"client_id": c.client_id, "resource": c.resource, "scope": c.scope, "granted_at": rfc3339(c.granted_at)})
}
