//! The pages that a link from a mail opens (email change, its cancellation, magic links): each
//! shows one button, because mail scanners follow links with GET and nothing may change then.

use askama::Template;

/// A page with one button that posts the link's token (and the pre-session form token).
#[derive(Template)]
#[template(path = "link_action.html")]
pub(crate) struct LinkAction<'a> {
    pub(crate) title: &'a str,
    pub(crate) text: &'a str,
    /// The form's `id`.
    pub(crate) form_id: &'a str,
    /// Where the form posts.
    pub(crate) action: &'a str,
    pub(crate) button: &'a str,
    /// A destructive action (red button).
    pub(crate) danger: bool,
    /// The link's token, posted back as is.
    pub(crate) token: &'a str,
    pub(crate) csrf: &'a str,
}
