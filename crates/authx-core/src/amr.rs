//! How a user authenticated: the methods of a sign-in ([`AuthMethod`]), their RFC 8176 `amr`
//! values, and the authentication context class (`acr`) they earn.
//!
//! A small vocabulary, documented in the README:
//! - [`ACR_ONE_FACTOR`] (`urn:authx:acr:pwd`): one factor: a password, a magic link, or an
//!   upstream identity provider;
//! - [`ACR_MFA`] (`urn:authx:acr:mfa`): a second factor (an authenticator app's code, a
//!   recovery code or a passkey) on top of the first, or a passkey that verified its user
//!   alone (something the user has, unlocked by something they know or are);
//! - [`ACR_PHISHING_RESISTANT`] (`urn:authx:acr:phishing-resistant`): a passkey with user
//!   verification, with or without a password: the authenticator signs for authx's origin only,
//!   so a look-alike site cannot relay it.
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
    /// A passkey (WebAuthn) whose authenticator did not verify its user: proof of possession.
    Passkey,
    /// A passkey whose authenticator verified its user (PIN or biometrics).
    PasskeyVerified,
    /// More than one factor at an upstream provider trusted for it (its `amr` held `mfa`;
    /// `trust_upstream_mfa`): stands for the second factor of a federated sign-in.
    UpstreamMfa,
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
            "passkey" => return Self::Passkey,
            "passkey_uv" => return Self::PasskeyVerified,
            "upstream_mfa" => return Self::UpstreamMfa,
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
            Self::Passkey => "passkey".to_owned(),
            Self::PasskeyVerified => "passkey_uv".to_owned(),
            Self::UpstreamMfa => "upstream_mfa".to_owned(),
            Self::Other(s) => s.clone(),
        }
    }

    /// The RFC 8176 `amr` value: `pwd` for a password, `fed` for a federated sign-in, `email`
    /// for a magic link, `otp` for an authenticator app's code and for a recovery code (both
    /// one-time passwords), `pop` for a passkey (proof of possession of a key). RFC 8176
    /// registers no value for a confirmation by mail (`sms` and `tel` are its kin for other
    /// channels) and allows unregistered ones (§2). A passkey that verified its user also adds
    /// `user` ([`AuthMethod::extra_amr`]).
    #[must_use]
    pub fn amr(&self) -> &str {
        match self {
            Self::Password => "pwd",
            Self::Federated(_) => "fed",
            Self::MagicLink => "email",
            Self::Totp | Self::RecoveryCode => "otp",
            Self::Passkey | Self::PasskeyVerified => "pop",
            Self::UpstreamMfa => "mfa",
            Self::Other(s) => s,
        }
    }

    /// A second RFC 8176 `amr` value the method earns: `user` for a passkey whose
    /// authenticator verified its user (RFC 8176 §2: "user presence test... user
    /// verification").
    #[must_use]
    pub fn extra_amr(&self) -> Option<&'static str> {
        matches!(self, Self::PasskeyVerified).then_some("user")
    }

    /// Whether this method is a passkey that verified its user: phishing-resistant, and two
    /// factors in one (the key, and the PIN or biometrics that unlocked it).
    #[must_use]
    pub fn is_verified_passkey(&self) -> bool {
        matches!(self, Self::PasskeyVerified)
    }

    /// Whether this method is a second factor (it proves something the user has, on top of a
    /// first factor).
    #[must_use]
    pub fn is_second_factor(&self) -> bool {
        matches!(
            self,
            Self::Totp
                | Self::RecoveryCode
                | Self::Passkey
                | Self::PasskeyVerified
                | Self::UpstreamMfa
        )
    }
}

/// The `acr` of a sign-in with one factor (a password, a magic link or an upstream provider).
pub const ACR_ONE_FACTOR: &str = "urn:authx:acr:pwd";
/// The `acr` of a sign-in with a second factor on top of the first.
pub const ACR_MFA: &str = "urn:authx:acr:mfa";

/// The `acr` of a sign-in that used a passkey with user verification.
pub const ACR_PHISHING_RESISTANT: &str = "urn:authx:acr:phishing-resistant";

/// The authentication context classes authx grants, weakest first.
pub const ACR_VALUES: [&str; 3] = [ACR_ONE_FACTOR, ACR_MFA, ACR_PHISHING_RESISTANT];

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

/// Whether `methods` add up to more than one factor: a code or recovery code (which only
/// ever follow a first factor), a passkey that verified its user, or a passkey after a first
/// factor. A passkey without user verification alone is one factor (possession).
fn earns_mfa(methods: &[AuthMethod]) -> bool {
    methods.iter().any(|m| {
        matches!(
            m,
            AuthMethod::Totp
                | AuthMethod::RecoveryCode
                | AuthMethod::PasskeyVerified
                | AuthMethod::UpstreamMfa
        )
    }) || (methods.contains(&AuthMethod::Passkey) && methods.iter().any(|m| !m.is_second_factor()))
}

/// The RFC 8176 `amr` values of the methods stored as `stored` (a session's `auth_method`),
/// in the order proved (a verified passkey adds `user` after its `pop`), with `mfa` added when
/// they add up to more than one factor.
#[must_use]
pub fn amr_of(stored: &str) -> Vec<String> {
    let methods: Vec<AuthMethod> = stored.split(SEPARATOR).map(AuthMethod::parse).collect();
    let mut out: Vec<String> = Vec::with_capacity(methods.len() + 1);
    for m in &methods {
        for v in std::iter::once(m.amr()).chain(m.extra_amr()) {
            if !out.iter().any(|o| o == v) {
                out.push(v.to_owned());
            }
        }
    }
    if earns_mfa(&methods) && !out.iter().any(|o| o == "mfa") {
        out.push("mfa".to_owned());
    }
    out
}

/// The `acr` earned by the methods stored as `stored`: [`ACR_PHISHING_RESISTANT`] with a
/// passkey that verified its user, [`ACR_MFA`] with a second factor on top of a first,
/// [`ACR_ONE_FACTOR`] otherwise (a passkey without user verification, alone, is one factor).
#[must_use]
pub fn acr_of(stored: &str) -> &'static str {
    let methods: Vec<AuthMethod> = stored.split(SEPARATOR).map(AuthMethod::parse).collect();
    if methods.iter().any(AuthMethod::is_verified_passkey) {
        ACR_PHISHING_RESISTANT
    } else if earns_mfa(&methods) {
        ACR_MFA
    } else {
        ACR_ONE_FACTOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkey_after_password_is_mfa_and_verified_is_phishing_resistant() {
        assert_eq!(amr_of("password+passkey"), ["pwd", "pop", "mfa"]);
        assert_eq!(acr_of("password+passkey"), ACR_MFA);
        assert_eq!(amr_of("password+passkey_uv"), ["pwd", "pop", "user", "mfa"]);
        assert_eq!(acr_of("password+passkey_uv"), ACR_PHISHING_RESISTANT);
    }

    #[test]
    fn passwordless_passkey_earns_what_its_verification_earns() {
        assert_eq!(amr_of("passkey_uv"), ["pop", "user", "mfa"]);
        assert_eq!(acr_of("passkey_uv"), ACR_PHISHING_RESISTANT);
        assert_eq!(amr_of("passkey"), ["pop"]);
        assert_eq!(acr_of("passkey"), ACR_ONE_FACTOR);
    }

    #[test]
    fn codes_keep_their_acr() {
        assert_eq!(acr_of("password+totp"), ACR_MFA);
        assert_eq!(acr_of("password"), ACR_ONE_FACTOR);
        assert_eq!(amr_of("password+totp"), ["pwd", "otp", "mfa"]);
    }

    #[test]
    fn acr_ranks_phishing_resistant_above_mfa() {
        assert!(acr_satisfies(ACR_PHISHING_RESISTANT, ACR_MFA));
        assert!(acr_satisfies(ACR_PHISHING_RESISTANT, ACR_ONE_FACTOR));
        assert!(!acr_satisfies(ACR_MFA, ACR_PHISHING_RESISTANT));
        assert!(acr_satisfies(
            ACR_PHISHING_RESISTANT,
            ACR_PHISHING_RESISTANT
        ));
        assert!(!acr_satisfies(ACR_PHISHING_RESISTANT, "urn:other"));
    }

    #[test]
    fn a_trusted_upstreams_mfa_is_the_second_factor_once() {
        assert_eq!(amr_of("federated:corp+upstream_mfa"), ["fed", "mfa"]);
        assert_eq!(acr_of("federated:corp+upstream_mfa"), ACR_MFA);
        assert_eq!(acr_of("federated:corp"), ACR_ONE_FACTOR);
        assert_eq!(
            AuthMethod::parse(&AuthMethod::UpstreamMfa.stored()),
            AuthMethod::UpstreamMfa
        );
    }

    #[test]
    fn passkeys_round_trip_and_are_second_factors() {
        for m in [AuthMethod::Passkey, AuthMethod::PasskeyVerified] {
            assert_eq!(AuthMethod::parse(&m.stored()), m);
            assert!(m.is_second_factor());
        }
    }
}
