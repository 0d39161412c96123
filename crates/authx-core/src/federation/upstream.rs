//! The port to an upstream OpenID provider: what the relying-party flow needs to know of it
//! and to ask of it. The server implements [`UpstreamClient`] with real HTTP calls and caches;
//! tests implement it with a fake.

use std::sync::Arc;

use async_trait::async_trait;

use super::id_token::UpstreamKeys;
use crate::Timestamp;

/// One configured upstream provider, as the relying party sees it.
#[derive(Debug, Clone, Copy)]
pub struct Provider<'a> {
    /// The configured short name (in URLs, links and audit events).
    pub name: &'a str,
    /// The issuer, compared exactly with the callback's `iss` and the ID token's.
    pub issuer: &'a str,
    /// This relying party's client id at the upstream.
    pub client_id: &'a str,
    /// Space-delimited scopes, `openid` first.
    pub scope: &'a str,
    /// This server's redirect URI at the upstream, one per provider (mix-up defence).
    pub redirect_uri: &'a str,
    /// Whether a first sign-in with no matching account creates one.
    pub allow_sign_up: bool,
    /// The upstream claim holding the email.
    pub email_claim: &'a str,
    /// The upstream claim saying whether the email is verified.
    pub email_verified_claim: &'a str,
    /// Whether an upstream `amr` holding `mfa` counts as the sign-in's second factor.
    pub trust_mfa: bool,
}

/// The parts of an upstream's discovery document the flow uses.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §3).
    pub iss_parameter_supported: bool,
}

/// The token endpoint's answer.
#[derive(Debug)]
pub struct UpstreamTokens {
    /// The ID token (not yet validated).
    pub id_token: String,
    /// The access token, for `at_hash`.
    pub access_token: Option<String>,
}

/// Why a call to an upstream failed. Messages are safe to show: they never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A URL is not allowed by the outbound rule (https only; no redirects).
    #[error("the identity provider's {0} is not an allowed https URL")]
    UrlNotAllowed(&'static str),
    /// The upstream could not be reached in time.
    #[error("the identity provider could not be reached ({0})")]
    Unreachable(&'static str),
    /// The upstream answered with something unusable.
    #[error("the identity provider sent an unusable {0}")]
    BadResponse(&'static str),
    /// The upstream answered with a redirect, which is never followed.
    #[error("the identity provider redirected its {0}; redirects are not followed")]
    Redirected(&'static str),
    /// The discovery document names another issuer.
    #[error("the identity provider's discovery document names another issuer")]
    IssuerMismatch,
    /// The token endpoint refused the code.
    #[error("the identity provider refused the sign-in ({0})")]
    TokenRefused(String),
}

/// One upstream provider: its settings, and the three calls the flow makes to it.
///
/// # Security
/// Implementations make outbound calls only to the URLs the rules allow (SECURITY.md #65) and
/// check that the discovery document names exactly [`Provider::issuer`].
#[async_trait]
pub trait UpstreamClient: Send + Sync {
    /// The provider's settings.
    fn provider(&self) -> Provider<'_>;

    /// The provider's discovery metadata (may be cached).
    ///
    /// # Errors
    /// [`UpstreamError`] when it cannot be fetched or does not pass the checks.
    async fn metadata(&self, now: Timestamp) -> Result<Arc<Metadata>, UpstreamError>;

    /// The provider's keys (may be cached). With `unknown_kid`, the caller met a key it does
    /// not know: fetch again, unless that was done a moment ago.
    ///
    /// # Errors
    /// [`UpstreamError`] when no key set can be had.
    async fn keys(
        &self,
        metadata: &Metadata,
        now: Timestamp,
        unknown_kid: bool,
    ) -> Result<Arc<UpstreamKeys>, UpstreamError>;

    /// Redeems an authorization code at the token endpoint with the PKCE verifier.
    ///
    /// # Errors
    /// [`UpstreamError`] on any failure; [`UpstreamError::TokenRefused`] when it refuses.
    async fn exchange_code(
        &self,
        metadata: &Metadata,
        code: &str,
        verifier: &str,
    ) -> Result<UpstreamTokens, UpstreamError>;
}
