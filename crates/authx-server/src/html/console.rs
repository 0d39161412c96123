//! The pages of the administration console under `/admin`: what each shows, already put into
//! words (devices, relative times, states), so the templates only lay it out.

use askama::Template;

use super::account::{FactorRow, GrantRow, LinkRow, SessionRow};
use super::display::When;

/// What every console page carries: its form token, which section of the navigation it is,
/// the notice or error of the action just taken, and whether destructive forms need the
/// password (the sign-in is older than the re-authentication window).
pub(crate) struct Frame {
    pub(crate) csrf: String,
    /// `overview`, `users`, `clients`, `apis`, `keys`, `federation` or `audit`.
    pub(crate) section: &'static str,
    pub(crate) notice: Option<String>,
    pub(crate) error: Option<String>,
    /// Signed in within the last five minutes: no password asked for.
    pub(crate) fresh: bool,
}

/// A link in a table cell: its text and its (percent-encoded) target.
pub(crate) struct LinkTo {
    pub(crate) label: String,
    pub(crate) href: String,
}

/// "Previous page" and "Next page", and what the list shows ("51–100 of 123 users").
#[derive(Default)]
pub(crate) struct Pager {
    pub(crate) summary: String,
    pub(crate) prev: Option<String>,
    pub(crate) next: Option<String>,
}

/// A user, as the lists and the user page show them.
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) href: String,
    pub(crate) email: String,
    /// `active` or `disabled`.
    pub(crate) status: &'static str,
    pub(crate) active: bool,
    pub(crate) admin: bool,
    pub(crate) verified: bool,
    pub(crate) created: When,
}

/// A signing key.
pub(crate) struct KeyRow {
    pub(crate) kid: String,
    pub(crate) alg: &'static str,
    pub(crate) state: &'static str,
    pub(crate) created: When,
    pub(crate) activated: Option<When>,
    pub(crate) remove_after: Option<When>,
}

/// An audit event.
pub(crate) struct EventRow {
    pub(crate) id: i64,
    pub(crate) at: When,
    pub(crate) kind: String,
    /// The trail filtered to this kind.
    pub(crate) kind_href: String,
    /// `success` or `failure` (also the row's class).
    pub(crate) outcome: String,
    pub(crate) user: Option<LinkTo>,
    pub(crate) client: Option<LinkTo>,
    pub(crate) ip: String,
    /// The event's further fields, as stored (JSON).
    pub(crate) detail: String,
}

/// An application (OAuth client).
pub(crate) struct ClientRow {
    pub(crate) id: String,
    pub(crate) href: String,
    pub(crate) name: String,
    /// "confidential" or "public".
    pub(crate) kind: &'static str,
    pub(crate) auth_method: &'static str,
    pub(crate) has_secret: bool,
    pub(crate) grants: String,
    pub(crate) scopes: String,
    pub(crate) resources: String,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) post_logout_redirect_uris: Vec<String>,
    pub(crate) first_party: bool,
    /// "15 minutes".
    pub(crate) access_ttl: String,
    pub(crate) created: When,
}

/// An API (OAuth resource).
pub(crate) struct ApiRow {
    pub(crate) id: String,
    pub(crate) scopes: String,
    pub(crate) created: When,
}

/// An upstream identity provider, from the configuration.
pub(crate) struct ProviderRow {
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) sign_up: bool,
}

/// An initial access token for client registration (never the token itself).
pub(crate) struct TokenRow {
    pub(crate) id: String,
    pub(crate) uses_left: i64,
    pub(crate) expires: When,
    pub(crate) created: When,
    pub(crate) scopes: String,
    pub(crate) resources: String,
}

/// A checkbox of a form.
pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) checked: bool,
}

/// The registration form's values, shown again with its error when refused.
pub(crate) struct ClientForm {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) public: bool,
    /// One per line.
    pub(crate) redirect_uris: String,
    pub(crate) scopes: String,
    pub(crate) access_ttl: String,
    /// One per line.
    pub(crate) post_logout_redirect_uris: String,
    pub(crate) first_party: bool,
    pub(crate) require_par: bool,
}

/// The audit filter's values as typed.
#[derive(Default)]
pub(crate) struct AuditFilter {
    pub(crate) user: String,
    pub(crate) client: String,
    pub(crate) kind: String,
    pub(crate) outcome: String,
    /// `YYYY-MM-DDTHH:MM`, UTC.
    pub(crate) since: String,
    pub(crate) until: String,
}

/// `/admin`.
#[derive(Template)]
#[template(path = "console/overview.html")]
pub(crate) struct OverviewPage {
    pub(crate) f: Frame,
    pub(crate) o: authx_core::admin::Overview,
    pub(crate) warnings: Vec<String>,
    pub(crate) keys: Vec<KeyRow>,
}

/// `/admin/keys`.
#[derive(Template)]
#[template(path = "console/keys.html")]
pub(crate) struct KeysPage {
    pub(crate) f: Frame,
    pub(crate) keys: Vec<KeyRow>,
}

/// `/admin/users`.
#[derive(Template)]
#[template(path = "console/users.html")]
pub(crate) struct UsersPage {
    pub(crate) f: Frame,
    pub(crate) q: String,
    pub(crate) users: Vec<UserRow>,
    pub(crate) pager: Pager,
}

/// `/admin/users/{id}`: a user and everything of theirs.
#[derive(Template)]
#[template(path = "console/user.html")]
pub(crate) struct UserPage {
    pub(crate) f: Frame,
    pub(crate) u: UserRow,
    pub(crate) has_password: bool,
    /// Password reset by mail is configured.
    pub(crate) resets: bool,
    pub(crate) sessions: Vec<SessionRow>,
    pub(crate) grants: Vec<GrantRow>,
    pub(crate) links: Vec<LinkRow>,
    pub(crate) factors: Vec<FactorRow>,
    pub(crate) events: Vec<EventRow>,
}

/// `/admin/clients`.
#[derive(Template)]
#[template(path = "console/clients.html")]
pub(crate) struct ClientsPage {
    pub(crate) f: Frame,
    pub(crate) clients: Vec<ClientRow>,
    pub(crate) pager: Pager,
}

/// `/admin/clients/{id}`, and the answer of a registration or rotation with its secret.
#[derive(Template)]
#[template(path = "console/client.html")]
pub(crate) struct ClientPage {
    pub(crate) f: Frame,
    pub(crate) c: ClientRow,
    /// A secret just made, shown this once.
    pub(crate) secret: Option<String>,
    pub(crate) events: Vec<EventRow>,
}

/// `/admin/clients/new`.
#[derive(Template)]
#[template(path = "console/client_new.html")]
pub(crate) struct ClientNewPage {
    pub(crate) f: Frame,
    /// An existing application's registration is being edited.
    pub(crate) editing: bool,
    /// Where the form posts.
    pub(crate) action: String,
    pub(crate) form: ClientForm,
    pub(crate) grant_choices: Vec<Choice>,
    pub(crate) api_choices: Vec<Choice>,
}

/// `/admin/apis`.
#[derive(Template)]
#[template(path = "console/apis.html")]
pub(crate) struct ApisPage {
    pub(crate) f: Frame,
    pub(crate) apis: Vec<ApiRow>,
}

/// `/admin/registration`: initial access tokens for dynamic client registration.
#[derive(Template)]
#[template(path = "console/registration.html")]
pub(crate) struct RegistrationPage {
    pub(crate) f: Frame,
    /// `[registration] enabled`.
    pub(crate) enabled: bool,
    pub(crate) tokens: Vec<TokenRow>,
    /// A token just issued, shown this once.
    pub(crate) token: Option<String>,
    pub(crate) api_choices: Vec<Choice>,
}

/// `/admin/federation`.
#[derive(Template)]
#[template(path = "console/federation.html")]
pub(crate) struct FederationPage {
    pub(crate) f: Frame,
    pub(crate) providers: Vec<ProviderRow>,
}

/// `/admin/audit`.
#[derive(Template)]
#[template(path = "console/audit.html")]
pub(crate) struct AuditPage {
    pub(crate) f: Frame,
    pub(crate) filter: AuditFilter,
    pub(crate) summary: String,
    pub(crate) events: Vec<EventRow>,
    pub(crate) pager: Pager,
    /// Where the live tail asks for newer events (the first page only).
    pub(crate) tail: Option<String>,
}

/// The live tail's answer: the events since the last poll, newest first, under the next poll.
#[derive(Template)]
#[template(path = "console/tail.html")]
pub(crate) struct TailRows {
    pub(crate) tail: String,
    pub(crate) events: Vec<EventRow>,
}

/// A signed-in user who is not an administrator.
#[derive(Template)]
#[template(path = "admin_denied.html")]
pub(crate) struct Denied;
