//! Sign-in through an upstream OpenID provider: `/federation/{provider}/start`, its
//! `/callback`, and `/federation/link`, where a user proves control of an existing account
//! before an upstream identity is linked to it.
//!
//! # Security
//! - `start` stores a one-time transaction (hash of `state`, `nonce`, PKCE S256 verifier,
//!   expected issuer, local `return_to`) bound to this browser by an `HttpOnly` cookie.
//! - `callback` takes the transaction in one step (a replayed `state` finds nothing), checks
//!   that the browser is the one that started it, that the response comes from the expected
//!   issuer (RFC 9207 `iss`; mix-up defence), and validates the ID token fully before any
//!   account is looked at (SECURITY.md #61-#64).
//! - Every failure ends on a readable page with a 4xx or 502 status, never a 500, and no
//!   session is created.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use authx_core::auth::{AuthError, SignInOutcome};
use authx_core::federation::{
    self, BrowserBinding, Expected, FederationState, IdTokenError, LinkToken, PendingLink, Refusal,
    Resolution, Transaction, UpstreamIdentity,
};
use authx_core::secret::b64url;

use super::api::append_cookie;
use super::error::ApiError;
use super::extract::{CurrentSession, FormBody};
use super::pages::{
    bad_form, error_status, pre_session, pre_token_ok, safe_return_to, set_retry_after,
    signed_in_redirect, with_pre_cookie,
};
use crate::config::UpstreamProvider;
use crate::federation::UpstreamError;
use crate::html::{csrf_field, error_block, esc, page};
use crate::state::AppState;

/// Longest query parameter value read from an upstream's redirect (SECURITY.md #68).
const MAX_PARAM_LEN: usize = 4096;
/// Clock skew allowed on the ID token's times.
const LEEWAY_SECS: i64 = 60;
/// Oldest acceptable ID token `iat`.
const MAX_ID_TOKEN_AGE_SECS: i64 = 600;

/// The federation routes (browser-facing: POSTs pass the origin check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/federation/{provider}/start", get(start_get))
        .route("/federation/{provider}/callback", get(callback_get))
        .route("/federation/link", get(link_get).post(link_post))
}

/// The sign-in page's buttons, one per configured provider.
#[must_use]
pub fn buttons(state: &AppState, return_to: &str) -> String {
    let providers = state.upstreams.providers();
    if providers.is_empty() {
        return String::new();
    }
    let mut html = String::from("<div id=\"federation\"><p class=\"muted\">Or sign in with</p>");
    let rt: String = form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    for p in providers {
        html.push_str(&format!(
            "<a class=\"button secondary federation\" id=\"federation-{name}\" href=\"/federation/{name}/start?return_to={rt}\">{label}</a> ",
            name = esc(&p.name),
            rt = esc(&rt),
            label = esc(&p.display_name),
        ));
    }
    html.push_str("</div>");
    html
}

/// A readable failure page.
fn failure(status: StatusCode, title: &str, msg: &str) -> Response {
    let html = page(
        title,
        &format!(
            "<h1>{}</h1>{}<p><a href=\"/login\">Back to sign-in</a></p>",
            esc(title),
            error_block(Some(msg))
        ),
    );
    (status, Html(html)).into_response()
}

fn refused(msg: &str) -> Response {
    failure(StatusCode::BAD_REQUEST, "Sign-in refused", msg)
}

fn upstream_failed(p: &UpstreamProvider, e: &UpstreamError) -> Response {
    tracing::warn!(provider = %p.name, error = %e, "upstream sign-in failed");
    failure(
        StatusCode::BAD_GATEWAY,
        "Sign-in unavailable",
        &format!(
            "Signing in with {} did not work: {e}. Try again later.",
            p.display_name
        ),
    )
}

fn unknown_provider() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "Unknown identity provider",
        "No identity provider of this name is configured here.",
    )
}

fn audit_refusal(provider: &str, reason: &str) {
    authx_core::audit::record_current(
        authx_core::audit::AuditEvent::failure("federation_refused")
            .with("provider", provider)
            .with("reason", reason),
    );
}

fn store_failed(e: &authx_core::StoreError) -> Response {
    tracing::warn!(error = %e, "federation store failed");
    let status = if matches!(e, authx_core::StoreError::Unavailable(_)) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    failure(
        status,
        "Sign-in unavailable",
        "The service is temporarily unavailable. Try again shortly.",
    )
}

#[derive(Default)]
struct StartQuery {
    return_to: Option<String>,
}

async fn start_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    current: CurrentSession,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(p) = state.upstreams.provider(&name) else {
        return unknown_provider();
    };
    let q: StartQuery = raw.as_deref().and_then(start_query).unwrap_or_default();
    let return_to = safe_return_to(q.return_to.as_deref());
    let now = state.auth.clock().now();
    let m = match state.upstreams.metadata(&p, now).await {
        Ok(m) => m,
        Err(e) => return upstream_failed(&p, &e),
    };
    // One cookie binds every upstream sign-in of this browser; a second tab reuses it.
    let binding = current
        .federation_binding
        .unwrap_or_else(BrowserBinding::generate);
    let st = FederationState::generate();
    let nonce = b64url(&authx_core::secret::random_bytes::<32>());
    let verifier = b64url(&authx_core::secret::random_bytes::<32>());
    let t = Transaction {
        state_hash: st.hash(),
        provider: p.name.clone(),
        issuer: p.issuer.clone(),
        browser_hash: binding.hash(),
        nonce: nonce.clone(),
        pkce_verifier: verifier.clone(),
        return_to,
        created_at: now,
        expires_at: now.plus(federation::TRANSACTION_TTL_SECS),
    };
    if let Err(e) = state.federation.put_transaction(&t).await {
        return store_failed(&e);
    }
    let params: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.client_id)
        .append_pair("redirect_uri", &callback_uri(&state, &p))
        .append_pair("scope", &p.scope)
        .append_pair("state", st.expose())
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &authx_core::oauth::pkce::s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    let sep = if m.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let target = format!("{}{sep}{params}", m.authorization_endpoint);
    let mut res = Redirect::to(&target).into_response();
    append_cookie(
        res.headers_mut(),
        &state
            .cookies
            .set_federation_binding(binding.expose(), federation::TRANSACTION_TTL_SECS),
    );
    authx_core::audit::record_current(
        authx_core::audit::AuditEvent::success("federation_started").with("provider", &p.name),
    );
    res
}

fn start_query(raw: &str) -> Option<StartQuery> {
    let mut q = StartQuery::default();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if k == "return_to" {
            if q.return_to.is_some() {
                return None;
            }
            q.return_to = Some(v.into_owned());
        }
    }
    Some(q)
}

/// This server's redirect URI at the upstream: one per provider, so a response can only ever
/// be taken for the provider it was sent to.
fn callback_uri(state: &AppState, p: &UpstreamProvider) -> String {
    format!("{}/federation/{}/callback", state.config.issuer, p.name)
}

/// The callback's parameters; any repeated or oversized one makes the request invalid.
#[derive(Default)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

fn callback_params(raw: Option<&str>) -> Option<CallbackParams> {
    let mut p = CallbackParams::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let slot = match k.as_ref() {
            "code" => &mut p.code,
            "state" => &mut p.state,
            "iss" => &mut p.iss,
            "error" => &mut p.error,
            _ => continue,
        };
        if slot.is_some() || v.len() > MAX_PARAM_LEN {
            return None;
        }
        *slot = Some(v.into_owned()).filter(|s| !s.is_empty());
    }
    Some(p)
}

#[allow(clippy::too_many_lines)] // One linear list of checks, in the order OIDC gives them.
async fn callback_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    current: CurrentSession,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(p) = state.upstreams.provider(&name) else {
        return unknown_provider();
    };
    let Some(q) = callback_params(raw.as_deref()) else {
        audit_refusal(&p.name, "malformed callback");
        return refused("The response from the identity provider is malformed.");
    };
    // 1. The state: present, issued by this server, not used before, for this provider, in
    //    time, and started by this very browser.
    let Some(st) = q.state.as_deref().and_then(FederationState::parse) else {
        audit_refusal(&p.name, "missing state");
        return refused(
            "The response from the identity provider carries no valid state. Start again from the sign-in page.",
        );
    };
    let t = match state.federation.take_transaction(&st.hash()).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            audit_refusal(&p.name, "unknown or replayed state");
            return refused(
                "This sign-in was already completed or has expired. Start again from the sign-in page.",
            );
        }
        Err(e) => return store_failed(&e),
    };
    let now = state.auth.clock().now();
    if t.provider != p.name || t.issuer != p.issuer {
        audit_refusal(&p.name, "state of another provider");
        return refused("This response belongs to a sign-in with another identity provider.");
    }
    if now >= t.expires_at {
        audit_refusal(&p.name, "expired transaction");
        return refused("This sign-in took too long. Start again from the sign-in page.");
    }
    let same_browser = current
        .federation_binding
        .as_ref()
        .is_some_and(|b| b.hash().ct_eq(&t.browser_hash));
    if !same_browser {
        audit_refusal(&p.name, "state from another browser");
        return refused(
            "This sign-in was started in another browser. Start again from the sign-in page in this browser.",
        );
    }
    let m = match state.upstreams.metadata(&p, now).await {
        Ok(m) => m,
        Err(e) => return upstream_failed(&p, &e),
    };
    // 2. Mix-up defence (RFC 9207 §2.4): the response names the issuer it came from.
    match q.iss.as_deref() {
        Some(iss) if iss == t.issuer => {}
        Some(_) => {
            audit_refusal(&p.name, "iss mismatch");
            return refused(
                "The response came from another identity provider than the one this sign-in was sent to.",
            );
        }
        None if m.iss_parameter_supported => {
            audit_refusal(&p.name, "iss missing");
            return refused("The response from the identity provider does not say who sent it.");
        }
        None => {}
    }
    if let Some(err) = q.error.as_deref() {
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        audit_refusal(&p.name, "upstream error");
        return failure(
            StatusCode::BAD_REQUEST,
            "Sign-in cancelled",
            &format!("{} did not sign you in ({code}).", p.display_name),
        );
    }
    let Some(code) = q.code.as_deref() else {
        audit_refusal(&p.name, "missing code");
        return refused("The response from the identity provider carries no authorization code.");
    };
    // 3. The code for tokens, with the PKCE verifier.
    let tokens = match state
        .upstreams
        .exchange_code(&p, &m, code, &callback_uri(&state, &p), &t.pkce_verifier)
        .await
    {
        Ok(t) => t,
        Err(e) => return upstream_failed(&p, &e),
    };
    // 4. The ID token, fully, before anything in it is used.
    let expected = Expected {
        issuer: &t.issuer,
        client_id: &p.client_id,
        nonce: &t.nonce,
        access_token: tokens.access_token.as_deref(),
        now,
        leeway_secs: LEEWAY_SECS,
        max_age_secs: MAX_ID_TOKEN_AGE_SECS,
    };
    let keys = match state.upstreams.keys(&p, &m, now, false).await {
        Ok(k) => k,
        Err(e) => return upstream_failed(&p, &e),
    };
    let mut verified = federation::verify_id_token(&tokens.id_token, &keys, &expected);
    if matches!(verified, Err(IdTokenError::UnknownKey)) {
        // The upstream may have rotated its keys: look again, at most once a minute.
        let keys = match state.upstreams.keys(&p, &m, now, true).await {
            Ok(k) => k,
            Err(e) => return upstream_failed(&p, &e),
        };
        verified = federation::verify_id_token(&tokens.id_token, &keys, &expected);
    }
    let token = match verified {
        Ok(v) => v,
        Err(e) => {
            authx_core::audit::record_current(
                authx_core::audit::AuditEvent::failure("federation_refused")
                    .with("provider", &p.name)
                    .with("reason", "invalid id token")
                    .with("error", e),
            );
            return failure(
                StatusCode::BAD_GATEWAY,
                "Sign-in refused",
                &format!(
                    "{} sent a sign-in that cannot be trusted: {e}.",
                    p.display_name
                ),
            );
        }
    };
    let identity = UpstreamIdentity::from_token(
        &p.name,
        &t.issuer,
        &token,
        &p.email_claim,
        &p.email_verified_claim,
    );
    // 5. The local account, by (issuer, subject) only.
    let stores = state.auth.stores();
    let resolution = match federation::resolve(
        stores.accounts.as_ref(),
        state.federation.as_ref(),
        &identity,
        p.allow_sign_up,
        now,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(&e),
    };
    let user = match resolution {
        Resolution::Linked(u) | Resolution::Created(u) => u,
        Resolution::ProveControl(u) => {
            return start_pending_link(&state, &p, &identity, &u, &t.return_to).await;
        }
        Resolution::Refused(r) => {
            audit_refusal(&p.name, refusal_reason(r));
            return failure(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                &format!("Signing in with {} is not possible: {r}.", p.display_name),
            );
        }
    };
    let result = state
        .auth
        .sign_in_verified(
            &user.id,
            &current.ctx,
            current.token.as_ref(),
            &format!("federated:{}", p.name),
        )
        .await;
    state.metrics.sign_in(SignInOutcome::of(&result));
    match result {
        Ok(signed) => {
            authx_core::audit::record_current(
                authx_core::audit::AuditEvent::success("federated_sign_in")
                    .user(&signed.user.id)
                    .with("provider", &p.name),
            );
            signed_in_redirect(&state, &signed, &t.return_to)
        }
        Err(AuthError::InvalidCredentials) => failure(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "This account is disabled.",
        ),
        Err(e) => auth_failed(&e),
    }
}

fn refusal_reason(r: Refusal) -> &'static str {
    match r {
        Refusal::Disabled => "account disabled",
        Refusal::NoEmail => "no email",
        Refusal::EmailNotVerified => "email not verified for an existing account",
        Refusal::CannotProveControl => "existing account without password",
        Refusal::SignUpNotAllowed => "sign-up not allowed",
        Refusal::UnverifiedEmailSignUp => "email not verified for a new account",
    }
}

fn auth_failed(e: &AuthError) -> Response {
    let (status, retry) = error_status(e);
    let msg = if status.is_server_error() {
        tracing::warn!(error = %e, "federated sign-in failed");
        "The service is temporarily unavailable. Try again shortly.".to_owned()
    } else {
        e.to_string()
    };
    let status = if status == StatusCode::INTERNAL_SERVER_ERROR {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    let mut res = failure(status, "Sign-in failed", &msg);
    set_retry_after(&mut res, retry);
    res
}

/// Remembers the upstream identity and asks for the local account's password.
async fn start_pending_link(
    state: &AppState,
    p: &UpstreamProvider,
    identity: &UpstreamIdentity,
    user: &authx_core::user::User,
    return_to: &str,
) -> Response {
    let now = state.auth.clock().now();
    let token = LinkToken::generate();
    let pending = PendingLink {
        token_hash: token.hash(),
        provider: p.name.clone(),
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        user_id: user.id.clone(),
        email: user.email.clone(),
        return_to: return_to.to_owned(),
        created_at: now,
        expires_at: now.plus(federation::PENDING_LINK_TTL_SECS),
    };
    if let Err(e) = state.federation.put_pending_link(&pending).await {
        return store_failed(&e);
    }
    authx_core::audit::record_current(
        authx_core::audit::AuditEvent::success("federation_link_pending")
            .user(&user.id)
            .with("provider", &p.name),
    );
    let mut res = Redirect::to("/federation/link").into_response();
    append_cookie(
        res.headers_mut(),
        &state
            .cookies
            .set_federation_link(token.expose(), federation::PENDING_LINK_TTL_SECS),
    );
    res
}

/// The pending link this browser's cookie names, if it is still valid.
async fn current_pending(
    state: &AppState,
    current: &CurrentSession,
) -> Result<Option<PendingLink>, Response> {
    let Some(token) = &current.federation_link else {
        return Ok(None);
    };
    match state.federation.pending_link(&token.hash()).await {
        Ok(Some(p)) if state.auth.clock().now() < p.expires_at => Ok(Some(p)),
        Ok(_) => Ok(None),
        Err(e) => Err(store_failed(&e)),
    }
}

fn no_pending_link() -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        "Nothing to link",
        "There is no sign-in waiting to be linked, or it has expired. Start again from the sign-in page.",
    )
}

fn link_page(state: &AppState, pending: &PendingLink, token: &str, error: Option<&str>) -> String {
    let provider = state
        .upstreams
        .provider(&pending.provider)
        .map_or_else(|| pending.provider.clone(), |p| p.display_name.clone());
    page(
        "Link your account",
        &format!(
            "<h1>Link your account</h1>{err}<p>An account with the address <strong id=\"link-email\">{email}</strong> \
             already exists here. To sign in with <strong id=\"link-provider\">{provider}</strong> from now on, prove \
             that the account is yours by entering its password once.</p>\
             <form id=\"link\" method=\"post\" action=\"/federation/link\">{csrf}\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Link and sign in</button></form>\
             <p><a href=\"/login\">Cancel</a></p>",
            err = error_block(error),
            email = esc(&pending.email),
            provider = esc(&provider),
            csrf = csrf_field(token),
        ),
    )
}

async fn link_get(State(state): State<AppState>, current: CurrentSession) -> Response {
    let pending = match current_pending(&state, &current).await {
        Ok(Some(p)) => p,
        Ok(None) => return no_pending_link(),
        Err(res) => return res,
    };
    let (token, fresh) = pre_session(&current);
    let html = link_page(&state, &pending, &token, None);
    with_pre_cookie(&state, Html(html).into_response(), fresh)
}

#[derive(Deserialize)]
struct LinkForm {
    password: String,
    #[serde(default)]
    csrf_token: String,
}

async fn link_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<LinkForm>, ApiError>,
) -> Response {
    let form = match form {
        Ok(FormBody(f)) => f,
        Err(e) => return bad_form(e),
    };
    let pending = match current_pending(&state, &current).await {
        Ok(Some(p)) => p,
        Ok(None) => return no_pending_link(),
        Err(res) => return res,
    };
    if !pre_token_ok(&current, &form.csrf_token) {
        authx_core::audit::record_current(
            authx_core::audit::AuditEvent::failure("csrf_rejected")
                .with("reason", "bad form token")
                .with("path", "/federation/link"),
        );
        let (token, fresh) = pre_session(&current);
        let html = link_page(
            &state,
            &pending,
            &token,
            Some("This form expired. Please try again."),
        );
        return with_pre_cookie(
            &state,
            (StatusCode::FORBIDDEN, Html(html)).into_response(),
            fresh,
        );
    }
    // Proof of control: the account's own password, through the ordinary sign-in with its
    // throttling, and a fresh session.
    let result = state
        .auth
        .sign_in(
            &pending.email,
            &form.password,
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state.metrics.sign_in(SignInOutcome::of(&result));
    let signed = match result {
        Ok(s) if s.user.id == pending.user_id => s,
        Ok(s) => {
            // The address now belongs to another account: link nothing, keep no session.
            let _ = state.auth.sign_out(&s.token).await;
            return no_pending_link();
        }
        Err(e) => {
            let (token, fresh) = pre_session(&current);
            let (status, retry) = error_status(&e);
            let msg = if status.is_server_error() {
                "The service is temporarily unavailable. Try again shortly.".to_owned()
            } else {
                e.to_string()
            };
            let mut res = (
                status,
                Html(link_page(&state, &pending, &token, Some(&msg))),
            )
                .into_response();
            set_retry_after(&mut res, retry);
            return with_pre_cookie(&state, res, fresh);
        }
    };
    let identity = UpstreamIdentity {
        provider: pending.provider.clone(),
        issuer: pending.issuer.clone(),
        subject: pending.subject.clone(),
        email: Some(pending.email.clone()),
        email_verified: true,
    };
    let linked = match state
        .federation
        .delete_pending_link(&pending.token_hash)
        .await
    {
        Ok(true) => {
            let link = federation::new_link(&identity, &signed.user.id, state.auth.clock().now());
            match state.federation.create_link(&link).await {
                Ok(()) => true,
                Err(authx_core::StoreError::Conflict) => false,
                Err(e) => return store_failed(&e),
            }
        }
        Ok(false) => false,
        Err(e) => return store_failed(&e),
    };
    if linked {
        authx_core::audit::record_current(
            authx_core::audit::AuditEvent::success("federation_linked")
                .user(&signed.user.id)
                .with("provider", &pending.provider),
        );
    }
    let mut res = signed_in_redirect(&state, &signed, &pending.return_to);
    append_cookie(res.headers_mut(), &state.cookies.clear_federation_link());
    res
}
