//! The account calls of the JSON API: sign-up, sign-in, sign-out, the CSRF token, me, sessions
//! and grants, password change, consents and the session's access token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use authx_core::auth::{AuthError, SignUpOutcome, SignedIn};
use authx_core::secret::PreSessionToken;
use authx_core::session::SessionId;

use super::views::{SessionView, UserView, consent_json, grant_json, session_json, user_json};
use crate::cookies::{append_cookie, append_new_session};
use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::error::oauth::api_error as oauth_api_error;
use crate::web::extract::{
    Caller, CurrentSession, JsonBody, SignedInUser, UserAction, check_csrf_header,
};
use crate::web::middleware::empty;
use crate::web::signin::sign_in;

#[derive(Deserialize)]
pub(super) struct Credentials {
    email: String,
    password: String,
    /// Non-browser clients may ask for the session token in the body, once.
    #[serde(default)]
    return_token: bool,
}

pub(super) async fn sign_up_post(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let outcome =
        crate::web::signin::sign_up(&state, &body.email, &body.password, &current.ctx).await?;
    match outcome {
        SignUpOutcome::SignedIn(signed) => Ok(signed_in_response(
            &state,
            StatusCode::CREATED,
            &signed,
            body.return_token,
        )),
        // The same answer whether or not the address already had an account.
        SignUpOutcome::CheckMail => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "status": "check_mail",
                "message": "we sent a mail to this address with what to do next",
            })),
        )
            .into_response()),
    }
}

pub(super) async fn sign_in_post(
    State(state): State<AppState>,
    current: CurrentSession,
    JsonBody(body): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    match sign_in(&state, &current, &body.email, &body.password, None).await {
        Ok(signed) => Ok(signed_in_response(
            &state,
            StatusCode::OK,
            &signed,
            body.return_token,
        )),
        Err(AuthError::SecondFactorRequired(c)) => {
            Ok(challenge_response(&state, &c, body.return_token))
        }
        Err(e) => Err(e.into()),
    }
}

/// `401 second_factor_required` (or `invalid_code` after a wrong one): the waiting sign-in
/// named by a cookie, and for a non-browser client in the body too; with the new factor's
/// key where the user must enrol.
fn challenge_response(
    state: &AppState,
    c: &authx_core::auth::SecondFactorChallenge,
    return_token: bool,
) -> Response {
    let (code, message) = if c.failed {
        ("invalid_code", "the code is not valid, or was used already")
    } else {
        (
            "second_factor_required",
            "enter the code from your authenticator app, or a recovery code",
        )
    };
    let mut body = json!({
        "error": code,
        "message": message,
        "tries_left": c.tries_left,
    });
    if let Some(e) = &c.enrolment {
        body["enrolment"] = json!({
            "otpauth_uri": e.otpauth_uri(),
            "secret": e.secret().to_base32(),
        });
    }
    if return_token {
        body["second_factor_token"] = Value::String(c.token().expose().to_owned());
    }
    let mut res = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    append_cookie(
        res.headers_mut(),
        &state.cookies.set_second_factor(c.token().expose()),
    );
    res
}

#[derive(Deserialize)]
pub(super) struct SecondFactorBody {
    code: String,
    /// The waiting sign-in, for a client without cookies (else the cookie names it).
    #[serde(default)]
    second_factor_token: Option<String>,
    #[serde(default)]
    return_token: bool,
}

/// The second step of a sign-in: a code, a recovery code, or the first code of a factor
/// being enrolled.
pub(super) async fn second_factor_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
    JsonBody(body): JsonBody<SecondFactorBody>,
) -> Result<Response, ApiError> {
    let cookie = crate::cookies::cookie_value(&headers, state.cookies.second_factor());
    let Some(waiting) = body.second_factor_token.as_deref().or(cookie) else {
        return Err(AuthError::SignInExpired.into());
    };
    let result = state
        .auth
        .answer_second_factor(
            waiting,
            body.code.trim(),
            &current.ctx,
            current.token.as_ref(),
        )
        .await;
    state
        .metrics
        .second_factor(authx_core::auth::SignInOutcome::of(&result));
    match result {
        Ok(done) => {
            let mut body = signed_in_body(&done.signed, body.return_token);
            if let Some(codes) = &done.recovery_codes {
                let list: Vec<&str> = codes.codes.iter().map(|c| c.expose()).collect();
                body["recovery_codes"] = json!(list);
            }
            if let Some(left) = done.recovery_codes_left {
                body["recovery_codes_left"] = json!(left);
            }
            let mut res = (StatusCode::OK, Json(body)).into_response();
            append_new_session(res.headers_mut(), &state.cookies, &done.signed, true);
            append_cookie(res.headers_mut(), &state.cookies.clear_second_factor());
            Ok(res)
        }
        Err(AuthError::SecondFactorRequired(c)) => {
            Ok(challenge_response(&state, &c, body.return_token))
        }
        Err(e) => Err(e.into()),
    }
}

/// The body of a sign-in's answer: the user, the session, and for a non-browser client that
/// asked, the session token.
fn signed_in_body(signed: &SignedIn, return_token: bool) -> Value {
    let mut body = json!({
        "user": user_json(&signed.user),
        "session": session_json(&signed.session, true),
    });
    if return_token {
        body["session_token"] = Value::String(signed.token.expose().to_owned());
    }
    body
}

/// The user and the new session, its cookie set and the pre-session cookie cleared.
fn signed_in_response(
    state: &AppState,
    status: StatusCode,
    signed: &SignedIn,
    return_token: bool,
) -> Response {
    let body = signed_in_body(signed, return_token);
    let mut res = (status, Json(body)).into_response();
    append_new_session(res.headers_mut(), &state.cookies, signed, true);
    res
}

pub(super) async fn sign_out_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    current: CurrentSession,
) -> Result<Response, ApiError> {
    if current.auth.is_some() {
        check_csrf_header(&headers, &current)?;
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

pub(super) async fn csrf_get(State(state): State<AppState>, current: CurrentSession) -> Response {
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

pub(super) async fn me_get(Caller { auth, .. }: SignedInUser) -> Response {
    // Serialized straight from borrowed views: the most frequent authenticated call builds no
    // intermediate JSON tree.
    #[derive(Serialize)]
    struct Me<'a> {
        user: UserView<'a>,
        session: SessionView<'a>,
    }
    Json(Me {
        user: UserView::of(&auth.user),
        session: SessionView::of(&auth.session, true),
    })
    .into_response()
}

pub(super) async fn sessions_get(
    State(state): State<AppState>,
    Caller { auth, .. }: SignedInUser,
) -> Result<Json<Value>, ApiError> {
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

pub(super) async fn session_delete(
    State(state): State<AppState>,
    call: UserAction,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = &call.auth.user.id;
    match state
        .auth
        .revoke_session(user, &SessionId(id.clone()))
        .await
    {
        Ok(()) => Ok(empty(StatusCode::NO_CONTENT)),
        // Not a browser session: perhaps an application's grant of this user.
        Err(AuthError::NotFound) => {
            let revoked = state
                .oauth
                .revoke_user_grant(user, &id)
                .await
                .map_err(oauth_api_error)?;
            if revoked {
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

pub(super) async fn revoke_others_post(
    State(state): State<AppState>,
    call: UserAction,
) -> Result<Json<Value>, ApiError> {
    let auth = &call.auth;
    let n = state
        .auth
        .revoke_other_sessions(&auth.user.id, Some(&auth.session.id))
        .await?;
    Ok(Json(json!({"revoked": n})))
}

#[derive(Deserialize)]
pub(super) struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(super) async fn password_post(
    State(state): State<AppState>,
    call: UserAction<JsonBody<PasswordChange>>,
) -> Result<Response, ApiError> {
    let JsonBody(body) = &call.body;
    let signed = state
        .auth
        .change_password(
            &call.auth,
            &body.current_password,
            &body.new_password,
            &call.ctx,
        )
        .await?;
    let mut res = Json(json!({
        "user": user_json(&signed.user),
        "session": session_json(&signed.session, true),
        "csrf_token": authx_core::csrf::token_for_session(&signed.token),
    }))
    .into_response();
    append_new_session(res.headers_mut(), &state.cookies, &signed, false);
    Ok(res)
}

#[derive(Deserialize)]
pub(super) struct ForgotRequest {
    email: String,
}

/// Asks for a password reset link: `202` with the same body for every address (the request
/// runs after the answer; see [`crate::web::recovery::start_reset`]).
pub(super) async fn forgot_post(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ForgotRequest>,
) -> Response {
    crate::web::recovery::start_reset(&state, body.email);
    let message = "if an account exists for this address, a link to reset its password is on \
                   its way";
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "accepted", "message": message })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct SessionTokenRequest {
    resource: String,
    scope: Option<String>,
}

/// The first-party hybrid: a signed-in browser session mints a short-lived access token for one
/// of the registered APIs. The token dies with the session.
pub(super) async fn session_token_post(
    State(state): State<AppState>,
    call: UserAction<JsonBody<SessionTokenRequest>>,
) -> Result<Response, ApiError> {
    let JsonBody(req) = &call.body;
    let tokens = state
        .oauth
        .tokens()
        .session_token(
            &call.auth.user,
            &call.auth.session,
            &req.resource,
            req.scope.as_deref(),
            state.config.oauth.session_token_ttl_secs,
        )
        .await
        .map_err(oauth_api_error)?;
    Ok(Json(tokens.to_json()).into_response())
}

pub(super) async fn consents_get(
    State(state): State<AppState>,
    Caller { auth, .. }: SignedInUser,
) -> Result<Json<Value>, ApiError> {
    let list = state
        .oauth
        .stores()
        .grants
        .list_consents(&auth.user.id)
        .await
        .map_err(|e| oauth_api_error(e.into()))?;
    let items: Vec<Value> = list.iter().map(consent_json).collect();
    Ok(Json(json!({"consents": items})))
}

pub(super) async fn consent_delete(
    State(state): State<AppState>,
    call: UserAction,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    if state
        .auth
        .withdraw_consent(&call.auth.user.id, &client_id)
        .await?
    {
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no consent for that client",
        ))
    }
}
