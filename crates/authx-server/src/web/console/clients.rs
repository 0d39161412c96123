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
    let mut all = match console.run(&state).clients().await {
        Ok(c) => c,
        Err(e) => return admin_refused(e),
    };
    all.sort_by_key(|c| c.name.to_lowercase());
    let now = state.oauth.now();
    let start = usize::try_from(q.page.saturating_mul(u64::from(PER_PAGE))).unwrap_or(usize::MAX);
    let shown: Vec<ClientRow> = all
        .iter()
        .skip(start)
        .take(PER_PAGE as usize)
        .map(|c| client_row(c, now))
        .collect();
    let pager = pager(
        q.page,
        PER_PAGE,
        shown.len(),
        all.len() as u64,
        "applications",
        |p| format!("/admin/clients?page={p}"),
    );
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
    new_page(&state, &console, form, &grants, &[], None, StatusCode::OK).await
}

async fn new_page(
    state: &AppState,
    console: &Console,
    form: ClientForm,
    grants: &[String],
    apis: &[String],
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let resources = match console.run(state).resources().await {
        Ok(r) => r,
        Err(e) => return admin_refused(e),
    };
    let mut f = console.frame("clients");
    f.error = error;
    let page = ClientNewPage {
        f,
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

pub(super) async fn clients_post(
    State(state): State<AppState>,
    form: ConsoleForm<Pairs>,
) -> Response {
    let ConsoleForm { console, form } = form;
    let public = form.get("kind") == "public";
    let grants = form.all("grant");
    let apis = form.all("api");
    let ttl = form.get("access_token_ttl_secs").trim();
    let access_ttl = if ttl.is_empty() {
        Ok(None)
    } else {
        ttl.parse::<i64>().map(Some)
    };
    let typed = ClientForm {
        id: form.get("id").trim().to_owned(),
        name: form.get("name").trim().to_owned(),
        public,
        redirect_uris: form.get("redirect_uris").to_owned(),
        scopes: form.get("scopes").to_owned(),
        access_ttl: ttl.to_owned(),
        post_logout_redirect_uris: form.get("post_logout_redirect_uris").to_owned(),
        first_party: form.get("first_party") == "true",
        require_par: form.get("require_par") == "true",
    };
    let Ok(access_ttl) = access_ttl else {
        let error = Some("The access-token lifetime is a number of seconds.".to_owned());
        return new_page(
            &state,
            &console,
            typed,
            &grants,
            &apis,
            error,
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let spec = ClientSpec {
        id: typed.id.clone(),
        name: typed.name.clone(),
        redirect_uris: lines(&typed.redirect_uris),
        grant_types: grants.clone(),
        scopes: typed.scopes.split_whitespace().map(str::to_owned).collect(),
        resources: apis.clone(),
        public,
        token_endpoint_auth_method: None,
        jwks: None,
        jwks_uri: None,
        dpop_bound_access_tokens: false,
        first_party: typed.first_party,
        require_pushed_authorization_requests: typed.require_par,
        require_acr: None,
        post_logout_redirect_uris: lines(&typed.post_logout_redirect_uris),
        backchannel_logout_uri: None,
        id_token_alg: None,
        access_token_ttl_secs: access_ttl,
        refresh_token_ttl_secs: None,
        refresh_idle_secs: None,
    };
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
                new_page(
                    &state,
                    &console,
                    typed,
                    &grants,
                    &apis,
                    Some(format!("Not registered: {text}")),
                    StatusCode::BAD_REQUEST,
                )
                .await
            }
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
    let page = ClientPage {
        f: console.frame("clients"),
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
