//! The `/device` verification pages (RFC 8628 §3.3).

use askama::Template;

use super::Scope;

/// The form where the user types the code their device shows.
#[derive(Template)]
#[template(path = "device_entry.html")]
pub(crate) struct Entry<'a> {
    pub(crate) csrf: &'a str,
    /// What the user typed before, shown again.
    pub(crate) prefill: &'a str,
    pub(crate) error: Option<&'a str>,
}

/// The request of a device, to approve or deny, with the phishing warning.
#[derive(Template)]
#[template(path = "device_confirm.html")]
pub(crate) struct Confirm<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) client_name: &'a str,
    pub(crate) client_id: &'a str,
    /// The user code as the device shows it.
    pub(crate) code: &'a str,
    /// The signed-in account's address.
    pub(crate) email: &'a str,
    pub(crate) scopes: Vec<Scope<'a>>,
}

/// The device was approved.
#[derive(Template)]
#[template(path = "device_done.html")]
pub(crate) struct Done<'a> {
    pub(crate) client_name: &'a str,
}

/// The device was denied.
#[derive(Template)]
#[template(path = "device_denied.html")]
pub(crate) struct Denied;
