//! The sign-in, sign-up, sign-out and account pages.

use askama::Template;

/// An upstream provider's button on the sign-in page.
pub(crate) struct ProviderButton {
    /// The provider's name in its `/federation/{name}/start` path.
    pub(crate) name: String,
    /// The button's text.
    pub(crate) label: String,
    /// The local path to return to, already form-urlencoded for the query.
    pub(crate) return_to: String,
}

/// `/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct Login<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) return_to: &'a str,
    pub(crate) email: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) sign_up: bool,
    /// Whether to offer a sign-in link by mail (`[email] magic_links`).
    pub(crate) magic_links: bool,
    pub(crate) providers: Vec<ProviderButton>,
}

/// `/signup`.
#[derive(Template)]
#[template(path = "signup.html")]
pub(crate) struct SignUp<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) email: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) min_chars: usize,
    /// `min_chars` in words ("12 characters").
    pub(crate) min_text: String,
}

/// `/forgot`: the address to mail a reset link to.
#[derive(Template)]
#[template(path = "forgot.html")]
pub(crate) struct Forgot<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) email: &'a str,
    pub(crate) error: Option<&'a str>,
}

/// `/reset`: the new-password form of a reset link.
#[derive(Template)]
#[template(path = "reset.html")]
pub(crate) struct Reset<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) token: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) min_chars: usize,
    /// `min_chars` in words ("12 characters").
    pub(crate) min_text: String,
}

/// `/logout`: the confirmation of a local sign-out.
#[derive(Template)]
#[template(path = "logout.html")]
pub(crate) struct Logout<'a> {
    pub(crate) csrf: &'a str,
}

/// An account form refused for its CSRF token.
#[derive(Template)]
#[template(path = "refused.html")]
pub(crate) struct Refused;

/// A row of the account page's sessions.
pub(crate) struct SessionRow {
    pub(crate) id: String,
    pub(crate) device: String,
    pub(crate) ip: String,
    pub(crate) created: String,
    pub(crate) seen: String,
    /// The session of this very browser.
    pub(crate) current: bool,
}

/// A row of the account page's live grants.
pub(crate) struct GrantRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) scope: String,
    pub(crate) since: String,
}

/// A row of the account page's remembered consents.
pub(crate) struct ConsentRow {
    pub(crate) client: String,
    pub(crate) api: String,
    pub(crate) scope: String,
}

/// A row of the account page's linked upstream identities.
pub(crate) struct LinkRow {
    pub(crate) id: String,
    pub(crate) provider: String,
    pub(crate) who: String,
    pub(crate) since: String,
}

/// `/account`.
#[derive(Template)]
#[template(path = "account.html")]
pub(crate) struct Account<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) email: &'a str,
    pub(crate) notice: Option<&'a str>,
    pub(crate) error: Option<&'a str>,
    pub(crate) sessions: Vec<SessionRow>,
    pub(crate) grants: Vec<GrantRow>,
    pub(crate) consents: Vec<ConsentRow>,
    pub(crate) links: Vec<LinkRow>,
    /// False for an account created through an identity provider: no password form.
    pub(crate) has_password: bool,
    pub(crate) min_chars: usize,
    /// The address is unverified and links can be mailed: a button sends one.
    pub(crate) verify_email: bool,
}
