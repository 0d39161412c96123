//! `/admin/users`: search, a user's page with everything of theirs, and the actions on them.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use authx_core::audit::AuditQuery;
use authx_core::session::SessionId;
use authx_core::user::{User, UserId, UserStatus};

use super::{
    ActionForm, Console, ConsoleForm, admin_refused, done, encode, event_row, pager, show,
};
use crate::html::console::{UserPage, UserRow, UsersPage};
use crate::html::display::When;
use crate::state::AppState;
use crate::web::extract::FormToken;
use crate::web::pages::account::{factor_rows, grant_rows, link_rows, session_row};

/// Users on one page of the list.
const PER_PAGE: u32 = 50;
/// Events on a user's page.
const RECENT_EVENTS: u32 = 20;

/// A user as the console shows them.
pub(super) fn user_row(u: &User, now: authx_core::Timestamp) -> UserRow {
    UserRow {
        id: u.id.0.clone(),
        href: format!("/admin/users/{}", encode(&u.id.0)),
        email: u.email.clone(),
        status: u.status.as_str(),
        active: u.status == UserStatus::Active,
        admin: u.is_admin,
        verified: u.email_verified,
        created: When::at(u.created_at, now),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct UsersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: u64,
    done: Option<String>,
}

pub(super) async fn users_get(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<UsersQuery>,
) -> Response {
    users_page(&state, &console, &q, None, StatusCode::OK).await
}

async fn users_page(
    state: &AppState,
    console: &Console,
    q: &UsersQuery,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let found = match console
        .run(state)
        .search_users(&q.q, q.page, PER_PAGE)
        .await
    {
        Ok(p) => p,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let text = q.q.clone();
    let pager = pager(
        q.page,
        PER_PAGE,
        found.users.len(),
        found.total,
        "users",
        |p| format!("/admin/users?q={}&page={p}", encode(&text)),
    );
    let mut f = console.frame("users");
    f.error = error;
    f.notice = match q.done.as_deref() {
        Some("created") => Some("The user was created.".to_owned()),
        _ => None,
    };
    let page = UsersPage {
        f,
        q: q.q.clone(),
        users: found.users.iter().map(|u| user_row(u, now)).collect(),
        pager,
    };
    show(status, &page)
}

#[derive(Deserialize)]
pub(super) struct NewUserForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

impl FormToken for NewUserForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn users_post(
    State(state): State<AppState>,
    form: ConsoleForm<NewUserForm>,
) -> Response {
    let ConsoleForm { console, form } = form;
    if let Err(res) = console.confirm(&state, &form.current_password).await {
        return res;
    }
    let admin = form.admin.as_deref() == Some("true");
    match console
        .run(&state)
        .create_user(&form.email, &form.password, admin)
        .await
    {
        Ok(user) => done(&format!("/admin/users/{}?done=created", encode(&user.id.0))),
        Err(authx_core::admin::AdminError::Auth(e)) if user_error(&e) => {
            let status = crate::web::signin::error_status(&e).0;
            users_page(
                &state,
                &console,
                &UsersQuery::default(),
                Some(format!("The user was not created: {e}.")),
                status,
            )
            .await
        }
        Err(e) => admin_refused(e),
    }
}

/// A refusal the form can show next to itself (a bad address or password, a taken address).
fn user_error(e: &authx_core::auth::AuthError) -> bool {
    use authx_core::auth::AuthError;
    matches!(
        e,
        AuthError::InvalidEmail
            | AuthError::WeakPassword(_)
            | AuthError::PasswordTooLong
            | AuthError::EmailTaken
    )
}

pub(super) async fn user_get(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Response {
    let run = console.run(&state);
    let id = UserId(id);
    let user = match run.user(&id).await {
        Ok(u) => u,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let sections = async {
        let mut sessions = run.user_sessions(&id).await?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_seen_at));
        let events = run
            .audit_page(&AuditQuery {
                user_id: Some(id.0.clone()),
                limit: RECENT_EVENTS,
                ..AuditQuery::default()
            })
            .await?
            .0;
        Ok::<_, authx_core::admin::AdminError>((sessions, events))
    };
    let (sessions, events) = match sections.await {
        Ok(s) => s,
        Err(e) => return admin_refused(e),
    };
    let grants = grant_rows(&state, &id).await;
    let links = link_rows(&state, &id).await;
    let factors = factor_rows(&state, &id).await;
    let (grants, links, factors) = match (grants, links, factors) {
        (Ok(g), Ok(l), Ok(f)) => (g, l, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return super::refused(&e),
    };
    let mut f = console.frame("users");
    f.notice = notice(q.done.as_deref()).map(str::to_owned);
    let page = UserPage {
        f,
        u: user_row(&user, now),
        has_password: authx_core::federation::has_password(&user),
        resets: state.auth.resets_passwords(),
        sessions: sessions
            .iter()
            .map(|s| session_row(s, &console.auth.session.id, now))
            .collect(),
        grants,
        links,
        factors,
        events: events.iter().map(|e| event_row(e, now)).collect(),
    };
    show(StatusCode::OK, &page)
}

/// What the user page says after an action.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "The user was created.",
        "disabled" => "The user was disabled: every session and grant of theirs ended.",
        "enabled" => "The user was enabled and can sign in again.",
        "revoked" => "Every session and grant of the user ended.",
        "reset_link" => "A password-reset link was mailed to the user.",
        "factors" => "Every second factor of the user was removed.",
        "admin" => "The user is now an administrator.",
        "not_admin" => "The user is no longer an administrator.",
        "session" => "The session was signed out.",
        "grant" => "The grant was revoked.",
        _ => return None,
    })
}

/// Back to the user's page with `done`.
fn back(id: &str, done_key: &str) -> Response {
    done(&format!("/admin/users/{}?done={done_key}", encode(id)))
}

/// The actions of the user page that take nothing but the form's token (and, where
/// destructive, the password).
#[derive(Clone, Copy)]
enum UserAction {
    Disable,
    Enable,
    RevokeAll,
    ResetLink,
    ResetFactors,
}

impl UserAction {
    /// Whether it needs a recent sign-in or the password.
    fn destructive(self) -> bool {
        matches!(self, Self::Disable | Self::RevokeAll | Self::ResetFactors)
    }

    /// What the user page says afterwards ([`notice`]).
    fn done_key(self) -> &'static str {
        match self {
            Self::Disable => "disabled",
            Self::Enable => "enabled",
            Self::RevokeAll => "revoked",
            Self::ResetLink => "reset_link",
            Self::ResetFactors => "factors",
        }
    }
}

/// Runs `action` on user `id` and returns to their page.
async fn act(
    state: &AppState,
    id: String,
    form: ConsoleForm<ActionForm>,
    action: UserAction,
) -> Response {
    let ConsoleForm { console, form } = form;
    if action.destructive() {
        if let Err(res) = console.confirm(state, &form.current_password).await {
            return res;
        }
    }
    let run = console.run(state);
    let user = UserId(id);
    let outcome = match action {
        UserAction::Disable => run.disable_user(&user).await,
        UserAction::Enable => run.enable_user(&user).await,
        UserAction::RevokeAll => run.revoke_everything(&user).await.map(|_| ()),
        UserAction::ResetLink => run.send_reset_link(&user).await,
        UserAction::ResetFactors => run.reset_factors(&user).await.map(|_| ()),
    };
    match outcome {
        Ok(()) => back(&user.0, action.done_key()),
        Err(e) => admin_refused(e),
    }
}

/// A route's handler for one [`UserAction`].
macro_rules! user_action {
    ($name:ident, $action:expr) => {
        pub(super) async fn $name(
            State(state): State<AppState>,
            Path(id): Path<String>,
            form: ConsoleForm<ActionForm>,
        ) -> Response {
            act(&state, id, form, $action).await
        }
    };
}

user_action!(disable_post, UserAction::Disable);
user_action!(enable_post, UserAction::Enable);
user_action!(revoke_all_post, UserAction::RevokeAll);
user_action!(reset_link_post, UserAction::ResetLink);
user_action!(reset_factors_post, UserAction::ResetFactors);

#[derive(Deserialize)]
pub(super) struct AdminRoleForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    admin: String,
}

impl FormToken for AdminRoleForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn admin_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ConsoleForm<AdminRoleForm>,
) -> Response {
    if let Err(res) = form
        .console
        .confirm(&state, &form.form.current_password)
        .await
    {
        return res;
    }
    let admin = form.form.admin == "true";
    match form
        .console
        .run(&state)
        .set_admin(&UserId(id.clone()), admin)
        .await
    {
        Ok(()) => back(&id, if admin { "admin" } else { "not_admin" }),
        Err(e) => admin_refused(e),
    }
}

pub(super) async fn session_revoke_post(
    State(state): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    match form
        .console
        .run(&state)
        .revoke_session(&UserId(id.clone()), &SessionId(session))
        .await
    {
        Ok(()) => back(&id, "session"),
        Err(e) => admin_refused(e),
    }
}

pub(super) async fn grant_revoke_post(
    State(state): State<AppState>,
    Path((id, grant)): Path<(String, String)>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    match form
        .console
        .run(&state)
        .revoke_grant(&UserId(id.clone()), &grant)
        .await
    {
        Ok(()) => back(&id, "grant"),
        Err(e) => admin_refused(e),
    }
}
