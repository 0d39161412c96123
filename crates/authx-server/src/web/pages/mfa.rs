//! Second factors in the browser: the second step of a sign-in (`/login/second-factor`), the
//! step-up of a signed-in session (`/login/step-up`), and the account's authenticator apps
//! and recovery codes (`/account/mfa/...`).
//!
//! # Security
//! - The waiting sign-in is named only by an HttpOnly cookie (`authx_mfa`, five minutes); the
//!   form carries the pre-session synchronizer token, as the sign-in form does.
//! - Factor changes are session-bound CSRF forms, and the core asks for the current password
//!   unless the sign-in is under five minutes old.
//! - The enrolment key and recovery codes are shown in the answer to a POST, once; the pages
//!   are not cached (`Cache-Control: no-store` is set on every page by the middleware).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use authx_core::auth::{AuthError, SecondFactorChallenge, SecondFactorDone};
use authx_core::mfa::FactorId;
use authx_core::mfa::recovery::RecoveryCodes;

use super::account::account_page;
use crate::cookies::{append_cookie, append_new_session, cookie_value};
use crate::html::account::{EnrolPage, EnrolView, RecoveryCodesPage, SecondFactorPage};
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;
use crate::web::error::auth::page as error_page;
use crate::web::extract::{CsrfForm, CurrentSession, FormToken, PageForm, to_login};
use crate::web::signin::{
    error_status, pre_session, pre_token_ok, safe_return_to, set_retry_after, signed_in_redirect,
    with_pre_cookie,
};

/// The second step's page for `challenge`, setting the cookie that names it.
pub(crate) fn challenge_page(
    state: &AppState,
    current: &CurrentSession,
    challenge: &SecondFactorChallenge,
) -> Response {
    let (token, fresh) = pre_session(current);
    let (status, error) = if challenge.failed {
        (
            StatusCode::UNAUTHORIZED,
            Some("That code is not valid, or was used already."),
        )
    } else {
        (StatusCode::OK, None)
    };
    let page = SecondFactorPage {
        csrf: &token,
        error,
        enrol: challenge.enrolment.as_ref().map(EnrolView::of),
        failed: challenge.failed,
        tries_left: authx_core::plural::count(
            u64::from(challenge.tries_left),
            "try left",
            "tries left",
        ),
        passkey: challenge.passkey,
    };
    let mut res = with_pre_cookie(state, render(status, &page), fresh);
    // The answer may end in a redirect to an application (a sign-in through
    // `/oauth2/authorize`): the form's policy leaves `form-action` open, as the sign-in form's.
    res.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(super::LOGIN_CSP),
    );
    if challenge.passkey {
        super::passkey::allow_passkey_script(&mut res, true);
    }
    append_cookie(
        res.headers_mut(),
        &state.cookies.set_second_factor(challenge.token().expose()),
    );
    res
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf_token: String,
}

pub(super) async fn second_factor_post(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    PageForm(form): PageForm<CodeForm>,
) -> Response {
    if !pre_token_ok(&current, &form.csrf_token) {
        return expired();
    }
    let Some(waiting) = cookie_value(&headers, state.cookies.second_factor()) else {
        return expired();
    };
    let result = state
        .auth
        .answer_second_factor(
            waiting,
            form.code.trim(),
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state
        .metrics
        .second_factor(authx_core::auth::SignInOutcome::of(&result));
    match result {
        Ok(done) => finished(&state, done),
        Err(AuthError::SecondFactorRequired(c)) => challenge_page(&state, &current, &c),
        Err(AuthError::SignInExpired) => expired(),
        Err(e) => {
            let mut res = error_page(&e);
            append_cookie(res.headers_mut(), &state.cookies.clear_second_factor());
            res
        }
    }
}

/// A sign-in that ended at its second step: on to where it was going, or first to the
/// recovery codes made by an enrolment.
pub(super) fn finished(state: &AppState, done: SecondFactorDone) -> Response {
    let to = safe_return_to(done.return_to.as_deref());
    let mut res = match &done.recovery_codes {
        Some(codes) => {
            let mut res = codes_page(codes, "Two-step verification is on", &to);
            append_new_session(res.headers_mut(), &state.cookies, &done.signed, true);
            res
        }
        None => signed_in_redirect(state, &done.signed, &to),
    };
    append_cookie(res.headers_mut(), &state.cookies.clear_second_factor());
    res
}

/// The page of an unknown, used or expired waiting sign-in.
pub(super) fn expired() -> Response {
    Message::new(
        "Sign-in expired",
        "This sign-in has expired",
        Paragraph::Alert("Sign in again: the code must follow the password within five minutes."),
    )
    .back_to_login()
    .response(StatusCode::UNAUTHORIZED)
}

fn codes_page(codes: &RecoveryCodes, heading: &str, continue_to: &str) -> Response {
    let page = RecoveryCodesPage {
        heading,
        codes: codes.codes.iter().map(|c| c.expose().to_owned()).collect(),
        continue_to,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize, Default)]
pub(super) struct StepUpQuery {
    return_to: Option<String>,
}

/// Step-up: a signed-in user proves their second factor again (an application asked for
/// more than this session has); the answer replaces the session.
pub(super) async fn step_up_get(
    State(state): State<AppState>,
    current: CurrentSession,
    q: Query<StepUpQuery>,
) -> Response {
    let return_to = safe_return_to(q.return_to.as_deref());
    let Some(auth) = &current.auth else {
        return to_login(&return_to);
    };
    match state.auth.step_up(auth, &return_to).await {
        Ok(c) => challenge_page(&state, &current, &c),
        Err(AuthError::Factor(authx_core::mfa::MfaError::NoSecondFactor)) => {
            Redirect::to(&return_to).into_response()
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct BeginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for BeginForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// What the account page shows again when a factor change is refused for a reason the user
/// can put right (password, freshness, too many factors, a bad name).
async fn refused(state: &AppState, current: &CurrentSession, e: &AuthError) -> Response {
    let (status, retry) = error_status(e);
    if status.is_server_error() {
        return error_page(e);
    }
    let mut res = account_page(state, current, None, Some(&e.to_string()), status).await;
    set_retry_after(&mut res, retry);
    res
}

fn password(p: &str) -> Option<&str> {
    (!p.is_empty()).then_some(p)
}

pub(super) async fn totp_begin_post(
    State(state): State<AppState>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<BeginForm>,
) -> Response {
    let begun = state
        .auth
        .begin_totp_enrolment(
            &auth,
            &form.name,
            password(&form.current_password),
            &current.ctx,
        )
        .await;
    match begun {
        Ok(e) => enrol_page(&current, &e, None, StatusCode::OK),
        Err(e) => refused(&state, &current, &e).await,
    }
}

fn enrol_page(
    current: &CurrentSession,
    e: &authx_core::mfa::TotpEnrolment,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let Some(token) = current.csrf_token() else {
        return to_login("/account");
    };
    let page = EnrolPage {
        csrf: &token,
        error,
        factor_id: &e.factor_id().0,
        enrol: EnrolView::of(e),
    };
    render(status, &page)
}

#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    factor_id: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for ConfirmForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn totp_confirm_post(
    State(state): State<AppState>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<ConfirmForm>,
) -> Response {
    let id = FactorId(form.factor_id.clone());
    match state
        .auth
        .confirm_totp_enrolment(&auth, &id, form.code.trim())
        .await
    {
        Ok(c) => match &c.recovery_codes {
            Some(codes) => codes_page(codes, "Two-step verification is on", "/account?done=mfa"),
            None => Redirect::to("/account?done=mfa").into_response(),
        },
        Err(AuthError::Factor(authx_core::mfa::MfaError::InvalidCode)) => {
            match state.auth.pending_enrolment(&auth, &id).await {
                Ok(e) => enrol_page(
                    &current,
                    &e,
                    Some(
                        "That code is not valid. Check the time on your device and try the next code.",
                    ),
                    StatusCode::BAD_REQUEST,
                ),
                Err(e) => refused(&state, &current, &e).await,
            }
        }
        Err(e) => refused(&state, &current, &e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct PasswordOnly {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for PasswordOnly {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn factor_remove_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<PasswordOnly>,
) -> Response {
    match state
        .auth
        .remove_factor(
            &auth,
            &FactorId(id),
            password(&form.current_password),
            &current.ctx,
        )
        .await
    {
        Ok(()) => Redirect::to("/account?done=mfa_removed").into_response(),
        Err(e) => refused(&state, &current, &e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct RenameForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    csrf_token: String,
}

impl FormToken for RenameForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn factor_rename_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<RenameForm>,
) -> Response {
    match state
        .auth
        .rename_factor(&auth, &FactorId(id), &form.name)
        .await
    {
        Ok(()) => Redirect::to("/account?done=mfa_renamed").into_response(),
        Err(e) => refused(&state, &current, &e).await,
    }
}

pub(super) async fn recovery_codes_post(
    State(state): State<AppState>,
    CsrfForm {
        auth,
        current,
        form,
    }: CsrfForm<PasswordOnly>,
) -> Response {
    match state
        .auth
        .regenerate_recovery_codes(&auth, password(&form.current_password), &current.ctx)
        .await
    {
        Ok(codes) => codes_page(&codes, "New recovery codes", "/account"),
        Err(e) => refused(&state, &current, &e).await,
    }
}
