//! HTML pages: `/login`, `/signup`, `/logout` and `/account` (sessions and password).
//!
//! # Security
//! Forms carry a synchronizer token: bound to the pre-session cookie before sign-in and to the
//! session afterwards. Nothing changes on GET. Redirects after a credential POST are 303.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use authx_core::auth::{AuthError, SignInOutcome};
use authx_core::csrf;
use authx_core::session::SessionId;

use super::error::ApiError;
use super::extract::{CurrentSession, FormBody};
use super::rfc3339;
use super::signin::{
    bad_form, buttons, error_status, pre_session, pre_token_ok, safe_return_to, set_retry_after,
    signed_in_redirect, with_pre_cookie,
};
use crate::cookies::append_cookie;
use crate::html::account::{
    Account, ConsentRow, GrantRow, LinkRow, Login, Logout, Refused, SessionRow, SignUp,
};
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

/// The page routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_get).post(login_post))
        .route("/signup", get(signup_get).post(signup_post))
        .route("/logout", get(logout_get).post(logout_post))
        .route("/account", get(account_get))
        .route(
            "/account/sessions/revoke-others",
            post(account_revoke_others_post),
        )
        .route("/account/sessions/{id}/revoke", post(account_revoke_post))
        .route("/account/password", post(account_password_post))
        .route(
            "/account/grants/{id}/revoke",
            post(account_grant_revoke_post),
        )
        .route(
            "/account/consents/{client_id}/withdraw",
            post(account_consent_withdraw_post),
        )
        .route("/account/links/{id}/remove", post(account_link_remove_post))
        .route("/assets/authx.css", get(css_get))
}

/// The fallback: a readable 404.
pub async fn not_found() -> Response {
    Message::new(
        "Not found",
        "Not found",
        Paragraph::Text("There is no page at this address."),
    )
    .response(StatusCode::NOT_FOUND)
}

async fn css_get() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        crate::html::CSS,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct ReturnTo {
    return_to: Option<String>,
}

/// The sign-in page, with the providers' buttons.
fn login_page(
    state: &AppState,
    status: StatusCode,
    token: &str,
    return_to: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let page = Login {
        csrf: token,
        return_to,
        email,
        error,
        sign_up: state.config.auth.sign_up_enabled,
        providers: buttons(state, return_to),
    };
    render(status, &page)
}

/// The sign-in page may end in a redirect to an application (through `/oauth2/authorize`), whose
/// origin browsers check against `form-action`: the login form's policy leaves it open.
const LOGIN_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn with_login_csp(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(LOGIN_CSP),
    );
    res
}

async fn login_get(
    State(state): State<AppState>,
    current: CurrentSession,
    q: Query<ReturnTo>,
) -> Response {
    let (token, fresh) = pre_session(&current);
    let return_to = safe_return_to(q.return_to.as_deref());
    let res = login_page(&state, StatusCode::OK, &token, &return_to, "", None);
    with_login_csp(with_pre_cookie(&state, res, fresh))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf_token: String,
    return_to: Option<String>,
}

async fn login_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<LoginForm>, ApiError>,
) -> Response {
    let form = match form {
        Ok(FormBody(f)) => f,
        Err(e) => return bad_form(e),
    };
    let return_to = safe_return_to(form.return_to.as_deref());
    if !pre_token_ok(&current, &form.csrf_token) {
        authx_core::audit::record_current(
            authx_core::audit::AuditEvent::failure("csrf_rejected")
                .with("reason", "bad form token")
                .with("path", "/login"),
        );
        let (token, fresh) = pre_session(&current);
        let res = login_page(
            &state,
            StatusCode::FORBIDDEN,
            &token,
            &return_to,
            &form.email,
            Some("This form expired. Please sign in again."),
        );
        return with_login_csp(with_pre_cookie(&state, res, fresh));
    }
    let result = state
        .auth
        .sign_in(
            &form.email,
            &form.password,
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state.metrics.sign_in(SignInOutcome::of(&result));
    match result {
        Ok(signed) => signed_in_redirect(&state, &signed, &return_to),
        Err(e) => {
            let (token, fresh) = pre_session(&current);
            let (status, retry) = error_status(&e);
            let mut res = login_page(
                &state,
                status,
                &token,
                &return_to,
                &form.email,
                Some(&e.to_string()),
            );
            set_retry_after(&mut res, retry);
            with_login_csp(with_pre_cookie(&state, res, fresh))
        }
    }
}

fn signup_page(
    status: StatusCode,
    token: &str,
    email: &str,
    error: Option<&str>,
    min: usize,
) -> Response {
    let page = SignUp {
        csrf: token,
        email,
        error,
        min_chars: min,
        min_text: authx_core::plural::count(min as u64, "character", "characters"),
    };
    render(status, &page)
}

async fn signup_get(State(state): State<AppState>, current: CurrentSession) -> Response {
    if !state.config.auth.sign_up_enabled {
        return sign_up_disabled();
    }
    let (token, fresh) = pre_session(&current);
    let min = state.config.auth.password.min_chars;
    let res = signup_page(StatusCode::OK, &token, "", None, min);
    with_pre_cookie(&state, res, fresh)
}

fn sign_up_disabled() -> Response {
    Message::new(
        "Sign-up disabled",
        "Sign-up is disabled",
        Paragraph::Text("Ask an administrator for an account."),
    )
    .response(StatusCode::FORBIDDEN)
}

#[derive(Deserialize)]
struct SignUpForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf_token: String,
}

async fn signup_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<SignUpForm>, ApiError>,
) -> Response {
    if !state.config.auth.sign_up_enabled {
        return sign_up_disabled();
    }
    let form = match form {
        Ok(FormBody(f)) => f,
        Err(e) => return bad_form(e),
    };
    let min = state.config.auth.password.min_chars;
    if !pre_token_ok(&current, &form.csrf_token) {
        let (token, fresh) = pre_session(&current);
        let res = signup_page(
            StatusCode::FORBIDDEN,
            &token,
            &form.email,
            Some("This form expired. Please try again."),
            min,
        );
        return with_pre_cookie(&state, res, fresh);
    }
    match state
        .auth
        .sign_up(&form.email, &form.password, &current.ctx)
        .await
    {
        Ok(signed) => signed_in_redirect(&state, &signed, "/account"),
        Err(e) => {
            let (token, fresh) = pre_session(&current);
            let (status, retry) = error_status(&e);
            let mut res = signup_page(status, &token, &form.email, Some(&e.to_string()), min);
            set_retry_after(&mut res, retry);
            with_pre_cookie(&state, res, fresh)
        }
    }
}

fn to_login(return_to: &str) -> Response {
    let mut target = String::from("/login?return_to=");
    for b in return_to.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            target.push(char::from(b));
        } else {
            target.push_str(&format!("%{b:02X}"));
        }
    }
    Redirect::to(&target).into_response()
}

async fn logout_get(current: CurrentSession) -> Response {
    let Some(token) = current.csrf_token() else {
        return Redirect::to("/login").into_response();
    };
    // No state change on GET: sign-out is the POST of this form.
    render(StatusCode::OK, &Logout { csrf: &token })
}

/// A form carrying the synchronizer token.
trait WithCsrf {
    fn csrf_token(&self) -> &str;
}

impl WithCsrf for CsrfOnly {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

impl WithCsrf for PasswordForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// The checks every account form passes: a well-formed body, a session (else the sign-in
/// page), and the session's CSRF token.
#[allow(clippy::result_large_err)] // The error is the finished response.
fn account_form<T: WithCsrf>(
    current: &CurrentSession,
    form: Result<FormBody<T>, ApiError>,
) -> Result<(&authx_core::auth::Authenticated, T), Response> {
    let form = match form {
        Ok(FormBody(f)) => f,
        Err(e) => return Err(bad_form(e)),
    };
    let Some(auth) = &current.auth else {
        return Err(to_login("/account"));
    };
    if !form_token_ok(current, form.csrf_token()) {
        return Err(csrf_refused());
    }
    Ok((auth, form))
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

fn form_token_ok(current: &CurrentSession, presented: &str) -> bool {
    current
        .csrf_token()
        .is_some_and(|t| csrf::matches(&t, presented))
}

fn csrf_refused() -> Response {
    authx_core::audit::record_current(
        authx_core::audit::AuditEvent::failure("csrf_rejected").with("reason", "bad form token"),
    );
    render(StatusCode::FORBIDDEN, &Refused)
}

async fn logout_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<CsrfOnly>, ApiError>,
) -> Response {
    let form = match form {
        Ok(FormBody(f)) => f,
        Err(e) => return bad_form(e),
    };
    if current.auth.is_some() && !form_token_ok(&current, &form.csrf_token) {
        return csrf_refused();
    }
    if let Some(token) = &current.token {
        if let Err(e) = state.auth.sign_out(token).await {
            return error_page(&e);
        }
    }
    let mut res = Redirect::to("/login").into_response();
    append_cookie(res.headers_mut(), &state.cookies.clear_session());
    res.headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    res
}

fn error_page(e: &AuthError) -> Response {
    let (status, retry) = error_status(e);
    let msg = if status.is_server_error() {
        "The service is temporarily unavailable. Try again shortly.".to_owned()
    } else {
        e.to_string()
    };
    let mut res =
        Message::new("Error", "Something went wrong", Paragraph::Alert(&msg)).response(status);
    set_retry_after(&mut res, retry);
    res
}

#[derive(Deserialize, Default)]
struct AccountQuery {
    done: Option<String>,
}

async fn account_get(
    State(state): State<AppState>,
    current: CurrentSession,
    q: Query<AccountQuery>,
) -> Response {
    let notice = match q.done.as_deref() {
        Some("password") => Some("Your password was changed. Every other session was signed out."),
        Some("revoked") => Some("The session was signed out."),
        Some("others") => Some("Every other session was signed out."),
        Some("withdrawn") => Some("The application will ask for your permission again."),
        Some("unlinked") => Some("The identity provider was unlinked from your account."),
        _ => None,
    };
    account_page(&state, &current, notice, None, StatusCode::OK).await
}

async fn account_page(
    state: &AppState,
    current: &CurrentSession,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (Some(auth), Some(token)) = (&current.auth, current.csrf_token()) else {
        return to_login("/account");
    };
    let sessions = match state.auth.sessions(&auth.user.id).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    let sessions = sessions
        .iter()
        .map(|s| SessionRow {
            id: s.id.0.clone(),
            device: s
                .user_agent
                .clone()
                .unwrap_or_else(|| "unknown device".to_owned()),
            ip: s.ip.clone().unwrap_or_else(|| "-".to_owned()),
            created: rfc3339(s.created_at),
            seen: rfc3339(s.last_seen_at),
            current: s.id == auth.session.id,
        })
        .collect();
    let (grants, consents) = match applications(state, &auth.user.id).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "account page: grants unavailable");
            return error_page(&AuthError::Store(authx_core::StoreError::Corrupt(
                "grants".into(),
            )));
        }
    };
    let links = match linked_providers(state, &auth.user.id).await {
        Ok(rows) => rows,
        Err(e) => return error_page(&AuthError::Store(e)),
    };
    let page = Account {
        csrf: &token,
        email: &auth.user.email,
        notice,
        error,
        sessions,
        grants,
        consents,
        links,
        has_password: authx_core::federation::has_password(&auth.user),
        min_chars: state.config.auth.password.min_chars,
    };
    render(status, &page)
}

async fn account_revoke_post(
    State(state): State<AppState>,
    current: CurrentSession,
    Path(id): Path<String>,
    form: Result<FormBody<CsrfOnly>, ApiError>,
) -> Response {
    let (auth, _) = match account_form(&current, form) {
        Ok(v) => v,
        Err(res) => return res,
    };
    let own = auth.session.id.0 == id;
    match state
        .auth
        .revoke_session(&auth.user.id, &SessionId(id))
        .await
    {
        Ok(()) if own => {
            let mut res = Redirect::to("/login").into_response();
            append_cookie(res.headers_mut(), &state.cookies.clear_session());
            res
        }
        Ok(()) => Redirect::to("/account?done=revoked").into_response(),
        Err(AuthError::NotFound) => Redirect::to("/account").into_response(),
        Err(e) => error_page(&e),
    }
}

async fn account_revoke_others_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<CsrfOnly>, ApiError>,
) -> Response {
    let (auth, _) = match account_form(&current, form) {
        Ok(v) => v,
        Err(res) => return res,
    };
    match state
        .auth
        .revoke_other_sessions(&auth.user.id, Some(&auth.session.id))
        .await
    {
        Ok(_) => Redirect::to("/account?done=others").into_response(),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    #[serde(default)]
    csrf_token: String,
}

async fn account_password_post(
    State(state): State<AppState>,
    current: CurrentSession,
    form: Result<FormBody<PasswordForm>, ApiError>,
) -> Response {
    let (auth, form) = match account_form(&current, form) {
        Ok(v) => v,
        Err(res) => return res,
    };
    match state
        .auth
        .change_password(
            auth,
            &form.current_password,
            &form.new_password,
            &current.ctx,
        )
        .await
    {
        Ok(signed) => signed_in_redirect(&state, &signed, "/account?done=password"),
        Err(
            e @ (AuthError::WrongPassword
            | AuthError::WeakPassword(_)
            | AuthError::PasswordTooLong
            | AuthError::Throttled { .. }),
        ) => {
            let (status, retry) = error_status(&e);
            let mut res = account_page(&state, &current, None, Some(&e.to_string()), status).await;
            set_retry_after(&mut res, retry);
            res
        }
        Err(e) => error_page(&e),
    }
}

/// The account page's rows of upstream identity providers linked to the account.
async fn linked_providers(
    state: &AppState,
    user: &authx_core::user::UserId,
) -> Result<Vec<LinkRow>, authx_core::StoreError> {
    let links = state.federation.user_links(user).await?;
    Ok(links
        .into_iter()
        .map(|l| LinkRow {
            provider: state
                .upstreams
                .provider(&l.provider)
                .map_or_else(|| l.provider.clone(), |p| p.display_name.clone()),
            who: l.email.unwrap_or(l.subject),
            since: rfc3339(l.created_at),
            id: l.id,
        })
        .collect())
}

async fn account_link_remove_post(
    State(state): State<AppState>,
    current: CurrentSession,
    Path(id): Path<String>,
    form: Result<FormBody<CsrfOnly>, ApiError>,
) -> Response {
    let (auth, _) = match account_form(&current, form) {
        Ok(v) => v,
        Err(res) => return res,
    };
    // An account without a password signs in only through its links: the last one stays, or
    // the account could never be entered again.
    if !authx_core::federation::has_password(&auth.user) {
        match state.federation.user_links(&auth.user.id).await {
            Ok(links) if links.len() <= 1 && links.iter().any(|l| l.id == id) => {
                return account_page(
                    &state,
                    &current,
                    None,
                    Some("This is the only way to sign in to this account, so it cannot be unlinked."),
                    StatusCode::CONFLICT,
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => return error_page(&AuthError::Store(e)),
        }
    }
    match state.federation.delete_link(&auth.user.id, &id).await {
        Ok(true) => {
            state.auth.audit().record(
                authx_core::audit::AuditEvent::success("federation_unlinked").user(&auth.user.id),
            );
            Redirect::to("/account?done=unlinked").into_response()
        }
        Ok(false) => Redirect::to("/account").into_response(),
        Err(e) => error_page(&AuthError::Store(e)),
    }
}

/// The applications section of the account page: live grants and remembered consents.
async fn applications(
    state: &AppState,
    user: &authx_core::user::UserId,
) -> Result<(Vec<GrantRow>, Vec<ConsentRow>), authx_core::oauth::OAuthError> {
    let grants = state.oauth.user_grants(user).await?;
    let consents = state.oauth.stores().grants.list_consents(user).await?;
    let grants = grants
        .iter()
        .map(|(f, c)| GrantRow {
            id: f.id.clone(),
            name: c
                .as_ref()
                .map_or(f.client_id.as_str(), |c| c.name.as_str())
                .to_owned(),
            scope: f.scope.clone(),
            since: rfc3339(f.created_at),
        })
        .collect();
    let consents = consents
        .into_iter()
        .map(|c| ConsentRow {
            client: c.client_id,
            api: c.resource.unwrap_or_else(|| "-".to_owned()),
            scope: c.scope,
        })
        .collect();
    Ok((grants, consents))
}

async fn account_grant_revoke_post(
    State(state): State<AppState>,
    current: CurrentSession,
    Path(id): Path<String>,
    form: Result<FormBody<CsrfOnly>, ApiError>,
) -> Response {
    let (auth, _) = match account_form(&current, form) {
        Ok(v) => v,
        Err(res) => return res,
    };
    match state.oauth.revoke_user_grant(&auth.user.id, &id).await {
        Ok(_) => Redirect::to("/account?done=revoked").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "grant revoke failed");
            error_page(&AuthError::Internal("grant revoke".into()))
        }
    }
}

async fn account_consent_withdraw_post(
    State(state): State<AppState>,
    current: CurrentSession,
    Path(client_id): Path<String>,
    form: Result<FormBody<CsrfOnly>, ApiError>,
) -> Response {
    let (auth, _) = match account_form(&current, form) {
        Ok(v) => v,
        Err(res) => return res,
    };
    match state
        .oauth
        .stores()
        .grants
        .delete_consent(&auth.user.id, &client_id)
        .await
    {
        Ok(removed) => {
            if removed {
                state.auth.audit().record(
                    authx_core::audit::AuditEvent::success("consent_revoked")
                        .user(&auth.user.id)
                        .client(&client_id),
                );
            }
            Redirect::to("/account?done=withdrawn").into_response()
        }
        Err(e) => error_page(&AuthError::Store(e)),
    }
}
