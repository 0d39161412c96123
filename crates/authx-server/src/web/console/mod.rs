//! The administration console under `/admin`: server-rendered pages for users, applications,
//! APIs, signing keys, federation and the audit trail. Every action is one call of
//! [`authx_core::admin::Administration`], the same the JSON admin API and the `authx` command
//! line make, recorded as made `via` the console under the administrator's name.
//!
//! # Security
//! - Only administrators: anyone else signed in gets 403 on every path; a signed-out browser
//!   goes to the sign-in page. Where `[mfa] required_for` covers administrators, a session
//!   without a second factor steps up first.
//! - Every action is a POST with the session's synchronizer token in the form, behind the
//!   origin check of every browser route; nothing changes on GET.
//! - Destructive actions (disable, revoke everything, roles, factor reset, secret and key
//!   rotation, deletion, creating a user) need a sign-in within the last five minutes or the
//!   administrator's password in the form.
//! - Pages load one script, htmx, from this server (`script-src 'self'`), with no inline
//!   script or style; every action also works without it. Answers are `no-store`: a secret
//!   shown once stays out of caches. htmx swaps refusals in as well (their text says why),
//!   and is sent to the sign-in and step-up pages with `HX-Redirect`, so those load in full
//!   under their own policy.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use authx_core::admin::{Actor, Administration};
use authx_core::audit::{AuditEvent, AuditRecord, record_current};
use authx_core::auth::{AuthError, Authenticated, REAUTH_WINDOW_SECS};
use authx_core::session::ClientContext;

use super::error::auth::status as error_status;
use super::extract::{CurrentSession, FormToken, PageForm, csrf_refused, to_login};
use crate::html::console::{Denied, EventRow, Frame, LinkTo, Pager};
use crate::html::display::When;
use crate::html::{Message, Paragraph, render};
use crate::state::AppState;

mod clients;
mod pages;
mod registration;
mod users;

/// The version of the vendored htmx (`assets/htmx.min.js`, `assets/README.md`).
pub const HTMX_VERSION: &str = "2.0.11";
/// htmx, served at `/assets/htmx.min.js`.
const HTMX: &str = include_str!("../../../assets/htmx.min.js");

/// The console pages' policy: scripts from this server only, requests to it only.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The console routes.
pub fn router() -> Router<crate::state::AppState> {
    Router::new()
        .route("/assets/htmx.min.js", get(htmx_get))
        .route("/admin", get(pages::overview_get))
        .route("/admin/keys", get(pages::keys_get))
        .route("/admin/keys/rotate", post(pages::keys_rotate_post))
        .route("/admin/apis", get(pages::apis_get).post(pages::apis_post))
        .route(
            "/admin/registration",
            get(registration::registration_get).post(registration::registration_post),
        )
        .route(
            "/admin/registration/{id}/revoke",
            post(registration::registration_revoke_post),
        )
        .route("/admin/mail/test", post(registration::mail_test_post))
        .route("/admin/federation", get(pages::federation_get))
        .route(
            "/admin/federation/{name}/test",
            post(pages::federation_test_post),
        )
        .route("/admin/audit", get(pages::audit_get))
        .route("/admin/audit/tail", get(pages::audit_tail_get))
        .route(
            "/admin/users",
            get(users::users_get).post(users::users_post),
        )
        .route("/admin/users/{id}", get(users::user_get))
        .route("/admin/users/{id}/disable", post(users::disable_post))
        .route("/admin/users/{id}/enable", post(users::enable_post))
        .route("/admin/users/{id}/revoke-all", post(users::revoke_all_post))
        .route("/admin/users/{id}/reset-link", post(users::reset_link_post))
        .route(
            "/admin/users/{id}/reset-factors",
            post(users::reset_factors_post),
        )
        .route("/admin/users/{id}/admin", post(users::admin_post))
        .route(
            "/admin/users/{id}/sessions/{session}/revoke",
            post(users::session_revoke_post),
        )
        .route(
            "/admin/users/{id}/grants/{grant}/revoke",
            post(users::grant_revoke_post),
        )
        .route(
            "/admin/clients",
            get(clients::clients_get).post(clients::clients_post),
        )
        .route("/admin/clients/new", get(clients::new_get))
        .route(
            "/admin/clients/{id}",
            get(clients::client_get).post(clients::edit_post),
        )
        .route("/admin/clients/{id}/edit", get(clients::edit_get))
        .route("/admin/clients/{id}/secret", post(clients::secret_post))
        .route("/admin/clients/{id}/delete", post(clients::delete_post))
}

async fn htmx_get() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        HTMX,
    )
        .into_response()
}

/// A signed-in administrator looking at the console.
pub(crate) struct Console {
    pub(crate) auth: Arc<Authenticated>,
    pub(crate) csrf: String,
    pub(crate) ctx: ClientContext,
    /// Signed in within the re-authentication window.
    pub(crate) fresh: bool,
}

impl Console {
    /// The administration as this administrator, through the console.
    pub(crate) fn run<'a>(&self, state: &'a AppState) -> Administration<'a> {
        Administration::new(
            &state.auth,
            &state.oauth,
            state.audit_store.as_ref(),
            self.actor(),
        )
    }

    /// This administrator, acting through the console.
    pub(crate) fn actor(&self) -> Actor {
        Actor::Console(self.auth.user.id.clone())
    }

    /// The frame of a page of `section`.
    pub(crate) fn frame(&self, section: &'static str) -> Frame {
        Frame {
            csrf: self.csrf.clone(),
            section,
            notice: None,
            error: None,
            fresh: self.fresh,
        }
    }

    /// Checks a session, once resolved: signed in, an administrator, a second factor where
    /// policy requires one.
    #[allow(clippy::result_large_err)] // The error is the finished response.
    fn check(state: &AppState, current: CurrentSession, path: &str) -> Result<Self, Response> {
        let (Some(auth), Some(csrf)) = (current.auth.clone(), current.csrf_token()) else {
            return Err(to_login(path));
        };
        if !auth.user.is_admin {
            record_current(
                AuditEvent::failure("admin_refused")
                    .user(&auth.user.id)
                    .with("reason", "not_an_administrator")
                    .with("via", "console"),
            );
            return Err(page(
                StatusCode::FORBIDDEN,
                render(StatusCode::FORBIDDEN, &Denied),
            ));
        }
        if state.auth.mfa_requirement().applies_to(&auth.user)
            && !auth.authentication().has_second_factor()
        {
            let mut target = String::from("/login/step-up?return_to=");
            target.push_str(&encode(path));
            return Err(Redirect::to(&target).into_response());
        }
        let fresh = auth
            .authentication()
            .is_fresh(state.oauth.now(), REAUTH_WINDOW_SECS);
        Ok(Self {
            auth,
            csrf,
            ctx: current.ctx,
            fresh,
        })
    }

    /// For a destructive action: a recent sign-in, or the password typed into the form.
    pub(crate) async fn confirm(
        &self,
        state: &AppState,
        current_password: &str,
    ) -> Result<(), Response> {
        match state
            .auth
            .confirm_presence(&self.auth, Some(current_password), &self.ctx)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(refused(&e)),
        }
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let current = CurrentSession::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let path = parts
            .uri
            .path_and_query()
            .map_or("/admin", |p| p.as_str())
            .to_owned();
        let htmx = parts
            .headers
            .get("hx-request")
            .is_some_and(|v| v.as_bytes() == b"true");
        Self::check(state, current, &path).map_err(|res| if htmx { full_load(res) } else { res })
    }
}

/// For a request htmx made, a redirect (to the sign-in or step-up page) as `HX-Redirect`, so
/// that the browser loads that page in full: it has a script and a policy of its own, which a
/// swap into the console's page would leave out. The browser would follow a 303 itself and hand
/// htmx only the page it leads to.
fn full_load(res: Response) -> Response {
    if !res.status().is_redirection() {
        return res;
    }
    let Some(location) = res.headers().get(header::LOCATION).cloned() else {
        return res;
    };
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::HeaderName::from_static("hx-redirect"), location);
    page(StatusCode::NO_CONTENT, res)
}

/// A console form that passed the checks of [`Console`] and carried the session's token.
pub(crate) struct ConsoleForm<T> {
    pub(crate) console: Console,
    pub(crate) form: T,
}

impl<T: DeserializeOwned + FormToken> FromRequest<AppState> for ConsoleForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let PageForm::<T>(form) =
            PageForm::from_request(Request::from_parts(parts, body), state).await?;
        if !authx_core::csrf::matches(&console.csrf, form.csrf_token()) {
            return Err(csrf_refused());
        }
        Ok(Self { console, form })
    }
}

/// `?done=...`: which action a page that an action redirected to reports as done.
#[derive(Deserialize, Default)]
pub(crate) struct Done {
    pub(crate) done: Option<String>,
}

/// A form of a token and, for destructive actions, the administrator's password.
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
}

impl FormToken for ActionForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// A form as its name-value pairs, in order: repeated names (checkboxes) included.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Pairs(pub(crate) Vec<(String, String)>);

impl Pairs {
    /// The first value of `name`, or "".
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl FormToken for Pairs {
    fn csrf_token(&self) -> &str {
        self.get("csrf_token")
    }
}

/// A console answer: the console's policy, never cached.
pub(crate) fn page(status: StatusCode, mut res: Response) -> Response {
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Renders a console page.
pub(crate) fn show(status: StatusCode, template: &impl askama::Template) -> Response {
    page(status, render(status, template))
}

/// The page of an action refused or failed: what went wrong, in words, and the way back.
pub(crate) fn refused(e: &AuthError) -> Response {
    let (status, retry) = error_status(e);
    let text = match e {
        AuthError::RecentSignInRequired => {
            "Confirm it is you: type your password into the form, or sign in again, then repeat \
             the action."
                .to_owned()
        }
        _ if status.is_server_error() => {
            "The service is temporarily unavailable. Try again shortly.".to_owned()
        }
        other => other.to_string(),
    };
    let mut res = page(
        status,
        Message::new("Not done", "Not done", Paragraph::Alert(&text)).response(status),
    );
    super::error::set_retry_after(&mut res, retry);
    res
}

/// The page of a refused administrative action.
pub(crate) fn admin_refused(e: authx_core::admin::AdminError) -> Response {
    use authx_core::admin::AdminError;
    match e {
        AdminError::Auth(e) => refused(&e),
        AdminError::NotFound(what) => page(
            StatusCode::NOT_FOUND,
            Message::new("Not found", "Not found", Paragraph::Alert(what))
                .response(StatusCode::NOT_FOUND),
        ),
        AdminError::InvalidRequest(m) => page(
            StatusCode::BAD_REQUEST,
            Message::new("Not done", "Not done", Paragraph::Alert(&m))
                .response(StatusCode::BAD_REQUEST),
        ),
        AdminError::InvalidScope => page(
            StatusCode::BAD_REQUEST,
            Message::new(
                "Not done",
                "Not done",
                Paragraph::Alert("A scope is malformed."),
            )
            .response(StatusCode::BAD_REQUEST),
        ),
        AdminError::OAuth(e) => api_refused(&super::error::oauth::api_error(e)),
    }
}

/// The page of an action the provider refused or failed.
pub(crate) fn api_refused(api: &super::error::ApiError) -> Response {
    let text = if api.status.is_server_error() {
        "The service is temporarily unavailable. Try again shortly."
    } else {
        api.message.as_str()
    };
    page(
        api.status,
        Message::new("Not done", "Not done", Paragraph::Alert(text)).response(api.status),
    )
}

/// 303 to `to`, after an action.
pub(crate) fn done(to: &str) -> Response {
    page(StatusCode::SEE_OTHER, Redirect::to(to).into_response())
}

/// `s` percent-encoded for a path segment or a query value.
pub(crate) fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// "51–100 of 123 users", and the links around a page of a list of `total` items.
pub(crate) fn pager(
    page_no: u64,
    per_page: u32,
    shown: usize,
    total: u64,
    noun: &str,
    link: impl Fn(u64) -> String,
) -> Pager {
    let first = page_no * u64::from(per_page);
    let summary = if shown == 0 {
        format!("No {noun} on this page; {total} in all.")
    } else {
        format!("{}–{} of {total} {noun}", first + 1, first + shown as u64)
    };
    Pager {
        summary,
        prev: (page_no > 0).then(|| link(page_no - 1)),
        next: (first + (shown as u64) < total).then(|| link(page_no + 1)),
    }
}

/// An audit event as the tables show it.
pub(crate) fn event_row(e: &AuditRecord, now: authx_core::Timestamp) -> EventRow {
    EventRow {
        id: e.id,
        at: When::at(e.at, now),
        kind: e.kind.clone(),
        kind_href: format!("/admin/audit?kind={}", encode(&e.kind)),
        outcome: e.outcome.clone(),
        user: e.user_id.as_ref().map(|u| LinkTo {
            label: u.clone(),
            href: format!("/admin/users/{}", encode(u)),
        }),
        client: e.client_id.as_ref().map(|c| LinkTo {
            label: c.clone(),
            href: format!("/admin/clients/{}", encode(c)),
        }),
        ip: e.ip.clone().unwrap_or_else(|| "-".to_owned()),
        detail: e.detail.clone(),
    }
}
