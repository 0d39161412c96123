//! How a user authenticated: the methods of a sign-in ([`AuthMethod`]), their RFC 8176 `amr`
//! values, and the authentication context class (`acr`) they earn.
//!
//! A small vocabulary, documented in the README:
//! - [`ACR_ONE_FACTOR`] (`urn:authx:acr:pwd`): one factor: a password, a magic link, or an
//!   upstream identity provider;
//! - [`ACR_MFA`] (`urn:authx:acr:mfa`): a second factor (an authenticator app's code or a
//!   recovery code) on top of the first.
//!
//! The granted `acr` is always what the methods earned, never what was asked for.

/// A way a user proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// Email address and password.
    Password,
    /// An upstream identity provider, by its configured name.
    Federated(String),
    /// A single-use link mailed to the account's address, used in the browser that asked.
    MagicLink,
    /// A code from an authenticator app (TOTP, RFC 6238): a second factor.
    Totp,
    /// A single-use recovery code: stands in for a lost second factor.
    RecoveryCode,
    /// A method recorded by another version of authx, kept as stored.
    Other(String),
}

/// How several methods are joined in a session's `auth_method`.
pub const SEPARATOR: char = '+';

impl AuthMethod {
    /// The method as a session records it (`password`, `federated:<provider>`, `magic_link`).
    #[must_use]
    pub fn parse(stored: &str) -> Self {
        match stored {
            "password" => return Self::Password,
            "magic_link" => return Self::MagicLink,
            "totp" => return Self::Totp,
            "recovery_code" => return Self::RecoveryCode,
            _ => {}
        }
        match stored.strip_prefix("federated:") {
            Some(provider) => Self::Federated(provider.to_owned()),
            None => Self::Other(stored.to_owned()),
        }
    }

    /// The stored form, the inverse of [`AuthMethod::parse`].
    #[must_use]
    pub fn stored(&self) -> String {
        match self {
            Self::Password => "password".to_owned(),
            Self::Federated(p) => format!("federated:{p}"),
            Self::MagicLink => "magic_link".to_owned(),
            Self::Totp => "totp".to_owned(),
            Self::RecoveryCode => "recovery_code".to_owned(),
            Self::Other(s) => s.clone(),
        }
    }

    /// The RFC 8176 `amr` value: `pwd` for a password, `fed` for a federated sign-in, `email`
    /// for a magic link, `otp` for an authenticator app's code and for a recovery code (both
    /// one-time passwords). RFC 8176 registers no value for a confirmation by mail (`sms` and
    /// `tel` are its kin for other channels) and allows unregistered ones (§2).
    #[must_use]
    pub fn amr(&self) -> &str {
        match self {
            Self::Password => "pwd",
            Self::Federated(_) => "fed",
            Self::MagicLink => "email",
            Self::Totp | Self::RecoveryCode => "otp",
            Self::Other(s) => s,
        }
    }

    /// Whether this method is a second factor (it proves something the user has, on top of a
    /// first factor).
    #[must_use]
    pub fn is_second_factor(&self) -> bool {
        matches!(self, Self::Totp | Self::RecoveryCode)
    }
}

/// The `acr` of a sign-in with one factor (a password, a magic link or an upstream provider).
pub const ACR_ONE_FACTOR: &str = "urn:authx:acr:pwd";
/// The `acr` of a sign-in with a second factor on top of the first.
pub const ACR_MFA: &str = "urn:authx:acr:mfa";

/// The authentication context classes authx grants, weakest first.
pub const ACR_VALUES: [&str; 2] = [ACR_ONE_FACTOR, ACR_MFA];

/// Whether a sign-in that earned `granted` satisfies a request for `wanted` (an unknown
/// `wanted` is satisfied by nothing).
#[must_use]
pub fn acr_satisfies(granted: &str, wanted: &str) -> bool {
    let rank = |v: &str| ACR_VALUES.iter().position(|a| *a == v);
    match (rank(granted), rank(wanted)) {
        (Some(g), Some(w)) => g >= w,
        _ => false,
    }
}

/// The RFC 8176 `amr` values of the methods stored as `stored` (a session's `auth_method`),
/// in the order proved, with `mfa` added when a second factor was among them.
#[must_use]
pub fn amr_of(stored: &str) -> Vec<String> {
    let methods: Vec<AuthMethod> = stored.split(SEPARATOR).map(AuthMethod::parse).collect();
    let mut out: Vec<String> = Vec::with_capacity(methods.len() + 1);
    for m in &methods {
        let v = m.amr().to_owned();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if methods.iter().any(AuthMethod::is_second_factor) {
        out.push("mfa".to_owned());
    }
    out
}

/// The `acr` earned by the methods stored as `stored`: [`ACR_MFA`] with a second factor,
/// [`ACR_ONE_FACTOR`] without.
#[must_use]
pub fn acr_of(stored: &str) -> &'static str {
    if stored
        .split(SEPARATOR)
        .any(|m| AuthMethod::parse(m).is_second_factor())
    {
        ACR_MFA
    } else {
        ACR_ONE_FACTOR
    }
}
