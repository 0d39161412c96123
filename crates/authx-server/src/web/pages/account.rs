//! `/account`: the signed-in user's sessions, applications, linked providers and password, and
//! the forms that change them (each passes [`CsrfForm`] first).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use authx_core::auth::{AuthError, AuthMethod, Authenticated};
use authx_core::session::{Session, SessionId};
use authx_core::user::UserId;

use super::CsrfOnly;
use crate::cookies::append_cookie;
use crate::html::account::{Account, ConsentRow, FactorRow, GrantRow, LinkRow, SessionRow};
use crate::html::display::{Device, When};
use crate::html::render;
use crate::state::AppState;
use crate::web::error::auth::page as error_page;
use crate::web::extract::{CsrfForm, CurrentSession, FormToken, to_login};
use crate::web::signin::{error_status, set_retry_after, signed_in_redirect};

#[derive(Deserialize, Default)]
pub(super) struct AccountQuery {
    done: Option<String>,
}

pub(super) async fn account_get(
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
        Some("mfa") => Some("Two-step verification is on: signing in now asks for a code."),
        Some("mfa_renamed") => Some("The second factor was renamed."),
        Some("mfa_removed") => {
            Some("The authenticator was removed. Every other session was signed out.")
        }
        Some("verify") => {
            Some("We sent a verification link to your address. It works once, within 24 hours.")
        }
        Some("email") => Some(
            "We sent a link to the new address: your address changes once you open it there. \
             Your current address got a notice.",
        ),
        _ => None,
    };
    account_page(&state, &current, notice, None, StatusCode::OK).await
}

/// The rows of the account page, each section read from its service.
struct Sections {
    sessions: Vec<SessionRow>,
    grants: Vec<GrantRow>,
    consents: Vec<ConsentRow>,
    links: Vec<LinkRow>,
    factors: Vec<FactorRow>,
    recovery_left: u64,
}

pub(super) async fn account_page(
    state: &AppState,
    current: &CurrentSession,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (Some(auth), Some(token)) = (&current.auth, current.csrf_token()) else {
        return to_login("/account");
    };
    let s = match sections(state, auth).await {
        Ok(s) => s,
        Err(e) => return error_page(&e),
    };
    let page = Account {
        csrf: &token,
        email: &auth.user.email,
        notice,
        error,
        sessions: s.sessions,
        grants: s.grants,
        consents: s.consents,
        links: s.links,
        has_password: authx_core::federation::has_password(&auth.user),
        min_chars: state.config.auth.password.min_chars,
        verify_email: state.auth.verifies_email() && !auth.user.email_verified,
        factors: s.factors,
        recovery_left: s.recovery_left,
        signed_in_with: methods_in_words(&auth.session.auth_method),
        passkeys: state.auth.passkeys_enabled(),
    };
    let mut res = render(status, &page);
    if page.passkeys {
        super::passkey::allow_passkey_script(&mut res, false);
    }
    res
}

async fn sections(state: &AppState, auth: &Authenticated) -> Result<Sections, AuthError> {
    let now = state.oauth.now();
    let mut sessions = state.auth.sessions(&auth.user.id).await?;
    // This browser's first, then the most recently seen.
    sessions.sort_by_key(|s| (s.id != auth.session.id, std::cmp::Reverse(s.last_seen_at)));
    let sessions = sessions
        .iter()
        .map(|s| session_row(s, &auth.session.id, now))
        .collect();
    let (grants, consents) = applications(state, &auth.user.id)
        .await
        .map_err(grants_unavailable)?;
    let links = link_rows(state, &auth.user.id).await?;
    let factors = factor_rows(state, &auth.user.id).await?;
    let recovery_left = match state.auth.factors() {
        Some(f) => f.recovery_codes_left(&auth.user.id).await?,
        None => 0,
    };
    Ok(Sections {
        sessions,
        grants,
        consents,
        links,
        factors,
        recovery_left,
    })
}

fn grants_unavailable(e: authx_core::oauth::OAuthError) -> AuthError {
    tracing::warn!(error = %e, "grants unavailable");
    AuthError::Store(authx_core::StoreError::Corrupt("grants".into()))
}

/// The user's live grants, as the account page and the console list them.
pub(crate) async fn grant_rows(
    state: &AppState,
    user: &UserId,
) -> Result<Vec<GrantRow>, AuthError> {
    Ok(applications(state, user)
        .await
        .map_err(grants_unavailable)?
        .0)
}

/// The user's second factors, as the account page and the console list them.
pub(crate) async fn factor_rows(
    state: &AppState,
    user: &UserId,
) -> Result<Vec<FactorRow>, AuthError> {
    let Some(f) = state.auth.factors() else {
        return Ok(Vec::new());
    };
    let now = state.oauth.now();
    Ok(f.list(user)
        .await?
        .into_iter()
        .map(|f| FactorRow {
            id: f.id.0,
            kind: match f.kind {
                authx_core::mfa::FactorKind::Totp => "Authenticator app",
                authx_core::mfa::FactorKind::Passkey => "Passkey",
            },
            name: f.name,
            added: When::at(f.created_at, now),
            used: f.last_used_at.map(|t| When::at(t, now)),
        })
        .collect())
}

/// A session as the account page and the console list it; `current` is the viewer's own.
pub(crate) fn session_row(
    s: &Session,
    current: &SessionId,
    now: authx_core::Timestamp,
) -> SessionRow {
    SessionRow {
        id: s.id.0.clone(),
        device: Device::of(s.user_agent.as_deref()),
        ip: s.ip.clone().unwrap_or_else(|| "-".to_owned()),
        created: When::at(s.created_at, now),
        seen: When::at(s.last_seen_at, now),
        methods: methods_in_words(&s.auth_method),
        current: &s.id == current,
    }
}

/// How a session signed in, in words: "password and authenticator app".
pub(super) fn methods_in_words(stored: &str) -> String {
    let words: Vec<String> = stored
        .split(authx_core::amr::SEPARATOR)
        .map(|m| match AuthMethod::parse(m) {
            AuthMethod::Password => "password".to_owned(),
            AuthMethod::Federated(p) => p,
            AuthMethod::MagicLink => "a sign-in link".to_owned(),
            AuthMethod::Totp => "an authenticator app".to_owned(),
            AuthMethod::RecoveryCode => "a recovery code".to_owned(),
            AuthMethod::Passkey | AuthMethod::PasskeyVerified => "a passkey".to_owned(),
            AuthMethod::UpstreamMfa => "its second factor".to_owned(),
            AuthMethod::Other(s) => s,
        })
        .collect();
    words.join(" and ")
}

pub(super) async fn revoke_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<CsrfOnly>,
) -> Response {
    let auth = &form.auth;
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

pub(super) async fn revoke_others_post(
    State(state): State<AppState>,
    form: CsrfForm<CsrfOnly>,
) -> Response {
    let auth = &form.auth;
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
pub(super) struct PasswordForm {
    current_password: String,
    new_password: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for PasswordForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn password_post(
    State(state): State<AppState>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<PasswordForm>,
) -> Response {
    let changed = state
        .auth
        .change_password(
            &auth,
            &form.current_password,
            &form.new_password,
            &current.ctx,
        )
        .await;
    match changed {
        Ok(signed) => signed_in_redirect(&state, &signed, "/account?done=password"),
        // What the user can put right is shown on the account page itself.
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

#[derive(Deserialize)]
pub(super) struct EmailForm {
    new_email: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for EmailForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// Asks for an email change: the current password, or a sign-in within five minutes.
pub(super) async fn email_post(
    State(state): State<AppState>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<EmailForm>,
) -> Response {
    let password = Some(form.current_password.as_str());
    match state
        .auth
        .request_email_change(&auth, &form.new_email, password, &current.ctx)
        .await
    {
        Ok(()) => Redirect::to("/account?done=email").into_response(),
        Err(
            e @ (AuthError::InvalidEmail
            | AuthError::EmailUnchanged
            | AuthError::WrongPassword
            | AuthError::RecentSignInRequired
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
/// The user's linked upstream identities, as the account page and the console list them.
pub(crate) async fn link_rows(state: &AppState, user: &UserId) -> Result<Vec<LinkRow>, AuthError> {
    let links = state.federation.user_links(user).await?;
    let now = state.oauth.now();
    Ok(links
        .into_iter()
        .map(|l| LinkRow {
            provider: state
                .upstreams
                .provider(&l.provider)
                .map_or_else(|| l.provider.clone(), |p| p.display_name.clone()),
            who: l.email.unwrap_or(l.subject),
            since: When::at(l.created_at, now),
            id: l.id,
        })
        .collect())
}

/// Whether removing link `id` would leave the account without any way to sign in: an account
/// without a password signs in only through its links, so the last one stays.
async fn last_way_in(state: &AppState, auth: &Authenticated, id: &str) -> Result<bool, AuthError> {
    if authx_core::federation::has_password(&auth.user) {
        return Ok(false);
    }
    let links = state.federation.user_links(&auth.user.id).await?;
    Ok(links.len() <= 1 && links.iter().any(|l| l.id == id))
}

pub(super) async fn link_remove_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<CsrfOnly>,
) -> Response {
    let auth = &form.auth;
    match last_way_in(&state, auth, &id).await {
        Ok(true) => {
            let error =
                "This is the only way to sign in to this account, so it cannot be unlinked.";
            return account_page(
                &state,
                &form.current,
                None,
                Some(error),
                StatusCode::CONFLICT,
            )
            .await;
        }
        Ok(false) => {}
        Err(e) => return error_page(&e),
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
    user: &UserId,
) -> Result<(Vec<GrantRow>, Vec<ConsentRow>), authx_core::oauth::OAuthError> {
    let grants = state.oauth.user_grants(user).await?;
    let consents = state.oauth.stores().grants.list_consents(user).await?;
    let now = state.oauth.now();
    let grants = grants
        .iter()
        .map(|(f, c)| GrantRow {
            id: f.id.clone(),
            name: c
                .as_ref()
                .map_or(f.client_id.as_str(), |c| c.name.as_str())
                .to_owned(),
            scope: f.scope.clone(),
            since: When::at(f.created_at, now),
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

pub(super) async fn grant_revoke_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<CsrfOnly>,
) -> Response {
    match state.oauth.revoke_user_grant(&form.auth.user.id, &id).await {
        Ok(_) => Redirect::to("/account?done=revoked").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "grant revoke failed");
            error_page(&AuthError::Internal("grant revoke".into()))
        }
    }
}

pub(super) async fn consent_withdraw_post(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    form: CsrfForm<CsrfOnly>,
) -> Response {
    match state
        .auth
        .withdraw_consent(&form.auth.user.id, &client_id)
        .await
    {
        Ok(_) => Redirect::to("/account?done=withdrawn").into_response(),
        Err(e) => error_page(&e),
    }
}
