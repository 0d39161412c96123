//! The pages of the OAuth and OpenID Connect endpoints: consent and the confirmation of an
//! RP-initiated logout.

use askama::Template;

use super::Scope;

/// The consent page of `/oauth2/authorize`.
#[derive(Template)]
#[template(path = "consent.html")]
pub(crate) struct Consent<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) client_name: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scopes: Vec<Scope<'a>>,
    /// The API (RFC 8707 resource) the access token will be for.
    pub(crate) resource: Option<&'a str>,
    /// The origin the browser is sent back to.
    pub(crate) redirect_host: &'a str,
    /// The authorization request's query, posted back with the decision.
    pub(crate) request: &'a str,
}

/// The confirmation of an RP-initiated logout that did not prove its session.
#[derive(Template)]
#[template(path = "end_session.html")]
pub(crate) struct EndSession<'a> {
    pub(crate) csrf: &'a str,
    /// The logout request's parameters, posted back with the confirmation.
    pub(crate) request: &'a str,
}
