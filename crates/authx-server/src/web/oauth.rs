//! The OpenID Provider endpoints: discovery, JWKS, authorize and consent, token, introspection,
//! revocation, userinfo and RP-initiated logout. Each handler reads the request, makes one core
//! call and renders what core decided; the errors are answered by `web::error::oauth`.
//!
//! # Security
//! - Until the client and redirect URI are validated, errors are pages, never redirects.
//! - Parameters may not repeat; empty values count as absent; credentials never come from the
//!   query string; a client uses exactly one authentication method (`web::form`).
//! - Every token response carries `Cache-Control: no-store`.
//! - DPoP proofs (RFC 9449) are checked by core against the URL the configured issuer gives the
//!   endpoint, never the `Host` header; a DPoP-bound token is taken at userinfo only under the
//!   `DPoP` scheme with a proof by its key.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use authx_core::auth::Authenticated;
use authx_core::csrf;
use authx_core::oauth::OAuthError;
use authx_core::oauth::authorize::{
    AuthorizeDecision, AuthorizeParams, AuthorizeRequest, SignedIn,
};
use authx_core::oauth::client::Client;
use authx_core::oauth::introspect::{Presented, Userinfo};
use authx_core::oauth::logout::{LogoutDecision, LogoutParams};
use authx_core::oauth::proofs::DpopTarget;
use authx_core::oauth::token::TokenRequest;
use authx_core::oauth::types::TokenResponse;

use super::error::oauth::{
    bearer_error, csrf_page, csrf_rejected, dpop_challenge, error_page, invalid_request,
    oauth_error, refused_page, unavailable_page,
};
use super::extract::CurrentSession;
use super::form::{AuthenticatedClient, ConfidentialClient, Params};
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
        .route("/oauth2/par", post(par_post))
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

/// A JSON answer of a token or device-authorization endpoint (`Pragma: no-cache`).
pub(super) fn no_cache_json(body: serde_json::Value) -> Response {
    let mut res = Json(body).into_response();
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

// ---------------------------------------------------------------------------------------------
// Token, introspection and revocation.

async fn token_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: AuthenticatedClient,
) -> Response {
    let delivery = match RefreshDelivery::of(&state, &headers, &req.client, &req.params) {
        Ok(d) => d,
        Err(res) => return res,
    };
    let request =
        match TokenRequest::from_params(|k| req.params.get(k), delivery.cookie_token.as_deref()) {
            Ok(r) => r,
            Err(e) => return oauth_error(&e, req.basic),
        };
    let dpop = match state
        .oauth
        .dpop_proof(&dpop_proofs(&headers), at_endpoint("/oauth2/token"))
        .await
    {
        Ok(jkt) => jkt,
        Err(e) => return with_dpop_nonce(&state, oauth_error(&e, req.basic)),
    };
    let policy = &state.auth.policy().throttle;
    let res = match state
        .oauth
        .tokens()
        .grant(&req.client, &request, policy, dpop.as_ref())
        .await
    {
        Ok(tokens) => delivery.respond(&state, &req.client, tokens),
        Err(e) => oauth_error(&e, req.basic),
    };
    with_dpop_nonce(&state, res)
}

/// Every `DPoP` header value of a request (RFC 9449 §4.1); one that is not visible ASCII is
/// kept as an empty value, which no proof check accepts.
fn dpop_proofs(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or_default())
        .collect()
}

/// A POST to a client-authenticated endpoint at `path`, which carries no access token.
fn at_endpoint(path: &str) -> DpopTarget<'_> {
    DpopTarget {
        method: "POST",
        path,
        access_token: None,
    }
}

/// Adds a fresh `DPoP-Nonce` when proofs must carry one (RFC 9449 §8.2).
fn with_dpop_nonce(state: &AppState, mut res: Response) -> Response {
    if let Some(v) = state
        .oauth
        .dpop_nonce()
        .and_then(|n| HeaderValue::from_str(&n).ok())
    {
        res.headers_mut().insert("dpop-nonce", v);
    }
    res
}

/// How a refresh token travels: first-party public clients (single-page apps) may keep it in
/// an HttpOnly, SameSite=Strict cookie scoped to the token endpoint instead of in
/// script-readable storage.
struct RefreshDelivery {
    /// The refresh token of the cookie, for a client that may use one.
    cookie_token: Option<String>,
    /// Whether the new refresh token goes into the cookie rather than the body.
    deliver_cookie: bool,
}

impl RefreshDelivery {
    #[allow(clippy::result_large_err)] // The error is the finished response.
    fn of(
        state: &AppState,
        headers: &HeaderMap,
        client: &Client,
        p: &Params,
    ) -> Result<Self, Response> {
        let cookie_client = client.first_party && !client.is_confidential();
        let wants_cookie = p.get("refresh_token_delivery") == Some("cookie");
        if wants_cookie && !cookie_client {
            return Err(invalid_request(
                "only first-party public clients may receive the refresh token as a cookie",
            ));
        }
        let cookie_token = cookie_client
            .then(|| {
                crate::cookies::cookie_value(headers, refresh_cookie_name(state)).map(str::to_owned)
            })
            .flatten();
        let deliver_cookie =
            wants_cookie || (p.get("refresh_token").is_none() && cookie_token.is_some());
        Ok(Self {
            cookie_token,
            deliver_cookie,
        })
    }

    /// The token response, with the refresh token moved into the cookie when it travels so.
    fn respond(&self, state: &AppState, client: &Client, mut tokens: TokenResponse) -> Response {
        let cookie = if self.deliver_cookie {
            tokens
                .refresh_token
                .take()
                .map(|rt| refresh_cookie(state, &rt, client.refresh_token_ttl_secs))
        } else {
            None
        };
        let mut res = no_cache_json(tokens.to_json());
        if let Some(c) = cookie {
            crate::cookies::append_cookie(res.headers_mut(), &c);
        }
        res
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

/// RFC 7662 §2.1: the caller must authenticate; a public client cannot.
async fn introspect_post(
    State(state): State<AppState>,
    ConfidentialClient(req): ConfidentialClient,
) -> Response {
    let Some(token) = req.params.get("token") else {
        return invalid_request("token is required");
    };
    match state
        .oauth
        .introspection()
        .introspect(&req.client, token)
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => oauth_error(&e, req.basic),
    }
}

async fn revoke_post(State(state): State<AppState>, req: AuthenticatedClient) -> Response {
    let Some(token) = req.params.get("token") else {
        return invalid_request("token is required");
    };
    match state
        .oauth
        .revocation()
        .revoke(&req.client, token, req.params.get("token_type_hint"))
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(&e, req.basic),
    }
}

/// RFC 9126 §2: the authorization request, pushed by its authenticated client; the client's
/// credentials are not among the parameters kept. A DPoP proof binds the code to its key
/// (RFC 9449 §10.1).
async fn par_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: AuthenticatedClient,
) -> Response {
    let dpop = match state
        .oauth
        .dpop_proof(&dpop_proofs(&headers), at_endpoint("/oauth2/par"))
        .await
    {
        Ok(jkt) => jkt,
        Err(e) => return with_dpop_nonce(&state, oauth_error(&e, req.basic)),
    };
    let p = AuthorizeParams::from_pairs(req.params.pairs());
    let res = match state
        .oauth
        .push_authorization_request(&req.client, p, dpop.as_ref())
        .await
    {
        Ok(pushed) => (
            StatusCode::CREATED,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Json(pushed.to_json()),
        )
            .into_response(),
        Err(e) => oauth_error(&e, req.basic),
    };
    with_dpop_nonce(&state, res)
}

/// OIDC Core §5.3, with a bearer token or a DPoP-bound one (`Authorization: DPoP` and a proof
/// whose `ath` is the token's hash, RFC 9449 §7).
async fn userinfo(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split_once(' '))
        .map(|(scheme, t)| (scheme.to_ascii_lowercase(), t.trim().to_owned()));
    let (dpop, token) = match credentials {
        Some((scheme, token)) if scheme == "bearer" => (false, token),
        Some((scheme, token)) if scheme == "dpop" => (true, token),
        _ => return bearer_error(StatusCode::UNAUTHORIZED, None),
    };
    let jkt = if dpop {
        let target = DpopTarget {
            method: method.as_str(),
            path: "/oauth2/userinfo",
            access_token: Some(&token),
        };
        match state.oauth.dpop_proof(&dpop_proofs(&headers), target).await {
            Ok(Some(jkt)) => Some(jkt),
            Ok(None) => return dpop_refusal(&state, "invalid_dpop_proof"),
            Err(e @ (OAuthError::InvalidDpopProof(_) | OAuthError::UseDpopNonce)) => {
                return dpop_refusal(&state, e.code());
            }
            Err(e) => return oauth_error(&e, false),
        }
    } else {
        None
    };
    let presented = jkt.as_ref().map_or(Presented::Bearer, Presented::Dpop);
    match state
        .oauth
        .introspection()
        .userinfo(&token, presented)
        .await
    {
        Ok(Userinfo::Claims(v)) => with_dpop_nonce(&state, Json(v).into_response()),
        Ok(Userinfo::InvalidToken) if !dpop => {
            bearer_error(StatusCode::UNAUTHORIZED, Some("invalid_token"))
        }
        Ok(Userinfo::InvalidToken | Userinfo::NeedsProof) => dpop_refusal(&state, "invalid_token"),
        Err(e) => oauth_error(&e, false),
    }
}

/// A `401` with a DPoP challenge (and a fresh nonce when nonces are required).
fn dpop_refusal(state: &AppState, error: &str) -> Response {
    with_dpop_nonce(state, dpop_challenge(error))
}

// ---------------------------------------------------------------------------------------------
// Authorization and consent.

/// The signed-in session as the authorization endpoint sees it; `can_step_up` says whether
/// the user has a second factor to prove when a client asks for more (`acr_values`).
pub(crate) fn signed_in(auth: &Authenticated, can_step_up: bool) -> SignedIn<'_> {
    SignedIn {
        user: &auth.user.id,
        session: &auth.session.id,
        auth_time: auth.session.created_at,
        auth_methods: &auth.session.auth_method,
        can_step_up,
    }
}

/// Whether the user can step up: has a second factor. Read for a session that has not proved
/// one (`acr_values` or the client's `require_acr` may ask for it); a session that has needs
/// no step-up.
async fn can_step_up(state: &AppState, auth: &Authenticated) -> bool {
    if auth.authentication().has_second_factor() {
        return false;
    }
    match state.auth.factors() {
        Some(f) => f.has_second_factor(&auth.user.id).await.unwrap_or(false),
        None => false,
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Renders what core decided about an authorization request: `status` is the redirect's
/// (302 after GET, 303 after POST: nothing is ever re-posted to the client).
fn render_decision(
    decision: Result<AuthorizeDecision, OAuthError>,
    status: StatusCode,
    query: &str,
    csrf: &str,
) -> Response {
    match decision {
        Ok(AuthorizeDecision::Login { request }) => {
            let back = format!("/oauth2/authorize?{request}");
            Redirect::to(&format!("/login?return_to={}", urlencode(&back))).into_response()
        }
        Ok(AuthorizeDecision::StepUp { request }) => {
            let back = format!("/oauth2/authorize?{request}");
            Redirect::to(&format!("/login/step-up?return_to={}", urlencode(&back))).into_response()
        }
        Ok(AuthorizeDecision::Consent(req)) => consent_page(&req, query, csrf),
        Ok(AuthorizeDecision::Redirect(target)) => match HeaderValue::from_str(&target) {
            Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
            Err(_) => refused_page("The redirect address cannot be used."),
        },
        Ok(AuthorizeDecision::Refused(msg)) => refused_page(&msg),
        Err(e) => unavailable_page(&e),
    }
}

async fn authorize_get(
    State(state): State<AppState>,
    current: CurrentSession,
    RawQuery(q): RawQuery,
) -> Response {
    let raw = q.unwrap_or_default();
    let p = AuthorizeParams::from_query(&raw);
    let step_up = match current.auth.as_deref() {
        Some(a) => can_step_up(&state, a).await,
        None => false,
    };
    let auth = current.auth.as_deref().map(|a| signed_in(a, step_up));
    let decision = state.oauth.decide(&p, &raw, auth).await;
    let csrf = current.csrf_token().unwrap_or_default();
    render_decision(decision, StatusCode::FOUND, &raw, &csrf)
}

/// Renders `page`, whose form may also post to `origin`: a form whose POST ends in a redirect
/// there needs it, because browsers apply `form-action` to that redirect.
fn render_posting_to(page: &impl askama::Template, origin: Option<&str>) -> Response {
    let mut res = render(StatusCode::OK, page);
    let Some(origin) = origin else {
        return res;
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

fn consent_page(req: &AuthorizeRequest, raw_query: &str, csrf: &str) -> Response {
    let redirect_host = crate::config::origin_of(&req.redirect_uri).unwrap_or_default();
    let page = Consent {
        csrf,
        client_name: &req.client.name,
        client_id: &req.client.id,
        scopes: Scope::list(req.scope.iter()),
        // The API the access token will be for: a consent names it and covers no other.
        resource: req.resource.as_deref(),
        redirect_host: &redirect_host,
        request: raw_query,
    };
    render_posting_to(&page, Some(&redirect_host))
}

async fn consent_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Params,
) -> Response {
    let Some(auth) = &current.auth else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "Your session ended. Start again from the application.",
        );
    };
    if !csrf_ok(&current, &form) {
        return csrf_rejected(state.auth.audit(), &auth.user.id, "consent token");
    }
    let p = AuthorizeParams::from_query(form.get("request").unwrap_or_default());
    let allow = form.get("decision") == Some("allow");
    let decision = state
        .oauth
        .decide_consent(&p, signed_in(auth, false), allow)
        .await;
    render_decision(decision, StatusCode::SEE_OTHER, "", "")
}

/// Whether the form carries the CSRF token of the request's session.
fn csrf_ok(current: &CurrentSession, form: &Params) -> bool {
    current
        .csrf_token()
        .is_some_and(|t| form.get("csrf_token").is_some_and(|p| csrf::matches(&t, p)))
}

// ---------------------------------------------------------------------------------------------
// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

fn logout_params(p: &Params) -> LogoutParams {
    LogoutParams {
        id_token_hint: p.owned("id_token_hint"),
        post_logout_redirect_uri: p.owned("post_logout_redirect_uri"),
        client_id: p.owned("client_id"),
        state: p.owned("state"),
    }
}

async fn logout_get(
    State(state): State<AppState>,
    current: CurrentSession,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.unwrap_or_default().as_bytes());
    let token = current.csrf_token();
    let session = match (&current.auth, &token) {
        (Some(a), Some(_)) => Some((&a.user.id, &a.session.id)),
        _ => None,
    };
    match state
        .oauth
        .decide_logout(&logout_params(&p), session, false)
        .await
    {
        Ok(LogoutDecision::Confirm { target }) => {
            confirm_logout(&p, &token.unwrap_or_default(), target.as_deref())
        }
        other => render_logout(&state, &current, other).await,
    }
}

/// The confirmation page of a logout that did not prove its session.
fn confirm_logout(p: &Params, csrf: &str, target: Option<&str>) -> Response {
    // The request again, as a query string, posted back with the confirmation.
    let request = p
        .pairs()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let page = EndSession {
        csrf,
        request: &request,
    };
    // The POST ends in a redirect to the application: the policy must allow its origin.
    let origin = target.and_then(crate::config::origin_of);
    render_posting_to(&page, origin.as_deref())
}

async fn logout_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Params,
) -> Response {
    if current.auth.is_some() && !csrf_ok(&current, &form) {
        return csrf_page();
    }
    let p = Params::parse(form.get("request").unwrap_or_default().as_bytes());
    let decision = state
        .oauth
        .decide_logout(&logout_params(&p), None, true)
        .await;
    render_logout(&state, &current, decision).await
}

/// Renders a logout decision: ends the session the request carries when asked to, then sends
/// the browser to the target (303 after ending it) or shows that it is signed out.
async fn render_logout(
    state: &AppState,
    current: &CurrentSession,
    decision: Result<LogoutDecision, OAuthError>,
) -> Response {
    let (target, end) = match decision {
        Ok(LogoutDecision::Leave { target } | LogoutDecision::Confirm { target }) => {
            (target, false)
        }
        Ok(LogoutDecision::EndSession { target }) => (target, true),
        Ok(LogoutDecision::Refused) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Sign-out request refused",
                "The address to return to is not registered for this application.",
            );
        }
        Err(e) => return unavailable_page(&e),
    };
    if let (true, Some(t)) = (end, &current.token) {
        if let Err(e) = state.auth.sign_out(t).await {
            return unavailable_page(&e);
        }
    }
    let mut res = match target {
        Some(t) => Redirect::to(&t).into_response(),
        None => Message::new("Signed out", "You are signed out", Paragraph::None)
            .response(StatusCode::OK),
    };
    if end {
        crate::cookies::append_cookie(res.headers_mut(), &state.cookies.clear_session());
    }
    res
}
