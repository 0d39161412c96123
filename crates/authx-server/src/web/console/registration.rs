//! `/admin/registration`: initial access tokens for dynamic client registration (RFC 7591),
//! and the overview's test mail.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use authx_core::registration::{InitialTokenRequest, RegistrationError};

use super::{ActionForm, Console, ConsoleForm, Pairs, api_refused, done, show};
use crate::html::console::{Choice, RegistrationPage, TokenRow};
use crate::html::display::When;
use crate::state::AppState;
use crate::web::error::ApiError;
use crate::web::extract::FormToken;

pub(super) async fn registration_get(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<super::Done>,
) -> Response {
    let notice = (q.done.as_deref() == Some("revoked")).then_some("The token was revoked.");
    registration_page(&state, &console, notice, None, None, StatusCode::OK).await
}

async fn registration_page(
    state: &AppState,
    console: &Console,
    notice: Option<&str>,
    error: Option<String>,
    token: Option<String>,
    status: StatusCode,
) -> Response {
    let tokens = match state.registration().initial_tokens().await {
        Ok(t) => t,
        Err(e) => return api_refused(&ApiError::from(e)),
    };
    let apis = match console.run(state).resources().await {
        Ok(r) => r,
        Err(e) => return super::admin_refused(e),
    };
    let now = state.oauth.now();
    let mut f = console.frame("registration");
    f.notice = notice.map(str::to_owned);
    f.error = error;
    let page = RegistrationPage {
        f,
        enabled: state.config.registration_enabled,
        tokens: tokens
            .iter()
            .map(|t| TokenRow {
                id: t.id.clone(),
                uses_left: t.uses_left,
                expires: When::at(t.expires_at, now),
                created: When::at(t.created_at, now),
                scopes: t.scopes.join(" "),
                resources: if t.resources.is_empty() {
                    "none".to_owned()
                } else {
                    t.resources.join(", ")
                },
            })
            .collect(),
        token,
        api_choices: apis
            .iter()
            .map(|a| Choice {
                value: a.id.clone(),
                label: a.id.clone(),
                checked: false,
            })
            .collect(),
    };
    show(status, &page)
}

pub(super) async fn registration_post(
    State(state): State<AppState>,
    form: ConsoleForm<Pairs>,
) -> Response {
    let ConsoleForm { console, form } = form;
    let number = |name: &str| {
        let v = form.get(name).trim();
        if v.is_empty() {
            Ok(None)
        } else {
            v.parse::<i64>().map(Some).map_err(|_| name.to_owned())
        }
    };
    let (hours, uses) = match (number("hours"), number("uses")) {
        (Ok(h), Ok(u)) => (h, u),
        (Err(field), _) | (_, Err(field)) => {
            let error = Some(format!("Not issued: {field} is a whole number."));
            return registration_page(&state, &console, None, error, None, StatusCode::BAD_REQUEST)
                .await;
        }
    };
    let request = InitialTokenRequest {
        ttl_secs: hours.map(|h| h.saturating_mul(3_600)),
        uses,
        scopes: form
            .get("scopes")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        resources: form.all("api"),
    };
    match state
        .registration()
        .create_initial_token(request, &console.actor())
        .await
    {
        Ok((_, secret)) => {
            let notice = Some("The token was issued.");
            registration_page(
                &state,
                &console,
                notice,
                None,
                Some(secret),
                StatusCode::CREATED,
            )
            .await
        }
        Err(e @ RegistrationError::InvalidRequest(_)) => {
            let error = Some(format!("Not issued: {e}."));
            registration_page(&state, &console, None, error, None, StatusCode::BAD_REQUEST).await
        }
        Err(e) => api_refused(&ApiError::from(e)),
    }
}

pub(super) async fn registration_revoke_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    match state
        .registration()
        .revoke_initial_token(&id, &form.console.actor())
        .await
    {
        Ok(_) => done("/admin/registration?done=revoked"),
        Err(e) => api_refused(&ApiError::from(e)),
    }
}

#[derive(Deserialize)]
pub(super) struct TestMailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    to: String,
}

impl FormToken for TestMailForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// Queues a test mail through the outbox, as `POST /api/v1/admin/email/test` does.
pub(super) async fn mail_test_post(
    State(state): State<AppState>,
    form: ConsoleForm<TestMailForm>,
) -> Response {
    let ConsoleForm { console, form } = form;
    match crate::web::api::admin::queue_test_mail(&state, &console.actor(), form.to.trim()).await {
        Ok(_) => done("/admin?done=mail"),
        Err(e) => api_refused(&ApiError::from(e)),
    }
}
