//! The sign-in, sign-up, sign-out and account pages.

use super::display::{Device, When};
use askama::Template;

/// An upstream provider's button on the sign-in page.
pub(crate) struct ProviderButton {
    /// The provider's name (unique across OpenID and SAML providers).
    pub(crate) name: String,
    /// Where its sign-in starts: `/federation/{name}/start` or
    /// `/federation/saml/{name}/start`.
    pub(crate) start: String,
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
    /// Whether to offer "Sign in with a passkey" (`[webauthn]`).
    pub(crate) passkeys: bool,
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
    pub(crate) device: Device,
    pub(crate) ip: String,
    pub(crate) created: When,
    pub(crate) seen: When,
    /// How it signed in ("password, authenticator app").
    pub(crate) methods: String,
    /// The session of this very browser.
    pub(crate) current: bool,
}

/// A row of the account page's live grants.
pub(crate) struct GrantRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) scope: String,
    pub(crate) since: When,
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
    pub(crate) since: When,
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
    /// The user's second factors.
    pub(crate) factors: Vec<FactorRow>,
    /// Unused recovery codes.
    pub(crate) recovery_left: u64,
    /// How this session signed in ("password and authenticator app").
    pub(crate) signed_in_with: String,
    /// Whether passkeys can be added (`[webauthn]`).
    pub(crate) passkeys: bool,
}

/// What an authenticator app needs to enrol: the QR code and the key as text.
pub(crate) struct EnrolView {
    /// The QR code, an SVG of shapes only, drawn on the server.
    pub(crate) qr_svg: String,
    /// The key in base32, in groups of four.
    pub(crate) secret: String,
}

impl EnrolView {
    pub(crate) fn of(e: &authx_core::mfa::TotpEnrolment) -> Self {
        Self {
            qr_svg: e.qr_svg().to_owned(),
            secret: e.secret_text(),
        }
    }
}

/// `/login/second-factor`: the code of a sign-in's second step (or, where policy requires a
/// factor the user lacks, its enrolment).
#[derive(Template)]
#[template(path = "second_factor.html")]
pub(crate) struct SecondFactorPage<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) enrol: Option<EnrolView>,
    pub(crate) failed: bool,
    /// "4 tries left", after a wrong code.
    pub(crate) tries_left: String,
    /// Whether the user can answer with a passkey.
    pub(crate) passkey: bool,
}

/// An authenticator app being added from the account page.
#[derive(Template)]
#[template(path = "mfa_enrol.html")]
pub(crate) struct EnrolPage<'a> {
    pub(crate) csrf: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) factor_id: &'a str,
    pub(crate) enrol: EnrolView,
}

/// New recovery codes, shown once.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub(crate) struct RecoveryCodesPage<'a> {
    pub(crate) heading: &'a str,
    pub(crate) codes: Vec<String>,
    pub(crate) continue_to: &'a str,
}

/// A row of the account page's second factors.
pub(crate) struct FactorRow {
    pub(crate) id: String,
    /// What it is, in words ("Passkey", "Authenticator app").
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    pub(crate) added: When,
    /// `None`: never used.
    pub(crate) used: Option<When>,
}
