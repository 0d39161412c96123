//! The OpenID Provider endpoints: discovery, JWKS, authorize and consent, token, introspection,
//! revocation, userinfo and RP-initiated logout.
//!
//! # Security
//! - Until the client and redirect URI are validated, errors are pages, never redirects.
//! - Parameters may not repeat; empty values count as absent; credentials never come from the
//!   query string; a client uses exactly one authentication method.
//! - Every token response carries `Cache-Control: no-store`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;

use authx_core::oauth::OAuthError;
use authx_core::oauth::authorize::{AuthorizeError, AuthorizeParams, AuthorizeRequest};
use authx_core::oauth::types::ClientAuth;
use authx_core::{StoreError, csrf};

use super::extract::{CurrentSession, SourceAddr};
use crate::html::oauth::{Consent, EndSession};
use crate::html::{Message, Paragraph, Scope, render};
use crate::state::AppState;

/// The routes a browser uses (behind the origin check).
pub fn browser_router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/authorize", get(authorize_get))
        .route("/consent", post(consent_post))
        .route("/oauth2/logout", get(logout_get).post(logout_post))
}

/// The routes clients and APIs call (client authentication or bearer tokens, no cookies).
pub fn machine_router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_get))
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery_get),
        )
        .route("/oauth2/jwks", get(jwks_get))
        .route("/oauth2/token", post(token_post))
        .route("/oauth2/introspect", post(introspect_post))
        .route("/oauth2/revoke", post(revoke_post))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
}

async fn discovery_get(State(state): State<AppState>) -> Response {
    cacheable(Json(state.oauth.discovery()).into_response())
}

async fn jwks_get(State(state): State<AppState>) -> Response {
    cacheable(Json(state.oauth.jwks()).into_response())
}

/// Public metadata may be cached briefly: a new key is published an hour before it signs.
fn cacheable(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// Form or query pairs with repeats reported (RFC 6749 §3.1): empty values count as absent.
///
/// Public so that the fuzz targets (`fuzz/`) can drive the decoder with hostile input.
#[derive(Debug)]
pub struct Params {
    map: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` pairs (a body or a query string). A name
    /// that appears twice with a non-empty value is reported by [`Params::repeated`].
    #[must_use]
    pub fn parse(raw: &[u8]) -> Self {
        let mut map = HashMap::new();
        let mut repeated = Vec::new();
        for (k, v) in form_urlencoded::parse(raw) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                repeated.push(k.to_string());
            }
        }
        Self { map, repeated }
    }

    /// The non-empty value of `k` (the last one when it was repeated).
    #[must_use]
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    /// Names that appeared more than once with a non-empty value, in order of their repeat.
    #[must_use]
    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }

    fn owned(&self, k: &str) -> Option<String> {
        self.map.get(k).cloned()
    }

    fn too_long(&self) -> Option<&str> {
        self.map
            .iter()
            .find(|(k, v)| k.len() > 64 || v.len() > 4096)
            .map(|(k, _)| k.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Token, introspection and revocation.

/// An RFC 6749 §5.2 error response.
pub(super) fn oauth_error(e: &OAuthError, basic_used: bool) -> Response {
    let (status, code) = match e {
        OAuthError::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
        OAuthError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "invalid_client"),
        OAuthError::Store(StoreError::Unavailable(cause)) => {
            tracing::warn!(error = %cause, "store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        OAuthError::Store(_) | OAuthError::Internal(_) => {
            tracing::error!(error = %e, "token endpoint failure");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
        other => (StatusCode::BAD_REQUEST, other.code()),
    };
    let description = if status.is_server_error() {
        "the server could not complete the request".to_owned()
    } else {
        e.to_string()
    };
    let mut res = (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    let h = res.headers_mut();
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::UNAUTHORIZED && basic_used {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"authx\""),
        );
    }
    if let OAuthError::Throttled { retry_after_secs } = e {
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

fn invalid_request(msg: &str) -> Response {
    oauth_error(&OAuthError::InvalidRequest(msg.to_owned()), false)
}

/// Reads a form-encoded endpoint request and the client's credentials: the content type, no
/// repeated or oversized parameter, no credentials in the query string, and exactly one client
/// authentication method (`client_secret_basic` or the body). The `bool` tells whether Basic was
/// used. Public so that the fuzz targets (`fuzz/`) can drive it.
///
/// # Errors
/// The finished `400` or `401` response (RFC 6749 §5.2).
#[allow(clippy::result_large_err)] // The error is the finished response.
pub fn read_form(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<(Params, ClientAuth, bool), Response> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        // RFC 6749 §5.2: a malformed request is `400 invalid_request`, whatever is wrong with it.
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let p = Params::parse(body);
    if let Some(k) = p.repeated.first() {
        return Err(invalid_request(&format!("parameter {k} is repeated")));
    }
    if let Some(k) = p.too_long() {
        return Err(invalid_request(&format!("parameter {k} is too long")));
    }
    if query.is_some_and(|q| {
        Params::parse(q.as_bytes())
            .map
            .keys()
            .any(|k| k == "client_secret" || k == "client_assertion")
    }) {
        return Err(invalid_request(
            "client credentials are not accepted in the query string",
        ));
    }
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            Some(parse_basic(v).ok_or_else(|| oauth_error(&OAuthError::InvalidClient, true))?)
        }
        None => None,
    };
    let auth = match (basic, p.owned("client_id"), p.owned("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(invalid_request(
                "use exactly one client authentication method",
            ));
        }
        (Some((id, _)), Some(body_id), None) if body_id != id => {
            return Err(invalid_request(
                "client_id differs from the Basic credentials",
            ));
        }
        (Some((id, secret)), _, None) => (ClientAuth::Secret { id, secret }, true),
        (None, Some(id), Some(secret)) => (ClientAuth::Secret { id, secret }, false),
        (None, Some(id), None) => (ClientAuth::Public { id }, false),
        (None, None, _) => return Err(oauth_error(&OAuthError::InvalidClient, false)),
    };
    Ok((p, auth.0, auth.1))
}

/// `client_secret_basic`: base64 of the form-encoded id and secret joined by `:` (RFC 6749 §2.3.1).
pub(super) fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let s = v.to_str().ok()?;
    let (scheme, b64) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let pairs = format!("v={s}");
        form_urlencoded::parse(pairs.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

async fn token_post(
    State(state): State<AppState>,
    source: SourceAddr,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (p, auth, basic) = match read_form(&headers, q.as_deref(), &body) {
        Ok(v) => v,
        Err(res) => return res,
    };
    let client = match state
        .oauth
        .authenticate_client(&auth, source.as_deref())
        .await
    {
        Ok(c) => c,
        Err(e) => return oauth_error(&e, basic),
    };
    // First-party public clients (single-page apps) may keep the refresh token in an HttpOnly,
    // SameSite=Strict cookie scoped to this endpoint instead of in script-readable storage.
    let cookie_client = client.first_party && !client.is_confidential();
    let wants_cookie = p.get("refresh_token_delivery") == Some("cookie");
    if wants_cookie && !cookie_client {
        return invalid_request(
            "only first-party public clients may receive the refresh token as a cookie",
        );
    }
    let cookie_token = cookie_client
        .then(|| {
            crate::cookies::cookie_value(&headers, refresh_cookie_name(&state)).map(str::to_owned)
        })
        .flatten();
    let deliver_cookie =
        wants_cookie || (p.get("refresh_token").is_none() && cookie_token.is_some());
    let result = match p.get("grant_type") {
        Some("authorization_code") => match p.get("code") {
            Some(code) => {
                state
                    .oauth
                    .exchange_code(&client, code, p.get("redirect_uri"), p.get("code_verifier"))
                    .await
            }
            None => Err(OAuthError::InvalidRequest("code is required".into())),
        },
        Some("refresh_token") => match p.get("refresh_token").or(cookie_token.as_deref()) {
            Some(rt) => state.oauth.refresh(&client, rt, p.get("scope")).await,
            None => Err(OAuthError::InvalidRequest(
                "refresh_token is required".into(),
            )),
        },
        Some("client_credentials") => {
            state
                .oauth
                .client_credentials(&client, p.get("scope"), p.get("resource"))
                .await
        }
        Some(super::device::GRANT_TYPE) => super::device::token(&state, &client, &p).await,
        Some(_) => Err(OAuthError::UnsupportedGrantType),
        None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
    };
    match result {
        Ok(mut tokens) => {
            let cookie = if deliver_cookie {
                tokens
                    .refresh_token
                    .take()
                    .map(|rt| refresh_cookie(&state, &rt, client.refresh_token_ttl_secs))
            } else {
                None
            };
            let mut res = Json(tokens.to_json()).into_response();
            res.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            if let Some(c) = cookie {
                crate::cookies::append_cookie(res.headers_mut(), &c);
            }
            res
        }
        Err(e) => oauth_error(&e, basic),
    }
}

fn refresh_cookie_name(state: &AppState) -> &'static str {
    if state.config.cookie_secure {
        "__Secure-authx_refresh"
    } else {
        "authx_refresh"
    }
}

/// The refresh-token cookie: sent back only to the token endpoint, never to scripts, never
/// cross-site.
fn refresh_cookie(state: &AppState, token: &str, max_age: i64) -> String {
    let secure = if state.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={token}; Path=/oauth2/token; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        refresh_cookie_name(state)
    )
}

async fn introspect_post(
    State(state): State<AppState>,
    source: SourceAddr,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (p, auth, basic) = match read_form(&headers, q.as_deref(), &body) {
        Ok(v) => v,
        Err(res) => return res,
    };
    // RFC 7662 §2.1: the caller must authenticate; a public client cannot.
    if matches!(auth, ClientAuth::Public { .. }) {
        return oauth_error(&OAuthError::InvalidClient, basic);
    }
    let client = match state
        .oauth
        .authenticate_client(&auth, source.as_deref())
        .await
    {
        Ok(c) => c,
        Err(e) => return oauth_error(&e, basic),
    };
    let Some(token) = p.get("token") else {
        return invalid_request("token is required");
    };
    match state.oauth.introspect(&client, token).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => oauth_error(&e, basic),
    }
}

async fn revoke_post(
    State(state): State<AppState>,
    source: SourceAddr,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let (p, auth, basic) = match read_form(&headers, q.as_deref(), &body) {
        Ok(v) => v,
        Err(res) => return res,
    };
    let client = match state
        .oauth
        .authenticate_client(&auth, source.as_deref())
        .await
    {
        Ok(c) => c,
        Err(e) => return oauth_error(&e, basic),
    };
    let Some(token) = p.get("token") else {
        return invalid_request("token is required");
    };
    match state
        .oauth
        .revoke(&client, token, p.get("token_type_hint"))
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(&e, basic),
    }
}

async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = token else {
        return bearer_error(StatusCode::UNAUTHORIZED, None);
    };
    match state.oauth.userinfo(&token).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => bearer_error(StatusCode::UNAUTHORIZED, Some("invalid_token")),
        Err(e) => oauth_error(&e, false),
    }
}

/// RFC 6750 §3 challenge.
fn bearer_error(status: StatusCode, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"authx\", error=\"{e}\""),
        None => "Bearer realm=\"authx\"".to_owned(),
    };
    let mut res = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Authorization and consent.

fn authorize_params(p: &Params) -> AuthorizeParams {
    AuthorizeParams {
        client_id: p.owned("client_id"),
        redirect_uri: p.owned("redirect_uri"),
        response_type: p.owned("response_type"),
        scope: p.owned("scope"),
        state: p.owned("state"),
        nonce: p.owned("nonce"),
        code_challenge: p.owned("code_challenge"),
        code_challenge_method: p.owned("code_challenge_method"),
        prompt: p.owned("prompt"),
        max_age: p.owned("max_age"),
        resource: p.owned("resource"),
        response_mode: p.owned("response_mode"),
        has_request_object: p.get("request").is_some() || p.get("request_uri").is_some(),
    }
}

fn error_page(status: StatusCode, title: &str, msg: &str) -> Response {
    Message::error(title, msg).response(status)
}

/// The page after a sign-out that has nowhere to return to.
fn signed_out() -> Response {
    Message::new("Signed out", "You are signed out", Paragraph::None).response(StatusCode::OK)
}

/// `redirect_uri` with response parameters appended (RFC 6749 §4.1.2) and `iss` (RFC 9207).
fn client_redirect(
    state: &AppState,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    status: StatusCode,
) -> Response {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    ser.append_pair("iss", &state.config.issuer);
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let target = format!("{redirect_uri}{sep}{}", ser.finish());
    // 302 after GET, 303 after POST: nothing is ever re-posted to the client.
    match HeaderValue::from_str(&target) {
        Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request cannot be completed",
            "The redirect address cannot be used.",
        ),
    }
}

fn authorize_failure(state: &AppState, e: AuthorizeError, status: StatusCode) -> Response {
    match e {
        AuthorizeError::Page(msg) => {
            // An unknown client or a redirect URI that is not registered: never redirected.
            state.auth.audit().record(
                authx_core::audit::AuditEvent::failure("redirect_rejected").with("reason", &msg),
            );
            error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in request cannot be completed",
                &msg,
            )
        }
        AuthorizeError::Redirect {
            error,
            description,
            redirect_uri,
            state: st,
        } => {
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = st.as_deref() {
                pairs.push(("state", s));
            }
            client_redirect(state, &redirect_uri, &pairs, status)
        }
        AuthorizeError::Store(e) => {
            tracing::warn!(error = %e, "authorize: store failure");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again in a moment.",
            )
        }
    }
}

fn redirect_error(
    state: &AppState,
    req: &AuthorizeRequest,
    error: &str,
    status: StatusCode,
) -> Response {
    let mut pairs = vec![("error", error)];
    if let Some(s) = req.state.as_deref() {
        pairs.push(("state", s));
    }
    client_redirect(state, &req.redirect_uri, &pairs, status)
}

async fn authorize_get(
    State(state): State<AppState>,
    current: CurrentSession,
    RawQuery(q): RawQuery,
) -> Response {
    let raw = q.unwrap_or_default();
    let p = Params::parse(raw.as_bytes());
    if p.repeated
        .iter()
        .any(|k| k == "client_id" || k == "redirect_uri")
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request cannot be completed",
            "A parameter is repeated.",
        );
    }
    let req = match state.oauth.validate_authorize(&authorize_params(&p)).await {
        Ok(r) => r,
        Err(e) => return authorize_failure(&state, e, StatusCode::FOUND),
    };
    if let Some(k) = p.repeated.first() {
        let e = AuthorizeError::Redirect {
            error: "invalid_request",
            description: format!("parameter {k} is repeated"),
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
        };
        return authorize_failure(&state, e, StatusCode::FOUND);
    }
    let now = state.auth.clock().now();
    let login_after: Option<i64> = p.get("login_after").and_then(|v| v.parse().ok());
    let needs_login = match &current.auth {
        None => true,
        Some(a) => {
            let auth_time = a.session.created_at;
            let too_old = req.max_age.is_some_and(|m| now.since(auth_time) > m);
            let forced = req.prompt.login && login_after.is_none_or(|t| auth_time.secs() < t);
            let stale = login_after.is_some_and(|t| auth_time.secs() < t);
            too_old || forced || stale
        }
    };
    if needs_login {
        if req.prompt.none {
            return redirect_error(&state, &req, "login_required", StatusCode::FOUND);
        }
        // Come back here after sign-in; a forced re-authentication must be newer than now.
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if k != "login_after" {
                ser.append_pair(&k, &v);
            }
        }
        if req.prompt.login || req.max_age.is_some() {
            ser.append_pair("login_after", &now.secs().to_string());
        }
        let back = format!("/oauth2/authorize?{}", ser.finish());
        let target = format!("/login?return_to={}", urlencode(&back));
        return Redirect::to(&target).into_response();
    }
    let Some(auth) = &current.auth else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Sign in and try again.",
        );
    };
    let consented = match state.oauth.has_consent(&auth.user.id, &req).await {
        Ok(c) => c && !req.prompt.consent,
        Err(e) => return oauth_page_error(&e),
    };
    if consented {
        return issue_and_redirect(&state, &req, auth, StatusCode::FOUND).await;
    }
    if req.prompt.none {
        return redirect_error(&state, &req, "consent_required", StatusCode::FOUND);
    }
    consent_page(&req, &raw, current.csrf_token().unwrap_or_default())
}

fn oauth_page_error(e: &OAuthError) -> Response {
    tracing::warn!(error = %e, "authorize failure");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Try again in a moment.",
    )
}

async fn issue_and_redirect(
    state: &AppState,
    req: &AuthorizeRequest,
    auth: &authx_core::auth::Authenticated,
    status: StatusCode,
) -> Response {
    match state
        .oauth
        .issue_code(
            req,
            &auth.user.id,
            &auth.session.id,
            auth.session.created_at,
        )
        .await
    {
        Ok(code) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = req.state.as_deref() {
                pairs.push(("state", s));
            }
            client_redirect(state, &req.redirect_uri, &pairs, status)
        }
        Err(e) => oauth_page_error(&e),
    }
}

fn consent_page(req: &AuthorizeRequest, raw_query: &str, csrf: String) -> Response {
    let redirect_host = crate::config::origin_of(&req.redirect_uri).unwrap_or_default();
    let page = Consent {
        csrf: &csrf,
        client_name: &req.client.name,
        client_id: &req.client.id,
        scopes: Scope::list(req.scope.iter()),
        // The API the access token will be for: a consent names it and covers no other.
        resource: req.resource.as_deref(),
        redirect_host: &redirect_host,
        request: raw_query,
    };
    let mut res = render(StatusCode::OK, &page);
    // The consent POST ends in a redirect to the client: CSP form-action must allow its origin.
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        redirect_host
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

async fn consent_post(
    State(state): State<AppState>,
    current: CurrentSession,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let Some(auth) = &current.auth else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Your session ended. Start again from the application.",
        );
    };
    let token_ok = current
        .csrf_token()
        .is_some_and(|t| form.get("csrf_token").is_some_and(|p| csrf::matches(&t, p)));
    if !token_ok {
        state.auth.audit().record(
            authx_core::audit::AuditEvent::failure("csrf_rejected")
                .user(&auth.user.id)
                .with("reason", "consent token"),
        );
        return error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form expired or did not come from this site.",
        );
    }
    let raw = form.get("request").unwrap_or_default();
    let p = Params::parse(raw.as_bytes());
    if !p.repeated.is_empty() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in request cannot be completed",
            "A parameter is repeated.",
        );
    }
    // The request is validated again: nothing in the form is trusted.
    let req = match state.oauth.validate_authorize(&authorize_params(&p)).await {
        Ok(r) => r,
        Err(e) => return authorize_failure(&state, e, StatusCode::SEE_OTHER),
    };
    match form.get("decision") {
        Some("allow") => {
            if let Err(e) = state.oauth.record_consent(&auth.user.id, &req).await {
                return oauth_page_error(&e);
            }
            issue_and_redirect(&state, &req, auth, StatusCode::SEE_OTHER).await
        }
        _ => {
            state.auth.audit().record(
                authx_core::audit::AuditEvent::failure("consent_denied")
                    .client(&req.client.id)
                    .user(&auth.user.id),
            );
            redirect_error(&state, &req, "access_denied", StatusCode::SEE_OTHER)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

async fn logout_get(
    State(state): State<AppState>,
    current: CurrentSession,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let hint = p
        .get("id_token_hint")
        .and_then(|h| state.oauth.id_token_hint(h));
    let target = match logout_target(&state, &p, hint.as_ref()).await {
        Ok(t) => t,
        Err(res) => return res,
    };
    let (Some(auth), Some(token)) = (&current.auth, current.csrf_token()) else {
        // Not signed in: nothing to end; go back if the target is registered.
        return match target {
            Some(t) => Redirect::to(&t).into_response(),
            None => signed_out(),
        };
    };
    // An ID token this server issued for this very session, to the application asking, shows
    // that the request comes from that application (OpenID Connect RP-Initiated Logout §2):
    // no confirmation. Anything else (no hint, another session's, another client's) asks.
    if hint
        .as_ref()
        .is_some_and(|h| hint_is_for_session(h, auth, p.get("client_id")))
    {
        return end_session_and_leave(&state, &current, target).await;
    }
    // The request again, as a query string, posted back with the confirmation.
    let request = p
        .map
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let page = EndSession {
        csrf: &token,
        request: &request,
    };
    let mut res = render(StatusCode::OK, &page);
    // The POST ends in a redirect to the application, and browsers apply `form-action` to
    // that redirect too: the policy must allow the target's origin, as the consent page does.
    if let Some(origin) = target.as_deref().and_then(crate::config::origin_of) {
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {origin}; frame-ancestors 'none'; base-uri 'none'"
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    res
}

/// Whether a verified `id_token_hint` was issued for the session `auth` (its `sid` and `sub`)
/// and, when the request names a client, to that client.
fn hint_is_for_session(
    hint: &authx_core::oauth::jwt::IdTokenClaims,
    auth: &authx_core::auth::Authenticated,
    client_id: Option<&str>,
) -> bool {
    hint.sid.as_deref() == Some(auth.session.id.0.as_str())
        && hint.sub == auth.user.id.0
        && client_id.is_none_or(|c| c == hint.aud)
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Where to send the browser after logout: a registered post-logout URI of the client named
/// by `client_id` (or the `aud` of a valid `id_token_hint`), with `state`.
#[allow(clippy::result_large_err)] // The error is the finished response.
async fn logout_target(
    state: &AppState,
    p: &Params,
    hint: Option<&authx_core::oauth::jwt::IdTokenClaims>,
) -> Result<Option<String>, Response> {
    let Some(uri) = p.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    let client_id = match (p.get("client_id"), hint) {
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(hint)) => Some(hint.aud.clone()),
        (None, None) => None,
    };
    let client = match client_id {
        Some(id) => state
            .oauth
            .stores()
            .clients
            .client(&id)
            .await
            .map_err(|_| {
                error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "Try again in a moment.",
                )
            })?,
        None => None,
    };
    match client {
        Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => {
            let mut target = uri.to_owned();
            if let Some(st) = p.get("state") {
                target.push(if uri.contains('?') { '&' } else { '?' });
                target.push_str("state=");
                target.push_str(&urlencode(st));
            }
            Ok(Some(target))
        }
        _ => Err(error_page(
            StatusCode::BAD_REQUEST,
            "Sign-out request refused",
            "The address to return to is not registered for this application.",
        )),
    }
}

async fn logout_post(
    State(state): State<AppState>,
    current: CurrentSession,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let token_ok = current
        .csrf_token()
        .is_some_and(|t| form.get("csrf_token").is_some_and(|p| csrf::matches(&t, p)));
    if current.auth.is_some() && !token_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form expired or did not come from this site.",
        );
    }
    let p = Params::parse(form.get("request").unwrap_or_default().as_bytes());
    let hint = p
        .get("id_token_hint")
        .and_then(|h| state.oauth.id_token_hint(h));
    let target = match logout_target(&state, &p, hint.as_ref()).await {
        Ok(t) => t,
        Err(res) => return res,
    };
    end_session_and_leave(&state, &current, target).await
}

/// Ends the session the request carries and sends the browser to `target` (303), or shows
/// that it is signed out.
async fn end_session_and_leave(
    state: &AppState,
    current: &CurrentSession,
    target: Option<String>,
) -> Response {
    if let Some(t) = &current.token {
        if let Err(e) = state.auth.sign_out(t).await {
            tracing::warn!(error = %e, "logout failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Try again in a moment.",
            );
        }
    }
    let mut res = match target {
        Some(t) => Redirect::to(&t).into_response(),
        None => signed_out(),
    };
    crate::cookies::append_cookie(res.headers_mut(), &state.cookies.clear_session());
    res
}
