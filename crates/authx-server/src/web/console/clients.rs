//! `/admin/clients`: the applications, their registration, secret rotation and deletion.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use authx_core::admin::{AdminError, ClientSpec};
use authx_core::audit::AuditQuery;
use authx_core::oauth::client::{Client, GrantType};

use super::{
    ActionForm, Console, ConsoleForm, Pairs, admin_refused, done, encode, event_row, pager, show,
};
use crate::html::console::{Choice, ClientForm, ClientNewPage, ClientPage, ClientRow, ClientsPage};
use crate::html::display::When;
use crate::state::AppState;

/// Applications on one page of the list.
const PER_PAGE: u32 = 50;
/// Events on an application's page.
const RECENT_EVENTS: u32 = 20;

/// The grants the registration form offers, with their labels.
const GRANTS: [(GrantType, &str); 4] = [
    (
        GrantType::AuthorizationCode,
        "Authorization code (sign-in through the browser)",
    ),
    (GrantType::RefreshToken, "Refresh tokens"),
    (
        GrantType::ClientCredentials,
        "Client credentials (a service acting for itself)",
    ),
    (
        GrantType::DeviceCode,
        "Device authorization (TVs and command lines)",
    ),
];

fn client_row(c: &Client, now: authx_core::Timestamp) -> ClientRow {
    let mins = c.access_token_ttl_secs / 60;
    ClientRow {
        id: c.id.clone(),
        href: format!("/admin/clients/{}", encode(&c.id)),
        name: c.name.clone(),
        kind: if c.is_confidential() {
            "confidential"
        } else {
            "public"
        },
        auth_method: c.token_endpoint_auth_method.as_str(),
        has_secret: c.token_endpoint_auth_method.uses_secret(),
        grants: c
            .grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        scopes: c.scopes.join(" "),
        resources: if c.resources.is_empty() {
            "none".to_owned()
        } else {
            c.resources.join(", ")
        },
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        first_party: c.first_party,
        access_ttl: if mins == 1 {
            "1 minute".to_owned()
        } else {
            format!("{mins} minutes")
        },
        created: When::at(c.created_at, now),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    page: u64,
    done: Option<String>,
}

pub(super) async fn clients_get(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<ListQuery>,
) -> Response {
    let (page, total) = match console.run(&state).clients_page(q.page, PER_PAGE).await {
        Ok(p) => p,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let shown: Vec<ClientRow> = page.iter().map(|c| client_row(c, now)).collect();
    let pager = pager(q.page, PER_PAGE, shown.len(), total, "applications", |p| {
        format!("/admin/clients?page={p}")
    });
    let mut f = console.frame("clients");
    if q.done.as_deref() == Some("deleted") {
        f.notice = Some("The application was deleted and its tokens revoked.".to_owned());
    }
    show(
        StatusCode::OK,
        &ClientsPage {
            f,
            clients: shown,
            pager,
        },
    )
}

pub(super) async fn new_get(State(state): State<AppState>, console: Console) -> Response {
    let form = ClientForm {
        id: String::new(),
        name: String::new(),
        public: false,
        redirect_uris: String::new(),
        scopes: "openid email profile".to_owned(),
        access_ttl: "900".to_owned(),
        post_logout_redirect_uris: String::new(),
        first_party: false,
        require_par: false,
    };
    let grants = vec![
        GrantType::AuthorizationCode.as_str().to_owned(),
        GrantType::RefreshToken.as_str().to_owned(),
    ];
    new_page(
        &state,
        &console,
        form,
        &grants,
        &[],
        Target::New,
        None,
        StatusCode::OK,
    )
    .await
}

/// Whether the form registers an application or edits one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    New,
    Edit,
}

#[allow(clippy::too_many_arguments)] // The form's parts, each shown again.
async fn new_page(
    state: &AppState,
    console: &Console,
    form: ClientForm,
    grants: &[String],
    apis: &[String],
    target: Target,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let resources = match console.run(state).resources().await {
        Ok(r) => r,
        Err(e) => return admin_refused(e),
    };
    let mut f = console.frame("clients");
    f.error = error;
    let action = match target {
        Target::New => "/admin/clients".to_owned(),
        Target::Edit => format!("/admin/clients/{}", encode(&form.id)),
    };
    let page = ClientNewPage {
        f,
        editing: target == Target::Edit,
        action,
        form,
        grant_choices: GRANTS
            .iter()
            .map(|(g, label)| Choice {
                value: g.as_str().to_owned(),
                label: (*label).to_owned(),
                checked: grants.iter().any(|x| x == g.as_str()),
            })
            .collect(),
        api_choices: resources
            .iter()
            .map(|r| Choice {
                value: r.id.clone(),
                label: r.id.clone(),
                checked: apis.contains(&r.id),
            })
            .collect(),
    };
    show(status, &page)
}

/// The lines of a text area, trimmed, blank ones left out.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The registration form as typed, and what it asks for.
struct Typed {
    form: ClientForm,
    grants: Vec<String>,
    apis: Vec<String>,
    /// `None`: not a number.
    access_ttl: Option<Option<i64>>,
}

fn typed(form: &Pairs, id: String, public: bool) -> Typed {
    let ttl = form.get("access_token_ttl_secs").trim();
    let access_ttl = if ttl.is_empty() {
        Some(None)
    } else {
        ttl.parse::<i64>().ok().map(Some)
    };
    Typed {
        form: ClientForm {
            id,
            name: form.get("name").trim().to_owned(),
            public,
            redirect_uris: form.get("redirect_uris").to_owned(),
            scopes: form.get("scopes").to_owned(),
            access_ttl: ttl.to_owned(),
            post_logout_redirect_uris: form.get("post_logout_redirect_uris").to_owned(),
            first_party: form.get("first_party") == "true",
            require_par: form.get("require_par") == "true",
        },
        grants: form.all("grant"),
        apis: form.all("api"),
        access_ttl,
    }
}

/// The registration the form describes; an edit keeps what the form does not show from
/// `current`.
fn spec_of(t: &Typed, access_ttl: Option<i64>, current: Option<&Client>) -> ClientSpec {
    ClientSpec {
        id: t.form.id.clone(),
        name: t.form.name.clone(),
        redirect_uris: lines(&t.form.redirect_uris),
        grant_types: t.grants.clone(),
        scopes: t
            .form
            .scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        resources: t.apis.clone(),
        public: t.form.public,
        token_endpoint_auth_method: current
            .map(|c| c.token_endpoint_auth_method.as_str().to_owned()),
        jwks: current
            .and_then(|c| c.jwks.as_deref())
            .and_then(|j| serde_json::from_str(j).ok()),
        jwks_uri: current.and_then(|c| c.jwks_uri.clone()),
        dpop_bound_access_tokens: current.is_some_and(|c| c.dpop_bound_access_tokens),
        first_party: t.form.first_party,
        require_pushed_authorization_requests: t.form.require_par,
        require_acr: current.and_then(|c| c.require_acr.clone()),
        post_logout_redirect_uris: lines(&t.form.post_logout_redirect_uris),
        backchannel_logout_uri: current.and_then(|c| c.backchannel_logout_uri.clone()),
        id_token_alg: current.map(|c| c.id_token_alg.as_str().to_owned()),
        access_token_ttl_secs: access_ttl,
        refresh_token_ttl_secs: current.map(|c| c.refresh_token_ttl_secs),
        refresh_idle_secs: current.map(|c| c.refresh_idle_secs),
    }
}

/// The form again, with what went wrong.
async fn again(
    state: &AppState,
    console: &Console,
    t: Typed,
    editing: bool,
    error: String,
) -> Response {
    let target = if editing { Target::Edit } else { Target::New };
    new_page(
        state,
        console,
        t.form,
        &t.grants,
        &t.apis,
        target,
        Some(error),
        StatusCode::BAD_REQUEST,
    )
    .await
}

pub(super) async fn clients_post(
    State(state): State<AppState>,
    form: ConsoleForm<Pairs>,
) -> Response {
    let ConsoleForm { console, form } = form;
    let t = typed(
        &form,
        form.get("id").trim().to_owned(),
        form.get("kind") == "public",
    );
    let Some(access_ttl) = t.access_ttl else {
        let error = "The access-token lifetime is a number of seconds.".to_owned();
        return again(&state, &console, t, false, error).await;
    };
    let spec = spec_of(&t, access_ttl, None);
    match console.run(&state).register_client(spec).await {
        Ok((client, secret)) => {
            let now = state.oauth.now();
            let mut f = console.frame("clients");
            f.notice = Some("The application was registered.".to_owned());
            show(
                StatusCode::CREATED,
                &ClientPage {
                    f,
                    c: client_row(&client, now),
                    secret,
                    events: Vec::new(),
                },
            )
        }
        Err(e) => match refusal_text(e) {
            Ok(text) => {
                again(
                    &state,
                    &console,
                    t,
                    false,
                    format!("Not registered: {text}"),
                )
                .await
            }
            Err(res) => res,
        },
    }
}

pub(super) async fn edit_get(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Response {
    let c = match console.run(&state).client(&id).await {
        Ok(c) => c,
        Err(e) => return admin_refused(e),
    };
    let form = ClientForm {
        id: c.id.clone(),
        name: c.name.clone(),
        public: !c.is_confidential(),
        redirect_uris: c.redirect_uris.join("\n"),
        scopes: c.scopes.join(" "),
        access_ttl: c.access_token_ttl_secs.to_string(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.join("\n"),
        first_party: c.first_party,
        require_par: c.require_pushed_authorization_requests,
    };
    let grants: Vec<String> = c
        .grant_types
        .iter()
        .map(|g| g.as_str().to_owned())
        .collect();
    new_page(
        &state,
        &console,
        form,
        &grants,
        &c.resources,
        Target::Edit,
        None,
        StatusCode::OK,
    )
    .await
}

pub(super) async fn edit_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ConsoleForm<Pairs>,
) -> Response {
    let ConsoleForm { console, form } = form;
    let run = console.run(&state);
    let current = match run.client(&id).await {
        Ok(c) => c,
        Err(e) => return admin_refused(e),
    };
    let t = typed(&form, id, !current.is_confidential());
    let Some(access_ttl) = t.access_ttl else {
        let error = "The access-token lifetime is a number of seconds.".to_owned();
        return again(&state, &console, t, true, error).await;
    };
    let spec = spec_of(&t, access_ttl, Some(&current));
    match run.update_client(spec).await {
        Ok(c) => done(&format!("/admin/clients/{}?done=updated", encode(&c.id))),
        Err(e) => match refusal_text(e) {
            Ok(text) => again(&state, &console, t, true, format!("Not saved: {text}")).await,
            Err(res) => res,
        },
    }
}

/// What the form shows for a registration the rules refused, or the page of a failure of the
/// service.
#[allow(clippy::result_large_err)] // The error is the finished response.
fn refusal_text(e: AdminError) -> Result<String, Response> {
    match e {
        AdminError::InvalidRequest(m) => Ok(m),
        AdminError::InvalidScope => Ok("a scope is malformed".to_owned()),
        AdminError::OAuth(o) => {
            let api = crate::web::error::oauth::api_error(o);
            if api.status.is_server_error() {
                Err(super::api_refused(&api))
            } else {
                Ok(api.message)
            }
        }
        other => Err(admin_refused(other)),
    }
}

pub(super) async fn client_get(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Response {
    let run = console.run(&state);
    let client = match run.client(&id).await {
        Ok(c) => c,
        Err(e) => return admin_refused(e),
    };
    let events = match run
        .audit_page(&AuditQuery {
            client_id: Some(id.clone()),
            limit: RECENT_EVENTS,
            ..AuditQuery::default()
        })
        .await
    {
        Ok((events, _)) => events,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let mut f = console.frame("clients");
    if q.done.as_deref() == Some("updated") {
        f.notice = Some("The application was saved.".to_owned());
    }
    let page = ClientPage {
        f,
        c: client_row(&client, now),
        secret: None,
        events: events.iter().map(|e| event_row(e, now)).collect(),
    };
    show(StatusCode::OK, &page)
}

pub(super) async fn secret_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    let ConsoleForm { console, form } = form;
    if let Err(res) = console.confirm(&state, &form.current_password).await {
        return res;
    }
    let run = console.run(&state);
    let secret = match run.rotate_client_secret(&id).await {
        Ok(s) => s,
        Err(e) => return admin_refused(e),
    };
    let client = match run.client(&id).await {
        Ok(c) => c,
        Err(e) => return admin_refused(e),
    };
    let mut f = console.frame("clients");
    f.notice = Some("The secret was rotated: the old one no longer works.".to_owned());
    let page = ClientPage {
        f,
        c: client_row(&client, state.oauth.now()),
        secret: Some(secret),
        events: Vec::new(),
    };
    show(StatusCode::OK, &page)
}

pub(super) async fn delete_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    let ConsoleForm { console, form } = form;
    if let Err(res) = console.confirm(&state, &form.current_password).await {
        return res;
    }
    match console.run(&state).delete_client(&id).await {
        Ok(()) => done("/admin/clients?done=deleted"),
        Err(e) => admin_refused(e),
    }
}
