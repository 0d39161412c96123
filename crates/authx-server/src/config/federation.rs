//! `[federation]`: upstream identity providers, and the rule for outbound calls to them.

use serde::Deserialize;

use super::rules::{outbound_url_allowed, valid_name};
use super::{ConfigError, SecretString, bad};

/// `[federation]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationFile {
    /// `[[federation.providers]]`, one per upstream.
    pub providers: Option<Vec<ProviderFile>>,
    /// Whether the `[[federation.saml]]` providers are served (default false).
    pub enable_saml: Option<bool>,
    /// `[[federation.saml]]`, one per upstream SAML identity provider.
    pub saml: Option<Vec<super::saml::SamlProviderFile>>,
}

/// `[[federation.providers]]`: one upstream OpenID provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// Short name used in URLs (`/federation/{name}/start`): 1 to 32 of `a-z 0-9 - _`.
    pub name: String,
    /// The button label on the sign-in page (default: the name).
    pub display_name: Option<String>,
    /// The upstream issuer, exactly as its discovery document states it.
    pub issuer: String,
    /// This server's client id at the upstream.
    pub client_id: String,
    /// This server's client secret at the upstream.
    pub client_secret: Option<SecretString>,
    /// Scopes to ask for (default `openid email`); `openid` is always included.
    pub scopes: Option<Vec<String>>,
    /// Whether a first sign-in with no matching account creates one (default false).
    pub allow_sign_up: Option<bool>,
    /// `client_secret_basic` (default), `client_secret_post`, or `private_key_jwt` (signed
    /// with this server's key, published at `{issuer}/oauth2/jwks`; no secret then).
    pub token_endpoint_auth_method: Option<String>,
    /// Which upstream claims fill local fields.
    pub claims: Option<ClaimsFile>,
    /// Allows plain `http://` to a loopback address (127.0.0.0/8, ::1, localhost) for this
    /// provider. For tests and local development only; never in production.
    pub insecure_allow_http_loopback: Option<bool>,
    /// Whether the upstream's own second factor counts here: an ID token whose `amr` holds
    /// `mfa` signs in without the local second factor (default false: the local factor is
    /// asked of a user who has one).
    pub trust_upstream_mfa: Option<bool>,
}

/// `[federation.providers.claims]`: the claim mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsFile {
    /// The claim holding the email address (default `email`).
    pub email: Option<String>,
    /// The claim saying whether the upstream verified it (default `email_verified`).
    pub email_verified: Option<String>,
}

/// How this server authenticates at an upstream's token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the form-encoded id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with this server's own signing key (RFC 7523 §2.2): the upstream registers
    /// this server's JWKS URL (`{issuer}/oauth2/jwks`) and needs no secret.
    PrivateKeyJwt,
}

/// A validated upstream provider.
#[derive(Debug, Clone)]
pub struct UpstreamProvider {
    /// Short name, used in URLs.
    pub name: String,
    /// Button label.
    pub display_name: String,
    /// Issuer, compared exactly with discovery, the callback's `iss` and the ID token.
    pub issuer: String,
    /// Client id at the upstream.
    pub client_id: String,
    /// Client secret at the upstream.
    pub client_secret: SecretString,
    /// Space-delimited scopes, `openid` first.
    pub scope: String,
    /// Whether new accounts may be created.
    pub allow_sign_up: bool,
    /// Token endpoint authentication.
    pub token_auth: TokenEndpointAuth,
    /// Claim holding the email.
    pub email_claim: String,
    /// Claim holding the email's verification.
    pub email_verified_claim: String,
    /// Plain http to loopback allowed (tests and development only).
    pub insecure_allow_http_loopback: bool,
    /// Whether the upstream's `amr` `mfa` counts as this sign-in's second factor.
    pub trust_upstream_mfa: bool,
}

pub(super) fn federation_providers(
    providers: Vec<ProviderFile>,
) -> Result<Vec<UpstreamProvider>, ConfigError> {
    let mut out: Vec<UpstreamProvider> = Vec::new();
    for p in providers {
        let name = p.name;
        if !valid_name(&name) {
            return Err(bad(format!(
                "federation.providers: name {name:?} must be 1 to 32 of a-z, 0-9, - and _"
            )));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(bad(format!(
                "federation.providers: name {name:?} appears twice"
            )));
        }
        let key = |k: &str| format!("federation.providers[{name}].{k}");
        let insecure = p.insecure_allow_http_loopback.unwrap_or(false);
        if !outbound_url_allowed(&p.issuer, insecure)
            || p.issuer.contains(['?', '#'])
            || p.issuer.len() > 512
        {
            return Err(bad(format!(
                "{} = {:?} must be an https URL without query or fragment (http only to loopback \
                 with insecure_allow_http_loopback)",
                key("issuer"),
                p.issuer
            )));
        }
        if p.client_id.is_empty() || p.client_id.len() > 255 {
            return Err(bad(format!(
                "{} must be 1 to 255 characters",
                key("client_id")
            )));
        }
        let client_secret = p.client_secret.unwrap_or_default();
        let signs = p.token_endpoint_auth_method.as_deref() == Some("private_key_jwt");
        if client_secret.expose().is_empty() && !signs {
            return Err(bad(format!("{} is required", key("client_secret"))));
        }
        let mut scopes = vec!["openid".to_owned()];
        for s in p
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "email".into()])
        {
            if s.is_empty()
                || s.bytes()
                    .any(|b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')
            {
                return Err(bad(format!("{}: {s:?} is not a scope", key("scopes"))));
            }
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let token_auth = match p.token_endpoint_auth_method.as_deref() {
            None | Some("client_secret_basic") => TokenEndpointAuth::ClientSecretBasic,
            Some("client_secret_post") => TokenEndpointAuth::ClientSecretPost,
            Some("private_key_jwt") => TokenEndpointAuth::PrivateKeyJwt,
            Some(other) => {
                return Err(bad(format!(
                    "{} = {other:?}: use client_secret_basic, client_secret_post or private_key_jwt",
                    key("token_endpoint_auth_method")
                )));
            }
        };
        let claims = p.claims.unwrap_or_default();
        let display_name = p.display_name.unwrap_or_else(|| name.clone());
        if display_name.is_empty() || display_name.chars().count() > 64 {
            return Err(bad(format!(
                "{} must be 1 to 64 characters",
                key("display_name")
            )));
        }
        out.push(UpstreamProvider {
            display_name,
            issuer: p.issuer,
            client_id: p.client_id,
            client_secret,
            scope: scopes.join(" "),
            allow_sign_up: p.allow_sign_up.unwrap_or(false),
            token_auth,
            email_claim: claims.email.unwrap_or_else(|| "email".into()),
            email_verified_claim: claims
                .email_verified
                .unwrap_or_else(|| "email_verified".into()),
            insecure_allow_http_loopback: insecure,
            trust_upstream_mfa: p.trust_upstream_mfa.unwrap_or(false),
            name,
        });
    }
    Ok(out)
}
