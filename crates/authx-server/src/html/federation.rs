//! The pages of sign-in through an upstream identity provider.

use askama::Template;

/// The page that links an upstream identity to an existing account, once its password is given.
#[derive(Template)]
#[template(path = "link.html")]
pub(crate) struct Link<'a> {
    pub(crate) csrf: &'a str,
    /// The existing account's address.
    pub(crate) email: &'a str,
    /// The provider's display name.
    pub(crate) provider: &'a str,
    pub(crate) error: Option<&'a str>,
}
