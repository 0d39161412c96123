//! OAuth clients (RFC 6749 §2) and API resources (RFC 8707), with redirect URI rules
//! (RFC 9700 §2.1, §4.1.3; RFC 8252 §7.3).

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::oauth::keys::SigningAlg;
use crate::secret::TokenHash;

/// A grant type a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GrantType {
    /// `authorization_code` (with PKCE).
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    /// `refresh_token`.
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// `client_credentials`.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
}

impl GrantType {
    /// The registered name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }

    /// Parses the registered name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            "urn:ietf:params:oauth:grant-type:device_code" => Some(Self::DeviceCode),
            _ => None,
        }
    }
}

/// How a client authenticates at the token, PAR, introspection and revocation endpoints
/// (RFC 7591 §2 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenEndpointAuthMethod {
    /// A generated secret in HTTP Basic (RFC 6749 §2.3.1). The body form is accepted too.
    ClientSecretBasic,
    /// A generated secret in the body. HTTP Basic is accepted too.
    ClientSecretPost,
    /// A JWT signed with one of the client's own keys (RFC 7523 §2.2, OIDC Core §9).
    PrivateKeyJwt,
    /// A public client: `client_id` only, PKCE for codes.
    None,
}

impl TokenEndpointAuthMethod {
    /// The registered name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }

    /// Parses the registered name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// Whether the client holds a generated secret.
    #[must_use]
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id` (at most 255 printable ASCII characters).
    pub id: String,
    /// Display name, shown on the consent page.
    pub name: String,
    /// SHA-256 of the generated secret; `None` unless the client authenticates with one.
    pub secret_hash: Option<TokenHash>,
    /// How it authenticates.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Its public keys for `private_key_jwt`, a JWK Set as JSON text (checked at registration).
    pub jwks: Option<String>,
    /// Where its public keys for `private_key_jwt` are published (HTTPS; fetched with the
    /// outbound rules, and cached).
    pub jwks_uri: Option<String>,
    /// Registered redirect URIs, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// OIDC back-channel logout URI.
    pub backchannel_logout_uri: Option<String>,
    /// Allowed grants.
    pub grant_types: Vec<GrantType>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// The APIs (resource ids, RFC 8707) this client may get access tokens for; any other
    /// audience is `invalid_target`.
    pub resources: Vec<String>,
    /// First-party clients skip the consent page.
    pub first_party: bool,
    /// Whether the client's authorization requests must be pushed first (RFC 9126 §6).
    pub require_pushed_authorization_requests: bool,
    /// The least `acr` its users must have signed in with (one of
    /// [`crate::amr::ACR_VALUES`]); `None` for none.
    pub require_acr: Option<String>,
    /// Whether every access token it gets must be bound to a DPoP key (RFC 9449 §5.2).
    pub dpop_bound_access_tokens: bool,
    /// ID token signing algorithm.
    pub id_token_alg: SigningAlg,
    /// Access token lifetime in seconds.
    pub access_token_ttl_secs: i64,
    /// Refresh token family absolute lifetime in seconds.
    pub refresh_token_ttl_secs: i64,
    /// Refresh token inactivity expiry in seconds.
    pub refresh_idle_secs: i64,
    /// Registration time.
    pub created_at: Timestamp,
}

impl Client {
    /// Whether the client authenticates (with a secret or its own keys): not a public client.
    #[must_use]
    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method != TokenEndpointAuthMethod::None
    }

    /// Whether the client may use `grant`.
    #[must_use]
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether the client may get access tokens for the API `resource` (RFC 8707).
    #[must_use]
    pub fn may_target(&self, resource: &str) -> bool {
        self.resources.iter().any(|r| r == resource)
    }

    /// Whether `presented` exactly matches a registered redirect URI (RFC 9700 §4.1.3). The
    /// one exception: a loopback IP literal redirect of a public (native) client matches with
    /// any port (RFC 8252 §7.3).
    #[must_use]
    pub fn redirect_uri_matches(&self, presented: &str) -> bool {
        self.redirect_uris.iter().any(|r| {
            r == presented || (!self.is_confidential() && loopback_matches_any_port(r, presented))
        })
    }
}

/// An API that access tokens can be issued for (the `aud` of the tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The resource indicator: an absolute URI or URN, used as the audience.
    pub id: String,
    /// Scopes this API understands.
    pub scopes: Vec<String>,
    /// Registration time.
    pub created_at: Timestamp,
}

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirect URI {uri:?} refused: {reason}")]
pub struct RedirectUriRejected {
    /// The URI.
    pub uri: String,
    /// Why.
    pub reason: &'static str,
}

/// Checks a redirect URI at registration (SECURITY.md #25): https, or http only for loopback
/// IP literals; no fragment, no wildcard, no user information, no dangerous scheme in any case.
///
/// # Errors
/// The reason it is refused.
pub fn validate_redirect_uri(uri: &str) -> Result<(), RedirectUriRejected> {
    let refuse = |reason| {
        Err(RedirectUriRejected {
            uri: uri.to_owned(),
            reason,
        })
    };
    if uri.len() > 2000 || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("too long or contains spaces or control characters");
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return refuse("not an absolute http(s) URI");
    };
    if uri.contains('#') {
        return refuse("fragments are not allowed");
    }
    if uri.contains('*') {
        return refuse("wildcards are not allowed");
    }
    if uri.contains('\\') {
        return refuse("backslashes are not allowed");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return refuse("a host is required and user information is not allowed");
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback_ip_authority(authority) => Ok(()),
        "http" => refuse("http is allowed only for loopback IP literals (127.0.0.1, [::1])"),
        _ => refuse("only https (or http on loopback) is allowed"),
    }
}

fn is_loopback_ip_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `http://127.0.0.1:PORT/path?q` matching a registered `http://127.0.0.1[:PORT]/path?q` with
/// any port: scheme, host, path and query must be identical.
fn loopback_matches_any_port(registered: &str, presented: &str) -> bool {
    fn split(uri: &str) -> Option<(&str, &str, &str)> {
        let rest = uri.strip_prefix("http://")?;
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let host = if authority.starts_with('[') {
            let end = authority.find(']')?;
            let (h, port) = authority.split_at(end + 1);
            if !(port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
            {
                return None;
            }
            h
        } else {
            let (h, port) = authority.split_once(':').unwrap_or((authority, ""));
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            h
        };
        Some((host, tail, authority))
    }
    match (split(registered), split(presented)) {
        (Some((rh, rt, ra)), Some((ph, pt, _))) => {
            is_loopback_ip_authority(ra) && rh == ph && rt == pt
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str], public: bool) -> Client {
        Client {
            id: "app".into(),
            name: "App".into(),
            secret_hash: if public {
                None
            } else {
                Some(TokenHash::of(b"s"))
            },
            token_endpoint_auth_method: if public {
                TokenEndpointAuthMethod::None
            } else {
                TokenEndpointAuthMethod::ClientSecretBasic
            },
            jwks: None,
            jwks_uri: None,
            dpop_bound_access_tokens: false,
            redirect_uris: uris.iter().map(|s| (*s).to_owned()).collect(),
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec![],
            resources: vec![],
            first_party: false,
            require_pushed_authorization_requests: false,
            require_acr: None,
            id_token_alg: SigningAlg::Rs256,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 86_400,
            refresh_idle_secs: 86_400,
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn registration_rules() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8000/cb",
            "https://app.example.com/cb?x=1",
        ] {
            assert_eq!(validate_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "http://localhost/cb",
            "https://app.example.com/cb#frag",
            "https://*.example.com/cb",
            "javascript:alert(1)",
            "JaVaScRiPt://alert(1)",
            "data:text/html,x",
            "vbscript://x",
            "https://good@evil.com/cb",
            "https:///cb",
            "https://app.example.com/c b",
            "app.example.com/cb",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_match_refuses_every_variant() {
        let c = client(&["https://app.example.com/cb"], false);
        assert!(c.redirect_uri_matches("https://app.example.com/cb"));
        for variant in [
            "https://app.example.com/cb/",
            "https://app.example.com/CB",
            "https://APP.example.com/cb",
            "HTTPS://app.example.com/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#x",
            "https://app.example.com/cb/../evil",
            "https://app.example.com/cb/%2e%2e/evil",
            "https://app.example.com/cb/%252e%252e/evil",
            "https://app.example.com/cb/..;/evil",
            "https://app.example.com\\@evil.com/cb",
            "https://app.example.com@evil.com/cb",
            "https://app.example.com.evil.com/cb",
            "https://evil.com/https://app.example.com/cb",
            "https://app.example.com:443/cb",
        ] {
            assert!(!c.redirect_uri_matches(variant), "{variant}");
        }
    }

    #[test]
    fn loopback_port_may_vary_for_native_clients_only() {
        let native = client(&["http://127.0.0.1/cb"], true);
        assert!(native.redirect_uri_matches("http://127.0.0.1:51234/cb"));
        assert!(!native.redirect_uri_matches("http://127.0.0.1:51234/cb?x"));
        assert!(!native.redirect_uri_matches("http://127.0.0.1:51234/other"));
        assert!(!native.redirect_uri_matches("http://localhost:51234/cb"));
        assert!(!native.redirect_uri_matches("http://127.0.0.1:51234@evil.com/cb"));
        assert!(!native.redirect_uri_matches("http://[::1]:5000/cb"));
        let confidential = client(&["http://127.0.0.1/cb"], false);
        assert!(!confidential.redirect_uri_matches("http://127.0.0.1:51234/cb"));
    }
}
