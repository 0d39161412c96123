//! What every way of signing in through a browser shares: the local return path, the
//! pre-session form token, the redirect that sets the session cookie, the error statuses, and
//! the buttons of the upstream providers. Used by the sign-in and sign-up pages and by
//! federation, so neither depends on the other.

use axum::response::{IntoResponse, Redirect, Response};

use authx_core::auth::{AuthError, SignInOutcome, SignUpOutcome, SignedIn};
use authx_core::csrf;
use authx_core::secret::PreSessionToken;

pub(crate) use super::error::auth::status as error_status;
pub(crate) use super::error::set_retry_after;
use super::extract::CurrentSession;
use crate::cookies::{append_cookie, append_new_session};
use crate::html::account::ProviderButton;
use crate::state::AppState;

/// A local path to return to after sign-in: absolute path, not protocol-relative, no controls.
pub(crate) fn safe_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 2048
                && !p.chars().any(|c| c.is_control() || c == '\\') =>
        {
            p.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

/// The sign-in and sign-up forms' token, minting a pre-session cookie when needed.
pub(crate) fn pre_session(current: &CurrentSession) -> (String, Option<PreSessionToken>) {
    match &current.pre {
        Some(p) => (csrf::token_for_pre_session(p), None),
        None => {
            let p = PreSessionToken::generate();
            (csrf::token_for_pre_session(&p), Some(p))
        }
    }
}

/// Sets the pre-session cookie on `res` when [`pre_session`] minted a new one.
pub(crate) fn with_pre_cookie(
    state: &AppState,
    mut res: Response,
    fresh: Option<PreSessionToken>,
) -> Response {
    if let Some(p) = fresh {
        append_cookie(
            res.headers_mut(),
            &state.cookies.set_pre_session(p.expose()),
        );
    }
    res
}

/// Whether a sign-in form's token matches this browser's pre-session cookie.
pub(crate) fn pre_token_ok(current: &CurrentSession, presented: &str) -> bool {
    current
        .pre
        .as_ref()
        .is_some_and(|p| csrf::matches(&csrf::token_for_pre_session(p), presented))
}

/// The 303 after a sign-in: the session cookie set, the pre-session cookie cleared.
pub(crate) fn signed_in_redirect(state: &AppState, signed: &SignedIn, to: &str) -> Response {
    // 303 so the browser follows with a GET and never re-sends the credentials (RFC 9700 §4.12).
    let mut res = Redirect::to(to).into_response();
    append_new_session(res.headers_mut(), &state.cookies, signed, true);
    res
}

/// A password sign-in of this browser (its previous session ends), counted in the metrics;
/// `return_to` is where the browser goes after a second factor, when one is asked.
///
/// # Errors
/// As [`authx_core::auth::AuthService::sign_in`].
pub(crate) async fn sign_in(
    state: &AppState,
    current: &CurrentSession,
    email: &str,
    password: &str,
    return_to: Option<&str>,
) -> Result<SignedIn, AuthError> {
    let result = match state
        .auth
        .check_password(email, password, &current.ctx)
        .await
    {
        Ok(pending) => {
            let pending = match return_to {
                Some(to) => pending.returning_to(to),
                None => pending,
            };
            state
                .auth
                .complete_sign_in(pending, &current.ctx, current.token.as_ref())
                .await
        }
        Err(e) => Err(e),
    };
    state.metrics.sign_in(SignInOutcome::of(&result));
    result
}

/// A sign-up from the page or the API. With email verification on, the checks and the
/// password hash run before the answer and the storage and mail after it, so a new and a
/// taken address are answered after the same work (their writes differ); a failure after the
/// answer is logged and audited. Without it, the account is made and signed in at once.
///
/// # Errors
/// As [`authx_core::auth::AuthService::sign_up`].
pub(crate) async fn sign_up(
    state: &AppState,
    email: &str,
    password: &str,
    ctx: &authx_core::session::ClientContext,
) -> Result<SignUpOutcome, AuthError> {
    if !state.auth.verifies_email() {
        return state.auth.sign_up(email, password, ctx).await;
    }
    let prepared = state.auth.prepare_sign_up(email, password).await?;
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state.auth.finish_sign_up(prepared).await {
            tracing::warn!(error = %e, "a sign-up could not be stored or mailed");
            state.auth.audit().record(
                authx_core::audit::AuditEvent::failure("sign_up_failed").with("reason", "error"),
            );
        }
    });
    Ok(SignUpOutcome::CheckMail)
}

/// The sign-in page's buttons, one per configured upstream provider: the OpenID ones, then
/// the SAML ones (served only when enabled).
#[must_use]
pub(crate) fn buttons(state: &AppState, return_to: &str) -> Vec<ProviderButton> {
    let rt: String = form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    let oidc = state.upstreams.providers().iter().map(|p| ProviderButton {
        name: p.name.clone(),
        start: format!("/federation/{}/start", p.name),
        label: p.display_name.clone(),
        return_to: rt.clone(),
    });
    let saml = state.config.saml.iter().map(|p| ProviderButton {
        name: p.name.clone(),
        start: format!("/federation/saml/{}/start", p.name),
        label: p.display_name.clone(),
        return_to: rt.clone(),
    });
    oidc.chain(saml).collect()
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(safe_return_to(Some("/account?x=1")), "/account?x=1");
        for evil in [
            "//evil.com",
            "/\\evil.com",
            "https://evil.com",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x",
            "",
        ] {
            assert_eq!(safe_return_to(Some(evil)), "/account", "{evil:?}");
        }
        assert_eq!(safe_return_to(None), "/account");
    }
}
