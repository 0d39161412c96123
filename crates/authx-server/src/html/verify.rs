//! The email-verification pages: the link's confirmation button, and the sign-in that waits
//! for a verified address.

use askama::Template;

/// `GET /verify`: the link's token in a form whose button verifies (a GET changes nothing, so
/// mail scanners that prefetch links do not use them up).
#[derive(Template)]
#[template(path = "verify.html")]
pub(crate) struct Verify<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) token: &'a str,
}

/// The answer to a sign-in of an unverified account where verification is required: a link
/// was mailed, and a form sends another.
#[derive(Template)]
#[template(path = "verify_pending.html")]
pub(crate) struct VerifyPending<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) email: &'a str,
}
