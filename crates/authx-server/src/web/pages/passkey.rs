//! Passkeys in the browser: the script (`/assets/passkey.js`) and the JSON halves of each
//! ceremony it runs — adding a passkey from `/account`, answering the second-factor step with
//! one, and signing in with one alone from `/login`.
//!
//! # Security
//! - **No inline script.** The script is a file served by authx; only the pages that use it
//!   (`/login`, the second-factor step, `/account`) widen their policy, to `script-src 'self'`
//!   and `connect-src 'self'`.
//! - **CSRF.** Every POST carries the page's synchronizer token in its JSON body: the
//!   session-bound one for account changes, the pre-session one for sign-in. The token is
//!   checked before anything else; the ceremony itself is bound to the session or pre-session
//!   that began it (see [`authx_core::auth`]).
//! - **State stays on the server.** The browser holds only an opaque, single-use ceremony
//!   token (or, for the second factor, the HttpOnly `authx_mfa` cookie, replaced at each
//!   step).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::json;

use authx_core::auth::{AuthError, PasskeyCeremony, SignInOutcome};

use crate::cookies::{append_cookie, append_new_session, cookie_value};
use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::extract::{CurrentSession, JsonBody, session_token_ok};
use crate::web::signin::{pre_token_ok, safe_return_to};

/// The passkey script.
const SCRIPT: &str = include_str!("../../../assets/passkey.js");

/// The policy of a page that runs the passkey script: the default, plus the script file
/// and its `fetch` calls to authx. `open_forms` keeps `form-action` open as the sign-in
/// pages need (they may end in a redirect to an application).
const PASSKEY_CSP_OPEN_FORMS: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";
const PASSKEY_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Widens `res`'s policy for the passkey script.
pub(crate) fn allow_passkey_script(res: &mut Response, open_forms: bool) {
    let csp = if open_forms {
        PASSKEY_CSP_OPEN_FORMS
    } else {
        PASSKEY_CSP
    };
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
}

pub(super) async fn script_get() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        SCRIPT,
    )
        .into_response()
}

/// The answer to a begun ceremony.
fn begun(c: &PasskeyCeremony) -> Response {
    let mut body = json!({ "options": c.options });
    if let Some(t) = c.token() {
        body["ceremony"] = json!(t.expose());
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
pub(super) struct RegisterBegin {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
}

/// `POST /account/passkeys/begin`: the creation options, once the user proved to be there.
pub(super) async fn register_begin(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<RegisterBegin>,
) -> Result<Response, ApiError> {
    let Some(auth) = &current.auth else {
        return Err(ApiError::unauthenticated());
    };
    if !session_token_ok(&current, &body.csrf_token) {
        return Err(ApiError::csrf());
    }
    let password = (!body.current_password.is_empty()).then_some(body.current_password.as_str());
    let c = state
        .auth
        .begin_passkey_registration(auth, password, &current.ctx)
        .await?;
    Ok(begun(&c))
}

#[derive(Deserialize)]
pub(super) struct RegisterFinish {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    credential: serde_json::Value,
}

/// `POST /account/passkeys/finish`: the new credential; with the first recovery codes when
/// this is the account's first factor.
pub(super) async fn register_finish(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<RegisterFinish>,
) -> Result<Response, ApiError> {
    let Some(auth) = &current.auth else {
        return Err(ApiError::unauthenticated());
    };
    if !session_token_ok(&current, &body.csrf_token) {
        return Err(ApiError::csrf());
    }
    let confirmed = state
        .auth
        .finish_passkey_registration(
            auth,
            &body.ceremony,
            &body.name,
            &body.credential.to_string(),
        )
        .await?;
    let mut answer = json!({
        "factor_id": confirmed.factor_id.0,
        "redirect": "/account?done=passkey",
    });
    // The first factor's recovery codes, shown once by the page (the answer is not cached:
    // the middleware sets `Cache-Control: no-store`).
    if let Some(codes) = &confirmed.recovery_codes {
        let list: Vec<&str> = codes.codes.iter().map(|c| c.expose()).collect();
        answer["recovery_codes"] = json!(list);
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
pub(super) struct SignInBegin {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /login/passkey/begin`: the request options for any discoverable passkey, bound to
/// this browser's pre-session.
pub(super) async fn sign_in_begin(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<SignInBegin>,
) -> Result<Response, ApiError> {
    if !pre_token_ok(&current, &body.csrf_token) {
        return Err(ApiError::csrf());
    }
    let c = state.auth.begin_passkey_sign_in(&body.csrf_token).await?;
    Ok(begun(&c))
}

#[derive(Deserialize)]
pub(super) struct SignInFinish {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    credential: serde_json::Value,
}

/// `POST /login/passkey/finish`: the assertion; a session starts.
pub(super) async fn sign_in_finish(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<SignInFinish>,
) -> Result<Response, ApiError> {
    if !pre_token_ok(&current, &body.csrf_token) {
        return Err(ApiError::csrf());
    }
    let to = safe_return_to(body.return_to.as_deref());
    let signed = state
        .auth
        .finish_passkey_sign_in(
            &body.ceremony,
            &body.csrf_token,
            &body.credential.to_string(),
            &current.ctx,
            current.token.as_ref(),
            Some(&to),
        )
        .await;
    state.metrics.sign_in(SignInOutcome::of(&signed));
    let signed = signed?;
    let mut res = Json(json!({ "redirect": to })).into_response();
    append_new_session(res.headers_mut(), &state.cookies, &signed, true);
    Ok(res)
}

/// `POST /login/second-factor/passkey/begin`: the request options for the waiting user's
/// passkeys; the waiting sign-in's cookie is replaced.
pub(super) async fn second_factor_begin(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SignInBegin>,
) -> Result<Response, ApiError> {
    if !pre_token_ok(&current, &body.csrf_token) {
        return Err(ApiError::csrf());
    }
    let Some(waiting) = cookie_value(&headers, state.cookies.second_factor()) else {
        return Err(AuthError::SignInExpired.into());
    };
    let (challenge, c) = state
        .auth
        .begin_second_factor_passkey(waiting, &current.ctx)
        .await?;
    let mut res = begun(&c);
    append_cookie(
        res.headers_mut(),
        &state.cookies.set_second_factor(challenge.token().expose()),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub(super) struct SecondFactorFinish {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    credential: serde_json::Value,
}

/// `POST /login/second-factor/passkey/finish`: the assertion; the session starts, or (a
/// refused passkey) the step waits again under a new cookie.
pub(super) async fn second_factor_finish(
    State(state): State<AppState>,
    current: CurrentSession,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SecondFactorFinish>,
) -> Result<Response, ApiError> {
    if !pre_token_ok(&current, &body.csrf_token) {
        return Err(ApiError::csrf());
    }
    let Some(waiting) = cookie_value(&headers, state.cookies.second_factor()) else {
        return Err(AuthError::SignInExpired.into());
    };
    let result = state
        .auth
        .answer_second_factor_passkey(
            waiting,
            &body.credential.to_string(),
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state.metrics.second_factor(SignInOutcome::of(&result));
    match result {
        Ok(done) => {
            let to = safe_return_to(done.return_to.as_deref());
            let mut res = Json(json!({ "redirect": to })).into_response();
            append_new_session(res.headers_mut(), &state.cookies, &done.signed, true);
            append_cookie(res.headers_mut(), &state.cookies.clear_second_factor());
            Ok(res)
        }
        Err(AuthError::SecondFactorRequired(c)) => {
            let mut res = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_passkey",
                format!(
                    "the passkey was not accepted; {}",
                    authx_core::plural::count(u64::from(c.tries_left), "try left", "tries left")
                ),
            )
            .into_response();
            append_cookie(
                res.headers_mut(),
                &state.cookies.set_second_factor(c.token().expose()),
            );
            Ok(res)
        }
        Err(e) => {
            let mut res = ApiError::from(e).into_response();
            append_cookie(res.headers_mut(), &state.cookies.clear_second_factor());
            Ok(res)
        }
    }
}
