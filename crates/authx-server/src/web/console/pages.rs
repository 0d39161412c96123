//! The overview, signing keys, APIs, federation providers and the audit trail.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use authx_core::Timestamp;
use authx_core::admin::{KEY_ROTATION_DUE_SECS, Overview};
use authx_core::audit::{AuditQuery, AuditRecord};
use authx_core::oauth::keys::{KeyState, StoredKey};

use super::{ActionForm, Console, ConsoleForm, admin_refused, done, encode, event_row, page, show};
use crate::html::console::{
    ApiRow, ApisPage, AuditFilter, AuditPage, FederationPage, KeyRow, KeysPage, OverviewPage,
    Pager, ProviderRow, TailRows,
};
use crate::html::display::When;
use crate::html::render;
use crate::state::AppState;
use crate::web::extract::FormToken;

/// Events on one page of the trail.
const EVENTS_PER_PAGE: u32 = 50;

fn key_rows(keys: &[StoredKey], now: Timestamp) -> Vec<KeyRow> {
    keys.iter()
        .map(|k| KeyRow {
            kid: k.kid.clone(),
            alg: k.alg.as_str(),
            state: k.state.as_str(),
            created: When::at(k.created_at, now),
            activated: k.activated_at.map(|t| When::at(t, now)),
            remove_after: k.remove_after.map(|t| When::at(t, now)),
        })
        .collect()
}

/// What needs an administrator's attention.
fn warnings(o: &Overview, now: Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for k in &o.keys {
        let age = now.since(k.activated_at.unwrap_or(k.created_at));
        if k.state == KeyState::Active && age > KEY_ROTATION_DUE_SECS {
            out.push(format!(
                "The {} signing key {} has signed for {} days: rotate the keys.",
                k.alg.as_str(),
                k.kid,
                age / 86_400
            ));
        }
    }
    if o.mail_failures_24h > 0 {
        out.push(format!(
            "Mail is failing: {} given up on in the last 24 hours (see the audit trail and \
             the log).",
            authx_core::plural::count(o.mail_failures_24h, "message", "messages")
        ));
    }
    out
}

pub(super) async fn overview_get(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<super::Done>,
) -> Response {
    let o = match console.run(&state).overview().await {
        Ok(o) => o,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let mut f = console.frame("overview");
    if q.done.as_deref() == Some("mail") {
        f.notice = Some("A test mail was queued; the sender delivers it in a moment.".to_owned());
    }
    let page = OverviewPage {
        f,
        warnings: warnings(&o, now),
        keys: key_rows(&o.keys, now),
        o,
    };
    show(StatusCode::OK, &page)
}

pub(super) async fn keys_get(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<super::Done>,
) -> Response {
    let keys = match console.run(&state).keys().await {
        Ok(k) => k,
        Err(e) => return admin_refused(e),
    };
    let mut f = console.frame("keys");
    if q.done.as_deref() == Some("rotated") {
        f.notice = Some(
            "New keys were published; they start signing after the publication lead time."
                .to_owned(),
        );
    }
    let page = KeysPage {
        f,
        keys: key_rows(&keys, state.oauth.now()),
    };
    show(StatusCode::OK, &page)
}

pub(super) async fn keys_rotate_post(
    State(state): State<AppState>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    let ConsoleForm { console, form } = form;
    if let Err(res) = console.confirm(&state, &form.current_password).await {
        return res;
    }
    match console.run(&state).rotate_keys().await {
        Ok(_) => done("/admin/keys?done=rotated"),
        Err(e) => admin_refused(e),
    }
}

pub(super) async fn apis_get(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<super::Done>,
) -> Response {
    let notice = (q.done.as_deref() == Some("registered")).then_some("The API was registered.");
    apis_page(&state, &console, notice, None, StatusCode::OK).await
}

async fn apis_page(
    state: &AppState,
    console: &Console,
    notice: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let apis = match console.run(state).resources().await {
        Ok(r) => r,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let mut f = console.frame("apis");
    f.notice = notice.map(str::to_owned);
    f.error = error;
    let page = ApisPage {
        f,
        apis: apis
            .iter()
            .map(|a| ApiRow {
                id: a.id.clone(),
                scopes: a.scopes.join(" "),
                created: When::at(a.created_at, now),
            })
            .collect(),
    };
    show(status, &page)
}

#[derive(Deserialize)]
pub(super) struct ApiForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    scopes: String,
}

impl FormToken for ApiForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub(super) async fn apis_post(
    State(state): State<AppState>,
    form: ConsoleForm<ApiForm>,
) -> Response {
    let ConsoleForm { console, form } = form;
    let scopes = form.scopes.split_whitespace().map(str::to_owned).collect();
    match console
        .run(&state)
        .register_resource(form.id.trim().to_owned(), scopes)
        .await
    {
        Ok(_) => done("/admin/apis?done=registered"),
        Err(authx_core::admin::AdminError::InvalidRequest(m)) => {
            let error = Some(format!("Not registered: {m}."));
            apis_page(&state, &console, None, error, StatusCode::BAD_REQUEST).await
        }
        Err(authx_core::admin::AdminError::InvalidScope) => {
            let error = Some("Not registered: a scope is malformed.".to_owned());
            apis_page(&state, &console, None, error, StatusCode::BAD_REQUEST).await
        }
        Err(authx_core::admin::AdminError::OAuth(authx_core::oauth::OAuthError::Store(
            authx_core::StoreError::Conflict,
        ))) => {
            let error = Some("Not registered: an API with this identifier exists.".to_owned());
            apis_page(&state, &console, None, error, StatusCode::CONFLICT).await
        }
        Err(e) => admin_refused(e),
    }
}

fn provider_rows(state: &AppState) -> Vec<ProviderRow> {
    state
        .upstreams
        .providers()
        .iter()
        .map(|p| ProviderRow {
            name: p.name.clone(),
            label: p.display_name.clone(),
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            sign_up: p.allow_sign_up,
        })
        .collect()
}

pub(super) async fn federation_get(State(state): State<AppState>, console: Console) -> Response {
    let page = FederationPage {
        f: console.frame("federation"),
        providers: provider_rows(&state),
    };
    show(StatusCode::OK, &page)
}

/// Fetches a provider's discovery document now and says what came back.
pub(super) async fn federation_test_post(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: ConsoleForm<ActionForm>,
) -> Response {
    let ConsoleForm { console, .. } = form;
    let mut f = console.frame("federation");
    let status = match crate::web::api::admin::test_discovery(&state, &console.actor(), &name).await
    {
        Ok(m) => {
            f.notice = Some(format!(
                "{name}: discovery answered for {}; sign-in goes to {}, tokens come from {}.",
                m.issuer, m.authorization_endpoint, m.token_endpoint
            ));
            StatusCode::OK
        }
        Err(e) => {
            f.error = Some(format!("{name}: discovery failed: {e}."));
            StatusCode::BAD_GATEWAY
        }
    };
    let page = FederationPage {
        f,
        providers: provider_rows(&state),
    };
    show(status, &page)
}

/// `/admin/audit` parameters, as the filter form sends them.
#[derive(Deserialize, Default)]
pub(super) struct AuditParams {
    #[serde(default)]
    user: String,
    #[serde(default)]
    client: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    outcome: String,
    /// `YYYY-MM-DDTHH:MM` (UTC), as a `datetime-local` field sends it.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// Only events older than this id (the next page).
    before: Option<i64>,
    /// Only events newer than this id (the live tail).
    after: Option<i64>,
}

impl AuditParams {
    /// The filter as a query string, without position.
    fn query_string(&self) -> String {
        [
            ("user", &self.user),
            ("client", &self.client),
            ("kind", &self.kind),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }

    /// The store query, or the field that could not be read.
    async fn to_query(
        &self,
        console: &Console,
        state: &AppState,
    ) -> Result<AuditQuery, Result<&'static str, Response>> {
        let time = |s: &str, field: &'static str| {
            if s.trim().is_empty() {
                Ok(None)
            } else {
                parse_minute(s).map(Some).ok_or(field)
            }
        };
        let user_id = if self.user.trim().is_empty() {
            None
        } else {
            match console.run(state).user_filter(self.user.trim()).await {
                Ok(id) => Some(id),
                Err(e) => return Err(Err(admin_refused(e))),
            }
        };
        let outcome = match self.outcome.as_str() {
            "" => None,
            o @ ("success" | "failure") => Some(o.to_owned()),
            _ => return Err(Ok("outcome")),
        };
        let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        Ok(AuditQuery {
            user_id,
            kind: text(&self.kind),
            since: time(&self.since, "from").map_err(Ok)?,
            client_id: text(&self.client),
            outcome,
            until: time(&self.until, "until").map_err(Ok)?,
            before_id: self.before,
            after_id: self.after,
            limit: EVENTS_PER_PAGE,
        })
    }
}

/// `YYYY-MM-DDTHH:MM` (or with `:SS`) in UTC.
fn parse_minute(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let with_secs =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, &fmt)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &with_secs))
        .ok()
        .map(|d| Timestamp(d.assume_utc().unix_timestamp()))
}

pub(super) async fn audit_get(
    State(state): State<AppState>,
    console: Console,
    Query(p): Query<AuditParams>,
) -> Response {
    let mut f = console.frame("audit");
    let q = match p.to_query(&console, &state).await {
        Ok(q) => AuditQuery {
            after_id: None,
            ..q
        },
        Err(Err(res)) => return res,
        Err(Ok(field)) => {
            f.error = Some(format!("The {field} field could not be read."));
            AuditQuery {
                limit: EVENTS_PER_PAGE,
                ..AuditQuery::default()
            }
        }
    };
    let (events, total) = match console.run(&state).audit_page(&q).await {
        Ok(r) => r,
        Err(e) => return admin_refused(e),
    };
    let now = state.oauth.now();
    let filter_qs = p.query_string();
    let with = |extra: String| {
        if filter_qs.is_empty() {
            format!("/admin/audit?{extra}")
        } else {
            format!("/admin/audit?{filter_qs}&{extra}")
        }
    };
    let newest_first_page = p.before.is_none();
    let pager = Pager {
        summary: match (total, newest_first_page) {
            (0, _) => "No event matches.".to_owned(),
            (1, _) => "1 event matches.".to_owned(),
            (n, true) => format!("{n} events match; the newest first."),
            (n, false) => format!("{n} events match; older ones on this page."),
        },
        prev: (!newest_first_page).then(|| {
            if filter_qs.is_empty() {
                "/admin/audit".to_owned()
            } else {
                format!("/admin/audit?{filter_qs}")
            }
        }),
        next: (events.len() as u32 == EVENTS_PER_PAGE)
            .then(|| events.last().map(|e| with(format!("before={}", e.id))))
            .flatten(),
    };
    // With nothing matching yet, every later match is new.
    let newest = events.first().map_or(0, |e| e.id);
    let tail = newest_first_page.then(|| {
        with(format!("after={newest}")).replacen("/admin/audit?", "/admin/audit/tail?", 1)
    });
    let filter = AuditFilter {
        user: p.user.clone(),
        client: p.client.clone(),
        kind: p.kind.clone(),
        outcome: p.outcome.clone(),
        since: p.since.clone(),
        until: p.until.clone(),
    };
    let page = AuditPage {
        f,
        filter,
        summary: pager.summary.clone(),
        events: events.iter().map(|e| event_row(e, now)).collect(),
        pager,
        tail,
    };
    show(StatusCode::OK, &page)
}

/// The live tail: events after `after` matching the filter, newest first, under the next poll.
pub(super) async fn audit_tail_get(
    State(state): State<AppState>,
    console: Console,
    Query(p): Query<AuditParams>,
) -> Response {
    let Some(after) = p.after else {
        return done("/admin/audit");
    };
    let q = match p.to_query(&console, &state).await {
        Ok(q) => q,
        Err(Err(res)) => return res,
        Err(Ok(_)) => return done("/admin/audit"),
    };
    let events: Vec<AuditRecord> = match console.run(&state).audit(&q).await {
        Ok(e) => e,
        Err(e) => return admin_refused(e),
    };
    let newest = events.iter().map(|e| e.id).max().unwrap_or(after);
    let filter_qs = p.query_string();
    let tail = if filter_qs.is_empty() {
        format!("/admin/audit/tail?after={newest}")
    } else {
        format!("/admin/audit/tail?{filter_qs}&after={newest}")
    };
    let now = state.oauth.now();
    let rows = TailRows {
        tail,
        events: events.iter().rev().map(|e| event_row(e, now)).collect(),
    };
    page(StatusCode::OK, render(StatusCode::OK, &rows))
}
